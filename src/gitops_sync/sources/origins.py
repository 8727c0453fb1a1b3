"""Where the manifests come from: a directory kept up to date by someone else, or a Git remote.

A cycle asks its source for an :class:`Update` first: the directory to read, the commit it holds,
whether it holds another tree than at the last update, and what is wrong, if anything, that the
status must tell.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gitops_sync.sources.git import head_commit

Applied = Callable[[], str | None]
"""The commit etcd records as applied, read when the source needs it."""


@dataclass(frozen=True, slots=True)
class Update:
    commit: str | None
    """The commit the directory holds, if known."""
    moved: bool = False
    """The directory holds another tree than at the last update: look at every file."""
    problem: str | None = None
    """Why the directory is not at the remote's latest commit (a failed fetch, a refused commit)."""


class Source(Protocol):
    @property
    def directory(self) -> Path:
        """The manifests' directory; its real path may change between updates."""

    @property
    def label(self) -> str:
        """What logs call the source."""

    @property
    def file_events(self) -> bool:
        """Whether watching the directory's files tells of changes (a Git source tells by itself)."""

    def update(self, applied: Applied) -> Update:
        """Bring the directory up to date, if the source does that; raises
        :class:`~gitops_sync.errors.SourceUnavailable` when no tree can be used."""

    def due_in(self) -> float | None:
        """Seconds until the source wants an update without being woken (a retry), if it does."""

    def attach(self, wake: threading.Event) -> None:
        """Set ``wake`` whenever the source wants an update now (a push hook woke it)."""


@dataclass(frozen=True, slots=True)
class DirectorySource:
    """A directory that someone else keeps checked out (``--capabilities``)."""

    directory: Path

    @property
    def label(self) -> str:
        return str(self.directory)

    @property
    def file_events(self) -> bool:
        return True

    def update(self, applied: Applied) -> Update:
        return Update(commit=head_commit(self.directory))

    def due_in(self) -> float | None:
        return None

    def attach(self, wake: threading.Event) -> None:
        pass  # file events wake the loop instead
