"""Watch mode as an operator runs it: the seed's script in a subprocess against a real etcd."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync.testing import EtcdProcess, wait_for
from support import PREFIX, ServiceProcess, services, value_of, watch_args

REGISTRY = "chora.platform.config_store"
OTHER = "chora.devex.service_template"
"""A pattern no other manifest depends on."""


Watcher = ServiceProcess


@pytest.fixture
def watcher(
    etcd_server: EtcdProcess, capabilities: Path, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> Iterator[Callable[..., ServiceProcess]]:
    """Start ``gitops-sync --watch`` on the copied examples and wait for its first cycle."""
    with services(tmp_path) as start_service:

        def start(*extra: str) -> ServiceProcess:
            service = start_service(*watch_args(capabilities, etcd_server, *extra))
            service.wait_for_log("Sync cycle complete", timeout=20)
            return service

        yield start


def test_an_edit_reaches_etcd_without_waiting_for_the_interval(
    watcher: Callable[..., Watcher], capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """How soon (tens of milliseconds) is measured by bench ("edit p50/p99"), not here."""
    running = watcher("--interval", "60")
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"
    manifest = capabilities / f"{REGISTRY}.yaml"

    manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 1.5.0"))
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.5.0", timeout=20)

    running.wait_for_log(f"Synced: {REGISTRY} (service)", timeout=10, times=2)  # logged after the write


def test_a_deleted_and_a_new_file_are_followed(
    watcher: Callable[..., Watcher], capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    watcher("--interval", "60")
    (capabilities / f"{REGISTRY}.yaml").unlink()
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/type") is None, timeout=15)

    (capabilities / "chora.devex.extra.yml").write_text(
        (capabilities / f"{OTHER}.yaml")
        .read_text()
        .replace(f"dc_identifier: {OTHER}", "dc_identifier: chora.devex.extra")
    )
    wait_for(lambda: value_of(etcd, f"{PREFIX}chora.devex.extra/type") == b"pattern", timeout=15)


def test_the_interval_resync_puts_back_hand_edits(
    watcher: Callable[..., Watcher], etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    watcher("--interval", "0.3")
    etcd.put(f"{PREFIX}{REGISTRY}/version", "0.0.1")
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0", timeout=15)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(watcher: Callable[..., Watcher], signum: signal.Signals) -> None:
    running = watcher("--interval", "60")

    running.process.send_signal(signum)

    assert running.process.wait(timeout=10) == 0
    log = running.text()
    assert f"Received {signum.name}; stopping after the cycle in flight" in log
    assert log.rstrip().endswith("Stopped")
    assert "Traceback" not in log


def test_a_broken_file_in_watch_mode_is_reported_and_the_service_keeps_going(
    watcher: Callable[..., Watcher], capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    running = watcher("--interval", "60")
    manifest = capabilities / f"{REGISTRY}.yaml"
    manifest.write_text("metadata: [unclosed\n")
    wait_for(lambda: f"Invalid manifest {REGISTRY}.yaml:2" in running.text(), timeout=15)
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0"

    other = capabilities / f"{OTHER}.yaml"
    other.write_text(other.read_text().replace("dc_hasVersion: 1.1.0", "dc_hasVersion: 2.0.0"))
    wait_for(lambda: value_of(etcd, f"{PREFIX}{OTHER}/version") == b"2.0.0", timeout=15)
    assert running.process.poll() is None


def test_a_replaced_directory_is_watched_again(
    watcher: Callable[..., Watcher], capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client, tmp_path: Path
) -> None:
    running = watcher("--interval", "60")  # only file events can wake it
    staged = tmp_path / "next"
    shutil.copytree(capabilities, staged)
    shutil.rmtree(capabilities)
    staged.rename(capabilities)  # a checkout that swaps the directory
    wait_for(lambda: "was replaced; watching the new directory" in running.text(), timeout=5)

    manifest = capabilities / f"{REGISTRY}.yaml"
    manifest.write_text(manifest.read_text().replace("dc_hasVersion: 1.4.0", "dc_hasVersion: 4.0.0"))
    # an edit right after the swap may land before the new watch is armed: the watch then wakes
    # the loop once, as soon as it is in place
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"4.0.0", timeout=15)


def test_hand_edits_in_etcd_are_put_back_without_waiting_for_the_interval(
    watcher: Callable[..., Watcher], etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    running = watcher("--interval", "60")  # only the etcd watch can wake it in time

    etcd.put(f"{PREFIX}{REGISTRY}/version", "6.6.6")
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.4.0", timeout=15)
    etcd.delete(f"{PREFIX}{REGISTRY}/dependencies")
    wait_for(lambda: value_of(etcd, f"{PREFIX}{REGISTRY}/dependencies"), timeout=15)
    etcd.put(f"{PREFIX}team.other.thing/type", "service")
    wait_for(lambda: "not managed by gitops-sync: team.other.thing" in running.text(), timeout=15)

    for field in ("version", "dependencies"):  # each line is logged just after its write
        running.wait_for_log(
            f"Drift: {REGISTRY} was changed in etcd outside Git ({field}); restored Git's value", timeout=15
        )
    assert value_of(etcd, f"{PREFIX}team.other.thing/type") == b"service"
    wait_for(
        lambda: json.loads(value_of(etcd, "/chora/sync/status") or b"{}").get("drift_restored") == 2,
        timeout=15,
    )
