"""Parse and render manifest files: one at a time, or many on every core.

Parsing dominates a cold sync and is CPU-bound Python, so threads would not help. The process
parses too, alongside one forked worker per other core it may run on, as many as the files keep
busy and the memory available holds: every worker costs memory (the pages it touches are
copied), and the parent would otherwise only wait. All of them take small shares of
the files from one counter in shared memory, so none waits for another to hand it work, and they
finish close together. Workers inherit the list of files to parse (nothing is sent to them), read
their files themselves, and send back plain tuples, cheaper to pickle than the dataclasses. When
nothing is known of the files yet (a first sync into this etcd), the workers scan them too, so each
file is read and hashed once. Workers run with the garbage collector off: parsing makes next to no
cyclic garbage, and a collection would walk, and so copy, every object the parent holds. What each
of these saves, measured, is in bench/README.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import importlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from gitops_sync.core.rendering import desire
from gitops_sync.errors import ManifestError
from gitops_sync.model.manifests import Dependency, DependencyRow
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile
from gitops_sync.settings import Settings
from gitops_sync.sources.scanning import Examined, Scan, Scanner, Signature

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext

log = logging.getLogger("gitops-sync")

PARALLEL_FROM: Final = 200
"""Files to parse at once from which worker processes pay for themselves; also the files each
worker is given at least, so that a few hundred files do not fork a worker per core."""
WORKER_BYTES: Final = 64 << 20
"""Memory to count per worker (its heap, a task's results, the parent's pages it touches), with room
for larger directories than any measured (bench/README.md)."""
MEMORY_SHARE: Final = 0.5
"""The share of the memory available that the workers may take between them."""
SHARE: Final = 50
"""Files taken at a time: small, so that all finish close together; large enough that taking one is
cheap."""
TASK: Final = 500
"""Files a worker parses before it sends them back, which bounds the memory their results take."""
QUEUED: Final = 2
"""Tasks waiting for each worker, so it starts the next while the parent collects the last."""
LOCK_TIMEOUT: Final = 5.0
"""Seconds to wait for the share counter; only a worker killed while holding it makes it run out."""

Rendered = DesiredCapability | ManifestError
Reader = Callable[[SourceFile], SourceFile]
"""The file with its content, read and checked against its hash; raises :class:`ManifestError`."""
ScannedAndRendered = tuple[Examined, Rendered | None]
"""What scanning a file found (without its content), and its capability if it is a manifest."""

_RenderedWire = tuple[
    str,
    str,
    str,
    str,
    tuple[DependencyRow, ...],
    tuple[tuple[str, bytes], ...],
    bytes,
]
_ScannedWire = tuple[
    tuple[str, str] | Problem | None,
    Signature | None,
    _RenderedWire | ManifestError | None,
]

Item = TypeVar("Item")
Result = TypeVar("Result")
Wire = TypeVar("Wire")


@dataclass(frozen=True, slots=True)
class _Job(Generic[Item, Result, Wire]):
    """What every process does to each item, and how a worker sends the results back."""

    items: Sequence[Item]
    work: Callable[[Item], Result]
    to_wire: Callable[[Result], Wire]
    from_wire: Callable[[Wire], Result]


def render_file(settings: Settings, source: SourceFile) -> DesiredCapability:
    """Load, check and render one manifest file; raises :class:`ManifestError`."""
    # Imported on first use: libyaml and the schema's compiler are not needed when nothing changed.
    from gitops_sync.core.loading import load_manifest  # noqa: PLC0415

    manifest = load_manifest(source.name, source.data)
    max_ops, max_bytes = settings.change_budget
    return desire(
        manifest,
        source,
        prefix=settings.prefix,
        sync_prefix=settings.sync_prefix,
        max_ops=max_ops,
        max_request_bytes=max_bytes,
    )


def prepare() -> None:
    """Load the YAML parser and compile the schema's validator now, not when the first file
    is parsed: before parse workers are forked, so they share them, and in watch mode once it has
    started, so that the first edit does not wait for them."""
    from gitops_sync.core import validating  # noqa: PLC0415 - see render_file

    importlib.import_module("gitops_sync.core.loading")
    validating.prepare()


def read_and_render(settings: Settings, read: Reader, source: SourceFile) -> Rendered:
    """The file's capability, or what is wrong with it (or with reading it)."""
    try:
        return render_file(settings, read(source))
    except ManifestError as exc:
        return exc


def scan_and_render(settings: Settings, scanner: Scanner, name: str) -> ScannedAndRendered:
    """Scan one listed file (:meth:`Scanner.examine`) and render what it read."""
    examined = scanner.examine(name)
    outcome = examined.outcome
    if not isinstance(outcome, SourceFile):
        return examined, None
    source = SourceFile(outcome.name, examined.content, outcome.sha256)
    try:
        rendered: Rendered = render_file(settings, source)
    except ManifestError as exc:
        rendered = exc
    return Examined(outcome, examined.signature), rendered


