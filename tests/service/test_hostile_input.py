"""Hostile and unlucky input, against a real etcd: nothing is lost, nothing crashes, nothing hangs.

Each test is one class of input that once broke a promise: a rename with a broken file, forged
bookkeeping, names that are not UTF-8 or forge log lines, a capability whose keys fit a request only
without their record, pathological strings, a directory swapped through a symlink.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import etcd3
import pytest

from gitops_sync.testing import EtcdProcess, wait_for
from support import PREFIX, Cli, keys_under, requirement, services, value_of, watch_args
from support import manifest_text as manifest

SYNC = "/chora/sync/managed/"
ALPHA = "chora.test.alpha"
BETA = "chora.test.beta"
GAMMA = "chora.test.gamma"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """Three small manifests of the project's own: alpha requires beta; gamma stands alone."""
    target = tmp_path / "capabilities"
    target.mkdir()
    (target / f"{ALPHA}.yaml").write_text(manifest(ALPHA, requires=requirement(BETA)))
    (target / f"{BETA}.yaml").write_text(manifest(BETA))
    (target / f"{GAMMA}.yaml").write_text(manifest(GAMMA))
    return target


def keys_of(etcd: etcd3.MultiEndpointEtcd3Client, capability_id: str) -> dict[str, tuple[bytes, int]]:
    return keys_under(etcd, f"{PREFIX}{capability_id}/")


