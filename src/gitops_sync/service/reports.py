"""What one cycle found and did (:class:`CycleReport`), and how listeners and the mark see it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from gitops_sync.core.unchanged import Mark, files_digest
from gitops_sync.model.plans import Change, Plan
from gitops_sync.model.problems import Problem
from gitops_sync.service.outcomes import CycleOutcome, Result
from gitops_sync.service.triggers import Cause
from gitops_sync.sources.scanning import Scan

MARK_WARNINGS: Final = 100
"""The most warnings a cycle may have and still leave a mark, which repeats them: the status key
must stay well within etcd's request limit."""


@dataclass(frozen=True, slots=True)
class CycleReport:
    plan: Plan
    problems: tuple[Problem, ...]
    desired: int
    """Capabilities the manifests define (valid and unique)."""
    applied: tuple[Change, ...] = ()
    failed: tuple[str, ...] = ()
    """Capabilities whose writes did not go through."""
    held: frozenset[str] = field(default_factory=frozenset)
    revision: int = 0
    """The etcd revision the cycle read at."""
    undecodable: tuple[bytes, ...] = ()
    """Keys under the prefixes that are not UTF-8, left alone."""
    commit: str | None = None
    """The Git commit the manifests were read at, if known."""
    source_problem: str | None = None
    """Why the manifests are not at the remote's latest commit (a failed fetch, a refused commit)."""
    written_revision: int = 0
    """The revision of the cycle's last write to a capability; 0 if it wrote none."""
    drift_restored: tuple[str, ...] = ()
    """Ids put back to Git's values after someone changed their keys in etcd."""

    @property
    def synced(self) -> int:
        return sum(change.kind in ("create", "update") for change in self.applied)

    @property
    def deleted(self) -> int:
        return sum(change.kind == "delete" for change in self.applied)

    @property
    def skipped(self) -> int:
        return self.desired - self.synced - len(self.failed)

    @property
    def errors(self) -> int:
        return (
            sum(p.severity == "error" for p in self.problems)
            + len(self.failed)
            + (self.source_problem is not None)
        )

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def result(self) -> Result:
        return "failed" if self.failed else "applied" if self.applied else "unchanged"

    @property
    def last_revision(self) -> int:
        """etcd's revision after the cycle's writes (the revision it read at, if it wrote nothing)."""
        return max(self.revision, self.written_revision)

    def count(self, kind: str) -> int:
        """Capabilities the cycle wrote with a change of this kind."""
        return sum(change.kind == kind for change in self.applied)

    def ids(self, kind: str) -> tuple[str, ...]:
        """The ids the cycle wrote with a change of this kind, in the order written."""
        return tuple(change.capability_id for change in self.applied if change.kind == kind)


def restored(applied: Sequence[Change], drift_candidates: frozenset[str]) -> tuple[str, ...]:
    """The ids among ``drift_candidates`` whose keys the cycle wrote back."""
    return tuple(
        change.capability_id
        for change in applied
        if change.kind in ("create", "update") and change.capability_id in drift_candidates
    )


def mark_of(report: CycleReport, files: Scan, settings_digest: str, transactions: int) -> Mark | None:
    """The mark of a cycle that read etcd afresh and left it holding exactly what the files render
    to (see :class:`Mark`); None for any other."""
    plan = report.plan
    if (
        not report.ok
        or files.problems
        or report.held
        or plan.withheld_deletes
        or plan.foreign
        or plan.unproven
        or len(report.problems) > MARK_WARNINGS
    ):
        return None
    return Mark(
        files=files_digest(files.files),
        settings=settings_digest,
        read_revision=report.revision,
        transactions=transactions,
        capabilities=report.desired,
        warnings=report.problems,
    )


def outcome_of(report: CycleReport, cause: Cause, started: datetime, *, leader: bool) -> CycleOutcome:
    """The cycle as its listeners see it."""
    applied = report.applied
    kinds = [change.kind for change in applied]
    return CycleOutcome(
        trigger=cause,
        started_at=started,
        finished_at=datetime.now(UTC),
        result=report.result,
        created=report.ids("create"),
        updated=report.ids("update"),
        deleted=report.ids("delete"),
        unchanged=report.skipped,
        capabilities=report.desired,
        problems=report.problems,
        failed_writes=report.failed,
        revision=report.last_revision,
        commit=report.commit,
        leader=leader,
        drift_restored=report.drift_restored,
        prune_refused=report.plan.prune_refusal_reason,
        prune_refusal=report.plan.prune_refusal,
        writes=tuple((kind, kinds.count(kind)) for kind in sorted(set(kinds))),
    )


def failure_outcome(error: Exception, cause: Cause, started: datetime, *, leader: bool) -> CycleOutcome:
    """A cycle that could not finish, as its listeners see it."""
    return CycleOutcome(
        trigger=cause,
        started_at=started,
        finished_at=datetime.now(UTC),
        result="failed",
        leader=leader,
        error=str(error),
    )
