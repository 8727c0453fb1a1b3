"""The mark a clean sync leaves in its status: etcd held exactly what these files render to.

A sync that applied everything it planned, with no errors, records in its status what it synced
from (a digest of the file names and hashes, and of the settings that shape the keys), the revision
it read etcd at and how many transactions it committed. Each transaction is one revision, so if the
status itself landed at ``read revision + transactions + 1``, nobody else wrote between the read
and the status. If etcd's revision is still that one when the service starts again, nobody has
written since either: with the same files and settings, etcd holds what a full cycle would want,
and a restart has nothing to read, parse or write. Any write to etcd, anywhere, ends the mark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile


@dataclass(frozen=True, slots=True)
class Converged:
    files: str
    """:func:`digest` of the file names and content hashes synced."""
    settings: str
    """:func:`digest` of the settings that decide the keys and the problems."""
    read_revision: int
    transactions: int
    capabilities: int
    warnings: tuple[Problem, ...]
    """Reported again by a restart that relies on the mark, as a full cycle would report them."""

    def stands(self, status_revision: int, head_revision: int) -> bool:
        """Only the marking sync wrote between its read and its status, and nobody since."""
        return status_revision == self.read_revision + self.transactions + 1 == head_revision

    def as_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "settings": self.settings,
            "read_revision": self.read_revision,
            "transactions": self.transactions,
            "capabilities": self.capabilities,
            "warnings": [[p.source, p.message, p.line] for p in self.warnings],
        }

    @classmethod
    def from_json(cls, data: object) -> Converged | None:
        """The mark in a status's ``converged`` entry; None if there is none or it is not one."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(
                files=_text(data["files"]),
                settings=_text(data["settings"]),
                read_revision=_number(data["read_revision"]),
                transactions=_number(data["transactions"]),
                capabilities=_number(data["capabilities"]),
                warnings=tuple(
                    Problem(_text(source), _text(message), line if isinstance(line, int) else None, "warning")
                    for source, message, line in data["warnings"]
                ),
            )
        except (KeyError, TypeError, ValueError):
            return None


def digest(parts: Sequence[str]) -> str:
    """A SHA-256 of ``parts``, each ended by a NUL (which no file name, hash or setting holds)."""
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode())
        hashed.update(b"\0")
    return hashed.hexdigest()


def files_digest(files: Sequence[SourceFile]) -> str:
    return digest([part for source in files for part in (source.name, source.sha256)])


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _number(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(value)
    return value
