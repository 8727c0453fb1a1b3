"""Work a cycle skips: unchanged files are not read again, an unchanged registry is not read
again, and many files are parsed on every core. Each shortcut must give the result a full cycle
would."""

from __future__ import annotations

import dataclasses
import errno
import gc
import hashlib
import json
import multiprocessing
import os
import re
import subprocess
import threading
import weakref
from collections.abc import Collection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import etcd3
import pytest

from gitops_sync.core import rendering, validating
from gitops_sync.errors import SourceChanged, SourceUnavailable
from gitops_sync.model.sources import SourceFile
from gitops_sync.service import parsing, syncing
from gitops_sync.service.syncing import CycleReport, Syncer
from gitops_sync.service.watching import Watcher
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.sources import scanning
from gitops_sync.sources.scanning import Scanner
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess
from support import (
    CAPABILITIES,
    EXAMPLE_IDS,
    LONG_AFTER_NS,
    PREFIX,
    add_dangling_reference,
    files_opened,
    keys_under,
    renamed_copies,
    value_of,
)

REGISTRY = "chora.platform.config_store"
"""A service at 1.4.0 that others require at ^1.0.0 and ^1.2.0."""
COUNT = len(EXAMPLE_IDS)


class CountingStore(EtcdStore):
    reads = 0

    def read(self, prefix: str, sync_prefix: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read(prefix, sync_prefix)


@pytest.fixture
def settings(etcd_server: EtcdProcess, capabilities: Path) -> Settings:
    return Settings(
        capabilities=capabilities, etcd=EtcdConnection(((etcd_server.host, etcd_server.client_port),))
    )


def test_the_scanner_reads_a_file_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.yaml").write_text("b: 1\n")
    scanner = Scanner(tmp_path)
    with monkeypatch.context() as later:  # a file written just now is read again: scan long after
        later.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)
        first = scanner.scan()
    opened = files_opened(monkeypatch)
    assert scanner.scan() == first
    assert opened == []

    (tmp_path / "b.yaml").write_text("b: 2\n")  # same size, new content
    second = scanner.scan()
    assert opened == ["b.yaml"]
    scanner.scan()
    assert opened == ["b.yaml", "b.yaml"]  # written just now: racy, so read again
    assert [f.sha256 for f in second.files] == [first.files[0].sha256, hashlib.sha256(b"b: 2\n").hexdigest()]


def test_a_quiet_cycle_reads_neither_files_nor_etcd(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanning, "RACY_NS", -LONG_AFTER_NS)  # the files were copied in just now
    with CountingStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        syncer.run_cycle()
        before = keys_under(etcd, "/chora/")
        monkeypatch.setattr(os, "open", lambda *_: (_ for _ in ()).throw(OSError(errno.EIO, "must not read")))

        report = syncer.run_cycle(registry_unchanged=True)

    assert store.reads == 1
    assert report.skipped == COUNT
    assert keys_under(etcd, "/chora/") == before


