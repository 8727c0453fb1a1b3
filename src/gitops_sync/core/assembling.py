"""Assemble the desired state from the source files, re-using what a previous sync already wrote.

A file is parsed only when it or the keys made from it changed since the service recorded them:
an unchanged file whose keys still hold what was written is taken as already rendered. That is what
makes a restart with nothing changed cheap and write nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gitops_sync.core.cross_checking import RelationChecks
from gitops_sync.core.rendering import decode_record, record_source
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import capability_keys
from gitops_sync.model.plans import DesiredCapability, DesiredState
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile

Desire = Callable[[SourceFile], DesiredCapability]
"""Parse, check and render one file; raises :class:`ManifestError`."""

Remembered = Mapping[str, tuple[str, DesiredCapability]]
"""By file name, the content hash and the capability this process rendered from that content."""


@dataclass(frozen=True, slots=True)
class Assembly:
    desired: DesiredState
    problems: tuple[Problem, ...]
    reused: frozenset[str]
    """Ids taken from etcd as they are, without parsing their file."""
    drifted: frozenset[str] = frozenset()
    """Ids whose file is unchanged since it was synced, but whose keys were changed in etcd."""
    settled: frozenset[str] = frozenset()
    """Ids whose file is the one last synced (so any change the plan makes to them is drift)."""


def assemble(
    sources: Sequence[SourceFile],
    unreadable: Iterable[Problem],
    actual: RegistryState,
    *,
    prefix: str,
    desire: Desire,
    strict: bool = False,
    remembered: Remembered | None = None,
    reusable: Mapping[str, DesiredCapability] | None = None,
    relations: RelationChecks | None = None,
) -> Assembly:
    """Build the desired state. Purely computational, given a pure ``desire``.

    ``strict``: a dependency on an id no manifest defines is an error, not a warning.
    ``remembered``: what this process knows etcd holds (its view of etcd is current); tried
    first, as it costs nothing.
    ``reusable``: :func:`find_reusable` of these files, if the caller has it already.
    ``relations``: the cross-manifest checks as kept from the last assembly, if any (their
    ``strict`` is used then).
    """
    records = _LazyRecords(actual.records)
    if reusable is None:
        reusable = find_reusable(sources, actual, prefix=prefix, remembered=remembered)
    problems = list(unreadable)
    found: dict[str, list[DesiredCapability]] = defaultdict(list)
    reused: set[str] = set()
    drifted: set[str] = set()
    settled: set[str] = set()

    for source in sources:
        kept = remembered_for(remembered, source)
        if kept is not None:
            found[kept.id].append(kept)
            settled.add(kept.id)
            continue
        previous = reusable.get(source.name)
        if previous is not None:
            found[previous.id].append(previous)
            reused.add(previous.id)
            settled.add(previous.id)
            continue
        known = records.candidates(source.name)
        drifted.update(
            capability_id for capability_id, record in known if record.source_sha256 == source.sha256
        )
        try:
            found_capability = desire(source)
        except ManifestError as exc:
            problems.append(Problem(exc.source, exc.message, exc.line))
        else:
            found[found_capability.id].append(found_capability)

    unloadable = sorted({problem.source for problem in problems if problem.severity == "error"})
    held = {capability_id for source in unloadable for capability_id in records.ids_naming(source)}
    capabilities: dict[str, DesiredCapability] = {}
    for capability_id, claims in found.items():
        if capability_id in held:
            # Its recorded file is broken: whoever else claims the id must not replace its last good
            # state, since the broken file may still define it.
            problems.extend(
                Problem(
                    claim.source,
                    f"dc_identifier {capability_id} was last synced from "
                    f"{record_source(actual.records[capability_id].value)}, which does not load now; "
                    "fix or remove that file first; etcd keeps its last good state",
                )
                for claim in claims
            )
            continue
        if len(claims) == 1:
            capabilities[capability_id] = claims[0]
            continue
        held.add(capability_id)
        names = sorted(claim.source for claim in claims)
        for claim in claims:
            others = ", ".join(name for name in names if name != claim.source)
            problems.append(
                Problem(
                    claim.source,
                    f"dc_identifier {capability_id} is also defined in {others}; each id must be "
                    "defined by one file (rename or remove one); etcd keeps its last good state",
                )
            )
    problems.extend(
        _relation_problems(capabilities, held, unloadable, relations or RelationChecks(strict=strict))
    )
    problems.sort(key=lambda p: (p.source, p.line or 0, p.message))
    return Assembly(
        desired=DesiredState(capabilities, frozenset(held), tuple(unloadable)),
        problems=tuple(problems),
        reused=frozenset(reused & capabilities.keys()),
        drifted=frozenset(drifted & capabilities.keys()),
        settled=frozenset(settled & capabilities.keys()),
    )


def remembered_for(remembered: Remembered | None, source: SourceFile) -> DesiredCapability | None:
    """The capability remembered for the file, if it was rendered from exactly this content."""
    entry = remembered.get(source.name) if remembered else None
    return entry[1] if entry is not None and entry[0] == source.sha256 else None


def find_reusable(
    sources: Sequence[SourceFile],
    actual: RegistryState,
    *,
    prefix: str,
    remembered: Remembered | None = None,
    recheck: bool = False,
) -> dict[str, DesiredCapability]:
    """By file name, the capabilities etcd holds just as these files would render them, so they
    need not be parsed: the record names the file with its current hash, and no key was written
    after the record.

    Files in ``remembered`` with their current hash are left out, as known to be in etcd; with
    ``recheck`` (etcd was read afresh, and anyone may have written since) they must be vouched for
    too, and the remembered capability is given for them (the same object, so what depends on it
    need not be checked again).
    """
    records = _LazyRecords(actual.records)
    found: dict[str, DesiredCapability] = {}
    for source in sources:
        kept = remembered_for(remembered, source)
        if kept is not None and not recheck:
            continue
        for known in records.candidates(source.name):
            capability = _unchanged(source, known, actual, prefix)
            if capability is not None:
                found[source.name] = kept if kept is not None and kept.id == capability.id else capability
                break
    return found


def _relation_problems(
    capabilities: dict[str, DesiredCapability],
    held: set[str],
    unloadable: Sequence[str],
    relations: RelationChecks,
) -> list[Problem]:
    """Cross-manifest problems; a capability with an error joins ``held`` and leaves ``capabilities``."""
    problems = relations.check(capabilities, held, unloadable)
    errors = {problem.source for problem in problems if problem.severity == "error"}
    if errors:
        held.update(capability.id for capability in capabilities.values() if capability.source in errors)
    for capability_id in held:
        capabilities.pop(capability_id, None)
    return problems


class _LazyRecords:
    """The records by source file, decoded only if a file is not remembered or a problem needs
    them: a watch cycle with nothing new decodes none of 10,000 records."""

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


def _unchanged(
    source: SourceFile,
    known: tuple[str, ManagedRecord],
    actual: RegistryState,
    prefix: str,
) -> DesiredCapability | None:
    """The capability as etcd holds it, if the file and the keys are what the record says."""
    capability_id, record = known
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
