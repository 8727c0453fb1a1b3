"""Registry events from a real etcd watch: this service's own writes are no news, anyone else's are."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import etcd3
import pytest

from gitops_sync.model.plans import Change
from gitops_sync.service.registry_events import RegistryEvents
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.etcd import EtcdStore, KeyEvents, WatchCallback
from gitops_sync.testing import EtcdProcess

PREFIX = "/chora/capabilities/"


@pytest.fixture
def store(etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client) -> Iterator[EtcdStore]:
    with EtcdStore(EtcdConnection(((etcd_server.host, etcd_server.client_port),))) as opened:
        yield opened


@pytest.fixture
def watched(store: EtcdStore) -> Iterator[tuple[RegistryEvents, threading.Event]]:
    wake = threading.Event()
    events = RegistryEvents(store, PREFIX, wake)
    events.follow(store.read(PREFIX, "/chora/sync/").revision)
    assert events.changed()  # the first time: nothing was known before the watch
    yield events, wake
    events.close()


def put(store: EtcdStore, key: str) -> int:
    return store.commit([Change("x", "create", puts=((key, b"v"),), expected=((key, 0),))])


def test_an_own_write_whose_event_comes_before_its_revision_is_known_is_no_news(
    store: EtcdStore, watched: tuple[RegistryEvents, threading.Event]
) -> None:
    events, wake = watched
    revision = put(store, f"{PREFIX}a/version")  # as if the answer were slower than the event
    assert wake.wait(5)
    events.note_own(revision)

    assert not events.changed()


def test_a_write_by_anyone_else_is_news_once(
    store: EtcdStore, watched: tuple[RegistryEvents, threading.Event], etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    events, wake = watched
    events.note_own(put(store, f"{PREFIX}a/version"))
    wake.clear()  # its event is known to be ours now: it sets nothing
    etcd.put(f"{PREFIX}b/version", "by hand")
    assert wake.wait(5)

    assert events.changed()
    assert not events.changed()


def test_own_revisions_not_yet_delivered_stay_own_when_a_catching_up_watch_sends_a_later_header(
    store: EtcdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd sends a watch that is catching up its events in batches, each with the current revision
    in its header: an own revision newer than the batch's events is still to come. (Batches that
    large take thousands of writes to provoke, so they are handed to the watch's callback here.)"""
    callbacks: list[WatchCallback] = []
    real = store.watch_prefix

    def watch_prefix(prefix: str, start_revision: int, callback: WatchCallback) -> Callable[[], None]:
        callbacks.append(callback)
        return real(prefix, start_revision, callback)

    monkeypatch.setattr(store, "watch_prefix", watch_prefix)
    wake = threading.Event()
    events = RegistryEvents(store, PREFIX, wake)
    events.follow(store.read(PREFIX, "/chora/sync/").revision)
    assert events.changed()
    (deliver,) = callbacks
    try:
        events.note_own(60)
        deliver(KeyEvents(revision=100, changes=((f"{PREFIX}a/version", 50),)))
        assert events.changed()  # 50 was someone else's
        wake.clear()

        deliver(KeyEvents(revision=100, changes=((f"{PREFIX}b/version", 60),)))

        assert not wake.is_set()
        assert not events.changed()
    finally:
        events.close()
