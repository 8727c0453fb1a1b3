"""The etcd adapter: the one module that imports ``etcd3`` and ``grpc``.

Every client error is translated here into the project's own (:mod:`gitops_sync.errors`), so no
``grpc.RpcError`` reaches the service. It speaks etcd's gRPC API through python3-etcd3's generated
stubs, over one channel per member, and chooses the member itself: a request that finds a member
down, leaderless or slow is tried on the next member at once, and again with back-off once every
member has been tried, until the connection's timeout is spent. Each attempt has a short deadline
of its own, so a write that a healthy member forwarded to a dead raft leader (and that is lost
there) is sent again within a second, not after the whole budget. Reads are paged at one pinned
revision, by count and by size, so a large registry (or a huge value) is read consistently and
under gRPC's message limit.

python3-etcd3's own client is not used for requests: its multi-endpoint client refuses a failed
member for ``time_retry`` seconds, blames the member in use for another's failure, and returns to
dead members; its per-request deadline is the whole budget; and it sends credentials as call
credentials, which a plain-text channel refuses. So this module authenticates itself, sends the
token as metadata and renews it when etcd says it expired.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Self, TypeVar

import grpc
from etcd3 import etcdrpc
from etcd3.utils import prefix_range_end

from gitops_sync.errors import StoreAccessDenied, StoreConflict, StoreError, StoreUnavailable
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.settings import EtcdConnection

T = TypeVar("T")
log = logging.getLogger("gitops-sync")

PAGE_SIZE: Final = 1000
"""Keys per read request with values, at most: 1,000 records are well within the receive limit."""
FIRST_PAGE_SIZE: Final = 100
"""Keys in the first page of a read with values; later pages are sized by the bytes per key so
far (up to :data:`PAGE_SIZE`). A page too slow or too large to answer is asked for in quarters."""
KEYS_PAGE_SIZE: Final = 10_000
"""Keys per read request without values, at most."""
RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""What one read response should hold at most: the next page is sized by the last one's bytes per
key. A response larger than gRPC's receive limit is asked for again in smaller pages."""
RECEIVE_LIMIT: Final = 64 * 1024 * 1024
GRPC_OPTIONS: Final = [
    ("grpc.max_receive_message_length", RECEIVE_LIMIT),
    # gRPC backs off reconnecting for up to 120 s by default; a registry sync should notice a
    # restarted etcd within a second or so.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A member frozen (SIGSTOP, a stalled VM) keeps its TCP connections open: only an unanswered
    # ping shows that a watch stream on it is dead. etcd refuses pings more often than every 5 s
    # (--grpc-keepalive-min-time) and pings while no call is open, so: every 6 s, during calls.
    ("grpc.keepalive_time_ms", 6000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_sent_ping_interval_without_data_ms", 5000),
    ("grpc.http2.ping_timeout_ms", 2000),
]
FIRST_ATTEMPT: Final = 0.5
"""Deadline of an attempt; after :data:`ELECTION`, it doubles for each round over the members in
which an attempt ran out of time (a slow etcd still gets the budget). Never more than what is
left of the budget."""
LAST_ATTEMPT: Final = 0.25
"""Deadline of the one attempt a request made while stopping gets (a leader stepping down)."""
FIRST_PAUSE: Final = 0.05
LAST_PAUSE: Final = 1.0
"""The back-off between rounds over every member, with jitter."""
FAILED_MEMBER_PAUSE: Final = 2.0
"""How long a member that failed is passed over while another has not failed, and one that is
silent while another is not."""
PROBE_DEADLINE: Final = 0.2
"""How long a member whose attempt timed out has to answer a status request (which any live
member answers at once, leader or not) to count as alive."""
ELECTION: Final = 2.0
"""How long a request keeps its short attempt deadline: about the longest raft election with
etcd's default timings. Until it ends, a write forwarded to the lost leader is lost; short
attempts find the new leader sooner."""
_STOP_POLL: Final = 0.05
_UNAVAILABLE_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_UNAVAILABLE_DETAILS: Final = (
    "deadline exceeded",
    "no leader",
    "leader changed",
    "timed out",
    "too many requests",
    "proposal dropped",
    "not capable",
    "stopped",
)
"""What etcd says, with code UNKNOWN, when it has lost quorum, is electing a leader or stopping."""
_MOD: Final = etcdrpc.Compare.MOD
_DELETE: Final = etcdrpc.kv_pb2.Event.DELETE
_EQUAL: Final = etcdrpc.Compare.EQUAL
_TOKEN_EXPIRED: Final = ("invalid auth token", "revision of auth store is old")
"""What etcd says when the token must be renewed: a simple token expired, or a JWT token predates
a change to users or roles."""
_NO_USER: Final = "user name is empty"
"""What etcd says to a request without a token while authentication is on."""
_TOO_LARGE: Final = "larger than max"
"""gRPC's words (code RESOURCE_EXHAUSTED) for a response over the receive limit."""


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


@dataclass(eq=False, slots=True)
class _Member:
    """One etcd member: its channel, the stubs on it, and when a request to it last failed."""

    target: str
    channel: grpc.Channel
    kv: Any
    lease: Any
    watch: Any
    maintenance: Any
    auth: Any
    failed_at: float = -FAILED_MEMBER_PAUSE
    silent_at: float = -FAILED_MEMBER_PAUSE
    """When a member whose attempt timed out did not answer a status request either: frozen,
    or cut off, not merely waiting for a raft leader."""


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One try of a request on one member, with its deadline; ``stop`` cancels it in flight."""

    member: _Member
    timeout: float
    metadata: tuple[tuple[str, str], ...]
    stop: threading.Event | None = field(default=None)

    def unary(self, method: Any, request: Any) -> Any:
        """Send one request and wait for its answer (or the deadline, or the stop)."""
        call = method.future(request, timeout=self.timeout, metadata=self.metadata)
        self._wait(call)
        return call.result()

    def streamed(self, method: Any, request: Any) -> list[Any]:
        """Send one request on a stream that etcd closes after answering it; every answer."""
        call = method(iter([request]), timeout=self.timeout, metadata=self.metadata)
        self._wait(call)
        return list(call)

    def _wait(self, call: Any) -> None:
        if self.stop is None:
            return
        done = threading.Event()
        call.add_done_callback(lambda _: done.set())
        while not done.wait(_STOP_POLL):
            if self.stop.is_set():
                call.cancel()
                raise _Stopped


class _Stopped(Exception):
    """The store was told to stop while a request was in flight; never leaves this module."""


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
        self._members_instance: list[_Member] | None = None
        self._current = 0
        """The member requests go to first; it moves on when a request to it fails."""
        self._token: str | None = None
        self._stop = threading.Event()

    def stop_on(self, event: threading.Event) -> None:
        """Once ``event`` is set, requests in flight are cancelled and fail, nothing is retried
        and nothing backs off; a request made after that gets one short attempt."""
        self._stop = event

    def close(self) -> None:
        with self._lock:
            members, self._members_instance, self._token = self._members_instance, None, None
        for member in members or ():
            member.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------

    def version(self) -> str:
        """The server's version; a cheap way to check that etcd answers."""
        request = etcdrpc.StatusRequest()
        return self._call(
            "status", lambda attempt: str(attempt.unary(attempt.member.maintenance.Status, request).version)
        )

    def check_access(self, prefix: str) -> str:
        """The server's version, once etcd has also counted the keys under ``prefix``: a request
        that needs the user's read permission, so an etcd with authentication on refuses it if no
        user (or a wrong one) is configured."""
        start = prefix.encode()
        count = etcdrpc.RangeRequest(key=start, range_end=prefix_range_end(start), count_only=True)

        def check(attempt: _Attempt) -> str:
            version = str(attempt.unary(attempt.member.maintenance.Status, etcdrpc.StatusRequest()).version)
            attempt.unary(attempt.member.kv.Range, count)
            return version

        return self._call("read", check)

    def read(self, prefix: str, sync_prefix: str) -> RegistryState:
        """Every key under both prefixes, read at one revision: the capability keys without their
        values (:meth:`values` reads those needed), the service's own keys with theirs. Keys that
        are not UTF-8 are no key of this service's: they are left out, and listed apart."""
        capability_keys, revision, odd = self._read_prefix(prefix, keys_only=True)
        bookkeeping, _, odd_bookkeeping = self._read_prefix(sync_prefix, revision=revision)
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
        found, revision, _ = self._read_prefix(prefix)
        return found, revision

    def keys(self, prefix: str) -> tuple[list[str], tuple[bytes, ...]]:
        """The keys under ``prefix``, without their values; and apart, those that are not UTF-8."""
        keys, _, undecodable = self._read_prefix(prefix, keys_only=True)
        return list(keys), undecodable

    def values(self, keys: Sequence[str], per_request: int) -> dict[str, KeyState]:
        """The current value and mod revision of each of ``keys`` that exists, read ``per_request``
        keys at a time at most, fewer where their values are large."""
        found: dict[str, KeyState] = {}
        start, size = 0, max(1, per_request)
        while start < len(keys):

            def get(attempt: _Attempt, start: int = start) -> tuple[dict[str, KeyState], int, int]:
                nonlocal size
                chunk = keys[start : start + size]
                try:
                    return (*_get_many(attempt, chunk), len(chunk))
                except grpc.RpcError as exc:
                    if _timed_out(exc):
                        size = max(1, size // 4)  # the next attempt asks for less
                    raise

            states, received, count = self._call("read", get)
            found.update(states)
            start += count
            size = _next_page(size, received, count, per_request)
        return found

    def get_at_head(self, key: str) -> tuple[KeyState | None, int]:
        """A key's state (None if it does not exist) and etcd's current revision."""
        request = etcdrpc.RangeRequest(key=key.encode())

        def get(attempt: _Attempt) -> tuple[KeyState | None, int]:
            response = attempt.unary(attempt.member.kv.Range, request)
            head = int(response.header.revision)
            if not response.kvs:
                return None, head
            return KeyState(response.kvs[0].value, response.kvs[0].mod_revision), head

        return self._call("read", get)

    def get(self, key: str) -> tuple[KeyState, int] | None:
        """A key's state and its create revision, or None."""
        request = etcdrpc.RangeRequest(key=key.encode())

        def get(attempt: _Attempt) -> tuple[KeyState, int] | None:
            response = attempt.unary(attempt.member.kv.Range, request)
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
        An attempt whose answer was lost is sent again: if it did go through, the retry's compares
        fail, and etcd is read to tell that apart from a conflict.
        """
        request = _txn_request(changes, fence)
        sent = False

        def commit(attempt: _Attempt) -> int:
            nonlocal sent
            maybe_applied, sent = sent, True
            response = attempt.unary(attempt.member.kv.Txn, request)
            if response.succeeded:
                return int(response.header.revision)
            if maybe_applied:
                revision = _applied_at(attempt, changes)
                if revision is not None:
                    return revision
            ids = ", ".join(change.capability_id for change in changes)
            raise StoreConflict(f"keys of {ids} changed in etcd since they were read, or leadership was lost")

        return self._call("transaction", commit)

    def put(self, key: str, value: bytes, fence: Fence | None = None) -> int:
        """Put one key (if the fence stands); returns the revision it created."""
        return self.commit([Change("", "record", puts=((key, value),))], fence)

    # --- leases, for leader election -------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        request = etcdrpc.LeaseGrantRequest(TTL=ttl)
        return self._call(
            "lease grant", lambda attempt: int(attempt.unary(attempt.member.lease.LeaseGrant, request).ID)
        )

    def keep_alive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, 0 if it has expired."""
        request = etcdrpc.LeaseKeepAliveRequest(ID=lease_id)

        def refresh(attempt: _Attempt) -> int:
            responses = attempt.streamed(attempt.member.lease.LeaseKeepAlive, request)
            return max((int(response.TTL) for response in responses), default=0)

        return self._call("lease keep-alive", refresh)

    def revoke_lease(self, lease_id: int) -> None:
        """End a lease and delete its keys; a lease that has already ended is fine."""
        request = etcdrpc.LeaseRevokeRequest(ID=lease_id)
        try:
            self._call(
                "lease revoke", lambda attempt: attempt.unary(attempt.member.lease.LeaseRevoke, request)
            )
        except StoreError as exc:
            if "lease not found" not in str(exc):
                raise

    def create(self, key: str, value: bytes, lease_id: int) -> int | None:
        """Put ``key`` bound to the lease if it does not exist; its create revision, or None."""
        request = etcdrpc.TxnRequest(
            compare=[_created_at(key, 0)],
            success=[
                etcdrpc.RequestOp(
                    request_put=etcdrpc.PutRequest(key=key.encode(), value=value, lease=lease_id)
                )
            ],
        )

        def create(attempt: _Attempt) -> int | None:
            response = attempt.unary(attempt.member.kv.Txn, request)
            return int(response.header.revision) if response.succeeded else None

        return self._call("transaction", create)

    # --- watching --------------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int, callback: WatchCallback) -> Callable[[], None]:
        """Call ``callback`` (on another thread) with each batch of changes under ``prefix`` from
        ``start_revision`` on, or once with a :class:`StoreError` when the watch ends (etcd or the
        member went away or lost its leader, or the revision was compacted). Returns a function
        that cancels the watch. Changes of keys that are not UTF-8 are left out.
        """
        start = prefix.encode()
        create = etcdrpc.WatchCreateRequest(
            key=start, range_end=prefix_range_end(start), start_revision=start_revision
        )

        def open_stream(attempt: _Attempt) -> tuple[Any, _Member]:
            # "hasleader": etcd ends the watch when its member loses the cluster's leader, instead
            # of keeping a watch on a member cut off from the others silent.
            metadata = (*attempt.metadata, ("hasleader", "true"))
            stream = attempt.member.watch.Watch(
                iter([etcdrpc.WatchRequest(create_request=create)]), metadata=metadata
            )
            return stream, attempt.member

        stream, member = self._call("watch", open_stream)
        where = f"etcd at {member.target}"

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
                    events = [
                        (key, event)
                        for event in response.events
                        if (key := _decoded(event.kv.key)) is not None
                    ]
                    if events:
                        changes = tuple((key, int(event.kv.mod_revision)) for key, event in events)
                        values = tuple(
                            None if event.type == _DELETE else bytes(event.kv.value) for _, event in events
                        )
                        callback(KeyEvents(int(response.header.revision), changes, values))
            except grpc.RpcError as exc:
                if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.CANCELLED:
                    return  # cancelled by us
                code = exc.code().name if isinstance(exc, grpc.Call) else "error"
                self._failed(member)  # so that the watch is opened on another member next
                callback(StoreUnavailable(f"watch of {prefix} on {where} broke ({code})"))
                return
            callback(StoreUnavailable(f"watch of {prefix} on {where} ended"))

        threading.Thread(target=follow, name=f"watch {prefix}", daemon=True).start()
        return stream.cancel  # type: ignore[no-any-return]

    # --- the connection --------------------------------------------------------------------------

    def _read_prefix(
        self, prefix: str, *, revision: int | None = None, keys_only: bool = False
    ) -> tuple[dict[str, KeyState], int, tuple[bytes, ...]]:
        """The keys under ``prefix`` at ``revision`` (etcd's current one if None), in pages; the
        revision read at; and the keys that are not UTF-8."""
        start = prefix.encode()
        end = prefix_range_end(start)
        found: dict[str, KeyState] = {}
        undecodable: list[bytes] = []
        most = KEYS_PAGE_SIZE if keys_only else PAGE_SIZE
        limit = most if keys_only else FIRST_PAGE_SIZE
        while True:

            def page(attempt: _Attempt, start: bytes = start, revision: int | None = revision) -> Any:
                nonlocal limit
                while True:
                    request = etcdrpc.RangeRequest(
                        key=start, range_end=end, limit=limit, revision=revision or 0, keys_only=keys_only
                    )
                    try:
                        return attempt.unary(attempt.member.kv.Range, request)
                    except grpc.RpcError as exc:
                        if _timed_out(exc):
                            limit = max(1, limit // 4)  # the next attempt asks for less
                        if limit == 1 or not _too_large(exc):
                            raise
                        limit = max(1, limit // 4)

            response = self._call("read", page)
            revision = revision or int(response.header.revision)
            for kv in response.kvs:
                key = _decoded(kv.key)
                if key is None:
                    undecodable.append(bytes(kv.key))
                else:
                    found[key] = KeyState(None if keys_only else kv.value, kv.mod_revision)
            if not response.more or not response.kvs:
                return found, revision, tuple(undecodable)
            start = response.kvs[-1].key + b"\0"
            limit = _next_page(limit, response.ByteSize(), len(response.kvs), most)

    def _call(self, action: str, request: Callable[[_Attempt], T]) -> T:
        """Run a request: every request to etcd goes through here, timed for the metrics when a
        listener was given."""
        if self._on_request is None:
            return self._attempts(action, request)
        started = time.perf_counter()
        try:
            return self._attempts(action, request)
        finally:
            self._on_request(action, time.perf_counter() - started)

    def _attempts(self, action: str, request: Callable[[_Attempt], T]) -> T:
        """Run a request.

        An attempt that finds its member unreachable, leaderless or too slow is repeated on the
        next member at once; once every member has been tried, after a back-off with jitter; until
        the connection's timeout is spent. Other errors are translated and raised at once.
        """
        stop = self._stop
        stopping = stop.is_set()
        budget = self.connection.timeout
        started = time.monotonic()
        give_up = started + budget
        deadline, pause = FIRST_ATTEMPT, FIRST_PAUSE
        tried: set[int] = set()
        renewed = timed_out = False
        while True:
            index = self._candidates(tried)[0]
            member = self._members()[index]
            tried.add(index)
            timeout = (
                min(LAST_ATTEMPT, budget)
                if stopping
                else max(0.05, min(deadline, give_up - time.monotonic()))
            )
            attempt = _Attempt(member, timeout, self._metadata(), None if stopping else stop)
            began = time.monotonic()
            try:
                with self._translated(action, member):
                    if self.connection.user is not None and self._token is None:
                        self._authenticate(attempt)
                        attempt = dataclasses.replace(attempt, metadata=self._metadata())
                    return request(attempt)
            except _TokenExpired:
                if renewed:
                    raise StoreUnavailable(
                        f"etcd at {self.label} keeps refusing renewed auth tokens"
                    ) from None
                renewed = True
                tried.discard(index)
                continue
            except StoreUnavailable as exc:
                self._failed(member)
                if isinstance(exc, _TimedOut):
                    timed_out = True
                    if not stopping and not self._answers(member):
                        member.silent_at = time.monotonic()
                log.debug(
                    "%s on %s failed after %.2fs: %s", action, member.target, time.monotonic() - began, exc
                )
                if stopping or stop.is_set() or time.monotonic() >= give_up:
                    raise _plain(exc) from exc.__cause__
                if not self._candidates(tried):  # a round over every member: back off
                    wait = min(pause * random.uniform(1, 2), give_up - time.monotonic())  # noqa: S311
                    if wait > 0 and stop.wait(wait):
                        raise _plain(exc) from exc.__cause__
                    pause = min(pause * 2, LAST_PAUSE)
                    if timed_out and time.monotonic() - started >= ELECTION:
                        deadline *= 2  # not a lost leader: etcd is slow
                    tried.clear()
                    timed_out = False

    def _members(self) -> list[_Member]:
        with self._lock:
            if self._members_instance is None:
                self._members_instance = [self._open(host, port) for host, port in self.connection.endpoints]
            return self._members_instance

    def _open(self, host: str, port: int) -> _Member:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        connection = self.connection
        if connection.cacert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=connection.cacert.read_bytes(),
                private_key=connection.key.read_bytes() if connection.key else None,
                certificate_chain=connection.cert.read_bytes() if connection.cert else None,
            )
            channel = grpc.secure_channel(target, credentials, options=GRPC_OPTIONS)
        else:
            channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        return _Member(
            target=target,
            channel=channel,
            kv=etcdrpc.KVStub(channel),
            lease=etcdrpc.LeaseStub(channel),
            watch=etcdrpc.WatchStub(channel),
            maintenance=etcdrpc.MaintenanceStub(channel),
            auth=etcdrpc.AuthStub(channel),
        )

    def _candidates(self, tried: set[int]) -> list[int]:
        """The members a request's round may still try, best first: the current member, then the
        others in turn, those that have not failed lately first. A silent member is left out while
        another is not silent."""
        members = self._members()
        now = time.monotonic()
        with self._lock:
            order = [(self._current + step) % len(members) for step in range(len(members))]
        silent = {index for index in order if now - members[index].silent_at < FAILED_MEMBER_PAUSE}
        if len(silent) == len(order):
            silent = set()
        left = [index for index in order if index not in tried and index not in silent]
        return sorted(left, key=lambda index: now - members[index].failed_at < FAILED_MEMBER_PAUSE)

    def _answers(self, member: _Member) -> bool:
        """Whether ``member`` answers a status request in time; only asked with several members."""
        if len(self.connection.endpoints) == 1:
            return True
        try:
            member.maintenance.Status(etcdrpc.StatusRequest(), timeout=PROBE_DEADLINE)
        except grpc.RpcError as exc:
            return not (isinstance(exc, grpc.Call) and exc.code() in _UNAVAILABLE_CODES)
        return True

    def _failed(self, member: _Member) -> None:
        """Pass ``member`` over for a while, and move on from it if requests go to it first."""
        member.failed_at = time.monotonic()
        with self._lock:
            members = self._members_instance or []
            if self._current < len(members) and members[self._current] is member:
                self._current = (self._current + 1) % len(members)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token
        return (("token", token),) if token is not None else ()

    def _authenticate(self, attempt: _Attempt) -> None:
        """Log in and keep the token, sent as metadata (call credentials need TLS; metadata does
        not). A member's token is known to every member."""
        request = etcdrpc.AuthenticateRequest(name=self.connection.user, password=self.connection.password)
        try:
            response = attempt.unary(attempt.member.auth.Authenticate, request)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = (exc.details() if isinstance(exc, grpc.Call) else None) or ""
            if code in _UNAVAILABLE_CODES or any(text in detail for text in _UNAVAILABLE_DETAILS):
                raise
            if "authentication is not enabled" in detail:
                raise StoreAccessDenied(
                    f"etcd at {self.label} has authentication off, but --user was given; "
                    "drop --user, or enable authentication in etcd"
                ) from exc
            raise StoreAccessDenied(
                f"etcd at {self.label} refused the credentials of user {self.connection.user!r}; "
                "check --user and the password (ETCD_PASSWORD or --password-file)"
            ) from exc
        self._token = str(response.token)

    @contextmanager
    def _translated(self, action: str, member: _Member) -> Iterator[None]:
        """Turn gRPC's errors into the project's, naming the endpoints and what was asked."""
        where = f"etcd at {self.label}"
        try:
            yield
        except _Stopped:
            raise StoreUnavailable(f"{where}: {action} cancelled, stopping") from None
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _TimedOut(
                    f"{where} is unreachable ({action}: {member.target} did not answer in time)"
                ) from exc
            if code in _UNAVAILABLE_CODES or any(text in detail for text in _UNAVAILABLE_DETAILS):
                raise StoreUnavailable(
                    f"{where} is unreachable ({action}: {member.target}: {detail})"
                ) from exc
            if any(text in detail for text in _TOKEN_EXPIRED):
                self._token = None
                raise _TokenExpired from exc
            if _NO_USER in detail:
                raise StoreAccessDenied(
                    f"{where} requires authentication: pass --user, with the password in "
                    "ETCD_PASSWORD or --password-file"
                ) from exc
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise StoreAccessDenied(
                    f"{where} denied {action}: user {self.connection.user!r} needs readwrite on the "
                    "capability and sync prefixes"
                ) from exc
            name = code.name if code else "error"
            raise StoreError(f"{where} refused {action}: {name}: {detail}") from exc


class _TimedOut(StoreUnavailable):
    """An attempt ran out of time; the next gets a longer deadline. Leaves this module as a plain
    :class:`StoreUnavailable`."""


class _TokenExpired(StoreError):
    """etcd wants a new auth token; the attempt is repeated with one. Never leaves this module."""


def _plain(exc: StoreUnavailable) -> StoreUnavailable:
    return StoreUnavailable(str(exc)) if type(exc) is not StoreUnavailable else exc


def _decoded(key: bytes) -> str | None:
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def _timed_out(exc: grpc.RpcError) -> bool:
    return isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _too_large(exc: grpc.RpcError) -> bool:
    return (
        isinstance(exc, grpc.Call)
        and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and _TOO_LARGE in (exc.details() or "")
    )


def _next_page(size: int, received: int, count: int, most: int) -> int:
    """How many keys the next page asks for: as many as fit :data:`RESPONSE_BYTES` at the last
    page's bytes per key, at most ``most``."""
    if not count:
        return size
    return max(1, min(most, RESPONSE_BYTES * count // max(1, received)))


def _get_many(attempt: _Attempt, keys: Sequence[str]) -> tuple[dict[str, KeyState], int]:
    """The states of those of ``keys`` that exist, read at one revision in one transaction, or
    in halves if the answer would be larger than the receive limit; and the bytes received."""
    request = etcdrpc.TxnRequest(
        success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode())) for key in keys]
    )
    try:
        response = attempt.unary(attempt.member.kv.Txn, request)
    except grpc.RpcError as exc:
        if len(keys) == 1 or not _too_large(exc):
            raise
        half = len(keys) // 2
        first, first_bytes = _get_many(attempt, keys[:half])
        second, second_bytes = _get_many(attempt, keys[half:])
        return first | second, first_bytes + second_bytes
    found = {
        key: KeyState(kv.value, kv.mod_revision)
        for key, part in zip(keys, response.responses, strict=True)
        for kv in part.response_range.kvs
    }
    return found, response.ByteSize()


def _applied_at(attempt: _Attempt, changes: Sequence[Change]) -> int | None:
    """The revision at which a transaction of ``changes`` whose answer was lost went through, or
    None if etcd does not hold what it wrote: every key it put holds its value, all from one
    revision, and every key it deleted is gone. (If etcd holds just that because someone else
    wrote it, it holds what was wanted all the same.)"""
    puts = {key: value for change in changes for key, value in change.puts}
    deletes = [key for change in changes for key in change.deletes]
    keys = [*puts, *deletes]
    request = etcdrpc.TxnRequest(
        success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode())) for key in keys]
    )
    response = attempt.unary(attempt.member.kv.Txn, request)
    found = {
        key: part.response_range.kvs[0]
        for key, part in zip(keys, response.responses, strict=True)
        if part.response_range.kvs
    }
    if any(key in found for key in deletes):
        return None
    if any(key not in found or found[key].value != value for key, value in puts.items()):
        return None
    revisions = {int(found[key].mod_revision) for key in puts}
    if len(revisions) > 1:
        return None
    # Deletes only: their revision is not kept; etcd's current one stands in for it (the registry
    # watch then takes the deletion for someone else's, and the loop reads etcd once more).
    return revisions.pop() if revisions else int(response.header.revision)


def _txn_request(changes: Sequence[Change], fence: Fence | None) -> Any:
    """The transaction as etcd's own message. Every write here is built so: python3-etcd3's
    wrapper objects, one per compare and per put, cost a cold sync of 10,000 capabilities 0.7
    CPU-seconds, all of it holding the GIL that the logging and the other commits needed. Each
    part is filled in where it lies in the message, which takes a third of the time of building
    it apart and copying it in."""
    request = etcdrpc.TxnRequest()
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
    return etcdrpc.Compare(
        key=key.encode(), target=etcdrpc.Compare.CREATE, result=_EQUAL, create_revision=revision
    )
