"""Benchmark gitops-sync at 48, 1,000 and 10,000 capabilities against a baseline and a floor.

Issue 5: how fast and how lean a sync is, each size against its own throwaway etcd on loopback.

    .venv/bin/python bench/run.py [--sizes 48,1000,10000] [--runs N] [--out bench/results/latest.json]
    make bench ARGS="--sizes 50000"

For each size it generates the manifests (the real 48-file chora-base corpus for 48 when it is found:
`$CHORA_BASE_CORPUS` or ../shared, see bench/corpus.py), starts its own etcd and
measures, as medians over the runs:

- cold sync into an empty etcd, and the warm restart right after it (nothing changed), each as the
  ``gitops-sync`` command a user runs, process start included; and a warm restart after a write to
  an unrelated key, which the service cannot tell from a write that matters;
- a no-op watch cycle, in process: after a full cycle, one file is touched (new timestamps, same
  content) and ``Engine.run_cycle(Trigger.files_changed({name}, registry_quiet=True))`` runs, as the
  watch loop runs it on that file event; and the ``--interval`` resync with nothing changed,
  ``Engine.run_cycle(Trigger.full())``, which reads every file and all of etcd;
- in watch mode, one edited file until its new version is readable in etcd (p50, p99), and 100
  files edited at once until all are; and the PSS of the watching process once settled (with
  ``--http``: serving HTTP and sending a webhook per edit to a receiver in this process);
- with ``--api``: the Registry API of watch mode with ``--http``, under 50 concurrent clients: pages
  of ``GET /v1/capabilities?limit=100`` (random cursors), the same with ``type=``/``q=`` filters,
  and ``GET /v1/capabilities/{id}`` (random ids), p50 and p99; and the watching process's PSS
  before, during and after the load;
- the peak PSS of a cold sync, summed over its process tree (one extra, sampled run);
- the baseline (``bench/baseline.py``: the seed's script) and the floor (``bench/floor.py``: the
  same keys in bare 128-put transactions), cold, as processes of their own; above 10,000
  capabilities the baseline is left out (it would take minutes: one put at a time).

It prints a table and writes every number, with each run's samples, as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.server
import inspect
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import api_load
import corpus
import httpx
import keyspace
import processes

from gitops_sync.testing import EtcdProcess, free_port

BENCH: Final = Path(__file__).resolve().parent
ROOT: Final = BENCH.parent
DEFAULT_OUT: Final = BENCH / "results" / "latest.json"
BIN: Final = Path(sys.executable).parent
LARGE: Final = 10_000
"""From this size on: fewer runs, fewer edits and one baseline run (its pure-Python parse alone
takes ~17 s at 10,000)."""
MEDIUM: Final = 1000
BASELINE_RUNS: Final = 3
"""At most this many baseline runs from 1,000 on: it takes ~7 s at 1,000 (4,000 single puts)."""
BASELINE_UP_TO: Final = LARGE
"""The largest size the baseline runs at: at 50,000 it would take about six minutes."""
NOOP_CALLS: Final = 20
NOOP_BUDGET: Final = 5.0
"""Seconds the no-op cycles may take in all; at least 5 calls are made regardless."""
EDIT_BATCH: Final = 100
UNRELATED_KEY: Final = "/bench/unrelated"
"""Written before the second warm restart: any write to etcd means a restart cannot trust the last
sync's mark, and must have the records vouch for every capability."""
NOISE_SHARE: Final = 0.1
"""Other processes using more than this share of one CPU while a size is measured make it noisy."""
EDIT_BUDGET: Final = 30.0
"""Seconds the single edits may take in all; at least 10 are made regardless."""
VISIBLE_TIMEOUT: Final = 60.0
POLL_EVERY: Final = 0.002
API_CLIENTS: Final = 50
API_REQUESTS: Final = 2_000
"""Requests per load (each of the 50 clients sends 40, one after another)."""
API_PAGE: Final = 100
API_IDS: Final = 1_000
"""Distinct ids the one-id GETs choose from at random (all of them below this many)."""
API_FILTERS: Final = ("type=service", "type=pattern", "q=registry", "q=security", "q=no-such-text")
"""Filtered lists: a type (half the capabilities each), a word in some ids and titles, a domain
(one in ten), and text no capability holds, which reads every entry to answer an empty page."""
API_READY_TIMEOUT: Final = 180.0
"""Seconds watch mode may take until ``/v1/capabilities`` lists every capability."""
PSS_SAMPLE_EVERY: Final = 0.1

log = logging.getLogger("bench")


class CheckFailed(Exception):
    """A run did not do what it must (wrong exit code, keys missing): its time means nothing."""


@dataclass(frozen=True, slots=True)
class Plan:
    size: int
    runs: int
    edits: int
    batch_runs: int
    baseline_runs: int
    real_corpus: bool
    http: bool = False
    """Watch mode serves ``--http`` and sends webhooks (to :func:`webhook_receiver`)."""
    api: bool = False
    """The Registry API is measured under load (a watch-mode process of its own, with ``--http``)."""


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    # Stopped by SIGTERM (kill, pkill) as by Ctrl+C: unwind, so every etcd it started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line a request would load the clients
    compile_bytecode()
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": metadata(options), "sizes": {}}
    before = processes.CpuUse.now()
    time.sleep(1.0)
    if (busy := processes.CpuUse.now().others_since(before)) > NOISE_SHARE:
        log.warning("other processes use %.0f%% of a CPU: the numbers will be noisy", busy * 100)
    failed = False
    for size in options.sizes:
        plan = plan_for(size, options)
        log.info("=== %d capabilities (%d runs) ===", size, plan.runs)
        size_started = time.perf_counter()
        cpu_before = processes.CpuUse.now()
        try:
            result = bench_size(plan)
        except CheckFailed as exc:
            log.error("%d capabilities: %s", size, exc)
            result = {"size": size, "error": str(exc)}
            failed = True
        except Exception as exc:  # an etcd or OS error: report it, then measure the next size
            log.exception("%d capabilities: %s", size, exc)
            result = {"size": size, "error": str(exc)}
            failed = True
        result["seconds"] = round(time.perf_counter() - size_started, 1)
        others = processes.CpuUse.now().others_since(cpu_before)
        result["other_processes_cpu_s"] = round(others, 1)
        if others > NOISE_SHARE * result["seconds"]:
            result.setdefault("notes", []).append(
                f"other processes used {others:.0f} CPU-s during these {result['seconds']:.0f} s: noisy"
            )
        results["sizes"][str(size)] = result
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nAll numbers: {options.out} ({results['meta']['seconds']:.0f} s in all)")
    return 1 if failed else 0


def compile_bytecode() -> None:
    """Compile the service's modules, as installing it with pip does. A process that may not write
    bytecode (``PYTHONDONTWRITEBYTECODE``, set on this machine) would otherwise compile all of them
    again at every start, 60 ms a start, which no installed service pays."""
    import compileall  # noqa: PLC0415

    import gitops_sync  # noqa: PLC0415

    compileall.compile_dir(Path(gitops_sync.__file__).parent, quiet=1)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[48, 1000, 10_000],
        help="capability counts, comma-separated (default: 48,1000,10000)",
    )
    parser.add_argument(
        "--runs", type=int, help="runs per measurement (default: 5, and 3 from 10,000 capabilities)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default: %(default)s)")
    parser.add_argument(
        "--generated-48", action="store_true", help="generate 48 manifests instead of copying the real corpus"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the seed's script: for comparing two commits, which share it",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="watch mode with --http on and a --webhook-url (a receiver in this process), for their cost",
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help=f"the Registry API in watch mode with --http under {API_CLIENTS} clients at once, and memory",
    )
    return parser.parse_args(argv)


def plan_for(size: int, options: argparse.Namespace) -> Plan:
    large = size >= LARGE
    runs = options.runs or (3 if large else 5)
    return Plan(
        size=size,
        runs=runs,
        edits=20 if large else 30,
        batch_runs=runs,
        baseline_runs=0 if options.no_baseline else baseline_runs(size, runs),
        real_corpus=size == 48 and not options.generated_48 and corpus.REAL_CORPUS is not None,
        http=options.http,
        api=options.api,
    )


def baseline_runs(size: int, runs: int) -> int:
    """Runs of the baseline: one from 10,000 capabilities and none above; at most 3 from 1,000."""
    if size > BASELINE_UP_TO:
        return 0
    if size >= LARGE:
        return 1
    return runs if size < MEDIUM else min(runs, BASELINE_RUNS)


def bench_size(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{plan.size}-") as temporary:
        work = Path(temporary)
        manifests = (
            corpus.copy_real(work / "capabilities")
            if plan.real_corpus
            else corpus.generate(work / "capabilities", plan.size)
        )
        with running_etcd(work / "etcd") as etcd:
            client = keyspace.connect(etcd.client_port)
            try:
                return Session(plan, manifests, etcd.client_port, client, work).measure()
            finally:
                client.close()


@contextmanager
def running_etcd(data_dir: Path) -> Iterator[EtcdProcess]:
    etcd = EtcdProcess(data_dir)
    try:
        yield etcd.start()
    finally:
        etcd.stop()


class Session:
    """Every measurement at one size, against one etcd."""

    def __init__(self, plan: Plan, manifests: corpus.Corpus, port: int, client: Any, work: Path) -> None:
        self.plan = plan
        self.corpus = manifests
        self.port = port
        self.client = client
        self.work = work
        self.rng = random.Random(plan.size)  # noqa: S311 - reproducible choices, not secrets
        self.patch = 1000
        """Each edit sets a new patch level, so every edit changes the version."""
        self.notes: list[str] = []
        self.http_port = 0
        """Where watch mode serves HTTP, with ``--http``."""
        self.env = processes.environment(LOG_LEVEL="info")
        self.sync_command = [
            str(BIN / "gitops-sync"),
            "--capabilities",
            str(manifests.directory),
            "--etcd-host",
            keyspace.HOST,
            "--etcd-port",
            str(port),
        ]

    def measure(self) -> dict[str, Any]:
        plan, manifests = self.plan, self.corpus
        result: dict[str, Any] = {
            "size": plan.size,
            "manifests": manifests.count,
            "corpus": "real (chora-base)" if manifests.real else "generated",
            "corpus_bytes": sum(path.stat().st_size for path in manifests.directory.iterdir()),
            "runs": plan.runs,
            "etcd_version": str(self.client.status().version),
        }
        log.info("peak memory of a cold sync (one sampled run, which also warms the caches)")
        keyspace.wipe(self.client)
        sampled = self.cold_sync(sample=True)
        result["peak_pss_mb"] = round((sampled.peak_pss_kb or 0) / 1024, 1)
        result["peak_pss_kb_per_capability"] = round((sampled.peak_pss_kb or 0) / manifests.count, 2)
        result["sampled_cold_s"] = round(sampled.seconds, 3)
        entries, _ = keyspace.read(self.client)
        keys_file = self.work / "keys.bin"
        keyspace.save(keys_file, entries)
        result["keys_written_by_sync"] = len(entries)

        log.info(
            "cold sync, warm restart, and the floor (the same %d keys in bare 128-put transactions), %d runs",
            len(entries),
            plan.runs,
        )
        cold: list[float] = []
        floor: list[float] = []
        warm: list[float] = []
        warm_after_write: list[float] = []
        rewritten: list[int] = []
        for _ in range(plan.runs):
            # Each cold run right after a floor run: etcd's speed drifts, and the ratio of the two
            # is what counts.
            floor.append(self.floor(keys_file, len(entries)))
            keyspace.wipe(self.client)
            cold.append(self.cold_sync().seconds)
            seconds, keys = self.warm_restart()
            warm.append(seconds)
            rewritten.append(keys)
            # Any write to etcd ends the last sync's mark: then the records vouch, file by file.
            self.client.put(UNRELATED_KEY, "a write outside the registry")
            seconds, keys = self.warm_restart()
            warm_after_write.append(seconds)
            rewritten.append(keys)
            self.client.delete(UNRELATED_KEY)
        result["cold_s"] = summary(cold)
        result["warm_s"] = summary(warm)
        result["warm_after_write_s"] = summary(warm_after_write)
        result["warm_keys_rewritten"] = max(rewritten)
        result["floor_s"] = summary(floor)

        log.info("no-op watch cycle and --interval resync, in process")
        noop, resync = self.noop_cycles()
        result["noop_cycle_ms"] = summary([s * 1000 for s in noop], digits=2)
        result["resync_ms"] = summary([s * 1000 for s in resync], digits=1)

        log.info(
            "watch mode: %d single edits, %d x %d edits at once", plan.edits, plan.batch_runs, EDIT_BATCH
        )
        result.update(self.watch_mode())

        if plan.api:
            log.info(
                "Registry API: %d clients, %d requests a load, in watch mode with --http",
                API_CLIENTS,
                API_REQUESTS,
            )
            result["api"] = self.registry_api()

        result.update(self.baselines(result["cold_s"]["median"]))
        result["ours_over_floor"] = round(result["cold_s"]["median"] / result["floor_s"]["median"], 2)
        result["notes"] = self.notes
        return result

    # -- the measurements ------------------------------------------------------------------------

    def cold_sync(self, *, sample: bool = False) -> processes.Finished:
        """The CLI into an empty etcd; it must sync every manifest."""
        finished = processes.run(self.sync_command, env=self.env, sample=sample)
        counts = finished.counts
        allowed = (0, 1) if self.corpus.real else (0,)
        if finished.returncode not in allowed or counts is None or counts[0] != self.corpus.count:
            raise CheckFailed(
                f"cold sync exited {finished.returncode}, counts {counts} "
                f"(expected {self.corpus.count} synced):\n{finished.tail()}"
            )
        stored = keyspace.count(self.client, keyspace.CAPABILITY_PREFIX)
        if stored != 4 * self.corpus.count:
            raise CheckFailed(
                f"after a cold sync etcd holds {stored} capability keys, not {4 * self.corpus.count}"
            )
        return finished

    def warm_restart(self) -> tuple[float, int]:
        """The CLI again, nothing changed: it must sync nothing; returns the time and how many
        capability keys it wrote anyway."""
        before = keyspace.revision(self.client)
        finished = processes.run(self.sync_command, env=self.env)
        counts = finished.counts
        allowed = (0, 1) if self.corpus.real else (0,)
        if finished.returncode not in allowed or counts is None:
            raise CheckFailed(f"warm restart exited {finished.returncode}:\n{finished.tail()}")
        rewritten = len(keyspace.modified_after(self.client, keyspace.CAPABILITY_PREFIX, before))
        if counts[0] != 0 or rewritten:
            self.note(f"warm restart: {counts[0]} synced, {rewritten} capability keys rewritten")
        return finished.seconds, rewritten

    def noop_cycles(self) -> tuple[list[float], list[float]]:
        """Watch-mode cycles in this process with nothing to do, after one full cycle: woken by a
        file event for a file touched but not changed, with a quiet registry (nobody writes here);
        and the ``--interval`` resync, which looks at every file and reads all of etcd."""
        settings, store = service_objects(self.sync_command[1:])
        with quiet_service_log():
            try:
                on_file_event, resync = in_process_cycles(settings, store)
                noop = self.touch_and_time(on_file_event, NOOP_CALLS)
                resync_times = self.touch_and_time(lambda _path: resync(), NOOP_CALLS // 4)
            finally:
                store.close()
        return noop, resync_times

    def touch_and_time(self, cycle: Callable[[Path], Any], calls: int) -> list[float]:
        """Seconds each of ``calls`` cycles takes after a random manifest is touched (new timestamps,
        same content); fewer once they took :data:`NOOP_BUDGET` seconds in all, but at least 5."""
        times: list[float] = []
        deadline = time.perf_counter() + NOOP_BUDGET
        for _ in range(calls):
            path = self.rng.choice(self.corpus.files)
            os.utime(path)
            started = time.perf_counter()
            report = cycle(path)
            times.append(time.perf_counter() - started)
            if report.synced:
                self.note(f"no-op cycle synced {report.synced}")
            if time.perf_counter() > deadline and len(times) >= 5:
                self.note(f"no-op cycles: {len(times)} calls (time budget)")
                break
        return times

    def watch_mode(self) -> dict[str, Any]:
        single, batch, watch_pss_kb = self.edits_in_watch_mode()
        return {
            "edit_ms": {
                "p50": round(percentile(single, 0.50) * 1000, 1),
                "p99": round(percentile(single, 0.99) * 1000, 1),
                "samples": [round(s * 1000, 1) for s in single],
            },
            "edit_batch": min(EDIT_BATCH, len(self.corpus.files)),
            "edit_batch_s": summary(batch),
            "watch_http": self.plan.http,
            "watch_pss_mb": round(watch_pss_kb / 1024, 1),
        }

    def edits_in_watch_mode(self) -> tuple[list[float], list[float], int]:
        """Seconds from writing files to their new versions being readable in etcd; and the
        watching process's PSS (kB) once its first cycles are done."""
        with contextlib.ExitStack() as stack:
            command = [*self.sync_command, "--watch", "--interval", "3600"]
            if self.plan.http:
                command += self.http_options(stack.enter_context(webhook_receiver()))
            single, batch, pss = self.edit_watching(command)
        return single, batch, pss

    def http_options(self, receiver: str) -> list[str]:
        secret = self.work / "webhook-secret"
        secret.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode())
        self.http_port = free_port()
        return [
            "--http",
            f"127.0.0.1:{self.http_port}",
            "--webhook-url",
            receiver,
            "--webhook-secret-file",
            str(secret),
        ]

    def edit_watching(self, command: list[str]) -> tuple[list[float], list[float], int]:
        single: list[float] = []
        batch: list[float] = []
        with processes.Watcher(command, env=self.env) as watcher:
            if not watcher.wait_cycles(1, timeout=120):
                raise CheckFailed(f"watch mode did not complete a cycle:\n{watcher.tail()}")
            watcher.wait_cycles(2, timeout=3)  # the check it makes once its file watch is armed
            if self.plan.http:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=5) as ready:
                    if ready.status != 200:
                        raise CheckFailed(f"/readyz answered {ready.status}:\n{watcher.tail()}")
            pss = processes.tree_pss_kb(watcher.pid)
            deadline = time.perf_counter() + EDIT_BUDGET
            for _ in range(self.plan.edits):
                single.append(self.edit(watcher, self.rng.sample(self.corpus.files, 1)))
                if time.perf_counter() > deadline and len(single) >= 10:
                    self.note(f"single edits: {len(single)} (time budget)")
                    break
            for _ in range(self.plan.batch_runs):
                chosen = self.rng.sample(self.corpus.files, min(EDIT_BATCH, len(self.corpus.files)))
                batch.append(self.edit(watcher, chosen))
        return single, batch, pss

    def edit(self, watcher: processes.Watcher, paths: Sequence[Path]) -> float:
        """Give each file a new version; the seconds until etcd shows all of them."""
        cycles = watcher.cycles
        self.patch += 1
        started = time.perf_counter()
        expected = {
            f"{keyspace.CAPABILITY_PREFIX}{self.corpus.ids[path]}/version": corpus.set_patch(path, self.patch)
            for path in paths
        }
        seconds = wait_visible(self.client, expected, VISIBLE_TIMEOUT, started)
        if seconds is None:
            raise CheckFailed(
                f"{len(paths)} edit(s) not visible after {VISIBLE_TIMEOUT} s:\n{watcher.tail()}"
            )
        # Let the cycle that wrote them finish, so the next edit is measured on its own.
        watcher.wait_cycles(cycles + 1, timeout=VISIBLE_TIMEOUT)
        time.sleep(self.rng.uniform(0.05, 0.15))
        return seconds

    def registry_api(self) -> dict[str, Any]:
        """The Registry API under load, in a watch-mode process of its own serving ``--http``: once it
        lists every capability, pages, filtered pages and one-id GETs, each loaded in turn; and the
        process's PSS (with its descendants) before, during and after the loads."""
        port = free_port()
        base = f"http://{keyspace.HOST}:{port}"
        command = [*self.sync_command, "--watch", "--interval", "3600", "--http", f"{keyspace.HOST}:{port}"]
        with processes.Watcher(command, env=self.env) as watcher:
            started = time.perf_counter()
            cursors, ids = self.api_pages(base, watcher)
            result: dict[str, Any] = {
                "clients": API_CLIENTS,
                "requests": API_REQUESTS,
                "listed_after_s": round(time.perf_counter() - started, 2),
                "pages": len(cursors) + 1,
                "filters": list(API_FILTERS),
            }
            pss_before = processes.tree_pss_kb(watcher.pid)
            pages = [f"/v1/capabilities?limit={API_PAGE}"]
            pages += [f"/v1/capabilities?limit={API_PAGE}&cursor={cursor}" for cursor in cursors]
            filtered = [f"/v1/capabilities?limit={API_PAGE}&{query}" for query in API_FILTERS]
            chosen = self.rng.sample(ids, min(API_IDS, len(ids)))
            one_id = [f"/v1/capabilities/{capability_id}" for capability_id in chosen]
            with processes.PeakPss(watcher.pid, PSS_SAMPLE_EVERY) as peak:
                for name, paths in (("list", pages), ("filtered", filtered), ("one_id", one_id)):
                    result[name] = self.api_load(base, paths, watcher.pid)
            result["pss_mb"] = {
                "before": round(pss_before / 1024, 1),
                "peak": round(peak.kb / 1024, 1),
                "after": round(processes.tree_pss_kb(watcher.pid) / 1024, 1),
            }
            if watcher.stop() not in (0, -signal.SIGTERM):
                self.note(f"API watch mode exited badly:\n{watcher.tail()}")
        return result

    def api_pages(self, base: str, watcher: processes.Watcher) -> tuple[list[str], list[str]]:
        """Page through ``/v1/capabilities`` until it lists every capability, each once; the cursors
        of its pages after the first, and the ids."""
        deadline = time.monotonic() + API_READY_TIMEOUT
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                listed = list_all(client)
                if listed is not None:
                    cursors, ids = listed
                    if len(ids) != len(set(ids)):
                        raise CheckFailed(f"/v1/capabilities listed {len(ids) - len(set(ids))} ids twice")
                    if len(ids) == self.corpus.count and set(self.corpus.ids.values()) <= set(ids):
                        return cursors, ids
                if time.monotonic() > deadline:
                    found = "nothing" if listed is None else f"{len(listed[1])} capabilities"
                    raise CheckFailed(
                        f"/v1/capabilities listed {found} after {API_READY_TIMEOUT:.0f} s, "
                        f"not {self.corpus.count}:\n{watcher.tail()}"
                    )
                time.sleep(0.2)

    def api_load(self, base: str, paths: Sequence[str], pid: int) -> dict[str, Any]:
        """One load of ``paths`` (chosen at random): latencies, throughput, and the CPU the service
        and this harness (the clients) used for it."""
        server_before = processes.tree_cpu_seconds(pid)
        ours_before = os.times()
        started = time.perf_counter()
        try:
            by_path = api_load.measure_by_path(base, paths, clients=API_CLIENTS, requests=API_REQUESTS)
        except api_load.LoadError as exc:
            raise CheckFailed(str(exc)) from exc
        latencies = [seconds for each in by_path.values() for seconds in each]
        seconds = time.perf_counter() - started
        ours_after = os.times()
        server = processes.tree_cpu_seconds(pid) - server_before
        clients = (ours_after.user + ours_after.system) - (ours_before.user + ours_before.system)
        return {
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
            "answered": len(latencies),
            "seconds": round(seconds, 2),
            "per_second": round(len(latencies) / seconds),
            "service_cpu_ms_a_request": round(server * 1000 / len(latencies), 2),
            "clients_cpu_s": round(clients, 2),
            **({"by_path": latency_by_path(by_path)} if len(paths) <= len(API_FILTERS) else {}),
        }

    def floor(self, keys_file: Path, expected: int) -> float:
        keyspace.wipe(self.client)
        finished = processes.run(
            [
                sys.executable,
                str(BENCH / "floor.py"),
                "--keys",
                str(keys_file),
                "--etcd-host",
                keyspace.HOST,
                "--etcd-port",
                str(self.port),
            ]
        )
        stored = keyspace.count(self.client)
        if finished.returncode != 0 or stored != expected:
            raise CheckFailed(
                f"floor exited {finished.returncode}, {stored} keys of {expected}:\n{finished.tail()}"
            )
        return finished.seconds

    def baseline(self) -> float:
        keyspace.wipe(self.client)
        finished = processes.run(
            [
                sys.executable,
                str(BENCH / "baseline.py"),
                "--capabilities",
                str(self.corpus.directory),
                "--etcd-host",
                keyspace.HOST,
                "--etcd-port",
                str(self.port),
            ]
        )
        stored = keyspace.count(self.client, keyspace.CAPABILITY_PREFIX)
        if stored != 4 * self.corpus.count:
            raise CheckFailed(
                f"baseline exited {finished.returncode}, wrote {stored} keys:\n{finished.tail()}"
            )
        return finished.seconds

    def baselines(self, cold: float) -> dict[str, Any]:
        """The baseline's runs, and how many times faster than it the cold sync (``cold`` s) is."""
        runs = self.plan.baseline_runs
        if not runs:
            self.note(f"baseline: not run (--no-baseline, or more than {BASELINE_UP_TO:,} capabilities)")
            return {}
        log.info("baseline: the seed's script, %d run(s)", runs)
        baseline = summary([self.baseline() for _ in range(runs)])
        if runs < self.plan.runs:
            self.notes.append(f"baseline: {runs} run(s) only (it is slow)")
        return {"baseline_s": baseline, "baseline_over_ours": round(baseline["median"] / cold, 2)}

    def note(self, text: str) -> None:
        if text not in self.notes:
            log.warning("%s", text)
            self.notes.append(text)


@contextmanager
def webhook_receiver() -> Iterator[str]:
    """A webhook receiver on loopback that answers every POST with 204 at once; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((keyspace.HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="webhook receiver", daemon=True)
    thread.start()
    try:
        yield f"http://{keyspace.HOST}:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def latency_by_path(by_path: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """p50 and p99 (ms) and the number of answers of each path asked for."""
    return {
        path: {
            "p50_ms": round(percentile(samples, 0.50) * 1000, 1),
            "p99_ms": round(percentile(samples, 0.99) * 1000, 1),
            "answered": len(samples),
        }
        for path, samples in by_path.items()
        if samples
    }


def list_all(client: httpx.Client) -> tuple[list[str], list[str]] | None:
    """Every page of ``/v1/capabilities?limit=100``: the cursors of the pages after the first, and
    every id listed; None while the service does not answer 200 (not up, or its catalog not read)."""
    cursors: list[str] = []
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": str(API_PAGE)} | ({"cursor": cursor} if cursor else {})
        try:
            response = client.get("/v1/capabilities", params=params)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        page = response.json()
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return cursors, ids
        cursors.append(cursor)


def wait_visible(client: Any, expected: dict[str, str], timeout: float, started: float) -> float | None:
    """Poll etcd every 2 ms until every key holds its expected value; seconds since ``started``."""
    remaining = {key: value.encode() for key, value in expected.items()}
    deadline = started + timeout
    while remaining:
        if time.perf_counter() > deadline:
            return None
        keys = list(remaining)
        if len(keys) == 1:
            value, _ = client.get(keys[0])
            values = [value]
        else:
            _, responses = client.transaction(
                compare=[], success=[client.transactions.get(key) for key in keys], failure=[]
            )
            values = [found[0][0] if found else None for found in responses]
        for key, value in zip(keys, values, strict=True):
            if value == remaining[key]:
                del remaining[key]
        if remaining:
            time.sleep(POLL_EVERY)
    return time.perf_counter() - started


def in_process_cycles(settings: Any, store: Any) -> tuple[Callable[[Path], Any], Callable[[], Any]]:
    """After one full cycle, the cycle watch mode runs on a file event with a quiet registry, and
    the ``--interval`` resync; in whichever engine ``gitops_sync`` is (this one, or the ``Syncer``
    of commits before the engine redesign, for interleaved comparisons)."""
    try:
        from gitops_sync.service.engine import Engine  # noqa: PLC0415 - only here
        from gitops_sync.service.triggers import Trigger  # noqa: PLC0415
    except ImportError:
        from gitops_sync.service.syncing import Syncer  # type: ignore[import-not-found]  # noqa: PLC0415

        syncer = Syncer(settings, store)
        syncer.run_cycle()
        return (
            lambda path: syncer.run_cycle(changed_files={path.name}, registry_unchanged=True),
            syncer.run_cycle,
        )
    engine = Engine(settings, store, one_shot=False)
    engine.run_cycle(Trigger.full())
    return (
        lambda path: engine.run_cycle(Trigger.files_changed({path.name}, registry_quiet=True)),
        lambda: engine.run_cycle(Trigger.full("interval")),
    )


def service_objects(arguments: Sequence[str]) -> tuple[Any, Any]:
    """The service's Settings and EtcdStore, built as the CLI builds them from these arguments.

    Going through the CLI's own parser, and looking at what the store's constructor takes, keeps the
    harness working across versions of the service: the store first took ``(endpoints, timeout=)``,
    later one ``EtcdConnection`` (``settings.etcd``).
    """
    from gitops_sync import cli  # noqa: PLC0415
    from gitops_sync.store.etcd import EtcdStore  # noqa: PLC0415

    settings: Any = cli.settings_from(cli.build_parser().parse_args(arguments))
    opener: Callable[..., Any] = EtcdStore
    first = next(iter(inspect.signature(EtcdStore).parameters))
    if first == "endpoints":
        return settings, opener(settings.endpoints, timeout=settings.etcd_timeout)
    return settings, opener(settings.etcd)


@contextmanager
def quiet_service_log() -> Iterator[None]:
    """The service's INFO log, formatted as in the CLI but written to /dev/null, so the cycles pay
    for their logging as they do in production without flooding the terminal."""
    logger = logging.getLogger("gitops-sync")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    with Path(os.devnull).open("w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.handlers[:], logger.level, logger.propagate = saved


def summary(samples: Sequence[float], digits: int = 3) -> dict[str, Any]:
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "samples": [round(sample, digits) for sample in samples],
    }


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with 20 to 30 samples, p99 is the slowest one."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def metadata(options: argparse.Namespace) -> dict[str, Any]:
    import gitops_sync  # noqa: PLC0415

    def git(*arguments: str) -> str:
        found = subprocess.run(  # noqa: S603
            [shutil.which("git") or "git", "-C", str(ROOT), *arguments],
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout.strip()

    return {
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "repo_commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes_in_src": bool(git("status", "--porcelain", "--", "src")),
        "gitops_sync_imported_from": str(Path(gitops_sync.__file__).parent),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "sizes": options.sizes,
    }


COLUMNS: Final = (
    ("N", 6),
    ("cold s", 7),
    ("warm s", 7),
    ("warm* s", 7),
    ("no-op ms", 9),
    ("resync ms", 10),
    ("edit p50/p99 ms", 16),
    ("100-edit s", 10),
    ("PSS MB", 7),
    ("baseline s", 10),
    ("floor s", 8),
    ("base/ours", 9),
    ("ours/floor", 10),
)


def table(results: dict[str, Any]) -> str:
    header = " ".join(name.rjust(width) for name, width in COLUMNS)
    lines = [header, "-" * len(header)]
    notes: list[str] = []
    for size, row in results["sizes"].items():
        if "error" in row:
            lines.append(f"{size:>6} failed: {row['error'].splitlines()[0]}")
            continue
        cells = (
            size,
            f"{row['cold_s']['median']:.2f}",
            f"{row['warm_s']['median']:.2f}",
            f"{row['warm_after_write_s']['median']:.2f}" if "warm_after_write_s" in row else "-",
            f"{row['noop_cycle_ms']['median']:.1f}",
            f"{row['resync_ms']['median']:.0f}" if "resync_ms" in row else "-",
            f"{row['edit_ms']['p50']:.0f} / {row['edit_ms']['p99']:.0f}",
            f"{row['edit_batch_s']['median']:.2f}",
            f"{row['peak_pss_mb']:.1f}",
            f"{row['baseline_s']['median']:.2f}" if "baseline_s" in row else "-",
            f"{row['floor_s']['median']:.2f}",
            f"{row['baseline_over_ours']:.1f}x" if "baseline_over_ours" in row else "-",
            f"{row['ours_over_floor']:.1f}x",
        )
        lines.append(" ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)))
        notes.extend(f"{size}: {note}" for note in row["notes"])
        if "peak_pss_kb_per_capability" in row:
            notes.append(f"{size}: peak PSS {row['peak_pss_kb_per_capability']:.1f} KB a capability")
        if "watch_pss_mb" in row:
            serving = " with --http and a webhook per edit" if row["watch_http"] else ""
            notes.append(f"{size}: watch mode{serving}: {row['watch_pss_mb']:.1f} MB PSS once settled")
        if row["edit_batch"] != EDIT_BATCH:
            notes.append(
                f"{size}: the 100-edit column edits all {row['edit_batch']} files with a dc_hasVersion"
            )
    meta = results["meta"]
    lines.append("")
    source = meta["gitops_sync_imported_from"]
    if source == str(ROOT / "src" / "gitops_sync"):
        dirty = " + uncommitted changes in src/" if meta["uncommitted_changes_in_src"] else ""
        source = f"commit {meta['repo_commit']}{dirty}"
    lines.append(f"medians; gitops_sync: {source}; {meta['cpus']} CPUs, Python {meta['python']}")
    lines.extend(f"note: {note}" for note in notes)
    if any("api" in row for row in results["sizes"].values()):
        lines += ["", api_table(results)]
    return "\n".join(lines)


API_COLUMNS: Final = (
    ("N", 6),
    ("list p50/p99 ms", 16),
    ("filtered p50/p99 ms", 20),
    ("one-id p50/p99 ms", 18),
    ("req/s list/filt/one", 20),
    ("watch PSS MB before/peak/after", 31),
)


def api_table(results: dict[str, Any]) -> str:
    """The Registry API's table: latencies under 50 clients, throughput, the watching process's PSS."""
    header = " ".join(name.rjust(width) for name, width in API_COLUMNS)
    lines = [header, "-" * len(header)]
    for size, row in results["sizes"].items():
        if "api" not in row:
            continue
        api = row["api"]
        pss = api["pss_mb"]
        cells = (
            size,
            f"{api['list']['p50_ms']:.1f} / {api['list']['p99_ms']:.1f}",
            f"{api['filtered']['p50_ms']:.1f} / {api['filtered']['p99_ms']:.1f}",
            f"{api['one_id']['p50_ms']:.1f} / {api['one_id']['p99_ms']:.1f}",
            f"{api['list']['per_second']} / {api['filtered']['per_second']} / {api['one_id']['per_second']}",
            f"{pss['before']:.1f} / {pss['peak']:.1f} / {pss['after']:.1f}",
        )
        lines.append(" ".join(cell.rjust(width) for cell, (_, width) in zip(cells, API_COLUMNS, strict=True)))
    lines.append(
        f"Registry API: {API_CLIENTS} clients at once, {API_REQUESTS} GETs a load, watch mode with --http"
        " (no webhook); the clients run in this harness, on the same CPUs"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
