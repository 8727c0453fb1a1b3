"""How long an edit takes to reach etcd while a member of a 3-member cluster fails (issue 14).

    .venv/bin/python bench/failover.py [--trials 5] [--bound 2.5]

It starts a 3-member etcd cluster on loopback (``gitops_sync.testing.EtcdCluster``) and
``gitops-sync --watch`` on the project's example manifests as a subprocess, given all three members
(the first one named first). Then, ``--trials`` times, it SIGKILLs the raft leader, and then it
SIGSTOPs each member in turn; each time it edits a manifest at once and times how long until a
member that is still up holds the new version. The member is restarted (or thawed) and the cluster
has a leader again before the next trial.

It prints each edit's time and a summary, and exits 1 if any edit took longer than ``--bound``
seconds, or if the service logged an error or stopped. Everything it starts listens on 127.0.0.1
and is stopped at the end, also on error or Ctrl+C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import corpus

from gitops_sync.testing import EtcdCluster, EtcdProcess, raft_leader, seconds_until_held, wait_for

ROOT: Final = Path(__file__).resolve().parents[1]
BIN: Final = Path(sys.executable).parent
EXAMPLES: Final = ROOT / "capabilities"
EDITED: Final = "chora.platform.config_store"
"""The manifest each trial edits: other examples require it, so a sync of it is a real one."""
KEY: Final = f"/chora/capabilities/{EDITED}/version"
GIVE_UP: Final = 15.0
"""Seconds after which an edit counts as lost (it is then reported, not waited for longer)."""


@contextmanager
def watching(directory: Path, cluster: EtcdCluster, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``gitops-sync --watch`` on ``directory`` and all of ``cluster``, its log in ``log``; stopped
    (SIGTERM, then SIGKILL) on leaving."""
    with log.open("wb") as sink:
        service = subprocess.Popen(  # noqa: S603 - the project's own command, fixed arguments
            [
                str(BIN / "gitops-sync"),
                "--capabilities",
                str(directory),
                "--watch",
                "--etcd-endpoints",
                cluster.endpoints,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "info"},
        )
    try:
        wait_for(lambda: "Sync cycle complete" in log.read_text() or service.poll() is not None, timeout=30)
        if service.poll() is not None:
            raise RuntimeError(f"gitops-sync exited with {service.returncode}; see {log}")
        yield service
    finally:
        if service.poll() is None:
            service.terminate()
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()


def trial(
    cluster: EtcdCluster, manifest: Path, patch: int, how: str, chosen: EtcdProcess | None
) -> tuple[str, float]:
    """Fail ``chosen`` (None: the raft leader) by ``how`` (kill or freeze), edit, time the edit,
    recover the member and wait for a leader; returns a label and the seconds."""
    leader = raft_leader(cluster)
    member = chosen or leader
    label = f"{how:6} {member.name} ({'leader' if member is leader else 'follower'})"
    if how == "kill":
        member.kill()
    else:
        member.freeze()
    try:
        seconds = seconds_until_held(
            cluster,
            KEY,
            lambda: corpus.set_patch(manifest, patch).encode(),
            excluding=member,
            timeout=GIVE_UP,
        )
    except TimeoutError:
        seconds = float("inf")  # lost: reported, not waited for longer
    finally:
        if how == "kill":
            member.start()
        else:
            member.thaw()
            member.wait_healthy(20)
    raft_leader(cluster)
    return label, seconds


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--trials", type=int, default=5, help="SIGKILLs of the raft leader (default: 5)")
    parser.add_argument("--bound", type=float, default=2.5, help="seconds an edit may take (default: 2.5)")
    options = parser.parse_args(argv)
    if options.trials < 0 or not 0 < options.bound < GIVE_UP:
        parser.error(f"--trials must be 0 or more and --bound between 0 and {GIVE_UP:g}")

    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average {load()}")
    times: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="failover-") as work_dir:
        work = Path(work_dir)
        directory = work / "capabilities"
        shutil.copytree(EXAMPLES, directory)
        manifest = directory / f"{EDITED}.yaml"
        log = work / "gitops-sync.log"
        with EtcdCluster(work / "cluster") as cluster, watching(directory, cluster, log) as service:
            plan = [("kill", None)] * options.trials + [("freeze", member) for member in cluster.members]
            for number, (how, chosen) in enumerate(plan, start=1):
                label, seconds = trial(cluster, manifest, 100 + number, how, chosen)
                times.append((label, seconds))
                print(f"{number:3}. {label}: {seconds:.2f} s", flush=True)
            text = log.read_text()
            stopped = service.poll()
        errors = [line for line in text.splitlines() if " - ERROR - " in line or "Traceback" in line]

    values = [seconds for _, seconds in times]
    slow = [label for label, seconds in times if seconds > options.bound]
    if values:
        print(
            f"{len(values)} edits: min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
            f"max {max(values):.2f} s; {len(slow)} over {options.bound:g} s; load average {load()}"
        )
    for line in errors:
        print(f"service: {line}")
    if stopped is not None:
        print(f"service: exited with {stopped} during the trials")
    return 1 if slow or errors or stopped is not None else 0


if __name__ == "__main__":
    sys.exit(main())