def test_a_rename_and_a_broken_file_in_one_change_delete_nothing(
    cli: Cli, directory: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    assert cli("--capabilities", directory).code == 0
    before = keys_of(etcd, GAMMA)
    renamed = directory / "gamma-renamed.yaml"
    (directory / f"{GAMMA}.yaml").rename(renamed)
    renamed.write_text(manifest(GAMMA) + "  broken: [\n")  # its id can no longer be read

    result = cli("--capabilities", directory)
    assert result.code == 1
    assert "Deleted" not in result.err
    assert "do not load (gamma-renamed.yaml)" in result.err
    assert keys_of(etcd, GAMMA) == before

    renamed.write_text(manifest(GAMMA))  # fixed: the same id from its new file
    result = cli("--capabilities", directory)
    assert result.code == 0, result.err
    assert "Deleted" not in result.err
    assert set(keys_of(etcd, GAMMA)) == set(before)
    assert b'"source":"gamma-renamed.yaml"' in (value_of(etcd, f"{SYNC}{GAMMA}") or b"")


def test_a_forged_or_damaged_record_vouches_for_nothing(
    cli: Cli, directory: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    # Keys another application owns, next to bookkeeping keys this service never wrote.
    etcd.put(f"{PREFIX}chora.test.theirs/metadata", "{}")
    etcd.put(f"{SYNC}chora.test.theirs", "garbage")
    etcd.put(f"{PREFIX}/metadata", "{}")  # the empty id
    etcd.put(SYNC, '{"source":"x.yaml","source_sha256":"' + "0" * 64 + '","rendering":2}')
    etcd.put(f"{PREFIX}not an id/metadata", "{}")
    etcd.put(f"{SYNC}not an id", '{"source":"x.yaml","source_sha256":"' + "0" * 64 + '","rendering":2}')

    result = cli("--capabilities", directory)
    assert result.code == 0, result.err
    assert "Deleted" not in result.err
    assert "is not a record gitops-sync wrote" in result.err
    for key in (f"{PREFIX}chora.test.theirs/metadata", f"{PREFIX}/metadata", f"{PREFIX}not an id/metadata"):
        assert value_of(etcd, key) == b"{}", key


def test_a_prune_deletes_only_the_keys_its_record_accounts_for(
    cli: Cli, directory: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    assert cli("--capabilities", directory).code == 0
    etcd.put(f"{PREFIX}{GAMMA}/version", "9.9.9")  # written by someone else after the sync
    (directory / f"{GAMMA}.yaml").unlink()

    result = cli("--capabilities", directory)
    assert result.code == 0, result.err
    assert f"Deleted: {GAMMA}" in result.err
    assert {key: value for key, (value, _) in keys_of(etcd, GAMMA).items()} == {
        f"{PREFIX}{GAMMA}/version": b"9.9.9"
    }
    assert value_of(etcd, f"{SYNC}{GAMMA}") is None


def test_a_file_name_that_is_not_utf8_is_an_error_for_that_file(
    cli: Cli, directory: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    path = os.fsencode(directory) + b"/caf\xe9.yaml"
    with open(path, "w") as file:  # noqa: PTH123 - a name pathlib would not make
        file.write(manifest("chora.test.cafe"))

    result = cli("--validate", "--capabilities", directory)
    assert result.code == 1
    assert "caf\\xe9.yaml: error: has a file name that is not UTF-8; rename it" in result.out

    result = cli("--capabilities", directory)
    assert result.code == 1
    assert "caf\\xe9.yaml: has a file name that is not UTF-8" in result.err
    assert value_of(etcd, f"{PREFIX}{GAMMA}/version") == b"1.0.0"
    assert cli("--dry-run", "--capabilities", directory).code == 1


def test_names_that_would_forge_log_lines_are_escaped(cli: Cli, directory: Path) -> None:
    (directory / "x\n2025-11-15 22:30:00 - gitops-sync - INFO - Synced: forged.yaml").write_text(
        "metadata: ["
    )
    result = cli("--capabilities", directory)
    assert result.code == 1
    assert "x\\x0a2025-11-15" in result.err
    assert not any(line.startswith("2025-11-15 22:30:00") for line in result.err.splitlines())


def test_a_huge_value_is_cut_in_the_message(cli: Cli, directory: Path) -> None:
    (directory / "huge.yaml").write_text(
        manifest("chora.test.huge", extra=f"  dc_extent: !!int {'9x' * 450_000}\n")
    )
    result = cli("--validate", "--capabilities", directory)
    assert result.code == 1
    line = next(line for line in result.out.splitlines() if "huge.yaml" in line)
    assert "cannot read" in line
    assert len(line) < 1_000


def test_a_dependency_on_an_invalid_manifest_says_so(cli: Cli, directory: Path) -> None:
    (directory / f"{BETA}.yaml").write_text("metadata: [\n")
    result = cli("--validate", "--capabilities", directory)
    assert f"dc_relation.requires: {BETA}: its manifest {BETA}.yaml is invalid (see its error)" in result.out
    assert "is not defined by any manifest" not in result.out


def test_a_capability_that_fits_only_without_its_record_is_refused_whole(
    cli: Cli, directory: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    # The dependencies key holds the two relationships once, the record again: 800 KB of keys fit
    # one request, 1.6 MB with the record do not.
    long = "r" * 400_000
    requires = "".join(requirement(BETA, relationship=f"{long}{n}") for n in range(2))
    (directory / f"{ALPHA}.yaml").write_text(manifest(ALPHA, requires=requires))

    result = cli("--validate", "--capabilities", directory)
    assert result.code == 1
    assert f"{ALPHA}.yaml: error: renders to etcd keys that need 5 operations and 1,6" in result.out

    result = cli("--capabilities", directory)
    assert result.code == 1
    assert "Traceback" not in result.err
    assert keys_of(etcd, ALPHA) == {}
    assert value_of(etcd, f"{PREFIX}{GAMMA}/version") == b"1.0.0"
    assert value_of(etcd, "/chora/sync/status") is not None


@pytest.mark.parametrize("padding", ["version", "range"])
def test_a_pathological_version_string_is_refused_at_once(cli: Cli, directory: Path, padding: str) -> None:
    pathological = "1.0.0" + " " * 150_000 + "x"
    if padding == "version":
        text = manifest(ALPHA).replace("'1.0.0'", f"'{pathological}'")
    else:
        text = manifest(ALPHA, requires=requirement(BETA, pathological))
    (directory / f"{ALPHA}.yaml").write_text(text)
    started = time.monotonic()
    result = cli("--validate", "--capabilities", directory)
    assert time.monotonic() - started < 10  # minutes before the bound
    assert result.code == 1
    assert (
        "is longer than 256 characters" if padding == "version" else "at most 256 characters"
    ) in result.out


def test_max_txn_ops_too_small_for_a_leader_is_refused(cli: Cli, directory: Path) -> None:
    result = cli("--watch", "--max-txn-ops", "5", "--capabilities", directory)
    assert result.code == 2
    assert "--max-txn-ops must be at least 6" in result.err


def test_watch_mode_with_the_smallest_transactions_writes_each_capability(
    tmp_path: Path, directory: Path, etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with services(tmp_path) as start:
        service = start(*watch_args(directory, etcd_server, "--max-txn-ops", "6"))
        service.wait_for_log("Sync cycle complete", timeout=20)
    assert value_of(etcd, f"{PREFIX}{ALPHA}/version") == b"1.0.0"
    assert "Traceback" not in service.text()


def test_watch_mode_survives_a_file_name_that_is_not_utf8(
    tmp_path: Path, directory: Path, etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with services(tmp_path) as start:
        service = start(*watch_args(directory, etcd_server, "--interval", "3600"))
        service.wait_for_log("Sync cycle complete", timeout=20)
        with open(os.fsencode(directory) + b"/caf\xe9.yaml", "w") as file:  # noqa: PTH123
            file.write(manifest("chora.test.cafe"))
        service.wait_for_log("has a file name that is not UTF-8", timeout=5)
        # The file events still arrive: an edit is synced long before the interval.
        (directory / f"{GAMMA}.yaml").write_text(manifest(GAMMA, version="2.0.0"))
        wait_for(lambda: value_of(etcd, f"{PREFIX}{GAMMA}/version") == b"2.0.0", timeout=5)
    assert "Traceback" not in service.text()


def test_a_directory_swapped_through_a_symlink_is_synced_without_waiting_for_the_interval(
    tmp_path: Path, directory: Path, etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """As git-sync (``current -> rev-N``) and Kubernetes ConfigMaps (``..data``) update a checkout."""
    first = tmp_path / "rev-1"
    directory.rename(first)
    current = tmp_path / "current"
    current.symlink_to(first)
    with services(tmp_path) as start:
        service = start(*watch_args(current, etcd_server, "--interval", "3600"))
        # The first cycle, then the one a new watch wakes once it is armed: from now on only an
        # event can start a cycle.
        service.wait_for_log("Sync cycle complete", timeout=20, times=2)
        second = tmp_path / "rev-2"
        second.mkdir()
        for path in first.iterdir():
            (second / path.name).write_text(path.read_text())
        (second / f"{GAMMA}.yaml").write_text(manifest(GAMMA, version="3.0.0"))
        swap = tmp_path / "current.new"
        swap.symlink_to(second)
        swap.rename(current)  # atomic
        wait_for(lambda: value_of(etcd, f"{PREFIX}{GAMMA}/version") == b"3.0.0", timeout=20)  # not 3600 s
