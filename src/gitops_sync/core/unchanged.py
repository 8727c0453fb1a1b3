"""Is it unchanged? The one question behind every shortcut a cycle takes, answered here.

A capability is *unchanged* when etcd holds exactly what its file renders to. Three things vouch for
that, each cheaper than parsing the file and comparing every key:

- its record in etcd names the file with its current content hash, and none of its keys was written
  after the record (:func:`vouched_for`, after every read of etcd);
- this process left it so at the end of its last cycle, and nobody has written since (``left``,
  kept by the service's cache while its view of etcd is current);
- the mark a clean sync leaves in its status still stands (:class:`Mark`): nobody has written to
  etcd at all since then, so with the same files and settings everything is unchanged.

Whatever none of them vouches for is parsed and compared key by key (:mod:`.reconciling`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gitops_sync.core.rendering import decode_record, record_source
from gitops_sync.model.keys import capability_keys
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile

LeftUnchanged = Mapping[str, tuple[str, DesiredCapability]]
"""By file name, the content hash and the capability this process left unchanged in etcd."""


def left_unchanged_for(left: LeftUnchanged | None, source: SourceFile) -> DesiredCapability | None:
    """The capability ``left`` holds for the file, if it was rendered from exactly this content."""
    entry = left.get(source.name) if left else None
    return entry[1] if entry is not None and entry[0] == source.sha256 else None


def unchanged_in_etcd(
    sources: Sequence[SourceFile],
    actual: RegistryState,
    *,
    prefix: str,
    left: LeftUnchanged | None = None,
    recheck: bool = False,
) -> dict[str, DesiredCapability]:
    """By file name, the capabilities etcd holds unchanged by its records: :func:`vouched_for`
    without the files nothing vouches for."""
    return vouched_for(sources, actual, prefix=prefix, left=left, recheck=recheck)[0]


def vouched_for(
    sources: Sequence[SourceFile],
    actual: RegistryState,
    *,
    prefix: str,
    left: LeftUnchanged | None = None,
    recheck: bool = False,
) -> tuple[dict[str, DesiredCapability], list[SourceFile]]:
    """By file name, the capabilities etcd holds unchanged by its records, so their files need not
    be parsed (the record names the file with its current hash, and no key was written after it);
    and, in order, the files nothing vouches for, which must be parsed.

    Files ``left`` unchanged with their current hash are vouched for by that; with ``recheck``
    (etcd was read afresh, and anyone may have written since) etcd must vouch for them too, and the
    capability left unchanged is given for them (the same object, so what depends on it need not
    be checked again).
    """
    records = Records(actual.records)
    found: dict[str, DesiredCapability] = {}
    unvouched: list[SourceFile] = []
    for source in sources:
        kept = left_unchanged_for(left, source)
        if kept is not None and not recheck:
            continue
        for candidate in records.candidates(source.name):
            capability = _held_unchanged(source, candidate, actual, prefix)
            if capability is not None:
                found[source.name] = kept if kept is not None and kept.id == capability.id else capability
                break
        else:
            unvouched.append(source)
    return found, unvouched


def may_differ(
    desired: Mapping[str, DesiredCapability], unchanged: Mapping[str, DesiredCapability]
) -> set[str]:
    """The desired ids etcd may not hold unchanged: all but those ``unchanged`` holds, by id, as the
    very same capability object (capabilities are immutable, so identity is equality here)."""
    return {
        capability_id
        for capability_id, capability in desired.items()
        if unchanged.get(capability_id) is not capability
    }


class Records:
    """The records by source file, decoded only if a file is not left unchanged or a problem needs them: a
    watch cycle with nothing new decodes none of them."""

    def __init__(self, raw: Mapping[str, KeyState]) -> None:
        self._raw = raw
        self._decoded: dict[str, list[tuple[str, ManagedRecord]]] | None = None
        self._naming: dict[str, list[str]] | None = None

    def ids_naming(self, source: str) -> list[str]:
        """The ids whose record names the file ``source``, whatever the record's format."""
        if self._naming is None:
            self._naming = defaultdict(list)
            for capability_id, state in self._raw.items():
                named = record_source(state.value)
                if named is not None:
                    self._naming[named].append(capability_id)
        return self._naming.get(source, [])

    def candidates(self, name: str) -> list[tuple[str, ManagedRecord]]:
        """The records that may have been made from the file ``name``. Files are named after their
        id, so the record of that id is tried first; only if it names another file are all decoded."""
        capability_id = name.rsplit(".", 1)[0]
        state = self._raw.get(capability_id)
        record = decode_record(state.value) if state is not None else None
        if record is not None and record.source == name:
            return [(capability_id, record)]
        if self._decoded is None:
            self._decoded = _records_by_source(self._raw)
        return self._decoded.get(name, [])


def _records_by_source(raw: Mapping[str, KeyState]) -> dict[str, list[tuple[str, ManagedRecord]]]:
    """Records by the file they name; a file can name several ids (its id changed, say)."""
    records: dict[str, list[tuple[str, ManagedRecord]]] = defaultdict(list)
    for capability_id, state in raw.items():
        record = decode_record(state.value)
        if record is not None:
            records[record.source].append((capability_id, record))
    return records


def _held_unchanged(
    source: SourceFile, candidate: tuple[str, ManagedRecord], actual: RegistryState, prefix: str
) -> DesiredCapability | None:
    """The capability as etcd holds it, if the file and the keys are what the record says."""
    capability_id, record = candidate
    if record.source_sha256 != source.sha256:
        return None
    written = actual.records[capability_id]
    for key in capability_keys(prefix, capability_id):
        state = actual.capability_keys.get(key)
        if state is None or state.mod_revision > written.mod_revision:
            return None
    return DesiredCapability(
        id=capability_id,
        type=record.type,
        source=source.name,
        version=record.version,
        dependencies=record.dependencies,
        values=None,
        record=written.value or b"",
    )


@dataclass(frozen=True, slots=True)
class Mark:
    """The mark a clean sync leaves in its status: etcd held exactly what these files render to.

    The sync applied everything it planned, with no errors, and records what it synced from, the
    revision it read etcd at and how many transactions it committed. Each transaction is one
    revision, so if the status landed at ``read revision + transactions + 1``, nobody else wrote
    between the read and the status; if etcd's revision is still that one, nobody has written since
    either, and with the same files and settings everything is unchanged. Any write ends the mark.
    """

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
    def from_json(cls, data: object) -> Mark | None:
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
