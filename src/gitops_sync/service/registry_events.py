"""Registry events: a wake-up whenever someone else changes a key under the capability prefix.

Watches the prefix from the revision of the last full read. Events caused by this service's own
transactions are recognised by their revision and ignored; anything else (a hand edit, a delete,
another writer) makes the loop's next cycle read etcd again and put Git's values back. An event can
arrive before the transaction that caused it has returned its revision, so an event is only judged
foreign when the loop asks, after its cycle's own transactions have all returned. A watch that breaks, or
whose start revision was compacted, wakes the loop too: the full re-read covers what was missed,
and the watch is re-armed from that read's revision.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gitops_sync.errors import StoreError
from gitops_sync.store.etcd import EtcdStore, KeyEvents

log = logging.getLogger("gitops-sync")


class RegistryEvents:
    def __init__(self, store: EtcdStore, prefix: str, wake: threading.Event) -> None:
        self._store = store
        self._prefix = prefix
        self._wake = wake
        self._lock = threading.Lock()
        self._own: set[int] = set()
        self._unclaimed: dict[int, list[str]] = {}
        """Keys changed at revisions not (yet) known to be this service's own."""
        self._cancel: Callable[[], None] | None = None
        self._changed = True

    @property
    def armed(self) -> bool:
        return self._cancel is not None

    def changed(self) -> bool:
        """Whether etcd may hold anything new since the last call: a change by someone else, or a
        watch that is not (or no longer) in place."""
        with self._lock:
            foreign = sorted({key for keys in self._unclaimed.values() for key in keys})
            changed = self._changed or self._cancel is None or bool(foreign)
            self._changed = False
            self._unclaimed.clear()
        if foreign:
            log.debug("Changed in etcd outside this service: %s", ", ".join(foreign))
        return changed

    def note_own(self, revision: int) -> None:
        """A revision this service's own transaction created; its events are no news."""
        with self._lock:
            self._own.add(revision)
            self._unclaimed.pop(revision, None)

    def follow(self, read_revision: int) -> None:
        """After a cycle: make sure the prefix is watched, from that cycle's read on."""
        if self.armed:
            return
        try:
            cancel = self._store.watch_prefix(self._prefix, read_revision + 1, self._on_events)
        except StoreError as exc:
            log.warning(
                "Cannot watch %s for changes made outside Git (%s); relying on --interval", self._prefix, exc
            )
            return
        with self._lock:
            self._cancel = cancel

    def close(self) -> None:
        with self._lock:
            cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    def _on_events(self, events: KeyEvents | StoreError) -> None:
        if isinstance(events, StoreError):
            log.debug("The watch of %s ended (%s); the next cycle re-reads etcd", self._prefix, events)
            with self._lock:
                self._cancel = None
                self._changed = True
            self._wake.set()
            return
        with self._lock:
            for key, revision in events.changes:
                if revision not in self._own:
                    self._unclaimed.setdefault(revision, []).append(key)
            # Own revisions up to the last one delivered are done with. Not up to the response's
            # header revision: a watch catching up can be sent later events in later responses.
            delivered = max((revision for _, revision in events.changes), default=0)
            self._own = {revision for revision in self._own if revision > delivered}
            unclaimed = bool(self._unclaimed)
        if unclaimed:
            self._wake.set()
