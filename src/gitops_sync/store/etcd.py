"""The etcd adapter: the one module that imports ``etcd3`` and ``grpc``.

Every client error is translated here into the project's own (:mod:`gitops_sync.errors`), so no
``grpc.RpcError`` reaches the service. Requests that fail because a member is down or restarting
are retried (on another member, if there are several) with back-off and jitter, for up to the
connection's timeout; reads are paged at one pinned revision, so a large registry is read
consistently and under gRPC's message limit.

python3-etcd3 traps this module works around (docs/architecture.md): a failed endpoint is refused
for ``time_retry`` seconds (300 by default); gRPC backs off reconnecting for up to two minutes;
credentials sent as gRPC call credentials are refused on a plain-text channel, and an auth token
that expires is never renewed. So this module authenticates itself, sends the token as metadata and
renews it when etcd says it expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

import etcd3
import grpc
import tenacity
from etcd3 import exceptions as etcd_exceptions
from etcd3.utils import prefix_range_end

from gitops_sync.errors import StoreAccessDenied, StoreConflict, StoreError, StoreUnavailable
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.settings import EtcdConnection

T = TypeVar("T")

PAGE_SIZE: Final = 1000
"""Keys per read request with values: 1,000 manifests' keys are well within the receive limit."""
KEYS_PAGE_SIZE: Final = 10_000
"""Keys per read request without values."""
GRPC_OPTIONS: Final = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # gRPC backs off reconnecting for up to 120 s by default; a registry sync should notice a
    # restarted etcd within a second or so.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
FAILED_MEMBER_PAUSE: Final = 2.0
"""With several members, how long one that failed is passed over. With one, it is never passed
over (python3-etcd3 would refuse it for 300 s)."""
_UNAVAILABLE_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_UNAVAILABLE_DETAILS: Final = (
    "deadline exceeded",
    "no leader",
    "leader changed",
    "timed out",
    "too many requests",
)
"""What etcd says, with code UNKNOWN, when it has lost quorum or is electing a leader."""
_MOD: Final = etcd3.etcdrpc.Compare.MOD
_DELETE: Final = etcd3.etcdrpc.kv_pb2.Event.DELETE
_EQUAL: Final = etcd3.etcdrpc.Compare.EQUAL
_TOKEN_EXPIRED: Final = ("invalid auth token", "revision of auth store is old")
"""What etcd says when the token must be renewed: a simple token expired, or a JWT token predates
a change to users or roles."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Writes go through only while this key still has this create revision: a leader that lost
    its lease can no longer write."""

    key: str
    create_revision: int


@dataclass(frozen=True, slots=True)
class KeyEvents:
    """Keys changed in one watch response, with the revision of each change."""

    revision: int
    changes: tuple[tuple[str, int], ...]
    values: tuple[bytes | None, ...] = ()
    """Each changed key's new value, None where it was deleted (in the order of ``changes``)."""


WatchCallback = Callable[["KeyEvents | StoreError"], None]


