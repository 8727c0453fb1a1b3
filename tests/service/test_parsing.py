"""Parsing many files on every core: the same results, in order, as one at a time, whatever
happens to a worker."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import pytest

from gitops_sync.errors import ManifestError
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.sources import SourceFile
from gitops_sync.service import parsing
from gitops_sync.settings import Settings
from gitops_sync.sources.scanning import Scanner
from gitops_sync.testing import wait_for
from support import EXAMPLE_IDS, renamed_copies

COPIES = 36
"""The example manifests 36 times over under other names (288 files): several shares each process."""


@pytest.fixture
def many(tmp_path: Path) -> Path:
    renamed_copies(tmp_path, COPIES)
    (tmp_path / "broken.yaml").write_text("metadata: [unclosed\n")
    return tmp_path


def one_by_one(settings: Settings, scanner: Scanner, sources: list[SourceFile]) -> list[str]:
    return [shown(parsing.read_and_render(settings, scanner.read, source)) for source in sources]


def shown(rendered: DesiredCapability | ManifestError) -> str:
    """What a sync makes of a file: its keys and record, or the message it reports."""
    return repr(rendered) if isinstance(rendered, DesiredCapability) else str(rendered)


def in_parallel(
    settings: Settings, scanner: Scanner, sources: list[SourceFile], job: str = "render"
) -> list[str]:
    """What workers make of the files: rendering them, or scanning and rendering them."""
    if job == "scan":
        scanned = parsing.scan_and_render_in_parallel(settings, Scanner(settings.capabilities))
        assert scanned is not None, "too few files or cores for workers"
        files, by_name_and_hash = scanned
        assert files.files == tuple(sources)
        return [shown(by_name_and_hash[(source.name, source.sha256)]) for source in sources]
    rendered = parsing.render_in_parallel(settings, scanner.read, sources)
    assert rendered is not None, "too few files or cores for workers"
    return [shown(result) for result in rendered]


JOBS = pytest.mark.parametrize("job", ["render", "scan"])
"""Each of the jobs workers do: what goes wrong with a worker must not change what either gives."""


@pytest.fixture
def setup(many: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Scanner, list[SourceFile]]:
    monkeypatch.setattr(parsing, "PARALLEL_FROM", 10)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one worker, whatever the machine
    scanner = Scanner(many)
    return Settings(capabilities=many), scanner, list(scanner.scan().files)


def once_a_worker_started(
    monkeypatch: pytest.MonkeyPatch,
    then: Callable[[], None] = lambda: None,
    in_parent: Callable[[], None] = lambda: None,
) -> None:
    """The parent parses nothing until the worker has taken a share (on a loaded machine the
    parent could otherwise take every share before the worker starts). Before each file, a worker
    does ``then``, and the parent, once a worker started, ``in_parent``."""
    parent = os.getpid()
    started = multiprocessing.get_context("fork").Event()
    real = parsing.render_file

    def render_file(*args):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            started.set()
            then()
        else:
            assert started.wait(timeout=30), "no worker started"
            in_parent()
        return real(*args)

    monkeypatch.setattr(parsing, "render_file", render_file)


def worker_renders(monkeypatch: pytest.MonkeyPatch) -> Synchronized[int]:
    """How many files workers rendered (counted across processes), as they render them."""
    parent = os.getpid()
    rendered = multiprocessing.get_context("fork").Value("i", 0)
    real = parsing.render_file

    def render_file(*args):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            with rendered.get_lock():
                rendered.value += 1
        return real(*args)

    monkeypatch.setattr(parsing, "render_file", render_file)
    return rendered


@JOBS
def test_workers_render_every_file_as_one_process_would_in_order(
    setup: tuple[Settings, Scanner, list[SourceFile]], monkeypatch: pytest.MonkeyPatch, job: str
) -> None:
    """Rendering the files a scan found; or, in a first sync, scanning them too, reading each once
    (see :func:`parsing.scan_and_render`): the same scan, and the same results."""
    settings, scanner, sources = setup
    once_a_worker_started(monkeypatch)
    from_workers = worker_renders(monkeypatch)

    parallel = in_parallel(settings, scanner, sources, job)

    assert from_workers.value > 0, "the worker did none of the work"
    assert len(parallel) == len(EXAMPLE_IDS) * COPIES + 1
    assert parallel == one_by_one(settings, scanner, sources)
    assert sum("broken.yaml" in result for result in parallel) == 1


def parsed_while_a_worker(
    setup: tuple[Settings, Scanner, list[SourceFile]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    then: Callable[[], None],
    job: str,
) -> tuple[list[str], list[str]]:
    """The files parsed in parallel (by ``job``) while the worker does ``then`` as it starts, and
    what one process alone makes of them."""
    settings, scanner, sources = setup
    once_a_worker_started(monkeypatch, then)
    with caplog.at_level(logging.WARNING, logger="gitops-sync"):
        try:
            parallel = in_parallel(settings, scanner, sources, job)
        except KeyboardInterrupt:
            pytest.fail("a signal to a worker stopped the parse")
    monkeypatch.undo()
    return parallel, one_by_one(settings, scanner, sources)


@JOBS
def test_a_worker_that_dies_leaves_its_files_to_the_parent(
    setup: tuple[Settings, Scanner, list[SourceFile]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    job: str,
) -> None:
    parallel, expected = parsed_while_a_worker(
        setup,
        monkeypatch,
        caplog,
        then=lambda: os._exit(1),  # as the OOM killer ends it
        job=job,
    )

    assert caplog.text.count("A parse worker died") == 1
    assert parallel == expected


@JOBS
def test_a_worker_killed_holding_the_share_counter_does_not_hang_the_parent(
    setup: tuple[Settings, Scanner, list[SourceFile]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    job: str,
) -> None:
    monkeypatch.setattr(parsing, "LOCK_TIMEOUT", 0.2)

    def die_holding_the_lock() -> None:
        shares = parsing.worker_shares()
        assert shares is not None
        shares.lock.acquire()
        os._exit(1)

    parallel, expected = parsed_while_a_worker(setup, monkeypatch, caplog, then=die_holding_the_lock, job=job)

    assert "share counter stayed locked" in caplog.text
    assert parallel == expected


@JOBS
def test_ctrl_c_that_reaches_the_workers_is_left_to_the_parent(
    setup: tuple[Settings, Scanner, list[SourceFile]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    job: str,
) -> None:
    """A terminal sends Ctrl+C to the whole process group. In watch mode the service stops after
    the cycle; its workers must not stop it sooner, nor say anything of their own."""
    parallel, expected = parsed_while_a_worker(
        setup, monkeypatch, caplog, then=lambda: os.kill(os.getpid(), signal.SIGINT), job=job
    )

    assert "worker died" not in caplog.text
    assert parallel == expected


def test_interrupted_the_parent_stops_the_workers_within_a_share(
    setup: tuple[Settings, Scanner, list[SourceFile]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, scanner, sources = setup
    monkeypatch.setattr(parsing, "SHARE", 5)  # 58 shares: a worker's first task would take them all
    in_workers = multiprocessing.get_context("fork").Value("i", 0)

    def count_and_wait_for_the_interrupt() -> None:
        with in_workers.get_lock():
            in_workers.value += 1
        shares = parsing.worker_shares()
        assert shares is not None
        wait_for(lambda: not shares.left, timeout=30)  # the parent interrupts while the worker has work

    def interrupt() -> None:
        raise KeyboardInterrupt

    once_a_worker_started(monkeypatch, then=count_and_wait_for_the_interrupt, in_parent=interrupt)
    with pytest.raises(KeyboardInterrupt):
        parsing.render_in_parallel(settings, scanner.read, sources)

    assert 0 < in_workers.value <= 5, "the worker went on taking shares"  # all 289 without


def test_with_one_core_nothing_is_shared_out_and_the_directory_is_listed_only_by_the_scan(
    setup: tuple[Settings, Scanner, list[SourceFile]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _, _ = setup
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    scanner = Scanner(settings.capabilities)
    monkeypatch.setattr(scanner, "names", lambda: pytest.fail("listed for workers there are none of"))

    assert parsing.scan_and_render_in_parallel(settings, scanner) is None


def test_one_worker_per_core_the_process_may_use_besides_its_own_as_far_as_the_files_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)

    assert parsing.workers_for(10_000) == 7
    assert parsing.workers_for(3 * parsing.PARALLEL_FROM) == 3
    assert parsing.workers_for(parsing.PARALLEL_FROM - 1) == 0


def test_a_process_pinned_to_one_core_forks_no_worker_on_a_large_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {5}, raising=False)

    assert parsing.workers_for(10_000) == 0


def test_workers_are_as_many_as_the_memory_available_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(64)), raising=False)
    assert parsing.workers_for(100_000) >= 1  # any machine that runs these tests has room for one

    monkeypatch.setattr(parsing, "WORKER_BYTES", 1 << 50)  # a petabyte each: no machine has room
    assert parsing.workers_for(100_000) == 0
