"""``--http`` as operators use it: watch mode in a subprocess against a real etcd, asked over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import etcd3
import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitops_sync.http.openapi import DOCUMENT
from gitops_sync.testing import EtcdProcess, free_port, wait_for
from support import PREFIX, ROOT, Cli, ServiceProcess, services, value_of, watch_args

REGISTRY = "chora.platform.config_store"
Labels = frozenset[tuple[str, str]]


class Service:
    """A watch-mode process with ``--http`` on a free loopback port."""

    def __init__(self, process: ServiceProcess, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=5)

    def answers(self) -> bool:
        try:
            self.get("/livez")
        except httpx.TransportError:
            return False
        return True

    def metrics(self) -> dict[tuple[str, Labels], float]:
        exposition = self.get("/metrics").text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics()[(name, frozenset(labels.items()))]

    def status(self) -> dict[str, object]:
        """``/v1/status``, checked against the schema the OpenAPI document gives it."""
        status = self.get("/v1/status").json()
        assert isinstance(status, dict)
        schema = {**DOCUMENT["components"]["schemas"]["Status"], "components": DOCUMENT["components"]}
        jsonschema.validate(status, schema)
        return status


@pytest.fixture
def service(tmp_path: Path, capabilities: Path) -> Iterator[Callable[..., Service]]:
    """Start ``gitops-sync --watch --http`` on the copied corpus (against ``server``, by default the
    session's etcd); ``ready``: wait for its first cycle."""
    with services(tmp_path) as start_service:

        def start(server: EtcdProcess, *extra: str, ready: bool = True) -> Service:
            port = free_port()
            process = start_service(*watch_args(capabilities, server, "--http", f"127.0.0.1:{port}", *extra))
            running = Service(process, port)
            wait_for(running.answers, timeout=20)
            if ready:
                process.wait_for_log("Sync cycle complete", timeout=20)
            return running

        yield start


def edit_version(capabilities: Path, version: str, capability: str = REGISTRY) -> None:
    manifest = capabilities / f"{capability}.yaml"
    text = manifest.read_text()
    current = next(line for line in text.splitlines() if line.strip().startswith("dc_hasVersion:"))
    manifest.write_text(text.replace(current, current.split(":")[0] + f": {version}", 1))


def image_health_check(running: Service) -> int:
    """The exit code of the Docker image's HEALTHCHECK command, pointed at ``running``."""
    text = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"HEALTHCHECK .*\n?.*CMD (\[.*\])", text).group(1))  # type: ignore[union-attr]
    assert command[0] == "python"
    program = command[2].replace("http://127.0.0.1:8080", running.base)
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, timeout=30, check=False
    ).returncode


def test_ready_once_the_first_cycle_has_finished_and_etcd_answers(
    service: Callable[..., Service], tmp_path: Path
) -> None:
    etcd = EtcdProcess(tmp_path / "late-etcd")  # not started yet: the service comes up first
    running = service(etcd, ready=False)

    assert running.get("/livez").status_code == 200
    assert running.get("/readyz").status_code == 503
    verbose = running.get("/readyz?verbose")
    assert verbose.status_code == 503
    assert "[-]first-cycle not finished yet" in verbose.text
    assert "[-]etcd no answer" in verbose.text
    assert image_health_check(running) != 0

    with etcd:
        wait_for(lambda: running.get("/readyz").status_code == 200, timeout=40)
        assert image_health_check(running) == 0
        verbose = running.get("/readyz?verbose")
        assert verbose.status_code == 200
        assert "[+]first-cycle finished" in verbose.text
        assert "[+]etcd answers" in verbose.text
        assert running.status()["last_cycle"] is not None


