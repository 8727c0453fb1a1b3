"""The sync against a real etcd: the example manifests, change detection, prune safety, last good wins."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import etcd3
import pytest

from gitops_sync.service.engine import Engine
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess
from support import EXAMPLE_IDS, PREFIX, Cli, keys_under, value_of

REGISTRY = "chora.platform.config_store"
"""A flat-layout service that two others depend on."""
RICH = "chora.observability.incident_response"
"""A pattern with no type block, a top-level version and several kinds of relation."""
LEAF = "chora.observability.alert_router"
"""A service no other manifest depends on."""
COUNT = len(EXAMPLE_IDS)
KEYS = 4 * COUNT


def test_examples_sync_into_four_keys_each(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    result = cli("--capabilities", capabilities)

    assert result.code == 0
    assert result.err.rstrip().endswith(f"Sync complete: {COUNT} synced, 0 skipped, 0 errors")
    assert f"Synced: {REGISTRY} (service)" in result.err
    assert "Drift" not in result.err
    keys = keys_under(etcd, PREFIX)
    assert len(keys) == KEYS
    assert {key.rsplit("/", 1)[1] for key in keys} == {"metadata", "type", "version", "dependencies"}
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    assert json.loads(value_of(etcd, f"{PREFIX}{REGISTRY}/dependencies") or b"") == [
        {"capability": "chora.platform.conventions", "relationship": "prerequisite", "version": "~2.3"},
    ]
    metadata = json.loads(value_of(etcd, f"{PREFIX}{REGISTRY}/metadata") or b"")
    assert metadata["dc_identifier"] == REGISTRY
    assert metadata["dc_date"] == "2025-10-14"
    rich = json.loads(value_of(etcd, f"{PREFIX}{RICH}/dependencies") or b"")
    assert {
        "capability": "chora.platform.conventions",
        "relationship": "extends",
        "version": "^2.3.0",
    } in rich
    assert {
        "capability": "chora.platform.event_bus",
        "relationship": "optional",
        "version": ">=0.5.0",
    } in rich
    assert value_of(etcd, f"{PREFIX}{RICH}/type") == b"pattern"
    assert value_of(etcd, f"{PREFIX}{RICH}/version") == b"1.2.0"


def test_second_run_and_restart_write_nothing(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, "/chora/")

    again = cli("--capabilities", capabilities)

    assert again.code == 0
    assert f"Sync complete: 0 synced, {COUNT} skipped, 0 errors" in again.err
    assert "Synced:" not in again.err
    assert keys_under(etcd, "/chora/") == before  # values and mod revisions, bookkeeping included


def test_restart_takes_unchanged_manifests_from_etcd_without_parsing(
    etcd_server: EtcdProcess,
    capabilities: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connection = EtcdConnection(endpoints=(("127.0.0.1", etcd_server.client_port),))
    settings = Settings(capabilities=capabilities, etcd=connection)
    with EtcdStore(connection) as store:
        Engine(settings, store, one_shot=False).run_cycle(Trigger.full())
        (capabilities / f"{REGISTRY}.yaml").write_text(
            (capabilities / f"{REGISTRY}.yaml").read_text().replace("1.4.0", "1.5.0", 1)
        )
        with caplog.at_level(logging.DEBUG, logger="gitops-sync"):
            report = Engine(settings, store, one_shot=False).run_cycle(
                Trigger.full()
            )  # a new process would start like this

    assert f"{COUNT - 1} manifest(s) taken unchanged from etcd without parsing" in caplog.text
    assert report.synced == 1
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.5.0"


def test_editing_one_file_rewrites_only_its_changed_keys(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    manifest = capabilities / f"{REGISTRY}.yaml"
    manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.6.0"))

    result = cli("--capabilities", capabilities)

    assert f"Sync complete: 1 synced, {COUNT - 1} skipped, 0 errors" in result.err
    after = keys_under(etcd, PREFIX)
    changed = {key for key in after if after[key] != before[key]}
    # dc_hasVersion is both the version and part of the metadata
    assert changed == {f"{PREFIX}{REGISTRY}/version", f"{PREFIX}{REGISTRY}/metadata"}
    assert after[f"{PREFIX}{REGISTRY}/version"][0] == b"1.6.0"


def test_comment_only_edit_writes_no_capability_key(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    manifest = capabilities / f"{REGISTRY}.yaml"
    manifest.write_text("# reviewed by the platform team\n" + manifest.read_text())

    result = cli("--capabilities", capabilities)

    assert f"Sync complete: 0 synced, {COUNT} skipped, 0 errors" in result.err
    assert keys_under(etcd, PREFIX) == before


def test_deleting_a_file_deletes_exactly_its_four_keys(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    (capabilities / f"{REGISTRY}.yaml").unlink()

    result = cli("--capabilities", capabilities)

    assert result.code == 0
    assert f"Deleted: {REGISTRY}" in result.err
    after = keys_under(etcd, PREFIX)
    assert set(before) - set(after) == {
        f"{PREFIX}{REGISTRY}/{field}" for field in ("metadata", "type", "version", "dependencies")
    }
    assert all(after[key] == before[key] for key in after)
    assert value_of(etcd, f"/chora/sync/managed/{REGISTRY}") is None


def test_emptied_directory_deletes_nothing_and_says_why(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    for manifest in capabilities.iterdir():
        manifest.unlink()

    result = cli("--capabilities", capabilities)

    assert keys_under(etcd, PREFIX) == before
    assert "Not pruning: the capabilities directory yields no manifests" in result.err
    assert f"refusing to delete {COUNT} capabilities" in result.err
    assert "--allow-empty" in result.err

    allowed = cli("--capabilities", capabilities, "--allow-empty", "--max-prune", str(COUNT))
    assert allowed.code == 0
    assert keys_under(etcd, PREFIX) == {}


def test_prune_limits(cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client) -> None:
    cli("--capabilities", capabilities)
    for manifest in sorted(capabilities.iterdir())[:3]:
        manifest.unlink()

    no_prune = cli("--capabilities", capabilities, "--no-prune")
    assert "pruning is off (--no-prune)" in no_prune.err
    assert len(keys_under(etcd, PREFIX)) == KEYS

    too_many = cli("--capabilities", capabilities, "--max-prune", "2")
    assert "3 capabilities would be deleted, more than --max-prune 2" in too_many.err
    assert len(keys_under(etcd, PREFIX)) == KEYS

    within = cli("--capabilities", capabilities, "--max-prune", "3")
    assert within.err.count("Deleted: ") == 3
    assert len(keys_under(etcd, PREFIX)) == KEYS - 3 * 4


def test_broken_manifest_keeps_last_good_state_while_the_rest_sync(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    broken = capabilities / f"{REGISTRY}.yaml"
    broken.write_text(broken.read_text().replace("  dc_title: Configuration", "  dc_title: [Configuration"))
    other = capabilities / f"{LEAF}.yaml"
    other.write_text(other.read_text().replace("dc_hasVersion: 0.4.0-beta.1", "dc_hasVersion: 0.4.0"))

    result = cli("--capabilities", capabilities)

    assert result.code == 1
    assert (
        f"Invalid manifest {REGISTRY}.yaml:6: is not valid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence started on line 5)"
    ) in result.err
    assert f"Sync complete: 1 synced, {COUNT - 2} skipped, 1 errors" in result.err
    after = keys_under(etcd, PREFIX)
    registry_keys = [key for key in before if f"/{REGISTRY}/" in key]
    assert all(after[key] == before[key] for key in registry_keys)
    assert after[f"{PREFIX}{LEAF}/version"][0] == b"0.4.0"

    status = json.loads(value_of(etcd, "/chora/sync/status") or b"")
    assert any(error.startswith(f"{REGISTRY}.yaml:6: error: is not valid YAML") for error in status["errors"])


def test_invalid_manifest_is_reported_until_fixed_and_never_pruned(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    broken = capabilities / f"{REGISTRY}.yaml"
    broken.write_text(broken.read_text().replace(f"dc_identifier: {REGISTRY}", "dc_identifier: Registry!"))

    for _ in range(2):
        result = cli("--capabilities", capabilities)
        assert result.code == 1
        assert f"Invalid manifest {REGISTRY}.yaml:4: metadata.dc_identifier 'Registry!' is not" in result.err
        assert keys_under(etcd, PREFIX) == before


def test_duplicate_identifier_is_an_error_for_both_files(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    before = keys_under(etcd, PREFIX)
    copy = capabilities / "registry-copy.yaml"
    copy.write_text((capabilities / f"{REGISTRY}.yaml").read_text().replace("1.4.0", "9.9.9"))

    result = cli("--capabilities", capabilities)

    assert result.code == 1
    assert (
        f"Invalid manifest {REGISTRY}.yaml: dc_identifier {REGISTRY} is also defined in registry-copy.yaml"
        in result.err
    )
    assert (
        f"Invalid manifest registry-copy.yaml: dc_identifier {REGISTRY} is also defined in {REGISTRY}.yaml"
        in result.err
    )
    assert "2 errors" in result.err
    assert keys_under(etcd, PREFIX) == before


def test_hand_edited_and_deleted_keys_are_put_back(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    good = keys_under(etcd, PREFIX)
    etcd.put(f"{PREFIX}{REGISTRY}/version", "6.6.6")
    etcd.delete(f"{PREFIX}{RICH}/dependencies")

    result = cli("--capabilities", capabilities)

    assert f"Sync complete: 2 synced, {COUNT - 2} skipped, 0 errors" in result.err
    restored = keys_under(etcd, PREFIX)
    assert {key: value for key, (value, _) in restored.items()} == {
        key: value for key, (value, _) in good.items()
    }


def test_unmanaged_keys_under_the_prefix_are_left_alone(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    etcd.put(f"{PREFIX}team.other.thing/type", "service")
    cli("--capabilities", capabilities)
    for manifest in sorted(capabilities.iterdir())[:2]:
        manifest.unlink()

    result = cli("--capabilities", capabilities)

    assert value_of(etcd, f"{PREFIX}team.other.thing/type") == b"service"
    assert "not managed by gitops-sync: team.other.thing" in result.err
    assert result.err.count("Deleted: ") == 2


def test_dry_run_prints_the_plan_and_writes_nothing(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)
    manifest = capabilities / f"{REGISTRY}.yaml"
    manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.6.0"))
    (capabilities / f"{LEAF}.yaml").unlink()
    (capabilities / "chora.devex.new_thing.yaml").write_text(
        (capabilities / "chora.devex.service_template.yaml")
        .read_text()
        .replace("dc_identifier: chora.devex.service_template", "dc_identifier: chora.devex.new_thing")
    )
    before = keys_under(etcd, "/")
    revision = etcd.status().raft_index

    result = cli("--capabilities", capabilities, "--dry-run")

    assert result.code == 0
    assert "  create chora.devex.new_thing (pattern)" in result.out
    assert f"  update {REGISTRY}: metadata, version" in result.out
    assert f"  delete {LEAF}" in result.out
    assert f"Plan: 1 to create, 1 to update, 1 to delete, {COUNT - 2} unchanged, 0 invalid" in result.out
    assert keys_under(etcd, "/") == before
    assert etcd.status().raft_index == revision


def test_list_shows_ids_in_etcd_sorted(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)

    result = cli("--list")

    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"Found {COUNT} capability/ies in etcd:"
    assert lines[1] == ""
    ids = [line.removeprefix("  - ") for line in lines[2:]]
    assert ids == sorted(path.stem for path in capabilities.glob("*.yaml"))
    assert f"  - {REGISTRY}" in lines


def test_status_records_the_result_and_the_commit(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cli("--capabilities", capabilities)

    status = json.loads(value_of(etcd, "/chora/sync/status") or b"")

    assert status["capabilities"] == COUNT
    assert status["errors"] == []
    assert status["error_count"] == 0
    assert status["failed"] == []
    assert status["failed_count"] == 0
    assert status["commit"] is None  # the copy is not in a Git work tree
    assert "updated_at" in status


def test_status_lists_the_first_hundred_errors_and_counts_them_all(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """A checkout where thousands of files break at once must still get its status recorded:
    etcd takes no request over 1.5 MiB."""
    for number in range(150):
        (capabilities / f"broken-{number:03}.yaml").write_text("metadata: [unclosed\n")

    result = cli("--capabilities", capabilities)

    assert result.code == 1
    status = json.loads(value_of(etcd, "/chora/sync/status") or b"")
    assert status["capabilities"] == COUNT
    assert status["error_count"] == 150
    assert len(status["errors"]) == 100
    assert status["errors"][0].startswith("broken-000.yaml:")
    assert status["errors"][-1].startswith("broken-099.yaml:")


def test_dry_run_with_nothing_changed_says_so(cli: Cli, capabilities: Path) -> None:
    cli("--capabilities", capabilities)

    result = cli("--capabilities", capabilities, "--dry-run")

    assert result.code == 0
    assert f"Plan: 0 to create, 0 to update, 0 to delete, {COUNT} unchanged, 0 invalid" in result.out
    assert "Sync complete" not in result.err  # nothing was synced
