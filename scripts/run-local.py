#!/usr/bin/env python3
"""``make run``: a local etcd on 127.0.0.1:2379 (unless one already listens there), then the sync of
``capabilities/`` in watch mode. Ctrl+C, SIGTERM or SIGHUP (a closed terminal) stops the sync, then
the etcd this script started.

``ETCD_PORT`` and ``ETCD_PEER_PORT`` move etcd off 2379 and 2380, ``ETCD_DATA_DIR`` off ``.local/etcd``
(the tests use them); ``ETCD_BIN`` names the etcd binary. Any arguments go to ``gitops-sync``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import FrameType

try:
    from gitops_sync.testing import KNOWN_GOOD_ETCD, EtcdProcess, etcd_binary, etcd_version, is_listening
except ModuleNotFoundError as missing:
    sys.exit(f"run-local: {missing.name} is not installed: run `make run` (it installs into .venv first)")

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Refused(Exception):
    """Something stands in the way; the message says what and what to do."""


def main() -> int:
    # Until the sync runs, any of these ends this script, through the `finally` that stops etcd.
    for signum in STOPPING:
        signal.signal(signum, _stop_now)
    etcd = None
    try:
        client_port = _port("ETCD_PORT", 2379)
        peer_port = _port("ETCD_PEER_PORT", 2380)
        if is_listening(HOST, client_port):
            problem = _not_etcd(client_port)
            if problem:
                raise Refused(
                    f"something listens on {HOST}:{client_port}, but it is not an etcd ({problem}); stop "
                    "it, or set ETCD_PORT (and ETCD_PEER_PORT) to free ports"
                )
            _say(f"Using the etcd already listening on {HOST}:{client_port}")
        else:
            etcd = EtcdProcess(_data_dir(), client_port=client_port, peer_port=peer_port)
            _start(etcd)
        return _sync(client_port)
    except Refused as refused:
        _say(f"run-local: {refused}")
        return 1
    finally:
        if etcd is not None and etcd.running:
            etcd.stop()
            _say("Stopped the local etcd")


def _start(etcd: EtcdProcess) -> None:
    """Start the local etcd, or say why it cannot start."""
    if is_listening(HOST, etcd.peer_port):
        raise Refused(
            f"port {etcd.peer_port} on {HOST}, which the local etcd needs for its peers, is in use by "
            "another process; stop it, or set ETCD_PEER_PORT to a free port"
        )
    try:
        binary = etcd_binary()
    except FileNotFoundError as exc:
        raise Refused(str(exc)) from None
    if not os.access(binary, os.X_OK):
        raise Refused(f"{binary} is not an executable etcd binary; fix ETCD_BIN or run `make install`")
    version = etcd_version(binary)
    if (0,) < version < KNOWN_GOOD_ETCD:
        _say(
            f"Note: this etcd is {'.'.join(map(str, version))}, with a data-inconsistency bug "
            f"fixed in 3.5.3: fine to try things out ({_shown(binary)}; README: etcd version)"
        )
    _say(f"Starting etcd on {HOST}:{etcd.client_port} (data and log in {_shown(etcd.data_dir)})")
    try:
        etcd.start()
    except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        raise Refused(f"etcd did not start: {exc}") from None


def _data_dir() -> Path:
    return Path(os.environ.get("ETCD_DATA_DIR") or ROOT / ".local" / "etcd")


def _sync(client_port: int) -> int:
    """Run the sync in watch mode until it stops; its exit code."""
    command = [
        sys.executable,
        "-m",
        "gitops_sync",
        "--capabilities",
        "capabilities",  # from the repository's root: logged as the README shows it
        "--etcd-host",
        HOST,
        "--etcd-port",
        str(client_port),
        "--watch",
        *sys.argv[1:],
    ]
    # Ctrl+C and a closed terminal reach the sync too (same process group) and stop it; SIGTERM or
    # SIGHUP sent to this script alone is passed on as SIGTERM. This script only waits, then stops
    # the etcd it started, which runs in its own session so that none of these reach it first.
    child = subprocess.Popen(command, cwd=ROOT)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGINT and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    for signum in STOPPING:
        signal.signal(signum, forward)
    code = child.wait()
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def _stop_now(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _port(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Refused(f"{name}={text!r} is not a port number (1 to 65535)")
    return int(text)


def _not_etcd(port: int) -> str | None:
    """Why whatever listens on ``port`` is not a healthy etcd, or None if it is one."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as response:
            health = json.loads(response.read(4096))
    except (OSError, ValueError) as exc:
        return f"GET /health: {exc}"
    if not isinstance(health, dict) or "health" not in health:
        return "GET /health does not answer as etcd does"
    if health["health"] != "true":
        return f"it says it is not healthy: {health}"
    return None


def _shown(path: Path) -> str:
    """A path inside the repository as the README shows it, relative; others whole."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _say(message: str) -> None:
    """To the terminal, which may be gone (SIGHUP): then there is no one to tell."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