def test_metrics_follow_cycles_drift_repairs_and_refused_prunes(
    service: Callable[..., Service],
    etcd_server: EtcdProcess,
    etcd: etcd3.MultiEndpointEtcd3Client,
    capabilities: Path,
) -> None:
    running = service(etcd_server, "--max-prune", "1")
    assert running.metric("gitops_sync_cycles_total", trigger="start", result="applied") == 1
    assert running.metric("gitops_sync_capabilities") == 8
    assert running.metric("gitops_sync_etcd_writes_total", op="create") == 8
    assert running.metric("gitops_sync_is_leader") == 1
    assert running.metric("gitops_sync_manifest_errors") == 0
    assert running.metric("gitops_sync_last_success_timestamp_seconds") > 0
    assert running.metric("gitops_sync_etcd_request_duration_seconds_count", op="transaction") > 0
    assert ("gitops_sync_build_info", frozenset({("version", "0.1.0")})) in running.metrics()
    cycles = running.metric("gitops_sync_cycle_duration_seconds_count")

    edit_version(capabilities, "1.3.0")
    wait_for(lambda: running.metric("gitops_sync_etcd_writes_total", op="update") == 1, timeout=5)
    assert running.metric("gitops_sync_cycles_total", trigger="files", result="applied") >= 1
    assert running.metric("gitops_sync_cycle_duration_seconds_count") > cycles

    etcd.put(f"{PREFIX}{REGISTRY}/version", "0.0.1")  # by hand, outside Git
    wait_for(lambda: running.metric("gitops_sync_drift_restored_total") == 1, timeout=5)
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/version") == b"1.3.0"
    assert running.metric("gitops_sync_cycles_total", trigger="drift", result="applied") >= 1

    assert running.metric("gitops_sync_prune_refused_total", reason="max_prune") == 0
    (capabilities / f"{REGISTRY}.yaml").unlink()
    (capabilities / "chora.platform.conventions.yaml").unlink()  # two gone, more than --max-prune 1
    wait_for(lambda: running.metric("gitops_sync_prune_refused_total", reason="max_prune") >= 1, timeout=5)
    wait_for(lambda: running.metric("gitops_sync_capabilities") == 6, timeout=5)
    assert running.metric("gitops_sync_etcd_writes_total", op="delete") == 0
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"  # kept


def test_status_lists_a_broken_manifest_by_file_and_line_until_it_is_fixed(
    service: Callable[..., Service],
    etcd_server: EtcdProcess,
    etcd: etcd3.MultiEndpointEtcd3Client,
    capabilities: Path,
    cli: Cli,
) -> None:
    running = service(etcd_server)
    manifest = capabilities / f"{REGISTRY}.yaml"
    good = manifest.read_text()
    lines = good.splitlines()
    lines[4] = "  dc_title: [unclosed"
    manifest.write_text("\n".join(lines) + "\n")

    def broken() -> list[dict[str, object]]:
        status = running.status()
        problems = status["problems"]
        assert isinstance(problems, list)
        return [p for p in problems if p["file"] == f"{REGISTRY}.yaml" and p["severity"] == "error"]

    problems = wait_for(broken, timeout=5)
    assert problems[0]["line"] == 6  # where libyaml finds the sequence still open
    assert "not valid YAML" in str(problems[0]["message"])
    assert "started on line 5" in str(problems[0]["message"])
    status = running.status()
    assert status["leader"] is True
    assert isinstance(status["revision"], int)
    cycle = status["last_cycle"]
    assert isinstance(cycle, dict)
    assert cycle["trigger"] == "files"
    assert cycle["errors"] == 1
    assert set(cycle) >= {"started_at", "finished_at", "created", "updated", "deleted", "unchanged"}
    assert value_of(etcd, f"{PREFIX}{REGISTRY}/type") == b"service"  # its last good state stays

    # The same problems, read from etcd by the command line, no server needed.
    recorded = cli("--status", "--output", "json")
    assert recorded.code == 1
    assert json.loads(recorded.out)["problems"] == status["problems"]
    text = cli("--status")
    assert f"{REGISTRY}.yaml:6: error: is not valid YAML" in text.out

    manifest.write_text(good)
    wait_for(lambda: not broken(), timeout=5)
    assert running.status()["last_cycle"]["errors"] == 0  # type: ignore[index]
    fixed = cli("--status", "--output", "json")
    assert fixed.code == 0
    assert not [p for p in json.loads(fixed.out)["problems"] if p["severity"] == "error"]


def test_a_standby_is_ready_and_says_it_does_not_lead(
    service: Callable[..., Service], etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    leader = service(etcd_server)
    standby = service(etcd_server, ready=False)
    standby.process.wait_for_log("Standing by", timeout=20)

    wait_for(lambda: standby.get("/readyz").status_code == 200, timeout=10)
    assert "[+]first-cycle standing by" in standby.get("/readyz?verbose").text
    assert standby.metric("gitops_sync_is_leader") == 0
    assert leader.metric("gitops_sync_is_leader") == 1
    status = standby.status()
    assert status["leader"] is False
    assert isinstance(status["last_cycle"], dict)  # the leader's, as recorded in etcd
    assert status["last_cycle"]["created"] == 8


def test_interval_resyncs_are_counted_as_such(
    service: Callable[..., Service], etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    running = service(etcd_server, "--interval", "0.3")
    wait_for(
        lambda: running.metric("gitops_sync_cycles_total", trigger="interval", result="unchanged") >= 2,
        timeout=10,
    )
    assert running.metric("gitops_sync_cycles_total", trigger="interval", result="failed") == 0
    assert running.status()["last_cycle"]["trigger"] == "interval"  # type: ignore[index]