def render_in_parallel(
    settings: Settings, read: Reader, sources: Sequence[SourceFile]
) -> list[Rendered] | None:
    """Each file's capability or error, in order, parsed by worker processes; None when there are
    too few files, or too few cores, for workers to pay off."""
    work = functools.partial(read_and_render, settings, read)
    return _in_parallel(_Job(sources, work, _to_wire, _from_wire))


def scan_and_render_in_parallel(
    settings: Settings, scanner: Scanner
) -> tuple[Scan, dict[tuple[str, str], Rendered]] | None:
    """A full scan made by worker processes, which render each manifest from the bytes they hashed
    (:func:`scan_and_render`): the scan, and by file name and hash, what each manifest rendered
    to. None when there are too few files, or too few cores, for workers to pay off."""
    if _cores() < 2:
        return None  # before listing the directory, which the caller's own scan does then
    names = scanner.names()
    work = functools.partial(scan_and_render, settings, scanner)
    scanned = _in_parallel(_Job(names, work, _scanned_to_wire, _scanned_from_wire))
    if scanned is None:
        return None
    rendered: dict[tuple[str, str], Rendered] = {}
    for examined, result in scanned:
        if isinstance(examined.outcome, SourceFile) and result is not None:
            rendered[(examined.outcome.name, examined.outcome.sha256)] = result
    return scanner.adopt(dict(zip(names, (found for found, _ in scanned), strict=True))), rendered


def _in_parallel(job: _Job[Item, Result, Wire]) -> list[Result] | None:
    workers = workers_for(len(job.items))
    if workers < 1:
        return None
    return _with_workers(job, workers)


