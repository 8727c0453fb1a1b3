"""The manifests of a source, and every problem they have as a sync would see them; no etcd needed
(``--validate``, and the Plan API's checks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gitops_sync.core.assembling import desired_state
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import RegistryState
from gitops_sync.model.sources import SourceFile
from gitops_sync.service.parsing import Rendered, read_and_render, scan_and_render_in_parallel
from gitops_sync.settings import Settings
from gitops_sync.sources.origins import DirectorySource, Source
from gitops_sync.sources.remotes import GitSource
from gitops_sync.sources.scanning import Scanner

Render = Callable[[SourceFile], Rendered]
"""One file's capability, or what is wrong with it."""


def source_for(settings: Settings) -> Source:
    """The Git remote of ``--git-url``, else the directory of ``--capabilities``."""
    if settings.git is not None:
        return GitSource(settings.git, settings.interval)
    return DirectorySource(settings.capabilities)


def check_directory(settings: Settings, source: Source | None = None) -> tuple[int, tuple[Problem, ...]]:
    """Every problem of the manifests in the source's directory, as a sync would see them.

    Returns the number of manifest files and the problems, sorted by file and line.
    """
    source = source or source_for(settings)
    source.update(lambda: None)
    scanner = Scanner(source.directory)
    files, rendered = scan_and_render_in_parallel(settings, scanner) or (scanner.scan(), {})

    def render(file: SourceFile) -> Rendered:
        return rendered.get((file.name, file.sha256)) or read_and_render(settings, scanner.read, file)

    return len(files.files) + len(files.problems), check_files(settings, files.files, files.problems, render)


def check_files(
    settings: Settings, sources: Sequence[SourceFile], unreadable: Sequence[Problem], render: Render
) -> tuple[Problem, ...]:
    """Every problem of these manifest files (and ``unreadable``, those that could not be read), as
    a sync would see them with nothing in etcd yet; sorted by file and line."""
    parsed = {(source.name, source.sha256): render(source) for source in sources}
    nothing = RegistryState(revision=0, capability_keys={}, records={})
    return desired_state(
        sources, unreadable, nothing, parsed=parsed, unchanged={}, strict=settings.strict
    ).problems
