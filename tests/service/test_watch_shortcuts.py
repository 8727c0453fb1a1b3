"""What a watch-mode cycle skips, told what changed: files not read again, etcd not read again while
nobody else writes. Each shortcut must give the result a full cycle would."""

from __future__ import annotations

import dataclasses
import errno
import os
import queue
import re
import threading
from pathlib import Path

import etcd3
import pytest

from gitops_sync.errors import ManifestError, SourceChanged, SourceUnavailable
from gitops_sync.model.sources import SourceFile
from gitops_sync.service import parsing
from gitops_sync.service.cache import CycleCache
from gitops_sync.service.engine import Engine
from gitops_sync.service.outcomes import CycleOutcome
from gitops_sync.service.triggers import Trigger
from gitops_sync.service.watching import Watcher
from gitops_sync.settings import Settings
from gitops_sync.sources import scanning
from gitops_sync.store.etcd import EtcdStore
from support import (
    COUNT,
    LONG_AFTER_NS,
    PREFIX,
    REGISTRY,
    CountingStore,
    keys_under,
    value_of,
)


def test_a_quiet_cycle_reads_neither_files_nor_etcd(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)  # the files were copied in just now
    with CountingStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        before = keys_under(etcd, "/chora/")
        monkeypatch.setattr(os, "open", lambda *_: (_ for _ in ()).throw(OSError(errno.EIO, "must not read")))

        report = engine.run_cycle(Trigger(registry_quiet=True))

    assert store.reads == 1
    assert report.skipped == COUNT
    assert keys_under(etcd, "/chora/") == before


