"""The status record: each cycle's result, written under the sync prefix for ``--status``, for the
replicas that stand by, and for the next start (the mark, :class:`Mark`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from gitops_sync import __version__
from gitops_sync.core.rendering import RENDERING, to_json
from gitops_sync.core.unchanged import Mark, digest
from gitops_sync.errors import StoreError
from gitops_sync.model.keys import status_key
from gitops_sync.model.problems import problem_json
from gitops_sync.model.registry import KeyState
from gitops_sync.service.reports import CycleReport
from gitops_sync.service.triggers import Cause
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore, Fence

log = logging.getLogger("gitops-sync")

STATUS_LISTS: Final = 100
"""The most errors, and failed ids, the status lists (with how many in all): it must stay well
within etcd's request limit, however many files break at once."""

_PASSING: Final = frozenset({"updated_at", "converged", "revision", "last_cycle"})
"""What a status says of the cycle that wrote it, not of the registry: never a reason to write."""


class StatusRecorder:
    """Writes the status record after each cycle, when what it says changed; keeps the running
    count of drift repairs it reports."""

    def __init__(self, store: EtcdStore, sync_prefix: str) -> None:
        self._store = store
        self._key = status_key(sync_prefix)
        self.drift_restored = 0
        """Capabilities put back to Git's values, in all, since the process started (the engine
        counts them as its writes go through)."""
        self.pending = False
        """The last write failed: the next cycle must write it, so it may not be skipped."""
        self.reported_problem: str | None = None
        """The source problem the last record reported."""

    def applied_commit(self) -> str | None:
        """The commit etcd's status records as applied (by any replica)."""
        status, _ = self._store.get_at_head(self._key)
        commit = (recorded(status) or {}).get("commit")
        return commit if isinstance(commit, str) else None

    def record(
        self,
        report: CycleReport,
        previous: KeyState | None,
        mark: Mark | None,
        cycle: tuple[Cause, datetime],
        fence: Fence | None,
    ) -> tuple[bytes, int] | None:
        """Write the cycle's result, with its mark if it has one, when it differs from ``previous``
        (the record as the cycle read it), or when the cycle wrote and can leave a new mark (its
        writes ended the last one). Never only to renew a mark: a cycle that changed nothing writes
        nothing. Returns the value and revision written, if any; a failed write is logged, and the
        next cycle writes it."""
        self.reported_problem = report.source_problem
        status = self._lasting_part(report, mark)
        before = recorded(previous)
        renewed = mark is not None and mark.transactions > 0
        if before is not None and _lasting(before) == _lasting(status) and not renewed:
            return None
        status.update(_passing_part(report, cycle))
        try:
            value = to_json(status)
            self.pending = True
            revision = self._store.put(self._key, value, fence)
            self.pending = False
        except StoreError as exc:  # the capabilities are in; the next cycle records the result
            log.warning("Could not record the sync status: %s", exc)
            return None
        return value, revision

    def _lasting_part(self, report: CycleReport, mark: Mark | None) -> dict[str, object]:
        errors = [str(problem) for problem in report.problems if problem.severity == "error"]
        status: dict[str, object] = {
            "commit": report.commit,
            "capabilities": report.desired,
            "errors": errors[:STATUS_LISTS],
            "error_count": len(errors),
            "failed": list(report.failed[:STATUS_LISTS]),
            "failed_count": len(report.failed),
            "drift_restored": self.drift_restored,
            "converged": mark.as_json() if mark is not None else None,
            "problems": [problem_json(problem) for problem in report.problems[:STATUS_LISTS]],
            "problem_count": len(report.problems),
        }
        if report.source_problem is not None:
            status["source_error"] = report.source_problem
        return status


def _passing_part(report: CycleReport, cycle: tuple[Cause, datetime]) -> dict[str, object]:
    finished = datetime.now(UTC)
    cause, started = cycle
    return {
        "updated_at": finished.isoformat(timespec="seconds"),
        "revision": report.last_revision,
        "last_cycle": {
            "trigger": cause,
            "result": report.result,
            "started_at": started.isoformat(timespec="milliseconds"),
            "finished_at": finished.isoformat(timespec="milliseconds"),
            "created": report.count("create"),
            "updated": report.count("update"),
            "deleted": report.deleted,
            "unchanged": report.skipped,
            "errors": report.errors,
        },
    }


def recorded(state: KeyState | None) -> dict[str, object] | None:
    """The status record in ``state``; None if there is none or it is not one."""
    try:
        status = json.loads(state.value or b"") if state is not None else None
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def _lasting(status: Mapping[str, object]) -> dict[str, object]:
    """A status without when and by which cycle it was written, and without its mark."""
    return {key: value for key, value in status.items() if key not in _PASSING}


def settings_digest(settings: Settings) -> str:
    """The settings that decide what a cycle writes and reports, for :class:`Mark`."""
    return digest(
        [
            __version__,
            str(RENDERING),
            *(
                str(getattr(settings, name))
                for name in ("prefix", "sync_prefix", "strict", "prune", "max_prune", "allow_empty")
            ),
            str(settings.max_txn_bytes),
        ]
    )