class EtcdStore:
    """A connection to one etcd cluster, speaking in keys, revisions and planned changes."""

    def __init__(
        self, connection: EtcdConnection, on_request: Callable[[str, float], None] | None = None
    ) -> None:
        self.connection = connection
        self._on_request = on_request
        """Told each request's action and seconds taken, retries included, failed or not (metrics)."""
        self.label = connection.label
        self._lock = threading.Lock()
        self._client_instance: Any = None

    def close(self) -> None:
        with self._lock:
            if self._client_instance is not None:
                self._client_instance.close()
                self._client_instance = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------

    def version(self) -> str:
        """The server's version; a cheap way to check that etcd answers (and accepts us)."""
        return self._call("status", lambda client: str(client.status().version))

    def read(self, prefix: str, sync_prefix: str) -> RegistryState:
        """Every key under both prefixes, read at one revision: the capability keys without their
        values (:meth:`values` reads those needed), the service's own keys with theirs."""
        capability_keys, revision = self._read_prefix(prefix, keys_only=True)
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

    def snapshot(self, prefix: str) -> tuple[dict[str, KeyState], int]:
        """Every key under ``prefix`` with its value, read at one revision, and that revision."""
        return self._read_prefix(prefix)

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, without their values."""
        keys, _ = self._read_prefix(prefix, keys_only=True)
        return list(keys)

    def values(self, keys: Sequence[str], per_request: int) -> dict[str, KeyState]:
        """The current value and mod revision of each of ``keys`` that exists."""
        found: dict[str, KeyState] = {}
        for start in range(0, len(keys), per_request):
            chunk = keys[start : start + per_request]

            def get(client: Any, chunk: Sequence[str] = chunk) -> Any:
                txn = client.transactions
                _, responses = client.transaction(
                    compare=[], success=[txn.get(key) for key in chunk], failure=[]
                )
                return responses

            for key, response in zip(chunk, self._call("read", get), strict=True):
                for value, meta in response:
                    found[key] = KeyState(value, meta.mod_revision)
        return found

    def get_at_head(self, key: str) -> tuple[KeyState | None, int]:
        """A key's state (None if it does not exist) and etcd's current revision."""

        def get(client: Any) -> tuple[KeyState | None, int]:
            response = client.get_response(key)
            head = int(response.header.revision)
            if not response.kvs:
                return None, head
            return KeyState(response.kvs[0].value, response.kvs[0].mod_revision), head

        return self._call("read", get)

    def get(self, key: str) -> tuple[KeyState, int] | None:
        """A key's state and its create revision, or None."""

        def get(client: Any) -> tuple[KeyState, int] | None:
            response = client.get_response(key)
            if not response.kvs:
                return None
            kv = response.kvs[0]
            return KeyState(kv.value, kv.mod_revision), int(kv.create_revision)

        return self._call("read", get)

    # --- writing ---------------------------------------------------------------------------------

    def commit(self, changes: Sequence[Change], fence: Fence | None = None) -> int:
        """Apply changes in one transaction, if no key they touch changed since it was read (and
        the fence still stands). Returns the revision it created.

        Raises :class:`StoreConflict` when another writer got there first; nothing is applied then.
        Retrying after a lost answer is safe: a transaction that did go through fails its compares.
        """

        request = _txn_request(changes, fence)

        def commit(client: Any) -> int:
            response = _send_txn(client, request)
            if not response.succeeded:
                ids = ", ".join(change.capability_id for change in changes)
                raise StoreConflict(
                    f"keys of {ids} changed in etcd since they were read, or leadership was lost"
                )
            return int(response.header.revision)

        return self._call("transaction", commit)

    def put(self, key: str, value: bytes, fence: Fence | None = None) -> int:
        """Put one key (if the fence stands); returns the revision it created."""
        return self.commit([Change("", "record", puts=((key, value),))], fence)

    # --- leases, for leader election -------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        return self._call("lease grant", lambda client: int(client.lease(ttl).id))

    def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, 0 if it has expired."""

        def refresh(client: Any) -> int:
            return max((int(response.TTL) for response in client.refresh_lease(lease_id)), default=0)

        return self._call("lease keep-alive", refresh)

    def revoke_lease(self, lease_id: int) -> None:
        """End a lease and delete its keys; a lease that has already ended is fine."""
        try:
            self._call("lease revoke", lambda client: client.revoke_lease(lease_id))
        except StoreError as exc:
            if "lease not found" not in str(exc):
                raise

    def create(self, key: str, value: bytes, lease_id: int) -> int | None:
        """Put ``key`` bound to the lease if it does not exist; its create revision, or None."""

        rpc = etcd3.etcdrpc
        request = rpc.TxnRequest(
            compare=[_created_at(key, 0)],
            success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value, lease=lease_id))
            ],
        )

        def create(client: Any) -> int | None:
            response = _send_txn(client, request)
            return int(response.header.revision) if response.succeeded else None

        return self._call("transaction", create)

    # --- watching --------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback`` (on another thread) with each batch of changes under ``prefix`` from
        ``start_revision`` on, or once with a :class:`StoreError` when the watch ends (etcd went
        away, or the revision was compacted). Returns a function that cancels the watch.

        This speaks the Watch RPC itself: python3-etcd3's watcher thread dies on a NameError when
        its stream ends (``six`` is no longer imported), so it would never say the watch is gone.
        """
        start = prefix.encode()
        create = etcd3.etcdrpc.WatchCreateRequest(
            key=start, range_end=prefix_range_end(start), start_revision=start_revision
        )

        def open_stream(client: Any) -> Any:
            stub = etcd3.etcdrpc.WatchStub(client.channel)
            return stub.Watch(
                iter([etcd3.etcdrpc.WatchRequest(create_request=create)]), metadata=client.metadata
            )

        stream = self._call("watch", open_stream)

        def follow() -> None:
            try:
                for response in stream:
                    if response.compact_revision:
                        callback(
                            StoreError(f"watch of {prefix} lost: revision {start_revision} was compacted")
                        )
                        return
                    if response.canceled:
                        callback(
                            StoreUnavailable(f"watch of {prefix} canceled by etcd: {response.cancel_reason}")
                        )
                        return
                    if response.events:
                        changes = tuple(
                            (event.kv.key.decode(), int(event.kv.mod_revision)) for event in response.events
                        )
                        values = tuple(
                            None if event.type == _DELETE else bytes(event.kv.value)
                            for event in response.events
                        )
                        callback(KeyEvents(int(response.header.revision), changes, values))
            except grpc.RpcError as exc:
                if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                    return  # cancelled by us
                callback(
                    StoreUnavailable(f"watch of {prefix} on etcd at {self.label} broke ({exc.code().name})")
                )
                return
            callback(StoreUnavailable(f"watch of {prefix} on etcd at {self.label} ended"))

        threading.Thread(target=follow, name=f"watch {prefix}", daemon=True).start()
        return stream.cancel  # type: ignore[no-any-return]

    # --- the connection --------------------------------------------------------------------------

    def _read_prefix(
        self, prefix: str, *, revision: int | None = None, keys_only: bool = False
    ) -> tuple[dict[str, KeyState], int]:
        start = prefix.encode()
        end = prefix_range_end(start)
        found: dict[str, KeyState] = {}
        while True:

            def page(client: Any, start: bytes = start, revision: int | None = revision) -> Any:
                return client.get_range_response(
                    start,
                    end,
                    limit=KEYS_PAGE_SIZE if keys_only else PAGE_SIZE,
                    revision=revision,
                    keys_only=keys_only,
                )

            response = self._call("read", page)
            revision = revision or int(response.header.revision)
            for kv in response.kvs:
                found[kv.key.decode()] = KeyState(None if keys_only else kv.value, kv.mod_revision)
            if not response.more or not response.kvs:
                return found, revision
            start = response.kvs[-1].key + b"\0"

    def _call(self, action: str, request: Callable[[Any], T]) -> T:
        """Run a request, retrying an unreachable etcd (or member) with back-off and jitter."""
        if self._on_request is not None:
            started = time.perf_counter()
            try:
                return self._retried(action, request)
            finally:
                self._on_request(action, time.perf_counter() - started)
        return self._retried(action, request)

    def _retried(self, action: str, request: Callable[[Any], T]) -> T:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(StoreUnavailable),
            stop=tenacity.stop_after_delay(self.connection.timeout),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.1),
            reraise=True,
        ):
            with attempt, self._translated(action):
                return request(self._client())
        raise AssertionError("unreachable")  # pragma: no cover - tenacity re-raises

    def _client(self) -> Any:
        with self._lock:
            if self._client_instance is None:
                self._client_instance = self._connect()
            return self._client_instance

    def _connect(self) -> Any:
        connection = self.connection
        credentials = None
        if connection.cacert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=connection.cacert.read_bytes(),
                private_key=connection.key.read_bytes() if connection.key else None,
                certificate_chain=connection.cert.read_bytes() if connection.cert else None,
            )
        client = etcd3.MultiEndpointEtcd3Client(
            endpoints=[
                etcd3.Endpoint(
                    host,
                    port,
                    secure=connection.secure,
                    creds=credentials,
                    time_retry=FAILED_MEMBER_PAUSE if len(connection.endpoints) > 1 else 0.0,
                    opts=GRPC_OPTIONS,
                )
                for host, port in connection.endpoints
            ],
            timeout=connection.timeout,
            failover=True,
        )
        if connection.user is not None:
            self._authenticate(client)
        return client

    def _authenticate(self, client: Any) -> None:
        """Log in and send the token as metadata (call credentials need TLS; metadata does not)."""
        request = etcd3.etcdrpc.AuthenticateRequest(
            name=self.connection.user, password=self.connection.password
        )
        try:
            response = client.authstub.Authenticate(request, self.connection.timeout)
        except grpc.RpcError as exc:
            client.close()
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in _UNAVAILABLE_CODES:
                raise StoreUnavailable(f"etcd at {self.label} is unreachable (authenticate)") from exc
            raise StoreAccessDenied(
                f"etcd at {self.label} refused the credentials of user {self.connection.user!r}; "
                "check --user and the password (ETCD_PASSWORD or --password-file)"
            ) from exc
        client.metadata = (("token", response.token),)
        client.call_credentials = None
        client._clear_old_stubs()

    def _renew_token(self) -> None:
        with self._lock:
            if self._client_instance is not None:
                self._authenticate(self._client_instance)

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn the client's errors into the project's, naming the endpoints and what was asked."""
        where = f"etcd at {self.label}"
        try:
            yield
        except (
            etcd_exceptions.ConnectionFailedError,
            etcd_exceptions.ConnectionTimeoutError,
            etcd_exceptions.NoServerAvailableError,
            etcd_exceptions.InternalServerError,
        ) as exc:
            raise StoreUnavailable(f"{where} is unreachable ({action}: {exc})") from exc
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code in _UNAVAILABLE_CODES or any(text in (detail or "") for text in _UNAVAILABLE_DETAILS):
                raise StoreUnavailable(f"{where} is unreachable ({action}: {detail})") from exc
            if any(text in (detail or "") for text in _TOKEN_EXPIRED):
                self._renew_token()
                raise StoreUnavailable(f"{where}: the auth token expired; renewed it") from exc
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise StoreAccessDenied(
                    f"{where} denied {action}: user {self.connection.user!r} needs readwrite on the "
                    "capability and sync prefixes"
                ) from exc
            name = code.name if code else "error"
            raise StoreError(f"{where} refused {action}: {name}: {detail}") from exc
        except etcd_exceptions.Etcd3Exception as exc:
            raise StoreError(f"{where} failed {action}: {type(exc).__name__} {exc}") from exc
        except ValueError as exc:  # python3-etcd3: "Trying to use a failed node"
            raise StoreUnavailable(f"{where} is unreachable ({action}: {exc})") from exc


def _txn_request(changes: Sequence[Change], fence: Fence | None) -> Any:
    """The transaction as etcd's own message. Every write here is built so: python3-etcd3's
    wrapper objects, one per compare and per put, cost a cold sync of 10,000 capabilities 0.7
    CPU-seconds, all of it holding the GIL that the logging and the other commits needed. Each
    part is filled in where it lies in the message, which takes a third of the time of building
    it apart and copying it in."""
    request = etcd3.etcdrpc.TxnRequest()
    compare, success = request.compare.add, request.success.add
    for change in changes:
        for key, revision in change.expected:
            compare(key=key.encode(), target=_MOD, result=_EQUAL, mod_revision=revision)
        for key, value in change.puts:
            put = success().request_put
            put.key, put.value = key.encode(), value
        for key in change.deletes:
            success().request_delete_range.key = key.encode()
    if fence is not None:
        request.compare.append(_created_at(fence.key, fence.create_revision))
    return request


def _created_at(key: str, revision: int) -> Any:
    """The compare: ``key`` was created at ``revision`` (0: it does not exist)."""
    rpc = etcd3.etcdrpc
    return rpc.Compare(key=key.encode(), target=rpc.Compare.CREATE, result=_EQUAL, create_revision=revision)


def _txn(client: Any, request: Any) -> Any:
    return client.kvstub.Txn(
        request, client.timeout, credentials=client.call_credentials, metadata=client.metadata
    )


_send_txn: Callable[[Any, Any], Any] = etcd3.MultiEndpointEtcd3Client._handle_errors(_txn)
"""Send a transaction; on a failed member the client fails over, as its own calls do."""
