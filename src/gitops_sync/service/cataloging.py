"""The catalog a replica serves: read from etcd once, then kept current by watching the prefix.

Every replica keeps one, leader or standby. Readers get an immutable :class:`Catalog` at one
revision; they may wait for a revision past one they have (blocking reads), or ask what changed since
a revision (server-sent events), as far back as the history of changes reaches. A watch that breaks
or is compacted is followed by a fresh read; the history starts again then, so a reader asking from
before it gets a snapshot. The bookkeeping (which file each capability came from, the last sync's
problems) is followed too, to tell each capability's state.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gitops_sync.core.catalog import Catalog, State, ids_of
from gitops_sync.errors import StoreError
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.store.etcd import EtcdStore, KeyEvents, WatchCallback

log = logging.getLogger("gitops-sync")

HISTORY: Final = 1_000
"""Changes kept for readers that resume from a revision; one from before them gets a snapshot."""
FIRST_RETRY: Final = 0.5
LAST_RETRY: Final = 15.0


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """What one watch response changed: the capabilities written and those deleted."""

    revision: int
    upserted: tuple[str, ...]
    deleted: tuple[str, ...]


class LiveCatalog:
    """A :class:`Catalog` that follows etcd from a thread of its own, until :meth:`close`."""

    def __init__(self, store: EtcdStore, prefix: str, sync_prefix: str | None) -> None:
        """``sync_prefix``: the service's bookkeeping, to tell each capability's state; None for a
        consumer that may read only the capabilities (every state is then ``ok``)."""
        self._store = store
        self._prefix = prefix
        self._sync_prefix = sync_prefix
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._catalog = Catalog(revision=0)
        self._raw: dict[str, tuple[bytes, int]] = {}
        self._bookkeeping: dict[str, bytes] = {}
        self._states: dict[str, State] = {}
        self._history: deque[CatalogChange] = deque(maxlen=HISTORY)
        self._since = 0
        """The oldest revision the history can answer from."""
        self._listeners: list[Callable[[int], None]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="catalog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def subscribe(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with the new revision (from the catalog's thread) after each change."""
        self._listeners.append(listener)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until it has read etcd once; whether it has."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        """Whether it has read etcd at least once."""
        return self._ready.is_set()

    @property
    def current(self) -> Catalog:
        return self._catalog

    def state_of(self, capability_id: str) -> State:
        """``error`` if the file it was last synced from has an error now, ``warning`` for a
        warning, else ``ok``."""
        return self._states.get(capability_id, "ok")

    def wait_past(self, revision: int, timeout: float) -> Catalog:
        """The catalog once its revision is past ``revision``, or as it is after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._catalog.revision > revision or self._stop.is_set(), timeout=timeout
            )
            return self._catalog

    def changes_since(self, revision: int) -> tuple[CatalogChange, ...] | None:
        """The changes after ``revision``, oldest first; None if the history does not reach back
        that far (the reader needs a snapshot)."""
        with self._changed:
            if revision < self._since or revision > self._catalog.revision:
                return None
            return tuple(change for change in self._history if change.revision > revision)

    # --- following etcd, in the catalog's thread ---------------------------------------------------

    def _follow(self) -> None:
        delay = FIRST_RETRY
        failing = False
        while not self._stop.is_set():
            ended = threading.Event()
            cancels = []
            try:
                revision = self._read()
                for prefix in (self._prefix, self._sync_prefix):
                    if prefix is None:
                        continue
                    cancels.append(self._store.watch_prefix(prefix, revision + 1, self._on_events(ended)))
                if failing:
                    log.info("The registry catalog follows etcd again (revision %d)", revision)
                failing, delay = False, FIRST_RETRY
                while not (ended.is_set() or self._stop.is_set()):
                    ended.wait(1.0)
            except StoreError as exc:
                if not failing:
                    log.warning("The registry catalog cannot read etcd (%s); retrying", exc)
                failing = True
                self._stop.wait(delay)
                delay = min(delay * 2, LAST_RETRY)
            finally:
                for cancel in cancels:
                    cancel()

    def _read(self) -> int:
        """Read both prefixes afresh; the catalog and states are rebuilt, the history restarted."""
        keys, revision = self._store.snapshot(self._prefix)
        bookkeeping = {} if self._sync_prefix is None else self._store.snapshot(self._sync_prefix)[0]
        raw = {key: (state.value or b"", state.mod_revision) for key, state in keys.items()}
        catalog = Catalog.build(revision, raw, self._prefix)
        with self._changed:
            self._raw = raw
            self._bookkeeping = {key: state.value or b"" for key, state in bookkeeping.items()}
            self._states = {} if self._sync_prefix is None else _states(self._bookkeeping, self._sync_prefix)
            self._catalog = catalog
            self._history.clear()
            self._since = revision
            self._changed.notify_all()
        self._ready.set()
        self._tell(revision)
        return revision

    def _on_events(self, ended: threading.Event) -> WatchCallback:
        def on_events(events: KeyEvents | StoreError) -> None:
            if isinstance(events, StoreError):
                log.debug("The registry catalog's watch ended (%s); reading etcd again", events)
                ended.set()
                return
            self._apply(events)

        return on_events

    def _apply(self, events: KeyEvents) -> None:
        with self._changed:
            revision = max((revision for _, revision in events.changes), default=0)
            revision = max(revision, self._catalog.revision)
            touched_bookkeeping = False
            sync_prefix = self._sync_prefix
            for (key, _), value in zip(events.changes, events.values, strict=False):
                if sync_prefix is not None and key.startswith(sync_prefix):
                    touched_bookkeeping = True
                    if value is None:
                        self._bookkeeping.pop(key, None)
                    else:
                        self._bookkeeping[key] = value
            changed = ids_of((key for key, _ in events.changes if key.startswith(self._prefix)), self._prefix)
            for (key, mod_revision), value in zip(events.changes, events.values, strict=False):
                if not key.startswith(self._prefix):
                    continue
                if value is None:
                    self._raw.pop(key, None)
                else:
                    self._raw[key] = (value, mod_revision)
            if touched_bookkeeping and sync_prefix is not None:
                self._states = _states(self._bookkeeping, sync_prefix)
            if changed:
                catalog = self._catalog.updated(revision, self._raw, self._prefix, changed)
                self._history.append(
                    CatalogChange(
                        revision,
                        upserted=tuple(sorted(changed & catalog.entries.keys())),
                        deleted=tuple(sorted(changed - catalog.entries.keys())),
                    )
                )
                self._catalog = catalog
            self._changed.notify_all()
        if changed:
            self._tell(revision)

    def _tell(self, revision: int) -> None:
        for listener in self._listeners:
            listener(revision)


def _states(bookkeeping: Mapping[str, bytes], sync_prefix: str) -> dict[str, State]:
    """Each capability's state, from the last sync's problems and the file its record names."""
    status = _json(bookkeeping.get(status_key(sync_prefix)))
    worst: dict[str, State] = {}
    for problem in status.get("problems", []) if isinstance(status, dict) else []:
        if isinstance(problem, dict) and isinstance(problem.get("file"), str):
            severity: State = "error" if problem.get("severity") == "error" else "warning"
            if worst.get(problem["file"]) != "error":
                worst[problem["file"]] = severity
    if not worst:
        return {}
    records = managed_prefix(sync_prefix)
    states: dict[str, State] = {}
    for key, value in bookkeeping.items():
        if key.startswith(records):
            record = _json(value)
            source = record.get("source") if isinstance(record, dict) else None
            if isinstance(source, str) and source in worst:
                states[key.removeprefix(records)] = worst[source]
    return states


def _json(value: bytes | None) -> object:
    try:
        return json.loads(value or b"null")
    except (ValueError, RecursionError):
        return None
