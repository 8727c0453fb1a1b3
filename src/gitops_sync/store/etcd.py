"""The etcd adapter: the one module that imports ``etcd3`` and ``grpc``.

Every client error is translated here into the project's own (:mod:`gitops_sync.errors`), so no
``grpc.RpcError`` reaches the service. Reads are paged at one pinned revision, so a large registry
is read consistently and under gRPC's message limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import etcd3
import grpc
from etcd3 import exceptions as etcd_exceptions
from etcd3.utils import prefix_range_end

from gitops_sync.errors import StoreConflict, StoreError, StoreUnavailable
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import KeyState, RegistryState

PAGE_SIZE: Final = 1000
GRPC_OPTIONS: Final = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # gRPC backs off reconnecting for up to 120 s by default; a registry sync should notice a
    # restarted etcd within a second or so.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
SINGLE_ENDPOINT_RETRY: Final = 0.0
"""python3-etcd3 refuses a failed endpoint for ``time_retry`` seconds (300 by default), which would
lock a single-endpoint client out for five minutes after one failed call during an etcd restart."""

_UNAVAILABLE_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class EtcdStore:
    """A connection to one etcd cluster, speaking in keys, revisions and planned changes."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], *, timeout: float) -> None:
        self.label = ",".join(f"{host}:{port}" for host, port in endpoints)
        self._client = etcd3.MultiEndpointEtcd3Client(
            endpoints=[
                etcd3.Endpoint(host, port, secure=False, time_retry=SINGLE_ENDPOINT_RETRY, opts=GRPC_OPTIONS)
                for host, port in endpoints
            ],
            timeout=timeout,
            failover=True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def version(self) -> str:
        """The server's version; a cheap way to check that etcd answers."""
        with self._translated("status"):
            return str(self._client.status().version)

    def read(self, prefix: str, sync_prefix: str) -> RegistryState:
        """Every key under both prefixes, read at one revision."""
        capability_keys, revision = self._read_prefix(prefix)
        bookkeeping, _ = self._read_prefix(sync_prefix, revision=revision)
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
        )

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, without their values."""
        keys, _ = self._read_prefix(prefix, keys_only=True)
        return list(keys)

    def commit(self, changes: Sequence[Change]) -> None:
        """Apply changes in one transaction, if no key they touch changed since it was read.

        Raises :class:`StoreConflict` when another writer got there first; nothing is applied then.
        """
        txn = self._client.transactions
        compare = [txn.mod(key) == revision for change in changes for key, revision in change.expected]
        success: list[Any] = []
        for change in changes:
            success.extend(txn.put(key, value) for key, value in change.puts)
            success.extend(txn.delete(key) for key in change.deletes)
        with self._translated("transaction"):
            succeeded, _ = self._client.transaction(compare=compare, success=success, failure=[])
        if not succeeded:
            ids = ", ".join(change.capability_id for change in changes)
            raise StoreConflict(f"keys of {ids} changed in etcd since they were read")

    def put(self, key: str, value: bytes) -> None:
        with self._translated("put"):
            self._client.put(key, value)

    def _read_prefix(
        self, prefix: str, *, revision: int | None = None, keys_only: bool = False
    ) -> tuple[dict[str, KeyState], int]:
        start = prefix.encode()
        end = prefix_range_end(start)
        found: dict[str, KeyState] = {}
        while True:
            with self._translated("read"):
                response = self._client.get_range_response(
                    start, end, limit=PAGE_SIZE, revision=revision, keys_only=keys_only
                )
            revision = revision or response.header.revision
            for kv in response.kvs:
                found[kv.key.decode()] = KeyState(kv.value, kv.mod_revision)
            if not response.more or not response.kvs:
                return found, revision
            start = response.kvs[-1].key + b"\0"

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn the client's errors into the project's, naming the endpoint and what was asked."""
        where = f"etcd at {self.label}"
        try:
            yield
        except (
            etcd_exceptions.ConnectionFailedError,
            etcd_exceptions.ConnectionTimeoutError,
            etcd_exceptions.NoServerAvailableError,
        ) as exc:
            raise StoreUnavailable(f"{where} is unreachable ({action}: {exc})") from exc
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code in _UNAVAILABLE_CODES:
                raise StoreUnavailable(f"{where} is unreachable ({action}: {detail})") from exc
            name = code.name if code else "error"
            raise StoreError(f"{where} refused {action}: {name}: {detail}") from exc
        except etcd_exceptions.Etcd3Exception as exc:
            raise StoreError(f"{where} failed {action}: {type(exc).__name__} {exc}") from exc
        except ValueError as exc:  # python3-etcd3: "Trying to use a failed node"
            raise StoreUnavailable(f"{where} is unreachable ({action}: {exc})") from exc
