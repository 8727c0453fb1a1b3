"""How a request finds a member that answers, and the one place gRPC's errors are translated.

A request that finds a member down, leaderless or slow is tried on the next member at once, and
again with back-off once every member has been tried, until the connection's timeout is spent.
Each attempt has a short deadline of its own, so a write that a healthy member forwarded to a dead
raft leader (and that is lost there) is sent again soon, not after the whole budget.

python3-etcd3's own client is not used for requests: its multi-endpoint client refuses a failed
member for ``time_retry`` seconds, blames the member in use for another's failure, and returns to
dead members; its per-request deadline is the whole budget; and it sends credentials as call
credentials, which a plain-text channel refuses. So the store authenticates itself, sends the
token as metadata and renews it when etcd says it expired.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

import grpc
from etcd3 import etcdrpc

from gitops_sync.errors import StoreAccessDenied, StoreError, StoreUnavailable
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.members import FAILED_MEMBER_PAUSE, Attempt, Member, Stopped, open_member

T = TypeVar("T")
log = logging.getLogger("gitops-sync")

FIRST_ATTEMPT: Final = 0.5
"""Deadline of an attempt; after :data:`ELECTION`, it doubles for each round over the members in
which an attempt ran out of time (a slow etcd still gets the budget). Never more than what is
left of the budget."""
LAST_ATTEMPT: Final = 0.25
"""Deadline of the one attempt a request made while stopping gets (a leader stepping down)."""
FIRST_PAUSE: Final = 0.05
LAST_PAUSE: Final = 1.0
"""The back-off between rounds over every member, with jitter."""
PROBE_DEADLINE: Final = 0.2
"""How long a member whose attempt timed out has to answer a status request (which any live
member answers at once, leader or not) to count as alive."""
ELECTION: Final = 2.0
"""How long a request keeps its short attempt deadline: about the longest raft election with
etcd's default timings. Until it ends, a write forwarded to the lost leader is lost; short
attempts find the new leader sooner."""
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
_TOKEN_EXPIRED: Final = ("invalid auth token", "revision of auth store is old")
"""What etcd says when the token must be renewed: a simple token expired, or a JWT token predates
a change to users or roles."""
_NO_USER: Final = "user name is empty"
"""What etcd says to a request without a token while authentication is on."""


class Cluster:
    """The members of one etcd cluster, and the requests sent to them."""

    def __init__(
        self, connection: EtcdConnection, on_request: Callable[[str, float], None] | None = None
    ) -> None:
        self.connection = connection
        self._on_request = on_request
        """Told each request's action and seconds taken, retries included, failed or not (metrics)."""
        self.label = connection.label
        self._lock = threading.Lock()
        self._members_instance: list[Member] | None = None
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

    def call(self, action: str, request: Callable[[Attempt], T]) -> T:
        """Run a request: every request to etcd goes through here, timed for the metrics when a
        listener was given."""
        if self._on_request is None:
            return self._attempts(action, request)
        started = time.perf_counter()
        try:
            return self._attempts(action, request)
        finally:
            self._on_request(action, time.perf_counter() - started)

    def failed(self, member: Member) -> None:
        """Pass ``member`` over for a while, and move on from it if requests go to it first."""
        member.failed_at = time.monotonic()
        with self._lock:
            members = self._members_instance or []
            if self._current < len(members) and members[self._current] is member:
                self._current = (self._current + 1) % len(members)

    def _attempts(self, action: str, request: Callable[[Attempt], T]) -> T:
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
            attempt = Attempt(member, timeout, self._metadata(), None if stopping else stop)
            began = time.monotonic()
            try:
                return self._attempt(action, attempt, request)
            except _TokenExpired:
                if renewed:
                    raise StoreUnavailable(
                        f"etcd at {self.label} keeps refusing renewed auth tokens"
                    ) from None
                renewed = True
                tried.discard(index)
                continue
            except StoreUnavailable as exc:
                if self._attempt_failed(member, exc, stopping=stopping):
                    timed_out = True
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

    def _attempt(self, action: str, attempt: Attempt, request: Callable[[Attempt], T]) -> T:
        """One try of a request, logging in first if a user is configured and no token is held."""
        with self._translated(action, attempt.member):
            if self.connection.user is not None and self._token is None:
                self._authenticate(attempt)
                attempt = dataclasses.replace(attempt, metadata=self._metadata())
            return request(attempt)

    def _attempt_failed(self, member: Member, exc: StoreUnavailable, *, stopping: bool) -> bool:
        """Pass ``member`` over after ``exc``; whether the attempt ran out of time. A member that
        timed out and does not answer a status request either is marked silent."""
        self.failed(member)
        if not isinstance(exc, _TimedOut):
            return False
        if not stopping and not self._answers(member):
            member.silent_at = time.monotonic()
        return True

    def _members(self) -> list[Member]:
        with self._lock:
            if self._members_instance is None:
                self._members_instance = [
                    open_member(self.connection, host, port) for host, port in self.connection.endpoints
                ]
            return self._members_instance

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

    def _answers(self, member: Member) -> bool:
        """Whether ``member`` answers a status request in time; only asked with several members."""
        if len(self.connection.endpoints) == 1:
            return True
        try:
            member.maintenance.Status(etcdrpc.StatusRequest(), timeout=PROBE_DEADLINE)
        except grpc.RpcError as exc:
            return not (isinstance(exc, grpc.Call) and exc.code() in _UNAVAILABLE_CODES)
        return True

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        token = self._token
        return (("token", token),) if token is not None else ()

    def _authenticate(self, attempt: Attempt) -> None:
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
    def _translated(self, action: str, member: Member) -> Iterator[None]:
        """Turn gRPC's errors into the project's, naming the endpoints and what was asked."""
        where = f"etcd at {self.label}"
        try:
            yield
        except Stopped:
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
