"""Many files: parsed on every core with the result one process gives, and the garbage collector
kept out of a big cycle's way without being left off."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from pathlib import Path

import etcd3
import pytest

from gitops_sync.service import collector, parsing
from gitops_sync.service.engine import Engine
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore
from support import (
    CAPABILITIES,
    PREFIX,
    REGISTRY,
    files_read,
    keys_under,
    many_copies,
)


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
        first = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        first_reads, reads.value = reads.value, 0
        again = Engine(after, store, one_shot=False).run_cycle(Trigger.full())
        again_reads = reads.value
        monkeypatch.setattr(parsing, "PARALLEL_FROM", 10**9)
        alone = Engine(sequential, store, one_shot=False).run_cycle(Trigger.full())

    assert first.synced == again.synced == alone.synced == many
    assert (first_reads, again_reads) == (many, 2 * many)
    assert "Drift" not in caplog.text  # a first sync writes; it restores nothing
    written = {
        prefix: {key.removeprefix(prefix): value for key, (value, _) in keys_under(etcd, prefix).items()}
        for prefix in (PREFIX, "/after/capabilities/", "/seq/capabilities/")
    }
    assert len(written[PREFIX]) == 4 * many
    assert written[PREFIX] == written["/after/capabilities/"] == written["/seq/capabilities/"]


def test_the_garbage_collector_runs_again_after_every_cycle_even_one_that_failed(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A cycle pauses the collector; a service that runs for months must not be left without it."""
    during: list[bool] = []

    class Interrupted(EtcdStore):
        """Reads etcd noting whether the collector runs meanwhile; once ``interrupted``, its
        commits are cut short by Ctrl+C."""

        interrupted = False

        def read(self, prefix: str, sync_prefix: str):  # type: ignore[no-untyped-def]
            during.append(gc.isenabled())
            return super().read(prefix, sync_prefix)

        def commit(self, changes, fence=None):  # type: ignore[no-untyped-def]
            if self.interrupted:
                raise KeyboardInterrupt
            return super().commit(changes, fence)

    with Interrupted(settings.etcd) as store:
        engine = Engine(settings, store, one_shot=False)
        engine.run_cycle(Trigger.full())
        assert gc.isenabled()
        (settings.capabilities / "new.yaml").write_text(
            (CAPABILITIES / f"{REGISTRY}.yaml").read_text().replace(REGISTRY, "chora.platform.new")
        )
        store.interrupted = True
        with pytest.raises(KeyboardInterrupt):
            engine.run_cycle(Trigger.full())

    assert during == [False, False]
    assert gc.isenabled()


def test_a_cycle_leaves_the_garbage_collector_off_if_its_caller_turned_it_off(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    gc.disable()
    try:
        with EtcdStore(settings.etcd) as store:
            Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
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
    monkeypatch.setattr(collector, "LONG_LIVED", 1_000)
    gc.collect()
    try:
        frozen = gc.get_freeze_count()
        with collector.collector_paused():
            kept = [Kept() for _ in range(made)]
        assert gc.isenabled()
        assert (gc.get_freeze_count() - frozen >= made) == (made > 1_000)
        assert len(kept) == made
    finally:
        gc.unfreeze()


def test_frozen_objects_are_still_freed_when_no_longer_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "LONG_LIVED", 1_000)
    try:
        with collector.collector_paused():
            kept = [Kept() for _ in range(2_000)]
        watched = weakref.ref(kept[0])
        del kept
        assert watched() is None
    finally:
        gc.unfreeze()
