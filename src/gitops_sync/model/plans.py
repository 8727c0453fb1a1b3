"""What a sync cycle intends to do to etcd, capability by capability."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gitops_sync.model.manifests import Dependency

ChangeKind = Literal["create", "update", "delete", "record"]
"""``record``: only the service's bookkeeping for the capability changes, none of its four keys."""


@dataclass(frozen=True, slots=True)
class DesiredCapability:
    """A capability as Git says it should be in etcd."""

    id: str
    type: str
    source: str
    version: str
    dependencies: tuple[Dependency, ...]
    values: Mapping[str, bytes] | None
    """The four capability keys and their exact bytes; None for a capability taken unchanged from
    etcd, whose values were not read (etcd holds them as they should be)."""
    record: bytes
    """The bookkeeping value written with them."""


@dataclass(frozen=True, slots=True)
class DesiredState:
    capabilities: Mapping[str, DesiredCapability]
    held: frozenset[str] = frozenset()
    """Ids whose keys must stay as they are: their file failed to load, or the id is claimed twice."""
    unloadable: tuple[str, ...] = ()
    """Files that did not load: what they define is unknown, so nothing may look gone meanwhile."""


@dataclass(frozen=True, slots=True)
class Change:
    """One capability's part of a plan; applied in a single etcd transaction, never split."""

    capability_id: str
    kind: ChangeKind
    puts: tuple[tuple[str, bytes], ...] = ()
    deletes: tuple[str, ...] = ()
    expected: tuple[tuple[str, int], ...] = ()
    """Each key touched, with the mod revision it must still have (0: must not exist)."""
    fields: tuple[str, ...] = ()
    """The capability fields that change, for people reading a dry run."""
    type: str = ""

    @property
    def op_count(self) -> int:
        """What etcd counts against ``--max-txn-ops``: the larger of compares and operations."""
        return max(len(self.expected), len(self.puts) + len(self.deletes))


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...] = ()
    unchanged: frozenset[str] = frozenset()
    """Ids whose keys already hold Git's values."""
    withheld_deletes: tuple[str, ...] = ()
    """Ids that would be pruned, but a safety rule held the deletion back."""
    prune_refusal: str | None = None
    """Why deletions were held back, in words for the log."""
    foreign: tuple[str, ...] = field(default=())
    """Ids under the prefix that this service does not manage and leaves alone."""
    unproven: tuple[str, ...] = ()
    """Ids with a bookkeeping key that is not a record this service wrote (or not a valid id):
    it vouches for nothing, so they are never pruned."""

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def of_kind(self, *kinds: ChangeKind) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.kind in kinds)