def workers_for(files: int) -> int:
    """Worker processes to fork for parsing ``files`` files: one per core this process may use
    besides its own, no more than give each :data:`PARALLEL_FROM` files, and no more than
    :data:`MEMORY_SHARE` of the memory available holds at :data:`WORKER_BYTES` each."""
    workers = min(_cores() - 1, files // PARALLEL_FROM)
    available = _memory_available()
    if available is not None:
        workers = min(workers, int(available * MEMORY_SHARE) // WORKER_BYTES)
    return max(workers, 0)


def _cores() -> int:
    """The CPUs this process may run on: its affinity, which a container's cpuset or ``taskset``
    makes smaller than the machine (never more than ``os.cpu_count()``, which tests pin)."""
    machine = os.cpu_count() or 1
    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere the machine's count
    return min(len(affinity(0)), machine) if affinity is not None else machine


_CGROUP_LIMITS: Final = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
"""A container's memory limit and use, as its own cgroup namespace shows them."""


def _memory_available() -> int | None:
    """Bytes that can still be allocated: the machine's available memory, or less if a cgroup
    limit leaves less; None where neither can be read (not Linux)."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for limit_file, usage_file in _CGROUP_LIMITS:
        try:
            limit = Path(limit_file).read_text(encoding="ascii").strip()
            if limit != "max":  # cgroup v2 without a limit; v1 writes a huge number instead
                found.append(max(int(limit) - int(Path(usage_file).read_text(encoding="ascii")), 0))
        except (OSError, ValueError):
            continue
        break
    return min(found) if found else None


class Shares:
    """Where the next share of the items starts, counted in memory every process shares."""

    def __init__(self, context: ForkContext, items: int) -> None:
        self.lock = context.Lock()
        """Held only while taking or closing; a process killed holding it leaves it held, which
        :meth:`take` and :meth:`close` wait out for at most :data:`LOCK_TIMEOUT`."""
        self._next: ctypes.c_int64 = context.RawValue(ctypes.c_int64, 0)
        self._items = items
        self.stuck = False
        """The counter's lock was never released: a process died holding it."""

    def take(self) -> int | None:
        """The start of a share no process has taken yet; None when all are taken."""
        if not self.lock.acquire(timeout=LOCK_TIMEOUT):
            self.stuck = True
            return None
        try:
            start = self._next.value
            if start >= self._items:
                return None
            self._next.value = start + SHARE
            return start
        finally:
            self.lock.release()

    def close(self) -> None:
        """Leave no share to take: each process stops after the share in hand."""
        if self.lock.acquire(timeout=LOCK_TIMEOUT):
            self._next.value = self._items
            self.lock.release()

    @property
    def left(self) -> bool:
        """Whether a share may be left (read without the lock, so a guess, but never a wait)."""
        return not self.stuck and self._next.value < self._items


def _with_workers(job: _Job[Item, Result, Wire], workers: int) -> list[Result]:
    """The parent does shares too, and between them collects what the workers sent and gives
    each new tasks. A worker that dies (killed, out of memory) loses the shares it had not sent
    back; the parent does those once the others are done."""
    import multiprocessing  # noqa: PLC0415 - only for many files
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    prepare()
    context = multiprocessing.get_context("fork")
    shares = Shares(context, len(job.items))
    results: dict[int, list[Result]] = {}
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_inherit,
        initargs=(job, shares),  # inherited through the fork, not sent
    ) as pool:
        tasks: set[Future[_Sent[Wire]]] = set()
        broken = False
        try:
            while True:
                while not broken and shares.left and len(tasks) < QUEUED * workers:
                    try:
                        tasks.add(pool.submit(_work_task))
                    except BrokenProcessPool as exc:
                        broken = _worker_died(exc, broken=broken)
                done = {task for task in tasks if task.done()}
                tasks -= done
                broken |= _collect(job, done, results, broken=broken)
                start = shares.take()
                if start is None:
                    break
                results[start] = _work_share(job, start)
        except BaseException:  # Ctrl+C in a one-shot sync, say: the pool stops within a share
            shares.close()
            for task in tasks:
                task.cancel()
            raise
        _collect(job, wait(tasks).done, results, broken=broken)
    if shares.stuck:
        log.warning("The parse workers' share counter stayed locked; parsing the rest in this process")
    for start in range(0, len(job.items), SHARE):
        if start not in results:  # taken by a worker that died, or left when the counter stuck
            results[start] = _work_share(job, start)
    return [result for start in sorted(results) for result in results[start]]


_Sent = dict[int, list[Wire]]
"""What a worker sends back: by the start of each share it did, the results in wire form."""


def _collect(
    job: _Job[Item, Result, Wire],
    done: set[Future[_Sent[Wire]]],
    results: dict[int, list[Result]],
    *,
    broken: bool,
) -> bool:
    """Add what the finished tasks sent to ``results``; whether a worker died, now or before."""
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    for task in done:
        try:
            sent = task.result()
        except BrokenProcessPool as exc:
            broken = _worker_died(exc, broken=broken)
            continue
        for start, wires in sent.items():
            results[start] = [job.from_wire(wire) for wire in wires]
    return broken


def _worker_died(exc: BaseException, *, broken: bool) -> bool:
    """Say so, once (``broken``: it was said already)."""
    if not broken:
        log.warning("A parse worker died (%s); this process parses what it had taken", exc)
    return True


def _work_share(job: _Job[Item, Result, Wire], start: int) -> list[Result]:
    return [job.work(item) for item in job.items[start : start + SHARE]]


_inherited: tuple[_Job[Any, Any, Any], Shares] | None = None


def _inherit(job: _Job[Any, Any, Any], shares: Shares) -> None:
    global _inherited  # noqa: PLW0603 - one worker process's inputs, set once when it starts
    _inherited = job, shares
    gc.disable()  # see the module's docstring
    # Ctrl+C in a terminal reaches the whole process group: what to do is the parent's call (stop
    # after the cycle, or at once), and it ends the pool. SIGTERM ends a worker as usual, not
    # through the handler inherited from the parent, which would only say it will stop later.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_shares() -> Shares | None:
    """In a parse worker, the share counter it takes from; None in any other process."""
    return None if _inherited is None else _inherited[1]


def _work_task() -> _Sent[Any]:
    """In a worker: do shares until :data:`TASK` items are done, or none is left."""
    if _inherited is None:  # pragma: no cover - set by the pool's initializer
        raise RuntimeError("worker started without its inputs")
    job, shares = _inherited
    sent: _Sent[Any] = {}
    items = 0
    while items < TASK and (start := shares.take()) is not None:
        sent[start] = [job.to_wire(result) for result in _work_share(job, start)]
        items += SHARE
    return sent


def _to_wire(rendered: Rendered) -> _RenderedWire | ManifestError:
    if isinstance(rendered, ManifestError):
        return rendered
    return (
        rendered.id,
        rendered.type,
        rendered.source,
        rendered.version,
        tuple(d.as_row() for d in rendered.dependencies),
        tuple((rendered.values or {}).items()),
        rendered.record,
    )


def _from_wire(wire: _RenderedWire | ManifestError) -> Rendered:
    if isinstance(wire, ManifestError):
        return wire
    capability_id, capability_type, source, version, dependencies, values, record = wire
    return DesiredCapability(
        id=capability_id,
        type=capability_type,
        source=source,
        version=version,
        dependencies=tuple(Dependency.from_row(row) for row in dependencies),
        values=dict(values),
        record=record,
    )


def _scanned_to_wire(scanned: ScannedAndRendered) -> _ScannedWire:
    examined, rendered = scanned
    outcome = examined.outcome
    found = (outcome.name, outcome.sha256) if isinstance(outcome, SourceFile) else outcome
    return found, examined.signature, None if rendered is None else _to_wire(rendered)


def _scanned_from_wire(wire: _ScannedWire) -> ScannedAndRendered:
    found, signature, rendered = wire
    outcome = SourceFile(found[0], None, found[1]) if isinstance(found, tuple) else found
    return Examined(outcome, signature), None if rendered is None else _from_wire(rendered)
