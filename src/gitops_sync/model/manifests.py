"""A capability manifest as the rest of the program sees it, once loaded and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeAlias

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None

CAPABILITY_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "service": "chora_service",
        "pattern": "chora_pattern",
    }
)
"""Known capability types, each with the manifest block that marks it. A new type is one entry here."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """One entry of ``dc_relation``: the capability depended on, how, and which versions."""

    capability: str
    relationship: str
    version: str = "*"
    kind: str = field(default="requires", compare=False)
    """The ``dc_relation`` list it came from (``requires``, ``optional``, ...); not stored in etcd."""
    line: int | None = field(default=None, compare=False)
    """Where the entry is in its file, for messages; None when it was not parsed this cycle."""

    def as_row(self) -> DependencyRow:
        """All five fields, as the service's record stores them and parse workers send them."""
        return (self.capability, self.relationship, self.version, self.kind, self.line)

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Dependency:
        """The dependency :meth:`as_row` gave; raises ValueError or TypeError for anything else."""
        capability, relationship, version, kind, line = row
        return cls(
            str(capability),
            str(relationship),
            str(version),
            kind=str(kind),
            line=line if isinstance(line, int) else None,
        )


DependencyRow: TypeAlias = tuple[str, str, str, str, int | None]


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parts of one manifest file that become etcd keys."""

    source: str
    """The file's name relative to the capabilities directory, for messages."""
    id: str
    type: str
    version: str
    metadata: Mapping[str, JSONValue]
    dependencies: tuple[Dependency, ...]
