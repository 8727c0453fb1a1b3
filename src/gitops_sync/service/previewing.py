"""What a sync of an uploaded set of manifests would find wrong, and would do to the live registry:
the engine of the Plan API (``POST /v1/validate`` and ``POST /v1/plan``), for CI on pull requests.

Computed by the sync's own code (:func:`check_files`, :func:`reconcile_against`, the same parser and
limits), as a sync of a directory holding exactly the uploaded files would, with this service's
settings (prefix, pruning rules, strictness). Nothing is written to etcd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gitops_sync.core.assembling import desired_state
from gitops_sync.core.unchanged import unchanged_in_etcd
from gitops_sync.model.keys import managed_prefix
from gitops_sync.model.plans import Plan
from gitops_sync.model.problems import Problem, printable
from gitops_sync.model.sources import SourceFile
from gitops_sync.service.manifests import check_files
from gitops_sync.service.parsing import Rendered, read_and_render
from gitops_sync.service.view import RegistryView, reconcile_against
from gitops_sync.settings import Settings
from gitops_sync.sources.unpacking import Upload
from gitops_sync.store.etcd import EtcdStore

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One capability a sync would write or delete."""

    action: Action
    id: str
    keys: tuple[str, ...]
    """The names of the capability's keys that would change (``metadata``, ``type``, ``version``,
    ``dependencies``): all it would have, for a create; all it has, for a delete."""

    def as_json(self) -> dict[str, object]:
        return {"action": self.action, "id": self.id, "keys": list(self.keys)}


@dataclass(frozen=True, slots=True)
class Preview:
    """The plan a sync of the uploaded manifests would make against etcd at ``revision``."""

    revision: int
    """The etcd revision the registry was read at."""
    changes: tuple[PlannedChange, ...]
    """In id order, deletes last, as a sync applies them; bookkeeping-only writes are left out."""
    refused: tuple[str, ...]
    """Why deletions a sync would make are held back, one reason each."""
    problems: tuple[Problem, ...]
    """What is wrong with the manifests, as a sync reports it, sorted by file and line."""

    def as_json(self) -> dict[str, object]:
        """The Plan API's answer: ``{"revision", "changes", "refused", "problems"}``."""
        return {
            "revision": self.revision,
            "changes": [change.as_json() for change in self.changes],
            "refused": list(self.refused),
            "problems": problems_as_json(self.problems),
        }


def problems_as_json(problems: tuple[Problem, ...]) -> list[dict[str, object]]:
    """Problems as the API gives them: ``{"file", "line", "severity", "message"}`` each; ``line``
    may be null, and the message is printable and cut to a few hundred characters."""
    return [
        {"file": problem.source, "line": problem.line, "severity": problem.severity, "message": problem.text}
        for problem in problems
    ]


def validate_upload(settings: Settings, upload: Upload) -> tuple[Problem, ...]:
    """Every problem of the uploaded manifests, as ``--validate`` finds them in a directory; no etcd
    needed. Sorted by file and line."""
    return check_files(settings, upload.files, upload.problems, lambda source: _render(settings, source))


def plan_upload(settings: Settings, store: EtcdStore, upload: Upload) -> Preview:
    """The plan a sync of exactly the uploaded manifests would make against etcd now, and the
    problems it would report: what ``--dry-run`` on a directory of these files shows. Raises
    :class:`StoreError` when etcd cannot be read; writes nothing.

    As in a sync, a file whose capability etcd holds just as the file renders it (its record names
    the same file and content) is not parsed again: its problems are those of every new or changed
    file, and every problem across manifests. :func:`validate_upload` checks every file afresh.
    """
    view = RegistryView(
        store.read(settings.prefix, settings.sync_prefix),
        prefix=settings.prefix,
        sync_prefix=settings.sync_prefix,
    )
    actual = view.state
    unchanged = unchanged_in_etcd(upload.files, actual, prefix=settings.prefix)
    parsed = {
        (source.name, source.sha256): _render(settings, source)
        for source in upload.files
        if source.name not in unchanged
    }
    assembly = desired_state(
        upload.files, upload.problems, actual, parsed=parsed, unchanged=unchanged, strict=settings.strict
    )
    compared = assembly.desired.capabilities.keys() - {capability.id for capability in unchanged.values()}
    planned = reconcile_against(settings, store, view, assembly.desired, compared)
    return Preview(
        revision=actual.revision,
        changes=tuple(
            PlannedChange(change.kind, change.capability_id, change.fields)
            for change in planned.changes
            if change.kind != "record"
        ),
        refused=_refused(planned, settings),
        problems=assembly.problems,
    )


def _refused(planned: Plan, settings: Settings) -> tuple[str, ...]:
    refused: list[str] = []
    if planned.prune_refusal is not None:
        kept = printable(", ".join(planned.withheld_deletes))
        refused.append(f"Not pruning: {planned.prune_refusal} (kept: {kept})")
    if planned.unproven:
        refused.append(
            f"Not pruning {len(planned.unproven)} capabilit(y/ies) whose key under "
            f"{managed_prefix(settings.sync_prefix)} is not a record gitops-sync wrote (hand-written "
            f"or damaged; it vouches for nothing): {printable(', '.join(planned.unproven))}"
        )
    return tuple(refused)


def _render(settings: Settings, source: SourceFile) -> Rendered:
    """An uploaded file's capability, or what is wrong with it (its content is in memory)."""
    return read_and_render(settings, lambda uploaded: uploaded, source)
