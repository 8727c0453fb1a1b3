"""The store's front: :class:`EtcdStore`, one etcd cluster in keys, revisions and planned changes.

Only :mod:`gitops_sync.store` imports ``etcd3`` and ``grpc``, and every client error is translated
in it into the project's own (:mod:`gitops_sync.errors`), so no ``grpc.RpcError`` reaches the
service. The parts: :mod:`~gitops_sync.store.members` (channels, one attempt),
:mod:`~gitops_sync.store.cluster` (choosing a member, retries, authentication, the translation),
:mod:`~gitops_sync.store.reading` (paged reads at one revision),
:mod:`~gitops_sync.store.transactions` (writes) and :mod:`~gitops_sync.store.watching`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Self

from etcd3 import etcdrpc
from etcd3.utils import prefix_range_end

from gitops_sync.errors import StoreConflict, StoreError
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.cluster import Cluster
from gitops_sync.store.members import Attempt
from gitops_sync.store.reading import read_prefix, read_values
from gitops_sync.store.transactions import Fence, applied_at, created_at, txn_request
from gitops_sync.store.watching import KeyEvents, WatchCallback, watch_prefix

__all__ = ["EtcdStore", "Fence", "KeyEvents", "WatchCallback"]


class EtcdStore:
    """A connection to one etcd cluster, speaking in keys, revisions and planned changes."""

    def __init__(
        self, connection: EtcdConnection, on_request: Callable[[str, float], None] | None = None
    ) -> None:
        self.connection = connection
        self.label = connection.label
        self._cluster = Cluster(connection, on_request)
        """Every request goes through it; ``on_request`` is told each one's action and seconds
        taken, retries included, failed or not (metrics)."""

    def stop_on(self, event: threading.Event) -> None:
        """Once ``event`` is set, requests in flight are cancelled and fail, nothing is retried
        and nothing backs off; a request made after that gets one short attempt."""
        self._cluster.stop_on(event)

    def close(self) -> None:
        self._cluster.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------

    def version(self) -> str:
        """The server's version; a cheap way to check that etcd answers."""
        request = etcdrpc.StatusRequest()
        return self._cluster.call(
            "status", lambda attempt: str(attempt.unary(attempt.member.maintenance.Status, request).version)
        )

    def check_access(self, prefix: str) -> str:
        """The server's version, once etcd has also counted the keys under ``prefix``: a request
        that needs the user's read permission, so an etcd with authentication on refuses it if no
        user (or a wrong one) is configured."""
        start = prefix.encode()
        count = etcdrpc.RangeRequest(key=start, range_end=prefix_range_end(start), count_only=True)

        def check(attempt: Attempt) -> str:
            version = str(attempt.unary(attempt.member.maintenance.Status, etcdrpc.StatusRequest()).version)
            attempt.unary(attempt.member.kv.Range, count)
            return version

        return self._cluster.call("read", check)

    def read(self, prefix: str, sync_prefix: str) -> RegistryState:
        """Every key under both prefixes, read at one revision: the capability keys without their
        values (:meth:`values` reads those needed), the service's own keys with theirs. Keys that
        are not UTF-8 are no key of this service's: they are left out, and listed apart."""
        capability_keys, revision, odd = read_prefix(self._cluster, prefix, keys_only=True)
        bookkeeping, _, odd_bookkeeping = read_prefix(self._cluster, sync_prefix, revision=revision)
        records_prefix = managed_prefix(sync_prefix)
        return RegistryState(
            revision=revision,
            capability_keys=capability_keys,
            records={
                key[len(records_prefix) :]: state
                for key, state in bookkeeping.items()
                if key.startswith(records_prefix)
            },
            status=bookkeeping.get(status_key(sync_prefix)),
            undecodable=odd + odd_bookkeeping,
        )

    def snapshot(self, prefix: str) -> tuple[dict[str, KeyState], int]:
        """Every key under ``prefix`` with its value, read at one revision, and that revision.
        Keys that are not UTF-8 are left out."""
        found, revision, _ = read_prefix(self._cluster, prefix)
        return found, revision

    def keys(self, prefix: str) -> tuple[list[str], tuple[bytes, ...]]:
        """The keys under ``prefix``, without their values; and apart, those that are not UTF-8."""
        keys, _, undecodable = read_prefix(self._cluster, prefix, keys_only=True)
        return list(keys), undecodable

    def values(self, keys: Sequence[str], per_request: int) -> dict[str, KeyState]:
        """The current value and mod revision of each of ``keys`` that exists, read ``per_request``
        keys at a time at most, fewer where their values are large."""
        return read_values(self._cluster, keys, per_request)

    def get_at_head(self, key: str) -> tuple[KeyState | None, int]:
        """A key's state (None if it does not exist) and etcd's current revision."""
        request = etcdrpc.RangeRequest(key=key.encode())

        def get(attempt: Attempt) -> tuple[KeyState | None, int]:
            response = attempt.unary(attempt.member.kv.Range, request)
            head = int(response.header.revision)
            if not response.kvs:
                return None, head
            return KeyState(response.kvs[0].value, response.kvs[0].mod_revision), head

        return self._cluster.call("read", get)

    def get(self, key: str) -> tuple[KeyState, int] | None:
        """A key's state and its create revision, or None."""
        request = etcdrpc.RangeRequest(key=key.encode())

        def get(attempt: Attempt) -> tuple[KeyState, int] | None:
            response = attempt.unary(attempt.member.kv.Range, request)
            if not response.kvs:
                return None
            kv = response.kvs[0]
            return KeyState(kv.value, kv.mod_revision), int(kv.create_revision)

        return self._cluster.call("read", get)

    # --- writing ---------------------------------------------------------------------------------

    def commit(self, changes: Sequence[Change], fence: Fence | None = None) -> int:
        """Apply changes in one transaction, if no key they touch changed since it was read (and
        the fence still stands). Returns the revision it created.

        Raises :class:`StoreConflict` when another writer got there first; nothing is applied then.
        An attempt whose answer was lost is sent again: if it did go through, the retry's compares
        fail, and etcd is read to tell that apart from a conflict.
        """
        request = txn_request(changes, fence)
        sent = False

        def commit(attempt: Attempt) -> int:
            nonlocal sent
            maybe_applied, sent = sent, True
            response = attempt.unary(attempt.member.kv.Txn, request)
            if response.succeeded:
                return int(response.header.revision)
            if maybe_applied:
                revision = applied_at(attempt, changes)
                if revision is not None:
                    return revision
            ids = ", ".join(change.capability_id for change in changes)
            raise StoreConflict(f"keys of {ids} changed in etcd since they were read, or leadership was lost")

        return self._cluster.call("transaction", commit)

    def put(self, key: str, value: bytes, fence: Fence | None = None) -> int:
        """Put one key (if the fence stands); returns the revision it created."""
        return self.commit([Change("", "record", puts=((key, value),))], fence)

    # --- leases, for leader election -------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        request = etcdrpc.LeaseGrantRequest(TTL=ttl)
        return self._cluster.call(
            "lease grant", lambda attempt: int(attempt.unary(attempt.member.lease.LeaseGrant, request).ID)
        )

    def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, 0 if it has expired."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def refresh(attempt: Attempt) -> int:
            responses = attempt.streamed(attempt.member.lease.LeaseKeepAlive, request)
            return max((int(response.TTL) for response in responses), default=0)

        return self._cluster.call("lease keep-alive", refresh)

    def revoke_lease(self, lease_id: int) -> None:
        """End a lease and delete its keys; a lease that has already ended is fine."""
        request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._cluster.call(
                "lease revoke", lambda attempt: attempt.unary(attempt.member.lease.LeaseRevoke, request)
            )
        except StoreError as exc:
            if "lease not found" not in str(exc):
                raise

    def create(self, key: str, value: bytes, lease_id: int) -> int | None:
        """Put ``key`` bound to the lease if it does not exist; its create revision, or None."""
        request = etcdrpc.TxnRequest(
            compare=[created_at(key, 0)],
            success=[
                etcdrpc.RequestOp(
                    request_put=etcdrpc.PutRequest(key=key.encode(), value=value, lease=lease_id)
                )
            ],
        )

        def create(attempt: Attempt) -> int | None:
            response = attempt.unary(attempt.member.kv.Txn, request)
            return int(response.header.revision) if response.succeeded else None

        return self._cluster.call("transaction", create)

    # --- watching --------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback`` (on another thread) with each batch of changes under ``prefix`` from
        ``start_revision`` on, or once with a :class:`StoreError` when the watch ends (etcd or the
        member went away or lost its leader, or the revision was compacted). Returns a function
        that cancels the watch. Changes of keys that are not UTF-8 are left out.
        """
        return watch_prefix(self._cluster, prefix, start_revision, callback)
