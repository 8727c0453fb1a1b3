"""Parse and render manifest files: one at a time, or many on every core.

Parsing dominates a cold sync and is CPU-bound Python, so threads would not help. The process
parses too, alongside one forked worker per other core: every worker costs memory (the pages it
touches are copied), and the parent would otherwise only wait. Workers inherit the list of files
to parse (nothing is sent to them but where their share starts), read their files themselves, and
send back plain tuples, which cost a fifth of what pickling the dataclasses would. The garbage
collector is off meanwhile, in every process: parsing makes next to no cyclic garbage (41 objects
in 1,000 files), and a collection would walk, and in a worker copy, every object the parent holds.
"""

from __future__ import annotations

import gc
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Final

from gitops_sync.core.rendering import desire
from gitops_sync.errors import ManifestError
from gitops_sync.model.manifests import Dependency, DependencyRow
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.sources import SourceFile
from gitops_sync.settings import Settings

log = logging.getLogger("gitops-sync")

PARALLEL_FROM: Final = 200
"""Files to parse at once from which worker processes pay for themselves."""
MAX_WORKERS: Final = 3
QUEUED: Final = 2
"""Shares waiting for each worker, so it never idles while the parent works on a share of its own."""
SHARE: Final = 250
"""Files per task: small enough to spread the work evenly, large enough to amortise each message."""

Rendered = DesiredCapability | ManifestError
Reader = Callable[[SourceFile], SourceFile]
"""The file with its content, read and checked against its hash; raises :class:`ManifestError`."""

_Wire = tuple[
    str,
    str,
    str,
    str,
    tuple[DependencyRow, ...],
    tuple[tuple[str, bytes], ...],
    bytes,
]


def render_file(settings: Settings, source: SourceFile) -> DesiredCapability:
    """Load, check and render one manifest file; raises :class:`ManifestError`."""
    # Imported on first use: libyaml and the schema's compiler are not needed when nothing changed.
    from gitops_sync.core.loading import load_manifest  # noqa: PLC0415

    manifest = load_manifest(source.name, source.data)
    return desire(manifest, source, prefix=settings.prefix, max_request_bytes=settings.max_txn_bytes)


def read_and_render(settings: Settings, read: Reader, source: SourceFile) -> Rendered:
    """The file's capability, or what is wrong with it (or with reading it)."""
    try:
        return render_file(settings, read(source))
    except ManifestError as exc:
        return exc


def render_in_parallel(
    settings: Settings, read: Reader, sources: Sequence[SourceFile]
) -> list[Rendered] | None:
    """Each file's capability or error, in order, parsed by worker processes; None when there are
    too few files, or too few cores, for workers to pay off."""
    workers = min((os.cpu_count() or 1) - 1, MAX_WORKERS)
    if len(sources) < PARALLEL_FROM or workers < 1:
        return None
    return _with_workers(settings, read, sources, workers)


def _with_workers(
    settings: Settings, read: Reader, sources: Sequence[SourceFile], workers: int
) -> list[Rendered]:
    """The workers take shares from the front, the parent from the back, until none is left. A
    worker that dies (killed, out of memory) leaves its shares to the parent."""
    import multiprocessing  # noqa: PLC0415 - only for many files
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    from gitops_sync.core import validating  # noqa: PLC0415 - loaded before the fork, to be shared

    validating.prepare()
    shares = deque(range(0, len(sources), SHARE))
    rendered: dict[int, list[Rendered]] = {}
    sent: dict[int, Future[list[_Wire | ManifestError]]] = {}
    collecting = gc.isenabled()
    gc.disable()
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_inherit,
            initargs=(settings, read, sources),  # inherited through the fork, not sent
        ) as pool:
            broken = False
            while shares or sent:
                while not broken and shares and len(sent) < QUEUED * workers:
                    start = shares.popleft()
                    try:
                        sent[start] = pool.submit(_render_share, start)
                    except BrokenProcessPool:
                        shares.appendleft(start)
                        broken = True
                for start in [start for start, future in sent.items() if future.done()]:
                    try:
                        rendered[start] = [_from_wire(wire) for wire in sent.pop(start).result()]
                    except BrokenProcessPool as exc:
                        if not broken:
                            log.warning("A parse worker died (%s); parsing the rest in this process", exc)
                        shares.append(start)
                        broken = True
                if shares:
                    start = shares.pop()
                    share = sources[start : start + SHARE]
                    rendered[start] = [read_and_render(settings, read, source) for source in share]
                elif sent:
                    wait(sent.values(), return_when=FIRST_COMPLETED)
    finally:
        if collecting:
            gc.enable()
    return [result for start in sorted(rendered) for result in rendered[start]]


_inherited: tuple[Settings, Reader, Sequence[SourceFile]] | None = None


def _inherit(settings: Settings, read: Reader, sources: Sequence[SourceFile]) -> None:
    global _inherited  # noqa: PLW0603 - one worker process's inputs, set once when it starts
    _inherited = settings, read, sources
    gc.disable()  # see the module's docstring


def _render_share(start: int) -> list[_Wire | ManifestError]:
    """In a worker: render the files from ``start`` on, up to :data:`SHARE` of them."""
    if _inherited is None:  # pragma: no cover - set by the pool's initializer
        raise RuntimeError("worker started without its inputs")
    settings, read, sources = _inherited
    return [_to_wire(read_and_render(settings, read, source)) for source in sources[start : start + SHARE]]


def _to_wire(rendered: Rendered) -> _Wire | ManifestError:
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


def _from_wire(wire: _Wire | ManifestError) -> Rendered:
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
