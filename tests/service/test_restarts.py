"""What a restart skips: files whose record in etcd vouches for them are not parsed, and after a
clean sync whose mark still stands nothing is read at all. Neither may vouch for what changed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import etcd3
import pytest

from gitops_sync.core import rendering
from gitops_sync.model.sources import SourceFile
from gitops_sync.service import parsing, recording, reports
from gitops_sync.service.engine import Engine
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore
from support import (
    COUNT,
    PREFIX,
    REGISTRY,
    CountingStore,
    add_dangling_reference,
    files_read,
    keys_under,
    many_copies,
    value_of,
)


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
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        etcd.delete("/chora/sync/status")
        etcd.delete(f"/chora/sync/managed/{REGISTRY}")  # its last transaction did not go through
        reads = files_read(monkeypatch)
        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert reads.value == many + 1  # every file scanned, and the one no record vouches for parsed
    assert (report.synced, report.skipped) == (0, many)


def test_after_a_restart_keys_edited_by_hand_are_still_put_back(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A restart takes every capability from its record without reading values; a later full cycle
    must not trust that: etcd was read again, and anyone may have written."""
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        restarted = Engine(settings, store, one_shot=False)
        assert restarted.run_cycle(Trigger.full()).synced == 0
        etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
        etcd.delete(f"{PREFIX}{REGISTRY}/type")

        report = restarted.run_cycle(Trigger.full())

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
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
    manifest.write_text("# a comment: the keys stay as they are\n" + manifest.read_text())
    with RacedStore(settings.etcd) as raced:
        Engine(settings, raced, one_shot=False).run_cycle(Trigger.full())
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(
            Trigger.full()
        )  # a restart, trusting what the records vouch for

    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


def test_a_broken_file_keeps_its_capability_even_with_a_record_of_an_older_format(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
    older = {"source": f"{REGISTRY}.yaml", "source_sha256": "0" * 64, "keys_sha256": "1" * 64}
    etcd.put(f"/chora/sync/managed/{REGISTRY}", json.dumps(older))
    (capabilities / f"{REGISTRY}.yaml").write_text("metadata: [unclosed\n")
    with EtcdStore(settings.etcd) as store:
        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert REGISTRY in report.held
    assert report.deleted == 0
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"


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
        Engine(settings, store, one_shot=last).run_cycle(Trigger.full())
    before = keys_under(etcd, "/chora/")
    monkeypatch.setattr(parsing, "render_file", lambda *_: pytest.fail("parsed a file"))

    with CountingStore(settings.etcd) as store:
        report = Engine(settings, store, one_shot=False).run_cycle(
            Trigger.full()
        )  # a new process starts like this

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
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
    capability_keys = keys_under(etcd, PREFIX)
    for module in (rendering, recording):
        monkeypatch.setattr(module, "RENDERING", rendering.RENDERING + 1)
    parsed: list[str] = []
    real = parsing.render_file

    def render_file(settings: Settings, source: SourceFile) -> object:
        parsed.append(source.name)
        return real(settings, source)

    monkeypatch.setattr(parsing, "render_file", render_file)

    with EtcdStore(settings.etcd) as store:
        upgraded = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        again = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert len(parsed) == COUNT  # once each, by the first start of the new version
    assert (upgraded.synced, again.synced, again.skipped) == (0, 0, COUNT)
    assert keys_under(etcd, PREFIX) == capability_keys  # same bytes: no capability key written
    records = keys_under(etcd, "/chora/sync/managed/")
    assert {json.loads(value)["rendering"] for value, _ in records.values()} == {rendering.RENDERING}


def test_any_write_to_etcd_since_the_last_sync_makes_a_restart_look_at_everything(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
    etcd.put(f"{PREFIX}{REGISTRY}/version", "9.9.9")
    etcd.delete(f"{PREFIX}{REGISTRY}/type")
    etcd.put("/elsewhere/key", "a write outside the registry")

    with CountingStore(settings.etcd) as store:
        restored = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        assert store.reads == 1
        again = Engine(settings, store, one_shot=False).run_cycle(
            Trigger.full()
        )  # the restored state was marked again
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
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
    manifest.write_text(manifest.read_text().replace("1.4.0", "1.5.0", 1))
    with RacedStore(settings.etcd) as raced:
        assert Engine(settings, raced, one_shot=False).run_cycle(Trigger.full()).synced == 1
    with EtcdStore(settings.etcd) as store:
        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert report.synced == 1
    assert value_of(etcd, f"{PREFIX}{other}/version") != b"9.9.9"


def test_a_restart_with_other_settings_looks_at_everything(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    add_dangling_reference(settings.capabilities)
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        strict = Engine(dataclasses.replace(settings, strict=True), store, one_shot=False).run_cycle(
            Trigger.full()
        )

    # --strict makes the dangling reference an error, which the last (lenient) sync did not see.
    assert strict.errors == 1


def test_a_sync_with_errors_leaves_no_mark(
    settings: Settings, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    (capabilities / "broken.yaml").write_text("metadata: [unclosed\n")
    with CountingStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert store.reads == 2
    assert report.errors == 1  # reported on every run until fixed


def test_a_restart_after_a_write_elsewhere_in_etcd_writes_nothing(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with EtcdStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        etcd.put("/elsewhere/key", "another application's write")
        before = keys_under(etcd, "/chora/")

        report = Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

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
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        (capabilities / "README.md").write_text("not a manifest\n")
        git("add", "README.md")
        git("commit", "-qm", "docs")

        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    status = json.loads(value_of(etcd, "/chora/sync/status") or b"")
    assert status["commit"] == git("rev-parse", "HEAD")


def test_a_sync_with_many_warnings_leaves_no_mark(
    settings: Settings, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark repeats the warnings; with thousands, the status would not fit one etcd request."""
    add_dangling_reference(settings.capabilities)  # one warning
    monkeypatch.setattr(reports, "MARK_WARNINGS", 0)
    with CountingStore(settings.etcd) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())

    assert store.reads == 2
    assert json.loads(value_of(etcd, "/chora/sync/status") or b"")["converged"] is None
