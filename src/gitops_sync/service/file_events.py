"""File events: a wake-up whenever a manifest in the capabilities directory changes, and which.

Runs ``watchfiles`` in a daemon thread. The names of the files that changed let a cycle look at
only those; whenever the thread may have missed something (a new watch being set up, the directory
replaced, the watch failing), the next cycle looks at every file. When the directory is replaced by
another (removed and re-created, or renamed over by a checkout), the old watch sees nothing more,
so the thread re-arms on the new directory; the main loop asks it to check after every cycle.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Final

import watchfiles

from gitops_sync.model.problems import printable
from gitops_sync.sources.scanning import is_manifest_name

log = logging.getLogger("gitops-sync")

ARMED_CHECK_MS: Final = 500
"""A new watch wakes the loop once after this long, to catch what changed while it was set up."""
RETRY_SECONDS: Final = 0.5
"""How soon a watch that failed is set up again."""
GROUP_EVENTS_MS: Final = 20
"""A burst of file events (a checkout) is handled as one change once it has been quiet this long;
also how often the watch looks for events, so it bounds the delay an edit waits."""


class FileEvents:
    """Sets ``wake`` whenever a manifest in the directory is added, changed or deleted."""

    def __init__(self, directory: Path, wake: threading.Event, stop: threading.Event) -> None:
        self._directory = directory
        self._wake = wake
        self._stop = stop
        self._rearm = threading.Event()
        self._watched = _identity(directory)
        self._lock = threading.Lock()
        self._changed: set[str] | None = None
        """Names of the manifests changed since the last :meth:`take`; None: unknown, look at all."""
        self._thread = threading.Thread(target=self._run, name="file-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def is_set(self) -> bool:
        """The ``stop_event`` given to watchfiles: stop for good, or to watch the new directory."""
        return self._stop.is_set() or self._rearm.is_set()

    def take(self) -> frozenset[str] | None:
        """The names of the manifests changed since the last call, or None if that is not known."""
        with self._lock:
            changed, self._changed = self._changed, set()
        return None if changed is None else frozenset(changed)

    def follow_replacement(self) -> None:
        """Re-arm on the directory's path if it now leads elsewhere (the watch thread checks this
        itself twice a second; the loop asks after each cycle too)."""
        if self._replaced():
            self._rearm.set()

    def _replaced(self) -> bool:
        """Whether the path now leads to another directory: removed and re-created, renamed over,
        or a symlink swapped to a new target (git-sync's ``current``, a ConfigMap's ``..data``).
        Then every file is looked at, and the loop woken."""
        current = _identity(self._directory)
        with self._lock:
            if current is None or current == self._watched:
                return False
            self._watched = current
        log.info("%s was replaced; watching the new directory", self._directory)
        self._note(None)
        self._wake.set()
        return True

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
                    if self._replaced():
                        break  # and watch the new directory
                    if changes:
                        log.debug("File changes: %s", printable(str(sorted(path for _, path in changes))))
                        self._note({Path(path).name for _, path in changes})
                    elif armed:
                        continue
                    else:
                        # The first quiet moment of a new watch: what changed while it was being
                        # set up would otherwise wait for the periodic resync.
                        self._note(None)
                    armed = True
                    self._wake.set()
            except (OSError, RuntimeError) as exc:
                # Gone for now (a checkout in progress, say), or an event watchfiles cannot report
                # (a file name that is not UTF-8): look at every file, and watch again.
                log.debug("Cannot watch %s (%s); trying again", self._directory, printable(str(exc)))
                self._note(None)
                self._wake.set()
                self._stop.wait(RETRY_SECONDS)

    def _note(self, names: set[str] | None) -> None:
        with self._lock:
            if names is None or self._changed is None:
                self._changed = None
            else:
                self._changed |= names


def _identity(directory: Path) -> tuple[int, int] | None:
    try:
        status = directory.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino
