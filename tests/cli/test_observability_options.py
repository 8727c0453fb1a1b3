"""The command line's observability options: what they accept, and what one-shot runs leave alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import etcd3
import pytest

from gitops_sync.testing import EtcdProcess
from support import Cli

LONG_RUNNING_ONLY = ("starlette", "uvicorn", "prometheus_client", "httpx", "anyio", "h11")


def test_a_one_shot_sync_imports_no_http_stack(
    etcd_server: EtcdProcess, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    program = (
        "import sys, json\n"
        "from gitops_sync.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"heavy = {LONG_RUNNING_ONLY!r}\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('gitops_sync.http')\n"
        "          or m in ('gitops_sync.service.metrics', 'gitops_sync.service.webhooks')]\n"
        "print(json.dumps({'code': code, 'loaded': sorted(loaded)}))\n"
    )
    for mode in ([], ["--dry-run"], ["--list"], ["--status"]):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                program,
                "--capabilities",
                str(capabilities),
                "--etcd-host",
                etcd_server.host,
                "--etcd-port",
                str(etcd_server.client_port),
                *mode,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "GITOPS_SYNC_HTTP": "127.0.0.1:1"},  # as the image sets it: ignored here
        )
        report = json.loads(result.stdout.splitlines()[-1])
        assert report["code"] == 0, result.stderr
        assert report["loaded"] == [], mode


def test_log_format_json_writes_one_object_a_line(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    (capabilities / "broken.yaml").write_text("metadata:\n  dc_identifier: [\n")
    result = cli("--capabilities", capabilities)
    assert result.code == 1
    entries = [json.loads(line) for line in result.err.splitlines()]
    assert all({"time", "level", "message"} <= entry.keys() for entry in entries)
    synced = [entry for entry in entries if entry["message"].startswith("Synced: ")]
    assert len(synced) == 8
    assert synced[0]["capability"] in synced[0]["message"]
    (complete,) = [entry for entry in entries if entry["message"].startswith("Sync complete")]
    assert complete["level"] == "info"
    assert isinstance(complete["revision"], int)
    (invalid,) = [entry for entry in entries if entry["level"] == "error"]
    assert invalid["file"] == "broken.yaml"
    assert isinstance(invalid["line"], int)

    monkeypatch.setenv("LOG_FORMAT", "xml")
    wrong = cli("--capabilities", capabilities)
    assert wrong.code == 2
    assert "LOG_FORMAT='xml' is not one of text, json" in wrong.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http", "127.0.0.1:8080"], "--http serves a running service: it needs --watch"),
        (["--watch", "--http", "8080"], "--http '8080' is not HOST:PORT"),
        (["--watch", "--http", "127.0.0.1:99999"], "is not HOST:PORT"),
        (["--webhook-url", "http://127.0.0.1:9/"], "--webhook-url needs --webhook-secret-file"),
        (
            ["--webhook-url", "ftp://x/", "--webhook-secret-file", "/nonexistent"],
            "--webhook-secret-file /nonexistent",
        ),
    ],
)
def test_options_that_cannot_work_are_usage_errors(
    cli: Cli, capabilities: Path, args: list[str], message: str
) -> None:
    result = cli("--capabilities", capabilities, *args)
    assert result.code == 2
    assert message in result.err


def test_a_port_in_use_is_a_usage_error(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = cli("--capabilities", capabilities, "--watch", "--http", f"127.0.0.1:{port}")
    assert result.code == 2
    assert f"--http 127.0.0.1:{port}: cannot listen there" in result.err


def test_status_without_a_recorded_sync(cli: Cli, etcd: etcd3.MultiEndpointEtcd3Client) -> None:
    result = cli("--status")
    assert result.code == 1
    assert "No sync status recorded under /chora/sync/" in result.err


def test_status_after_a_clean_sync(
    cli: Cli, capabilities: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    assert cli("--capabilities", capabilities).code == 0
    text = cli("--status")
    assert text.code == 0
    assert "last cycle: start" in text.out
    assert "8 created, 0 updated, 0 deleted" in text.out
    status = json.loads(cli("--status", "--output", "json").out)
    assert set(status) == {"leader", "revision", "commit", "last_cycle", "problems", "problem_count"}
    assert status["leader"] is False  # no replica leads: a one-shot sync does not
    assert status["last_cycle"]["created"] == 8
