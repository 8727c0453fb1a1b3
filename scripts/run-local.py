#!/usr/bin/env python3
"""``make run``: a local etcd on 127.0.0.1:2379 (unless one already listens there), then the sync of
``examples/capabilities`` in watch mode. Ctrl+C stops the sync, then the etcd this script started."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from gitops_sync.testing import EtcdProcess, is_listening

ROOT = Path(__file__).resolve().parent.parent
HOST, PORT = "127.0.0.1", 2379


def main() -> int:
    etcd = None
    if is_listening(HOST, PORT):
        print(f"Using the etcd already listening on {HOST}:{PORT}", file=sys.stderr)
    else:
        etcd = EtcdProcess(ROOT / ".local" / "etcd", client_port=PORT, peer_port=PORT + 1)
        print(f"Starting etcd on {HOST}:{PORT} (data and log in {etcd.data_dir})", file=sys.stderr)
        etcd.start()
    command = [
        sys.executable,
        "-m",
        "gitops_sync",
        "--capabilities",
        str(ROOT / "examples" / "capabilities"),
        "--etcd-host",
        HOST,
        "--etcd-port",
        str(PORT),
        "--watch",
        *sys.argv[1:],
    ]
    child = subprocess.Popen(command)
    # Ctrl+C reaches the sync too (same process group) and stops it after its cycle; forward
    # SIGTERM likewise. This script only waits, then stops the etcd it started.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    try:
        return child.wait()
    finally:
        if etcd is not None:
            etcd.stop()
            print("Stopped the local etcd", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
