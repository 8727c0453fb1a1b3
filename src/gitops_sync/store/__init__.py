"""The etcd side. Only this package imports the etcd client; :mod:`gitops_sync.store.etcd` is its front."""
