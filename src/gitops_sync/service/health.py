"""Whether a running service is alive and ready, answered within a bounded time.

A health endpoint must answer even while etcd does not: the etcd check runs in its own thread,
one at a time, and whoever asks waits for it at most :data:`PROBE_TIMEOUT`; a result is reused
for :data:`PROBE_FRESH`, so a burst of probes costs etcd one request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gitops_sync.errors import GitOpsSyncError
from gitops_sync.service.leading import Role
from gitops_sync.service.status import StatusBoard

PROBE_TIMEOUT: Final = 1.0
PROBE_FRESH: Final = 1.0


class EtcdProbe:
    """Asks etcd for its version, in a thread; never more than one request in flight."""

    def __init__(self, ask: Callable[[], object], clock: Callable[[], float] = time.monotonic) -> None:
        self._ask = ask
        self._clock = clock
        self._lock = threading.Lock()
        self._result: tuple[float, bool] | None = None
        self._done: threading.Event | None = None
        """Set when the request in flight ends; None when none is."""

    def answers(self, timeout: float = PROBE_TIMEOUT) -> bool:
        """Whether etcd answered within ``timeout`` (or did so in the last :data:`PROBE_FRESH`)."""
        with self._lock:
            if self._result is not None and self._clock() - self._result[0] < PROBE_FRESH:
                return self._result[1]
            done = self._done
            if done is None:
                done = self._done = threading.Event()
                threading.Thread(target=self._probe, args=(done,), name="etcd probe", daemon=True).start()
        done.wait(timeout)
        with self._lock:
            return (
                self._result is not None
                and self._clock() - self._result[0] < timeout + PROBE_FRESH
                and (self._result[1])
            )

    def _probe(self, done: threading.Event) -> None:
        try:
            self._ask()
            ok = True
        except GitOpsSyncError:
            ok = False
        with self._lock:
            self._result = (self._clock(), ok)
            self._done = None
        done.set()


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


class Health:
    """What ``/livez`` and ``/readyz`` report of one watch-mode run."""

    def __init__(self, board: StatusBoard, role: Role, probe: EtcdProbe, running: Callable[[], bool]) -> None:
        self._board = board
        self._role = role
        self._probe = probe
        self._running = running

    def alive(self) -> bool:
        """The loop runs."""
        return self._running()

    def readiness(self) -> list[Check]:
        """Ready: a first cycle has finished, or this replica knows it stands by; and etcd answers."""
        finished = self._board.cycle_finished_once
        standing_by = self._role.standing_by
        etcd = self._probe.answers()
        return [
            Check("loop", self._running(), "running" if self._running() else "not running"),
            Check(
                "first-cycle",
                finished or standing_by,
                "finished"
                if finished
                else "standing by: another replica leads"
                if standing_by
                else "not finished yet",
            ),
            Check("etcd", etcd, "answers" if etcd else f"no answer within {PROBE_TIMEOUT:g} s"),
        ]
