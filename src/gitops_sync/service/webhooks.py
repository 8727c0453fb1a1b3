"""Webhooks out: an event POSTed to each ``--webhook-url`` after each cycle that changed something,
signed per the Standard Webhooks specification (https://www.standardwebhooks.com/).

Events: ``sync.completed`` (etcd or the set of problems changed), ``sync.failed`` (a cycle could not
finish, or writes did not go through; once per outage, not at every retry), ``drift.restored``
(keys changed in etcd outside Git were put back) and ``prune.refused`` (a safety rule kept
capabilities whose manifest is gone; when the reason first appears or changes).

Delivery never slows a cycle: the cycle only puts the event on each endpoint's bounded queue (a
full queue drops it, counted) and a thread per endpoint sends it. Timeouts, 5xx and 429 are
retried with exponential back-off and jitter, honouring ``Retry-After``, with the same
``webhook-id`` (a new timestamp and signature each attempt, as the specification asks), until
:attr:`RetryPolicy.give_up_after`; other answers are final. Imported only when webhooks are on.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from gitops_sync import __version__
from gitops_sync.model.problems import Problem, problem_json
from gitops_sync.service.outcomes import CycleOutcome

log = logging.getLogger("gitops-sync")

MAX_IDS: Final = 1000
"""The most ids an event lists per kind of change (``truncated`` says when there were more)."""
MAX_PROBLEMS: Final = 100
MAX_BODY: Final = 256 * 1024
"""Bytes; an event that would be larger goes out without its lists (``truncated``)."""
RETRYABLE: Final = frozenset({408, 425, 429})
"""Besides 5xx: answers that say "later", not "no"."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    queue_size: int = 100
    """Events waiting per endpoint; more are dropped (and counted)."""
    timeout: float = 5.0
    """Seconds each attempt may take, connecting included."""
    first_delay: float = 0.5
    max_delay: float = 60.0
    give_up_after: float = 300.0
    """Seconds from the first attempt after which an event is given up (and counted)."""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    type: str
    body: bytes


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class Webhooks:
    """A cycle listener that turns outcomes into events and hands them to each endpoint."""

    def __init__(
        self,
        urls: Sequence[str],
        key: bytes,
        counted: Callable[[str], None] | None = None,
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        """``counted``: told how each event's delivery to each endpoint ended (``delivered``,
        ``failed``, ``dropped``)."""
        self._endpoints = [Endpoint(url, key, counted or (lambda _: None), policy) for url in urls]
        self._problems: frozenset[Problem] | None = None
        self._refusal: tuple[str | None, str | None] = (None, None)
        self._failing = False

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        for message in self.events(outcome):
            for endpoint in self._endpoints:
                endpoint.send(message)

    def events(self, outcome: CycleOutcome) -> list[Message]:
        """The events a cycle's outcome makes, given those before it."""
        events: list[tuple[str, dict[str, Any]]] = []
        failed = outcome.result == "failed"
        if failed and not self._failing:
            events.append(
                (
                    "sync.failed",
                    {
                        "error": outcome.error or "some writes to etcd did not go through",
                        "failed": list(outcome.failed_writes[:MAX_IDS]),
                        "trigger": outcome.trigger,
                    },
                )
            )
        self._failing = failed
        if outcome.error is not None:
            return [_message(kind, outcome, data) for kind, data in events]
        problems = frozenset(outcome.problems)
        previous, self._problems = self._problems, problems
        if outcome.changed_etcd or problems != (previous if previous is not None else frozenset()):
            events.insert(0, ("sync.completed", _completed(outcome)))
        if outcome.drift_restored:
            events.append(
                (
                    "drift.restored",
                    {"restored": list(outcome.drift_restored[:MAX_IDS]), "revision": outcome.revision},
                )
            )
        refusal = (outcome.prune_refused, outcome.prune_refusal)
        if outcome.prune_refused is not None and refusal != self._refusal:
            events.append(
                ("prune.refused", {"reason": outcome.prune_refused, "message": outcome.prune_refusal})
            )
        self._refusal = refusal
        return [_message(kind, outcome, data) for kind, data in events]

    def close(self, timeout: float) -> None:
        """Send what is queued for at most ``timeout`` seconds in all, then give up the rest."""
        deadline = time.monotonic() + timeout
        for endpoint in self._endpoints:
            endpoint.finish()
        for endpoint in self._endpoints:
            endpoint.join(max(0.0, deadline - time.monotonic()))
        for endpoint in self._endpoints:
            endpoint.abandon()


def _completed(outcome: CycleOutcome) -> dict[str, Any]:
    lists = {"created": outcome.created, "updated": outcome.updated, "deleted": outcome.deleted}
    return {
        **{name: list(ids[:MAX_IDS]) for name, ids in lists.items()},
        "truncated": any(len(ids) > MAX_IDS for ids in lists.values())
        or len(outcome.problems) > MAX_PROBLEMS,
        "errors": outcome.errors,
        "problems": [problem_json(problem) for problem in outcome.problems[:MAX_PROBLEMS]],
        "commit": outcome.commit,
        "revision": outcome.revision,
        "trigger": outcome.trigger,
    }


def _message(kind: str, outcome: CycleOutcome, data: dict[str, Any]) -> Message:
    event = {"type": kind, "timestamp": outcome.finished_at.isoformat(timespec="milliseconds"), "data": data}
    body = json.dumps(event, separators=(",", ":")).encode()
    if len(body) > MAX_BODY:
        for name in ("created", "updated", "deleted", "problems", "failed", "restored"):
            if name in data:
                data[name] = []
        data["truncated"] = True
        body = json.dumps(event, separators=(",", ":")).encode()
    return Message(id=f"msg_{uuid.uuid4().hex}", type=kind, body=body)


class Endpoint:
    """One receiver: its queue, and the thread that delivers from it."""

    def __init__(self, url: str, key: bytes, counted: Callable[[str], None], policy: RetryPolicy) -> None:
        self.url = url
        self._label = f"{urlsplit(url).scheme}://{urlsplit(url).netloc.rpartition('@')[2]}"
        """For logs: no path (it may hold a token), no credentials."""
        self._key = key
        self._counted = counted
        self._policy = policy
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=policy.queue_size)
        self._abandon = threading.Event()
        self._dropped = 0
        """Events dropped since the queue was last found full (only the cycle's thread sends)."""
        self._thread = threading.Thread(target=self._run, name=f"webhook {self._label}", daemon=True)
        self._thread.start()

    def send(self, message: Message) -> None:
        """Queue the event; never blocks. A full queue drops it: logged once, until there is room
        again (a receiver down for hours must not flood the log)."""
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._counted("dropped")
            if not self._dropped:
                log.warning(
                    "Webhook %s: %d events waiting; dropping new ones until it catches up",
                    self._label,
                    self._queue.qsize(),
                )
            self._dropped += 1
            return
        if self._dropped:
            log.warning("Webhook %s: %d event(s) were dropped", self._label, self._dropped)
            self._dropped = 0

    def finish(self) -> None:
        """No more events: the thread ends once the queue is sent."""
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:  # make room: the oldest waiting event is dropped
                try:
                    self._queue.get_nowait()
                    self._counted("dropped")
                except queue.Empty:
                    pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def abandon(self) -> None:
        """Stop retrying; what is still queued is dropped (and counted)."""
        self._abandon.set()
        dropped = 0
        while True:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                break
            if message is not None:
                dropped += 1
                self._counted("dropped")
        if dropped:
            log.warning("Webhook %s: stopping; %d event(s) not sent", self._label, dropped)
        # Draining took the end marker too: put it back, so a delivery still in flight ends the
        # thread when it returns, instead of leaving it waiting on an empty queue for good.
        self.finish()

    def _run(self) -> None:
        timeout = httpx.Timeout(self._policy.timeout)
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            while (message := self._queue.get()) is not None:
                if self._abandon.is_set():
                    self._counted("dropped")
                    continue
                self._deliver(client, message)

    def _deliver(self, client: httpx.Client, message: Message) -> None:
        policy = self._policy
        deadline = time.monotonic() + policy.give_up_after
        attempt = 0
        while True:
            attempt += 1
            status, retry_after, why = self._attempt(client, message)
            if status is not None and 200 <= status < 300:
                self._counted("delivered")
                log.debug("Webhook %s: %s %s delivered", self._label, message.type, message.id)
                return
            retryable = status is None or status >= 500 or status in RETRYABLE
            delay = retry_after if retry_after is not None else _backoff(attempt, policy)
            if not retryable or time.monotonic() + delay > deadline or self._abandon.is_set():
                self._counted("failed")
                log.warning(
                    "Webhook %s: gave up on %s %s after %d attempt(s): %s",
                    self._label,
                    message.type,
                    message.id,
                    attempt,
                    why,
                )
                return
            log.debug("Webhook %s: %s; retrying in %.1f s", self._label, why, delay)
            if self._abandon.wait(delay):
                self._counted("failed")
                return

    def _attempt(self, client: httpx.Client, message: Message) -> tuple[int | None, float | None, str]:
        """One POST: the status (None if none came), the ``Retry-After`` delay, and what happened."""
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": f"gitops-sync/{__version__}",
            "webhook-id": message.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, message.id, timestamp, message.body),
        }
        try:
            # Streamed and never read: whatever the receiver answers, only its status matters.
            with client.stream("POST", self.url, content=message.body, headers=headers) as response:
                status = response.status_code
                retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            return None, None, f"no answer within {self._policy.timeout:g} s"
        except httpx.HTTPError as exc:
            return None, None, f"{type(exc).__name__}: {exc}"
        return status, retry_after, f"HTTP {status}"


def _backoff(attempt: int, policy: RetryPolicy) -> float:
    """Exponential, with jitter so that many senders do not retry in step."""
    ceiling: float = min(policy.max_delay, policy.first_delay * 2.0 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds, or an HTTP date."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - time.time())
