"""The Docker set-up of the seed. No Docker engine runs here, so check what can be checked without one:
the compose file's shape, and that every command the containers run is one the CLI accepts."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from gitops_sync.cli import build_parser, settings_from
from support import ROOT

COMPOSE = ROOT / "infrastructure" / "etcd" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def test_compose_runs_a_three_member_cluster_with_health_checks() -> None:
    services = compose()["services"]
    members = ["etcd1", "etcd2", "etcd3"]
    for name in members:
        etcd = services[name]
        flags = dict(arg.split("=", 1) for arg in etcd["command"][1:])
        assert flags["--name"] == name
        assert flags["--initial-cluster"] == ",".join(f"{m}=http://{m}:2380" for m in members)
        assert flags["--advertise-client-urls"] == f"http://{name}:2379"
        assert "endpoint" in etcd["healthcheck"]["test"]
    assert services["etcd1"]["ports"] == ["127.0.0.1:2379:2379"]


def test_compose_starts_the_sync_after_a_healthy_cluster_with_options_the_cli_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sync = compose()["services"]["gitops-sync"]
    assert sync["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("etcd1", "etcd2", "etcd3")
    }
    monkeypatch.setenv("ETCD_ENDPOINTS", sync["environment"]["ETCD_ENDPOINTS"])
    options = build_parser().parse_args(sync["command"])
    assert options.watch
    assert settings_from(options).etcd.endpoints == (("etcd1", 2379), ("etcd2", 2379), ("etcd3", 2379))
    assert str(options.capabilities) == "/app/capabilities"
    assert any(volume.endswith(":/app/capabilities:ro") for volume in sync["volumes"])


def test_dockerfile_entrypoint_command_and_health_check_use_real_options() -> None:
    text = DOCKERFILE.read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = json.loads(re.search(r"HEALTHCHECK .*\n?.*CMD (\[.*\])", text).group(1))  # type: ignore[union-attr]
    serving = re.search(r"GITOPS_SYNC_HTTP=(\S+)", text).group(1)  # type: ignore[union-attr]
    assert entrypoint == ["gitops-sync"]
    options = build_parser().parse_args(command)
    assert options.watch
    assert health[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{serving.rpartition(':')[2]}/readyz" in health[2]
    assert re.search(rf"^EXPOSE {serving.rpartition(':')[2]}$", text, re.M)


def test_compose_checks_the_sync_s_readiness_on_the_port_it_serves() -> None:
    sync = compose()["services"]["gitops-sync"]
    port = sync["environment"]["GITOPS_SYNC_HTTP"].rpartition(":")[2]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(sync["healthcheck"]["test"])
    assert sync["ports"] == [f"127.0.0.1:{port}:{port}"]
