"""The status of the sync, one shape for all who ask: ``GET /v1/status`` and ``gitops-sync --status``.

``{"leader", "revision", "commit", "last_cycle": {...} | null, "problems": [{"file", "line",
"severity", "message"}], "problem_count"}``. A running replica answers from the cycles it ran (the
:class:`StatusBoard` listens to them); ``--status``, and a replica that stands by, from the status
the leader recorded in etcd (:func:`recorded_status`), which is written only when what it says of
the registry changes: its ``last_cycle`` is the last cycle that changed something.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from gitops_sync.model.keys import leader_key, status_key
from gitops_sync.model.problems import problem_json
from gitops_sync.service.leading import Role
from gitops_sync.service.outcomes import CycleOutcome
from gitops_sync.store.etcd import EtcdStore

PROBLEMS_SHOWN: Final = 1000
"""The most problems a status lists (``problem_count`` says how many in all): bounded, however many
files break at once."""


class StatusBoard:
    """Listens to the cycles of this process and keeps what the status shows of them."""

    def __init__(self, role: Role | None = None) -> None:
        self._role = role
        self._last: CycleOutcome | None = None
        self._finished: CycleOutcome | None = None
        """The last cycle that got as far as reading the manifests and etcd."""

    @property
    def cycle_finished_once(self) -> bool:
        """A cycle has run to its end (it may have found invalid manifests or failed writes)."""
        return self._finished is not None

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        if outcome.error is None:
            self._finished = outcome
        self._last = outcome

    def document(self) -> dict[str, Any]:
        last, finished = self._last, self._finished
        leading = self._role.leading if self._role is not None else last is not None
        problems = finished.problems if finished is not None else ()
        return {
            "leader": leading,
            "revision": finished.revision if finished is not None else None,
            "commit": finished.commit if finished is not None else None,
            "last_cycle": _cycle_json(last) if last is not None else None,
            "problems": [problem_json(problem) for problem in problems[:PROBLEMS_SHOWN]],
            "problem_count": len(problems),
        }


def _cycle_json(outcome: CycleOutcome) -> dict[str, Any]:
    cycle: dict[str, Any] = {
        "trigger": outcome.trigger,
        "started_at": outcome.started_at.isoformat(timespec="milliseconds"),
        "finished_at": outcome.finished_at.isoformat(timespec="milliseconds"),
        "result": outcome.result,
        "created": len(outcome.created),
        "updated": len(outcome.updated),
        "deleted": len(outcome.deleted),
        "unchanged": outcome.unchanged,
        "errors": outcome.errors,
    }
    if outcome.error is not None:
        cycle["error"] = outcome.error
    return cycle


def recorded_status(store: EtcdStore, sync_prefix: str) -> dict[str, Any] | None:
    """The status the last sync recorded in etcd, in the shape above; None if there is none.
    ``leader``: some replica holds the leadership now."""
    state, _ = store.get_at_head(status_key(sync_prefix))
    if state is None or state.value is None:
        return None
    try:
        recorded = json.loads(state.value)
    except ValueError:
        return None
    if not isinstance(recorded, dict):
        return None
    return from_record(recorded, leader=store.get(leader_key(sync_prefix)) is not None)


def from_record(recorded: Mapping[str, Any], *, leader: bool) -> dict[str, Any]:
    """A status record's content in the status's shape; records older than this shape keep their
    errors as plain messages."""
    problems = recorded.get("problems")
    if not isinstance(problems, list):
        errors = recorded.get("errors")
        problems = [
            {"file": None, "line": None, "severity": "error", "message": str(error)}
            for error in (errors if isinstance(errors, list) else [])
        ]
    count = recorded.get("problem_count")
    last_cycle = recorded.get("last_cycle")
    return {
        "leader": leader,
        "revision": recorded.get("revision"),
        "commit": recorded.get("commit"),
        "last_cycle": last_cycle if isinstance(last_cycle, dict) else None,
        "problems": problems,
        "problem_count": count if isinstance(count, int) else len(problems),
    }


def as_text(status: Mapping[str, Any]) -> str:
    """The status for a person, a few lines."""
    lines = [
        f"leader:    {'yes' if status.get('leader') else 'no'}",
        f"revision:  {status.get('revision')}",
        f"commit:    {status.get('commit') or '-'}",
    ]
    cycle = status.get("last_cycle")
    if isinstance(cycle, Mapping):
        lines.append(
            f"last cycle: {cycle.get('trigger')}, {cycle.get('started_at')} to {cycle.get('finished_at')}"
            + (f", {cycle['result']}" if "result" in cycle else "")
        )
        lines.append(
            f"  {cycle.get('created')} created, {cycle.get('updated')} updated, "
            f"{cycle.get('deleted')} deleted, {cycle.get('unchanged')} unchanged, "
            f"{cycle.get('errors')} error(s)"
        )
        if cycle.get("error"):
            lines.append(f"  failed: {cycle['error']}")
    else:
        lines.append("last cycle: none recorded")
    problems = status.get("problems") or []
    count = status.get("problem_count", len(problems))
    lines.append(f"problems:  {count}")
    for problem in problems:
        location = problem.get("file") or "?"
        if problem.get("line"):
            location += f":{problem['line']}"
        lines.append(f"  {location}: {problem.get('severity')}: {problem.get('message')}")
    if count > len(problems):
        lines.append(f"  ... and {count - len(problems)} more")
    return "\n".join(lines) + "\n"
