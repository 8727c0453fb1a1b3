"""The etcd side. Only :mod:`gitops_sync.store.etcd` imports the etcd client."""
