"""Watch mode: a sync cycle on every manifest change, every change made in etcd outside Git, and
every ``--interval``; one replica of several writes.

The main thread runs the cycles, so a cycle is never interrupted half-way; background threads only
wake it: file events (:mod:`file_events`), registry events (:mod:`registry_events`) and the lease
keeper (:mod:`leading`). An unreachable etcd or directory is logged once when it goes and once when
it comes back, and retried with exponential back-off and jitter (tenacity) in between; Ctrl+C or
SIGTERM stops after the cycle in flight, or at once if that cycle waits on etcd: the request in
flight is cancelled and not retried (each capability's transaction is atomic, so etcd holds each
capability as it was or as Git has it, and the next start syncs the rest).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Final

import tenacity

from gitops_sync.errors import SourceUnavailable, StoreUnavailable
from gitops_sync.service import parsing
from gitops_sync.service.engine import Engine
from gitops_sync.service.file_events import FileEvents
from gitops_sync.service.leading import Leadership, Role
from gitops_sync.service.outcomes import CycleListener
from gitops_sync.service.registry_events import RegistryEvents
from gitops_sync.service.reports import CycleReport
from gitops_sync.service.signals import StopOnSignals
from gitops_sync.service.triggers import Cause, Trigger
from gitops_sync.settings import Settings
from gitops_sync.sources.origins import Source
from gitops_sync.store.etcd import EtcdStore, Fence

log = logging.getLogger("gitops-sync")

FIRST_RETRY: Final = 0.5
LAST_RETRY: Final = 30.0
_OUTAGES: Final = (StoreUnavailable, SourceUnavailable)


class Watcher:
    """One watch-mode run: the loop and the threads that wake it."""

    def __init__(
        self,
        settings: Settings,
        store: EtcdStore,
        source: Source | None = None,
        *,
        listener: CycleListener | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        role: Role | None = None,
    ) -> None:
        """``listener``: told what each cycle did. ``role``: kept up to date with whether this
        replica leads or stands by."""
        self.settings = settings
        self.stop = stop or threading.Event()
        store.stop_on(self.stop)  # a stop cuts requests in flight and their retries short
        self.wake = threading.Event()
        self.registry = RegistryEvents(store, settings.prefix, self.wake)
        self.leadership = Leadership(store, settings.sync_prefix, settings.lease_ttl, self.wake, role)
        self._fence: Fence | None = None
        """The fence of the leadership term the cycle in flight runs in."""
        self.engine = Engine(
            settings,
            store,
            source,
            one_shot=False,
            listener=listener,
            fence=lambda: self._fence,
            on_commit=self.registry.note_own,
        )
        source = self.engine.source
        self.files = FileEvents(source.directory, self.wake, self.stop) if source.file_events else None
        source.attach(self.wake)
        self._outage: str | None = None
        self._clock = clock
        self._last_full = -math.inf
        """When the last full cycle (every file, all of etcd) started, by the monotonic clock."""
        self._cause: Cause | None = "start"
        """What started the cycle in the making, kept through an outage until it completes."""
        self._running = False

    @property
    def running(self) -> bool:
        """The loop runs: from :meth:`run`'s start until it stops."""
        return self._running

    def run(self) -> None:
        """Sync until SIGINT/SIGTERM (or ``stop``). What else ends it is raised, for the exit-code
        table (:mod:`gitops_sync.exits`) to map."""
        settings = self.settings
        log.info("Starting watch mode (interval: %gs)", settings.interval)
        log.info("Watching: %s", self.engine.source.label)
        log.info("Press Ctrl+C to stop")
        if self.files is not None:
            self.files.start()
        self._running = True
        try:
            with StopOnSignals(self.stop, self.wake):
                while not self.stop.is_set():
                    report = self._retrying()
                    if report is None:
                        break
                    log.info("--- Sync cycle complete. Next sync in %gs ---", settings.interval)
                    parsing.prepare()  # once, while idle: a start may have parsed nothing
                    self._idle()
        finally:
            self._running = False
            self.stop.set()  # whatever ended the loop: the file-events thread ends with it
            self.registry.close()
            self.leadership.close()
            if self.files is not None:
                self.files.join()
        log.info("Stopped")

    def _cycle(self) -> CycleReport | None:
        """Lead, then sync once; None when stopped while standing by."""
        fence = self.leadership.lead(self.stop)
        if fence is None:
            return None
        woken = self.wake.is_set()
        self.wake.clear()
        changed_files = self.files.take() if self.files is not None else frozenset[str]()
        registry_changed = self.registry.changed()
        # Every --interval a cycle reads every file and all of etcd again, however often events
        # woke the loop in between: the level-based safety net for whatever an event missed.
        started = self._clock()
        full = not woken or started - self._last_full >= self.settings.interval
        if full:
            self._last_full = started
        self._fence = fence
        cause = self._cause = self._cause or _cause(
            woken=woken,
            files=changed_files is None or bool(changed_files),
            registry=registry_changed,
            git=self.files is None,  # a Git remote wakes the loop for a push (hook) or its poll
        )
        trigger = (
            Trigger.full(cause)
            if full
            else Trigger(cause, changed_files, registry_quiet=not registry_changed)
        )
        log.log(logging.DEBUG if self._outage else logging.INFO, "--- Sync cycle starting ---")
        try:
            report = self.engine.run_cycle(trigger)
        finally:
            if self.files is not None:
                self.files.follow_replacement()
        self._cause = None
        self.registry.follow(report.revision)
        if self._outage:
            log.info("Recovered: the sync cycle completed again")
            self._outage = None
        return report

    def _idle(self) -> None:
        """Wait for a wake-up or the interval; or for the source's retry, which wakes the loop."""
        interval = self.settings.interval
        retry = self.engine.source.due_in()
        if retry is None or retry >= interval:
            self.wake.wait(interval)
        elif not self.wake.wait(retry):
            self.wake.set()

    def _retrying(self) -> CycleReport | None:
        """A cycle; through an outage, the same cycle again with back-off until it succeeds."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_OUTAGES),
            wait=tenacity.wait_exponential_jitter(multiplier=FIRST_RETRY, max=LAST_RETRY, jitter=FIRST_RETRY),
            stop=tenacity.stop_when_event_set(self.stop),
            sleep=self._pause,
            before_sleep=self._note_outage,
            reraise=True,
        )
        try:
            return retrying(self._cycle)
        except _OUTAGES:
            return None  # stopped during an outage

    def _pause(self, seconds: float) -> None:
        """Back off, but wake for a file change, a stop, or the end of the interval."""
        self.wake.wait(min(seconds, self.settings.interval))

    def _note_outage(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        kind = type(exc).__name__
        if exc is not None and self._outage != kind:
            log.error("%s; retrying with back-off until it recovers", exc)
            self._outage = kind


def _cause(*, woken: bool, files: bool, registry: bool, git: bool) -> Cause:
    """What woke the loop: a file event, else a change in etcd, else the Git remote; nothing: the
    interval ran out."""
    if woken and files:
        return "files"
    if woken and registry:
        return "drift"
    if woken and git:
        return "git"
    return "interval"
