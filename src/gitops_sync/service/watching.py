"""Watch mode: a sync cycle on every manifest change, and a full resync every ``--interval``.

A background thread turns file events (``watchfiles``) into a wake-up; the main thread runs the
cycles, so a cycle is never interrupted half-way and events during a cycle start the next one.
An unreachable etcd is logged once when it goes and once when it comes back, and retried with
back-off in between.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

import watchfiles

from gitops_sync.errors import SourceUnavailable, StoreUnavailable
from gitops_sync.service.signals import StopOnSignals
from gitops_sync.service.syncing import Syncer
from gitops_sync.sources.scanning import is_manifest_name

log = logging.getLogger("gitops-sync")

FIRST_RETRY: Final = 0.5
LAST_RETRY: Final = 30.0
ARMED_CHECK_MS: Final = 500
"""A new watch wakes the loop once after this long, to catch what changed while it was set up."""
GROUP_EVENTS_MS: Final = 50
"""A burst of file events (a checkout) is handled as one change once it has been quiet this long."""


def watch(syncer: Syncer, stop: threading.Event | None = None) -> int:
    """Sync until SIGINT/SIGTERM (or ``stop``) is received; returns the exit code (0)."""
    settings = syncer.settings
    stop = stop or threading.Event()
    wake = threading.Event()
    log.info("Starting watch mode (interval: %gs)", settings.interval)
    log.info("Watching: %s", settings.capabilities)
    log.info("Press Ctrl+C to stop")
    events = FileEvents(settings.capabilities, wake, stop)
    events.start()
    outage: str | None = None
    retry = FIRST_RETRY
    with StopOnSignals(stop, wake):
        while not stop.is_set():
            wake.clear()
            delay = settings.interval
            log.log(logging.DEBUG if outage else logging.INFO, "--- Sync cycle starting ---")
            try:
                syncer.run_cycle()
            except (StoreUnavailable, SourceUnavailable) as exc:
                if outage != type(exc).__name__:
                    log.error("%s; retrying with back-off until it recovers", exc)
                    outage = type(exc).__name__
                delay, retry = min(retry, settings.interval), min(retry * 2, LAST_RETRY)
                wake.wait(delay)
                continue
            finally:
                events.follow_replacement()
            if outage:
                log.info("Recovered: the sync cycle completed again")
                outage, retry = None, FIRST_RETRY
            log.info("--- Sync cycle complete. Next sync in %gs ---", delay)
            wake.wait(delay)
    events.join()
    log.info("Stopped")
    return 0


class FileEvents:
    """Sets ``wake`` whenever a manifest in the directory is added, changed or deleted.

    Runs ``watchfiles`` in a daemon thread. When the directory is replaced by another (removed and
    re-created, or renamed over by a checkout), the old watch sees nothing more, so the thread
    re-arms on the new directory; the main loop tells it to after every cycle.
    """

    def __init__(self, directory: Path, wake: threading.Event, stop: threading.Event) -> None:
        self._directory = directory
        self._wake = wake
        self._stop = stop
        self._rearm = threading.Event()
        self._watched = _identity(directory)
        self._thread = threading.Thread(target=self._run, name="file-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def is_set(self) -> bool:
        """The ``stop_event`` given to watchfiles: stop for good, or to watch the new directory."""
        return self._stop.is_set() or self._rearm.is_set()

    def follow_replacement(self) -> None:
        current = _identity(self._directory)
        if current is not None and current != self._watched:
            log.info("%s was replaced; watching the new directory", self._directory)
            self._watched = current
            self._rearm.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._rearm.clear()
            armed = False
            try:
                for changes in watchfiles.watch(
                    self._directory,
                    watch_filter=lambda _change, path: is_manifest_name(Path(path).name),
                    debounce=500,
                    step=GROUP_EVENTS_MS,
                    stop_event=self,
                    rust_timeout=ARMED_CHECK_MS,
                    yield_on_timeout=True,
                    recursive=False,
                    raise_interrupt=False,
                ):
                    if changes:
                        log.debug("File changes: %s", sorted(path for _, path in changes))
                    elif armed:
                        continue
                    # Changes, or the first quiet moment of a new watch: what changed while it was
                    # being set up would otherwise wait for the periodic resync.
                    armed = True
                    self._wake.set()
            except OSError as exc:
                # Gone for now (a checkout in progress, say); the periodic resync reports it.
                log.debug("Cannot watch %s (%s); trying again", self._directory, exc)
                self._stop.wait(1.0)


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino
