"""Shared fixtures: a real etcd server per test session, emptied before each test that uses it; the
project's example manifests; the real chora-base corpus for the interop tests, when it is here."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync.cli import main
from gitops_sync.testing import EtcdProcess
from support import CAPABILITIES, CHORA_BASE_VARIABLE, Cli, Result, chora_base_corpus

CHORA_BASE = chora_base_corpus()
INTEROP_SKIP = (
    f"interop: no chora-base corpus; set {CHORA_BASE_VARIABLE}=/path/to/chora-base/capabilities "
    "(or check chora-base out beside this repository as ../shared/fixtures/chora-base) to run them"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the real corpus is an interop test: ``-m interop`` runs just those."""
    for item in items:
        if "chora_base" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.interop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Every interop test skipped for want of the corpus is reported at one place, so the summary
    says in one line how many were skipped and why (pytest would list each test on its own line)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and call.when == "setup" and CHORA_BASE is None and item.get_closest_marker("interop"):
        report.longrepr = (__file__, None, INTEROP_SKIP)  # type: ignore[assignment]  # no line: one place


@pytest.fixture(autouse=True)
def service_logging() -> Iterator[None]:
    """Undo what an in-process ``main()`` did to logging: it sets the service's logger up for the whole
    process, writing to the ``sys.stderr`` of its test (pytest's capture, closed when that test ends).
    Left in place, every later log record, from any thread, fails with "--- Logging error ---"."""
    logger = logging.getLogger("gitops-sync")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    flags = logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags


@pytest.fixture(autouse=True)
def no_thread_outlives_its_test() -> Iterator[None]:
    """Every thread a test (or a fixture of its own) starts has ended when the test ends: a thread
    left running logs into, and keeps, whatever a later test does. Threads of session- and
    module-wide fixtures start before this snapshot and are not counted, nor are the workers of an
    event loop's default executor (``asyncio_N``): the session's Playwright loop starts them on
    first use, and they end with the loop."""
    before = set(threading.enumerate())
    yield

    def started() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and not t.name.startswith("asyncio_")]

    deadline = time.monotonic() + 5  # a thread told to stop may take a moment to get there
    for thread in started():
        thread.join(max(0.0, deadline - time.monotonic()))
    if left := started():
        pytest.fail(f"threads still running after the test: {', '.join(sorted(t.name for t in left))}")


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    with EtcdProcess(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def etcd(etcd_server: EtcdProcess) -> Iterator[etcd3.MultiEndpointEtcd3Client]:
    """A plain client of the session's etcd, which starts every test empty.

    Tests check what etcd holds through this client, independently of the adapter under test.
    """
    client = etcd3.client(host=etcd_server.host, port=etcd_server.client_port, timeout=5)
    everything = etcd3.etcdrpc.DeleteRangeRequest(key=b"\0", range_end=b"\0")
    client.kvstub.DeleteRange(everything, 5)
    yield client
    client.close()


@pytest.fixture
def capabilities(tmp_path: Path) -> Path:
    """A private, editable copy of the project's example manifests (``capabilities/``)."""
    target = tmp_path / "capabilities"
    shutil.copytree(CAPABILITIES, target)
    return target


@pytest.fixture
def chora_base(tmp_path: Path) -> Path:
    """A private, editable copy of the real chora-base manifests; skips the test if they are not here."""
    if CHORA_BASE is None:
        pytest.skip(INTEROP_SKIP)
    target = tmp_path / "chora-base"
    shutil.copytree(CHORA_BASE, target)
    return target


@pytest.fixture
def cli(etcd_server: EtcdProcess, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``gitops-sync ARGS`` in-process against the session's etcd; returns code, stdout, stderr."""

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        code = main(
            [
                "--etcd-host",
                etcd_server.host,
                "--etcd-port",
                str(etcd_server.client_port),
                *map(str, args),
            ]
        )
        captured = capsys.readouterr()
        return Result(int(code), captured.out, captured.err)

    return run
