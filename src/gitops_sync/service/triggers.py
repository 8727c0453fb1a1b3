"""What a cycle is asked to look at, and why: the one input of :meth:`Engine.run_cycle`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Cause = Literal["start", "files", "interval", "drift", "git", "manual"]
"""Why a cycle ran: the process starting, a manifest file event, the ``--interval`` resync, a change
made in etcd outside Git, a Git update, or someone asking. Listeners see it as ``trigger``."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """A full cycle looks at every file and reads all of etcd; the watch loop, which knows more,
    narrows it to the files that changed, and to the view of etcd it keeps while the registry is
    quiet."""

    cause: Cause = "start"
    changed_files: frozenset[str] | None = None
    """The only manifest files that may have changed since the last cycle; None: any may have."""
    registry_quiet: bool = False
    """Nobody else has written under the prefixes since the last cycle, so etcd need not be read:
    it holds what the last cycle read and wrote."""

    @classmethod
    def full(cls, cause: Cause = "start") -> Trigger:
        """Every file and all of etcd: a start, a one-shot sync, the ``--interval`` resync."""
        return cls(cause)

    @classmethod
    def files_changed(
        cls, names: Collection[str], cause: Cause = "files", *, registry_quiet: bool
    ) -> Trigger:
        """Only the files ``names`` may have changed; etcd too, unless ``registry_quiet``."""
        return cls(cause, frozenset(names), registry_quiet)

    def every_file(self) -> Trigger:
        """The same, but looking at every file (the source moved to another tree)."""
        return dataclasses.replace(self, changed_files=None)
