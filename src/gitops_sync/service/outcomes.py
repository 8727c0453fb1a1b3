"""What a sync cycle did, told to whoever listens: metrics, the status board, webhooks.

The engine hands each listener one immutable :class:`CycleOutcome` per cycle, finished or failed,
through the one :class:`CycleListener` interface; listeners never reach into the engine. A listener
must return quickly (it runs on the cycle's thread) and never raise: one that does is logged and
the cycle goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from gitops_sync.model.plans import PruneRefusalReason
from gitops_sync.model.problems import Problem
from gitops_sync.service.triggers import Cause

log = logging.getLogger("gitops-sync")

Result = Literal["applied", "unchanged", "failed"]
"""``applied``: the cycle wrote to etcd; ``unchanged``: it had nothing to write; ``failed``: it
could not finish (etcd or the directory away), or some of its writes did not go through."""


@dataclass(frozen=True, slots=True)
class CycleOutcome:
    """One cycle, as its listeners see it."""

    trigger: Cause
    """Why the cycle ran."""
    started_at: datetime
    finished_at: datetime
    result: Result
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    """Ids whose keys were rewritten, drift repairs included."""
    deleted: tuple[str, ...] = ()
    unchanged: int = 0
    capabilities: int = 0
    """Capabilities the manifests define (valid and unique)."""
    problems: tuple[Problem, ...] = ()
    failed_writes: tuple[str, ...] = ()
    """Ids whose writes did not go through."""
    revision: int = 0
    """etcd's revision after the cycle's writes (the revision it read at, if it wrote nothing)."""
    commit: str | None = None
    leader: bool = False
    """The cycle ran as the elected leader of a group of replicas (watch mode)."""
    drift_restored: tuple[str, ...] = ()
    """Ids put back to Git's values after someone changed their keys in etcd."""
    prune_refused: PruneRefusalReason | None = None
    prune_refusal: str | None = None
    """Why capabilities whose manifest is gone were kept, in words."""
    writes: tuple[tuple[str, int], ...] = ()
    """Capability transactions committed, by kind (``create``, ``update``, ``delete``, ``record``)."""
    error: str | None = None
    """Why a failed cycle could not finish."""

    @property
    def errors(self) -> int:
        """Invalid manifests and failed writes."""
        return sum(problem.severity == "error" for problem in self.problems) + len(self.failed_writes)

    @property
    def changed_etcd(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class CycleListener(Protocol):
    def cycle_finished(self, outcome: CycleOutcome) -> None:
        """Called on the cycle's thread once per cycle; must return quickly and not raise."""


class Listeners:
    """Tells every listener, in order; one that fails is logged and the others are still told."""

    def __init__(self, listeners: Sequence[CycleListener]) -> None:
        self._listeners = tuple(listeners)

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        for listener in self._listeners:
            try:
                listener.cycle_finished(outcome)
            except Exception:  # a listener's bug must not stop the sync
                log.exception("A cycle listener (%s) failed", type(listener).__name__)