def test_an_edit_with_a_quiet_registry_is_written_without_reading_etcd(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    manifest = capabilities / f"{REGISTRY}.yaml"
    with CountingStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        syncer.run_cycle()
        for version in ("1.5.0", "1.6.0"):  # the second builds on the view the first left
            manifest.write_text(
                re.sub(r"dc_hasVersion: \S+", f"dc_hasVersion: {version}", manifest.read_text())
            )
            report = syncer.run_cycle(registry_unchanged=True)
            assert report.synced == 1
            assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == version.encode()
        assert store.reads == 1
        full = Syncer(settings, store).run_cycle()  # a fresh read agrees: nothing left to do
    assert full.synced == 0
    assert full.skipped == COUNT


def test_many_files_are_parsed_in_worker_processes_with_the_same_result(
    settings: Settings,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three ways to parse many files: a first sync into this etcd scans and parses them in
    workers, reading each file once; a sync after another one scans them here and parses them in
    workers; and few files are parsed here. All three write the same keys."""
    many = many_copies(capabilities, monkeypatch)
    reads = files_read(monkeypatch)
    after = dataclasses.replace(settings, prefix="/after/capabilities/", sync_prefix="/after/sync/")
    etcd.put("/after/sync/status", b"{}")  # as any sync before leaves one
    sequential = dataclasses.replace(settings, prefix="/seq/capabilities/", sync_prefix="/seq/sync/")
    with EtcdStore(settings.etcd) as store:
        first = Syncer(settings, store).run_cycle()
        first_reads, reads.value = reads.value, 0
        again = Syncer(after, store).run_cycle()
        again_reads = reads.value
        monkeypatch.setattr(parsing, "PARALLEL_FROM", 10**9)
        alone = Syncer(sequential, store).run_cycle()

    assert first.synced == again.synced == alone.synced == many
    assert (first_reads, again_reads) == (many, 2 * many)
    assert "Drift" not in caplog.text  # a first sync writes; it restores nothing
    written = {
        prefix: {key.removeprefix(prefix): value for key, (value, _) in keys_under(etcd, prefix).items()}
        for prefix in (PREFIX, "/after/capabilities/", "/seq/capabilities/")
    }
    assert len(written[PREFIX]) == 4 * many
    assert written[PREFIX] == written["/after/capabilities/"] == written["/seq/capabilities/"]


def many_copies(capabilities: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """The examples and 29 renamed copies of them (240 files): parsed by one worker and this
    process; returns how many files there are."""
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return COUNT + renamed_copies(capabilities, 29)


def files_read(monkeypatch: pytest.MonkeyPatch) -> Synchronized[int]:
    """How many times a manifest file is read from now on, by this process or its workers."""
    reads = multiprocessing.get_context("fork").Value("i", 0)
    real_read = scanning._read

    def counting_read(*args, **kwargs):  # type: ignore[no-untyped-def]
        with reads.get_lock():
            reads.value += 1
        return real_read(*args, **kwargs)

    monkeypatch.setattr(scanning, "_read", counting_read)
    return reads


def test_a_restart_after_a_first_sync_that_stopped_early_parses_what_no_record_vouches_for(
    settings: Settings,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first sync leaves its status last: killed before, it leaves records and no status. The
    restart must not take it for a first sync into this etcd and parse every file again."""
    many = many_copies(capabilities, monkeypatch)
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        etcd.delete("/chora/sync/status")
        etcd.delete(f"/chora/sync/managed/{REGISTRY}")  # its last transaction did not go through
        reads = files_read(monkeypatch)
        report = Syncer(settings, store).run_cycle()

    assert reads.value == many + 1  # every file scanned, and the one no record vouches for parsed
    assert (report.synced, report.skipped) == (0, many)


def test_the_garbage_collector_runs_again_after_every_cycle_even_one_that_failed(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle pauses the collector; a service that runs for months must not be left without it."""
    during: list[bool] = []
    with EtcdStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        real_scan = syncer._scanner.scan

        def scan(*args, **kwargs):  # type: ignore[no-untyped-def]
            during.append(gc.isenabled())
            return real_scan(*args, **kwargs)

        monkeypatch.setattr(syncer._scanner, "scan", scan)
        syncer.run_cycle()
        assert gc.isenabled()
        monkeypatch.setattr(syncer, "_apply", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        syncer._view = None
        (settings.capabilities / "new.yaml").write_text(
            (CAPABILITIES / f"{REGISTRY}.yaml").read_text().replace(REGISTRY, "chora.platform.new")
        )
        with pytest.raises(KeyboardInterrupt):
            syncer.run_cycle()

    assert during == [False, False]
    assert gc.isenabled()


def test_a_cycle_leaves_the_garbage_collector_off_if_its_caller_turned_it_off(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    gc.disable()
    try:
        with EtcdStore(settings.etcd) as store:
            Syncer(settings, store).run_cycle()
        assert not gc.isenabled()
    finally:
        gc.enable()


class Kept:
    """An object the collector tracks, that a weak reference can watch."""


@pytest.mark.parametrize("made", [10, 2_000])
def test_a_cycle_that_leaves_many_objects_freezes_them_and_no_others(
    made: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frozen, what a big cycle built is never walked by the collector again; a small cycle's
    objects stay with the collector (they may turn into reference cycles later)."""
    monkeypatch.setattr(syncing, "LONG_LIVED", 1_000)
    gc.collect()
    try:
        frozen = gc.get_freeze_count()
        with syncing.collector_paused():
            kept = [Kept() for _ in range(made)]
        assert gc.isenabled()
        assert (gc.get_freeze_count() - frozen >= made) == (made > 1_000)
        assert len(kept) == made
    finally:
        gc.unfreeze()


def test_frozen_objects_are_still_freed_when_no_longer_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncing, "LONG_LIVED", 1_000)
    try:
        with syncing.collector_paused():
            kept = [Kept() for _ in range(2_000)]
        watched = weakref.ref(kept[0])
        del kept
        assert watched() is None
    finally:
        gc.unfreeze()


def test_after_a_failed_cycle_the_next_one_reads_everything_again(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand edit whose news was used up by a cycle that then failed must still be put back."""
    with CountingStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        syncer.run_cycle()
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        with monkeypatch.context() as patched:
            patched.setattr(
                syncer._scanner, "scan", lambda _changed: (_ for _ in ()).throw(SourceUnavailable("checkout"))
            )
            with pytest.raises(SourceUnavailable):
                syncer.run_cycle()

        reads = store.reads
        syncer.run_cycle(registry_unchanged=True)  # the watch has nothing new to say by now

    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert store.reads == reads + 1


def test_a_cycle_after_one_told_it_was_the_last_reads_everything_again(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A one-shot sync keeps nothing up to date for a next cycle; should one come, it must not
    trust what the last one left behind, so a hand edit made in between is still put back."""
    with CountingStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        first = syncer.run_cycle(last=True)
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        reads = store.reads

        again = syncer.run_cycle(registry_unchanged=True)  # as if no one had written since

    assert (first.synced, first.errors) == (COUNT, 0)
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert store.reads == reads + 1
    assert (again.synced, again.skipped) == (1, COUNT - 1)


def test_told_which_files_changed_a_cycle_syncs_them_as_a_full_cycle_would(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    registry = capabilities / f"{REGISTRY}.yaml"
    gone = sorted(capabilities.glob("*.yaml"))[0]
    with CountingStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        syncer.run_cycle()
        registry.write_text(re.sub(r"dc_hasVersion: \S+", "dc_hasVersion: 1.5.0", registry.read_text()))
        copy = capabilities / "copy.yaml"  # claims the registry's id too: both are held
        copy.write_text(registry.read_text())
        gone.unlink()

        report = syncer.run_cycle(
            changed_files={registry.name, copy.name, gone.name}, registry_unchanged=True
        )

        assert store.reads == 1
        assert report.deleted == 1
        assert REGISTRY in report.held
        assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"  # last good state kept
        assert keys_under(etcd, f"{PREFIX}{gone.stem}/") == {}

        copy.unlink()
        report = syncer.run_cycle(changed_files={copy.name}, registry_unchanged=True)
        assert report.synced == 1
        assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.5.0"

        full = Syncer(settings, store).run_cycle()  # a fresh read agrees: nothing left to do
    assert (full.synced, full.deleted, full.skipped, full.errors) == (0, 0, COUNT - 1, 0)


def test_after_a_restart_keys_edited_by_hand_are_still_put_back(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A restart takes every capability from its record without reading values; a later full cycle
    must not trust that: etcd was read again, and anyone may have written."""
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        restarted = Syncer(settings, store)
        assert restarted.run_cycle().synced == 0
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        etcd.delete(f"{PREFIX}{REGISTRY}/type")

        report = restarted.run_cycle()

    assert report.synced == 1
    assert restarted.drift_restored == 1
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"


def test_a_key_edited_while_only_the_record_is_written_is_not_vouched_for(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A comment-only edit writes just the record; the record vouches for all four keys, so a hand
    edit landing between the read and that write must make the write fail, not be covered up."""

    class RacedStore(EtcdStore):
        raced = False

        def commit(self, changes, fence=None):  # type: ignore[no-untyped-def]
            if not self.raced:
                self.raced = True
                etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
            return super().commit(changes, fence)

    manifest = capabilities / f"{REGISTRY}.yaml"
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
    manifest.write_text("# a comment: the keys stay as they are\n" + manifest.read_text())
    with RacedStore(settings.etcd) as raced:
        Syncer(settings, raced).run_cycle()
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()  # a restart, trusting what the records vouch for

    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_a_broken_file_keeps_its_capability_even_with_a_record_of_an_older_format(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
    older = {"source": f"{REGISTRY}.yaml", "source_sha256": "0" * 64, "keys_sha256": "1" * 64}
    etcd.put(f"/chora/sync/managed/{REGISTRY}", json.dumps(older))
    (capabilities / f"{REGISTRY}.yaml").write_text("metadata: [unclosed\n")
    with EtcdStore(settings.etcd) as store:
        report = Syncer(settings, store).run_cycle()

    assert REGISTRY in report.held
    assert report.deleted == 0
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_a_file_that_changed_while_being_read_is_read_again_next_cycle(
    settings: Settings,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with EtcdStore(settings.etcd) as store:
        syncer = Syncer(settings, store)
        real_read = syncer._scanner.read

        def changing(source: SourceFile) -> SourceFile:
            if source.name == f"{REGISTRY}.yaml":
                raise SourceChanged(source.name, "changed while being read; checked again next cycle")
            return real_read(source)

        with monkeypatch.context() as patched:
            patched.setattr(syncer._scanner, "read", changing)
            first = syncer.run_cycle()
        second = syncer.run_cycle()

    assert [p.source for p in first.problems if p.severity == "error"] == [f"{REGISTRY}.yaml"]
    assert second.ok
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_events_never_postpone_the_interval_resync(settings: Settings) -> None:
    calls: list[Collection[str] | None] = []

    class Recording(Syncer):
        def run_cycle(
            self,
            *,
            changed_files: Collection[str] | None = None,
            registry_unchanged: bool = False,
            last: bool = False,
        ) -> CycleReport:
            calls.append(changed_files)
            return super().run_cycle(
                changed_files=changed_files, registry_unchanged=registry_unchanged, last=last
            )

    clock = [1000.0]
    with EtcdStore(settings.etcd) as store:
        watcher = Watcher(
            Recording(dataclasses.replace(settings, interval=60), store), clock=lambda: clock[0]
        )
        try:
            watcher._cycle()
            for _ in range(3):  # woken every 25 s, by a file event say
                clock[0] += 25
                watcher.wake.set()
                watcher._cycle()
        finally:
            watcher.registry.close()
            watcher.leadership.close()

    # Full at the start and once 60 s have passed since; told which files changed in between.
    assert [changed is None for changed in calls] == [True, False, False, True]


def test_watch_mode_prepares_the_parser_once_started_not_on_the_first_edit(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()  # so that the watch's first cycle parses nothing
    validating._validator.cache_clear()
    compiled: list[int] = []
    with EtcdStore(settings.etcd) as store:
        watcher = Watcher(Syncer(settings, store))

        def prepare() -> None:
            compiled.append(validating._validator.cache_info().currsize)
            real_prepare()
            stop()

        def stop() -> None:
            watcher.stop.set()
            watcher.wake.set()

        real_prepare = parsing.prepare
        monkeypatch.setattr(parsing, "prepare", prepare)
        deadline = threading.Timer(10, stop)  # without the call, do not wait for the interval
        deadline.start()
        try:
            assert watcher.run() == 0
        finally:
            deadline.cancel()

    assert compiled == [0]
    assert validating._validator.cache_info().currsize == 1


@pytest.mark.parametrize("last", [False, True], ids=["after a cycle", "after a one-shot sync"])
def test_a_restart_after_a_clean_sync_reads_and_parses_nothing(
    settings: Settings,
    etcd: etcd3.MultiEndpointEtcd3Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    last: bool,
) -> None:
    where = add_dangling_reference(settings.capabilities)  # a warning, which a restart reports again
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle(last=last)
    before = keys_under(etcd, "/chora/")
    monkeypatch.setattr(parsing, "render_file", lambda *_: pytest.fail("parsed a file"))

    with CountingStore(settings.etcd) as store:
        report = Syncer(settings, store).run_cycle()  # a new process starts like this

    assert store.reads == 0
    assert (report.synced, report.skipped, report.errors) == (0, COUNT, 0)
    assert keys_under(etcd, "/chora/") == before  # the status included
    # What the full cycle reported is reported again: the one dangling reference.
    assert caplog.text.count(f"{where}: dc_relation.requires:") == 2


def test_after_an_upgrade_that_renders_differently_a_restart_renders_everything_once(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the mark nor the records of the old rendering may vouch for the new one's bytes.
    (Here the bytes stay the same, so only the records are rewritten.)"""
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
    capability_keys = keys_under(etcd, PREFIX)
    for module in (rendering, syncing):
        monkeypatch.setattr(module, "RENDERING", rendering.RENDERING + 1)
    parsed: list[str] = []
    real = parsing.render_file

    def render_file(settings: Settings, source: SourceFile) -> object:
        parsed.append(source.name)
        return real(settings, source)

    monkeypatch.setattr(parsing, "render_file", render_file)

    with EtcdStore(settings.etcd) as store:
        upgraded = Syncer(settings, store).run_cycle()
        again = Syncer(settings, store).run_cycle()

    assert len(parsed) == COUNT  # once each, by the first start of the new version
    assert (upgraded.synced, again.synced, again.skipped) == (0, 0, COUNT)
    assert keys_under(etcd, PREFIX) == capability_keys  # same bytes: no capability key written
    records = keys_under(etcd, "/chora/sync/managed/")
    assert {json.loads(value)["rendering"] for value, _ in records.values()} == {rendering.RENDERING}


def test_any_write_to_etcd_since_the_last_sync_makes_a_restart_look_at_everything(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
    etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
    etcd.delete(f"{PREFIX}{REGISTRY}/type")
    etcd.put("/elsewhere/key", "a write outside the registry")

    with CountingStore(settings.etcd) as store:
        restored = Syncer(settings, store).run_cycle()
        assert store.reads == 1
        again = Syncer(settings, store).run_cycle()  # the restored state was marked again
        assert store.reads == 1

    assert restored.synced == 1
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"
    assert again.skipped == COUNT


def test_a_write_by_someone_else_during_a_sync_leaves_no_mark_a_restart_trusts(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A sync that wrote one capability while someone edited another must not tell the next start
    that etcd was left as the files want it."""
    other = "chora.observability.telemetry_schema"

    class RacedStore(EtcdStore):
        def commit(self, changes, fence=None):  # type: ignore[no-untyped-def]
            revision = super().commit(changes, fence)
            if changes[0].capability_id == REGISTRY:
                etcd.put(f"{PREFIX}{other}/version", "9.9.9")
            return revision

    manifest = capabilities / f"{REGISTRY}.yaml"
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
    manifest.write_text(manifest.read_text().replace("1.4.0", "1.5.0", 1))
    with RacedStore(settings.etcd) as raced:
        assert Syncer(settings, raced).run_cycle().synced == 1
    with EtcdStore(settings.etcd) as store:
        report = Syncer(settings, store).run_cycle()

    assert report.synced == 1
    assert value_of(etcd, f"{PREFIX}{other}/version") != b"9.9.9"


def test_a_restart_with_other_settings_looks_at_everything(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    add_dangling_reference(settings.capabilities)
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        strict = Syncer(dataclasses.replace(settings, strict=True), store).run_cycle()

    # --strict makes the dangling reference an error, which the last (lenient) sync did not see.
    assert strict.errors == 1


def test_a_sync_with_errors_leaves_no_mark(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    (capabilities / "broken.yaml").write_text("metadata: [unclosed\n")
    with CountingStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        report = Syncer(settings, store).run_cycle()

    assert store.reads == 2
    assert report.errors == 1  # reported on every run until fixed


def test_a_watch_cycle_that_writes_nothing_keeps_the_mark(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    manifest = capabilities / f"{REGISTRY}.yaml"
    with CountingStore(settings.etcd) as store:
        watching = Syncer(settings, store)
        watching.run_cycle()
        status = keys_under(etcd, "/chora/sync/status")
        manifest.write_text(manifest.read_text())  # touched, not changed
        watching.run_cycle(changed_files={manifest.name}, registry_unchanged=True)
        assert keys_under(etcd, "/chora/sync/status") == status

        Syncer(settings, store).run_cycle()  # a restart

    assert store.reads == 1


def test_a_restart_after_a_write_elsewhere_in_etcd_writes_nothing(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        etcd.put("/elsewhere/key", "another application's write")
        before = keys_under(etcd, "/chora/")

        report = Syncer(settings, store).run_cycle()

    assert report.skipped == COUNT
    assert keys_under(etcd, "/chora/") == before  # not even the status, to renew the mark


def test_a_new_commit_goes_into_the_status_even_if_no_manifest_changed(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    def git(*args: str) -> str:
        command = ["git", "-C", str(capabilities), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "manifests")
    with EtcdStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        (capabilities / "README.md").write_text("not a manifest\n")
        git("add", "README.md")
        git("commit", "-qm", "docs")

        Syncer(settings, store).run_cycle()

    status = json.loads(value_of(etcd, "/chora/sync/status") or b"")
    assert status["commit"] == git("rev-parse", "HEAD")


def test_a_sync_with_many_warnings_leaves_no_mark(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark repeats the warnings; with thousands, the status would not fit one etcd request."""
    add_dangling_reference(settings.capabilities)  # one warning
    monkeypatch.setattr(syncing, "MARK_WARNINGS", 0)
    with CountingStore(settings.etcd) as store:
        Syncer(settings, store).run_cycle()
        Syncer(settings, store).run_cycle()

    assert store.reads == 2
    assert json.loads(value_of(etcd, "/chora/sync/status") or b"")["converged"] is None
