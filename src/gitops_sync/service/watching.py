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
    watcher = threading.Thread(target=_wake_on_changes, args=(settings.capabilities, wake, stop), daemon=True)
    watcher.start()
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
            if outage:
                log.info("Recovered: the sync cycle completed again")
                outage, retry = None, FIRST_RETRY
            log.info("--- Sync cycle complete. Next sync in %gs ---", delay)
            wake.wait(delay)
    watcher.join(timeout=5)
    log.info("Stopped")
    return 0


def _wake_on_changes(directory: Path, wake: threading.Event, stop: threading.Event) -> None:
    """Set ``wake`` whenever a manifest in ``directory`` is added, changed or deleted."""
    while not stop.is_set():
        try:
            for changes in watchfiles.watch(
                directory,
                watch_filter=lambda _change, path: is_manifest_name(Path(path).name),
                debounce=500,
                step=GROUP_EVENTS_MS,
                stop_event=stop,
                recursive=False,
                raise_interrupt=False,
            ):
                log.debug("File changes: %s", sorted(path for _, path in changes))
                wake.set()
        except OSError as exc:
            # The directory is gone (a checkout swapping it, say); the periodic resync reports it.
            log.debug("Cannot watch %s (%s); trying again", directory, exc)
            stop.wait(1.0)
