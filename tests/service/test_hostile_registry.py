"""What others may leave in etcd under the service's prefixes, against real etcd: keys that are not
UTF-8 (foreign: reported once, left alone, never a crash) and values too large to read in one
response (drift of any size is repaired)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync.cli import main
from gitops_sync.testing import EtcdProcess, wait_for
from support import EXAMPLE_IDS, PREFIX, Cli, renamed_copies, services, value_of, watch_args

REGISTRY = "chora.platform.config_store"
COUNT = len(EXAMPLE_IDS)
ODD_KEYS = (
    b"/chora/capabilities/\xff\xfe/metadata",
    b"/chora/capabilities/" + REGISTRY.encode() + b"/\xc3(",
    b"/chora/sync/managed/\xe2\x28\xa1",
)
"""Under the capability prefix, under a managed capability's own keys, and under the sync prefix."""
BIG = 1_400_000
"""Fits one etcd request (1.5 MiB by default); 48 of them do not fit one gRPC response (64 MiB)."""


@pytest.fixture
def odd_keys(etcd: etcd3.MultiEndpointEtcd3Client) -> Iterator[etcd3.MultiEndpointEtcd3Client]:
    for key in ODD_KEYS:
        etcd.put(key, b"not ours")
    yield etcd
    for key in ODD_KEYS:
        assert value_of(etcd, key) == b"not ours"  # type: ignore[arg-type]  # left alone


def odd_warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "that are not UTF-8" in line]


def test_a_sync_leaves_keys_that_are_not_utf8_alone_and_says_so_once(
    cli: Cli, capabilities: Path, odd_keys: etcd3.MultiEndpointEtcd3Client
) -> None:
    result = cli("--capabilities", capabilities)

    assert result.code == 0, result.err
    assert f"Sync complete: {COUNT} synced, 0 skipped, 0 errors" in result.err
    warnings = odd_warnings(result.err)
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "Leaving alone 3 key(s) that are not UTF-8, so not this service's: "
        + ", ".join(repr(key[:80]) for key in [*sorted(ODD_KEYS[:2]), ODD_KEYS[2]])
    )
    assert value_of(odd_keys, f"{PREFIX}{REGISTRY}/type") is not None

    (capabilities / f"{REGISTRY}.yaml").unlink()  # and its prune deletes only its own keys
    result = cli("--capabilities", capabilities)
    assert result.code == 0, result.err
    assert value_of(odd_keys, f"{PREFIX}{REGISTRY}/type") is None


def test_a_dry_run_with_keys_that_are_not_utf8(
    cli: Cli, capabilities: Path, odd_keys: etcd3.MultiEndpointEtcd3Client
) -> None:
    result = cli("--capabilities", capabilities, "--dry-run")

    assert result.code == 0, result.err
    assert f"Plan: {COUNT} to create, 0 to update, 0 to delete" in result.out
    assert len(odd_warnings(result.err)) == 1


def test_list_says_how_many_keys_it_left_out(
    cli: Cli, capabilities: Path, odd_keys: etcd3.MultiEndpointEtcd3Client
) -> None:
    assert cli("--capabilities", capabilities).code == 0
    result = cli("--list")

    assert result.code == 0, result.err
    assert result.out.startswith(f"Found {COUNT} capability/ies in etcd:")
    assert "Left out 2 key(s) that are not UTF-8, so no capability's." in result.out


def test_watch_mode_ignores_keys_that_are_not_utf8_and_keeps_watching(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path, odd_keys: etcd3.MultiEndpointEtcd3Client
) -> None:
    with services(tmp_path) as start:
        service = start(*watch_args(capabilities, etcd_server, "--interval", "60"))
        service.wait_for_log(f"Sync complete: {COUNT} synced", timeout=20)
        odd_keys.put(b"/chora/capabilities/\x80", b"not ours either")  # an event the watch skips

        odd_keys.put(f"{PREFIX}{REGISTRY}/version", "6.6.6")  # the registry watch still wakes the loop
        wait_for(lambda: value_of(odd_keys, f"{PREFIX}{REGISTRY}/version") == b"1.4.0", timeout=15)
        version = capabilities / f"{REGISTRY}.yaml"
        version.write_text(version.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.4.1"))
        wait_for(lambda: value_of(odd_keys, f"{PREFIX}{REGISTRY}/version") == b"1.4.1", timeout=15)

        log = service.text()
        # Once as found at the start, once more when the next read found one more.
        assert [line.split(" - WARNING - ")[1].split(":")[0] for line in odd_warnings(log)] == [
            "Leaving alone 3 key(s) that are not UTF-8, so not this service's",
            "Leaving alone 4 key(s) that are not UTF-8, so not this service's",
        ], log
        assert "Traceback" not in log
        assert " - ERROR - " not in log
        assert service.process.poll() is None


def test_drift_of_any_size_is_repaired(tmp_path: Path, capabilities: Path) -> None:
    """Values too large for one response, planted on managed keys and on the service's records:
    reads are paged by size, so the sync still reads them, repairs them and succeeds."""
    renamed_copies(capabilities, 5)  # 48 capabilities
    with EtcdProcess(tmp_path / "etcd") as server:
        args = ["--etcd-endpoints", server.endpoint, "--capabilities", str(capabilities)]
        assert main(args) == 0
        etcd = etcd3.client(host=server.host, port=server.client_port, timeout=10)
        ids = sorted(path.stem for path in capabilities.glob("*.yaml"))
        assert len(ids) >= 48
        for capability_id in ids:
            etcd.put(f"{PREFIX}{capability_id}/metadata", b"m" * BIG)
            etcd.put(f"/chora/sync/managed/{capability_id}", b"r" * BIG)

        assert main(args) == 0
        for capability_id in ids:
            value = value_of(etcd, f"{PREFIX}{capability_id}/metadata")
            assert value is not None
            assert value.startswith(b"{")
        assert main(args) == 0  # and the next sync finds nothing to do
        etcd.close()