def test_an_edit_with_a_quiet_registry_is_written_without_reading_etcd(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    manifest = capabilities / f"{REGISTRY}.yaml"
    with CountingStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        for version in ("1.5.0", "1.6.0"):  # the second builds on the view the first left
            manifest.write_text(
                re.sub(r"dc_hasVersion: \S+", f"dc_hasVersion: {version}", manifest.read_text())
            )
            report = engine.run_cycle(Trigger(registry_quiet=True))
            assert report.synced == 1
            assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == version.encode()
        assert store.reads == 1
        full = Engine(settings, store, one_shot=False).run_cycle(
            Trigger.full()
        )  # a fresh read agrees: nothing left to do
    assert full.synced == 0
    assert full.skipped == COUNT


def test_told_which_files_changed_a_cycle_syncs_them_as_a_full_cycle_would(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    registry = capabilities / f"{REGISTRY}.yaml"
    gone = sorted(capabilities.glob("*.yaml"))[0]
    with CountingStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        registry.write_text(re.sub(r"dc_hasVersion: \S+", "dc_hasVersion: 1.5.0", registry.read_text()))
        copy = capabilities / "copy.yaml"  # claims the registry's id too: both are held
        copy.write_text(registry.read_text())
        gone.unlink()

        report = engine.run_cycle(
            Trigger.files_changed({registry.name, copy.name, gone.name}, registry_quiet=True)
        )

        assert store.reads == 1
        assert report.deleted == 1
        assert REGISTRY in report.held
        assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"  # last good state kept
        assert keys_under(etcd, f"{PREFIX}{gone.stem}/") == {}

        copy.unlink()
        report = engine.run_cycle(Trigger.files_changed({copy.name}, registry_quiet=True))
        assert report.synced == 1
        assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.5.0"

        full = Engine(settings, store, one_shot=False).run_cycle(
            Trigger.full()
        )  # a fresh read agrees: nothing left to do
    assert (full.synced, full.deleted, full.skipped, full.errors) == (0, 0, COUNT - 1, 0)


def test_after_a_failed_cycle_the_next_one_reads_everything_again(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A hand edit whose news was used up by a cycle that then failed must still be put back."""
    directory = settings.capabilities
    with CountingStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        directory.rename(directory.with_name("away"))  # a checkout half done, say
        with pytest.raises(SourceUnavailable):
            engine.run_cycle(Trigger.full())
        directory.with_name("away").rename(directory)

        reads = store.reads
        engine.run_cycle(Trigger(registry_quiet=True))  # the watch has nothing new to say by now

    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert store.reads == reads + 1


def test_a_one_shot_engine_keeps_nothing_for_a_next_cycle(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A one-shot sync keeps nothing up to date for a next cycle; should one come, it must not
    trust what the last one left behind, so a hand edit made in between is still put back."""
    with CountingStore(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=True)
        first = engine.run_cycle(Trigger.full())
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        reads = store.reads

        again = engine.run_cycle(Trigger(registry_quiet=True))  # as if no one had written since

    assert (first.synced, first.errors) == (COUNT, 0)
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert store.reads == reads + 1
    assert (again.synced, again.skipped) == (1, COUNT - 1)


def test_events_never_postpone_the_interval_resync(settings: Settings) -> None:
    """Woken every 25 s (by file events, say), watch mode still reads every file and all of etcd
    once the interval has passed since the last full cycle: at the start, and at 75 s."""
    clock = [1000.0]
    finished = queue.SimpleQueue[CycleOutcome]()

    class Told:
        def cycle_finished(self, outcome: CycleOutcome) -> None:
            finished.put(outcome)

    with CountingStore(settings.etcd) as store:
        watcher = Watcher(
            dataclasses.replace(settings, interval=60), store, listener=Told(), clock=lambda: clock[0]
        )
        loop = threading.Thread(target=watcher.run, name="watch")
        loop.start()
        try:
            finished.get(timeout=30)
            reads = [store.reads]
            for _ in range(3):
                clock[0] += 25
                watcher.wake.set()
                finished.get(timeout=30)
                reads.append(store.reads)
        finally:
            watcher.stop.set()
            watcher.wake.set()
            loop.join(timeout=30)

    assert reads == [1, 1, 1, 2]


def test_watch_mode_prepares_the_parser_once_started_not_on_the_first_edit(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first cycle of a restart parses nothing; the parser is prepared once it is over, while
    the loop is idle, so that the first edit does not wait for it."""
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=True).run_cycle(Trigger.full())
    prepared: list[int] = []
    with CountingStore(settings.etcd) as store:
        watcher = Watcher(settings, store)

        def prepare() -> None:
            prepared.append(store.reads)
            real_prepare()
            stop()

        def stop() -> None:
            watcher.stop.set()
            watcher.wake.set()

        real_prepare = parsing.prepare
        monkeypatch.setattr(parsing, "prepare", prepare)
        monkeypatch.setattr(parsing, "render_file", lambda *_: pytest.fail("parsed a file"))
        deadline = threading.Timer(30, stop)  # without the call, do not wait for the interval
        deadline.start()
        try:
            watcher.run()
        finally:
            deadline.cancel()

    assert prepared == [1]  # once, after a first cycle that read etcd once and parsed nothing


def test_a_watch_cycle_that_writes_nothing_keeps_the_mark(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    manifest = capabilities / f"{REGISTRY}.yaml"
    with CountingStore(settings.etcd) as store:
        watching = Engine(settings, store, one_shot=False)
        watching.run_cycle(Trigger.full())
        status = keys_under(etcd, "/chora/sync/status")
        manifest.write_text(manifest.read_text())  # touched, not changed
        watching.run_cycle(Trigger.files_changed({manifest.name}, registry_quiet=True))
        assert keys_under(etcd, "/chora/sync/status") == status

        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())  # a restart

    assert store.reads == 1


def test_a_file_that_changed_while_being_read_is_parsed_again_next_time() -> None:
    """What a file parsed to is kept by its content hash; a read that found other content than the
    hash is no answer for that content, so it is not kept."""
    cache = CycleCache(strict=False)
    changing = SourceFile(f"{REGISTRY}.yaml", b"", "0" * 64)
    steady = SourceFile("other.yaml", b"", "1" * 64)
    failure = ManifestError(steady.name, "not a mapping", 1)

    parsed = cache.add_parsed(
        {
            (changing.name, changing.sha256): SourceChanged(
                changing.name, "changed while being read; checked again next cycle"
            ),
            (steady.name, steady.sha256): failure,
        }
    )

    assert isinstance(parsed[(changing.name, changing.sha256)], SourceChanged)  # this cycle's answer
    assert cache.to_parse([changing, steady]) == [changing]
