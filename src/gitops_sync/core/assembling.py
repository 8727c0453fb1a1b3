"""Assemble the desired state from the source files: each file's capability, parsed or unchanged.

Two pure steps. :func:`assemble` takes each file's capability (unchanged in etcd, else as parsed),
and holds back at their last good state the ids whose recorded file does not load or that two files
claim. :func:`with_relation_problems` then holds back the capabilities whose relations to others
are in error. :func:`desired_state` is both, with every relation checked afresh.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gitops_sync.core.cross_checking import check_relations
from gitops_sync.core.rendering import record_source
from gitops_sync.core.unchanged import LeftUnchanged, Records, left_unchanged_for
from gitops_sync.errors import ManifestError
from gitops_sync.model.plans import DesiredCapability, DesiredState
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import RegistryState
from gitops_sync.model.sources import SourceFile

Parsed = Mapping[tuple[str, str], DesiredCapability | ManifestError]
"""By file name and content hash, the file's capability, or why it has none."""


@dataclass(frozen=True, slots=True)
class Assembly:
    desired: DesiredState
    problems: tuple[Problem, ...]
    """Sorted by file, line and message."""
    unparsed: frozenset[str] = frozenset()
    """Ids taken unchanged from etcd's records, without parsing their file."""
    drifted: frozenset[str] = frozenset()
    """Ids whose file is unchanged since it was synced, but whose keys were changed in etcd."""
    synced_before: frozenset[str] = frozenset()
    """Ids whose file is the one last synced (so any change the plan makes to them is drift)."""

    @property
    def drift_candidates(self) -> frozenset[str]:
        """The ids any write to which repairs drift: their file did not change since it was synced."""
        return self.drifted | self.synced_before


def assemble(
    sources: Sequence[SourceFile],
    unreadable: Iterable[Problem],
    actual: RegistryState,
    *,
    parsed: Parsed,
    unchanged: Mapping[str, DesiredCapability],
    left: LeftUnchanged | None = None,
) -> Assembly:
    """Each file's capability: the one ``left`` or ``unchanged`` (:func:`unchanged_in_etcd`) holds
    for it, else the one ``parsed`` holds (which must hold every other file). Relations between
    capabilities are not checked yet (:func:`with_relation_problems`)."""
    records = Records(actual.records)
    problems = list(unreadable)
    found: dict[str, list[DesiredCapability]] = defaultdict(list)
    unparsed: set[str] = set()
    drifted: set[str] = set()
    synced_before: set[str] = set()
    for source in sources:
        capability = left_unchanged_for(left, source)
        if capability is None and (capability := unchanged.get(source.name)) is not None:
            unparsed.add(capability.id)
        if capability is not None:
            synced_before.add(capability.id)
            found[capability.id].append(capability)
            continue
        drifted.update(
            capability_id
            for capability_id, record in records.candidates(source.name)
            if record.source_sha256 == source.sha256
        )
        result = parsed[(source.name, source.sha256)]
        if isinstance(result, ManifestError):
            problems.append(Problem(result.source, result.message, result.line))
        else:
            found[result.id].append(result)
    unloadable = sorted({problem.source for problem in problems if problem.severity == "error"})
    held = {capability_id for source in unloadable for capability_id in records.ids_naming(source)}
    capabilities = _claimed_once(found, held, problems, actual)
    problems.sort(key=_problem_order)
    return Assembly(
        desired=DesiredState(capabilities, frozenset(held), tuple(unloadable)),
        problems=tuple(problems),
        unparsed=frozenset(unparsed & capabilities.keys()),
        drifted=frozenset(drifted & capabilities.keys()),
        synced_before=frozenset(synced_before & capabilities.keys()),
    )


def with_relation_problems(assembly: Assembly, problems: Sequence[Problem]) -> Assembly:
    """``assembly`` with the problems of its capabilities' relations (:func:`check_relations` of
    its desired capabilities, with its held ids as also left): a capability whose file has such an
    error is held at its last good state too."""
    if not problems:
        return assembly
    desired = assembly.desired
    errors = {problem.source for problem in problems if problem.severity == "error"}
    held = (
        desired.held
        | {capability.id for capability in desired.capabilities.values() if capability.source in errors}
        if errors
        else desired.held
    )
    capabilities = (
        {key: value for key, value in desired.capabilities.items() if key not in held}
        if held != desired.held
        else desired.capabilities
    )
    kept = capabilities.keys()
    return Assembly(
        desired=dataclasses.replace(desired, capabilities=capabilities, held=held),
        problems=tuple(sorted((*assembly.problems, *problems), key=_problem_order)),
        unparsed=frozenset(assembly.unparsed & kept),
        drifted=frozenset(assembly.drifted & kept),
        synced_before=frozenset(assembly.synced_before & kept),
    )


def desired_state(
    sources: Sequence[SourceFile],
    unreadable: Iterable[Problem],
    actual: RegistryState,
    *,
    parsed: Parsed,
    unchanged: Mapping[str, DesiredCapability],
    strict: bool,
) -> Assembly:
    """:func:`assemble`, then :func:`with_relation_problems` with every relation checked afresh.
    ``strict``: a dependency on an id no manifest defines is an error, not a warning."""
    assembly = assemble(sources, unreadable, actual, parsed=parsed, unchanged=unchanged)
    desired = assembly.desired
    relations = check_relations(desired.capabilities, desired.held, desired.unloadable, strict=strict)
    return with_relation_problems(assembly, relations)


def _claimed_once(
    found: Mapping[str, list[DesiredCapability]],
    held: set[str],
    problems: list[Problem],
    actual: RegistryState,
) -> dict[str, DesiredCapability]:
    """The capabilities claimed by exactly one file, and not held; an id claimed twice is held (it
    joins ``held``), and each claim that is not taken gets a problem."""
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
        elif len(claims) == 1:
            capabilities[capability_id] = claims[0]
        else:
            held.add(capability_id)
            names = sorted(claim.source for claim in claims)
            problems.extend(
                Problem(
                    claim.source,
                    f"dc_identifier {capability_id} is also defined in "
                    f"{', '.join(name for name in names if name != claim.source)}; each id must be "
                    "defined by one file (rename or remove one); etcd keeps its last good state",
                )
                for claim in claims
            )
    return capabilities


def _problem_order(problem: Problem) -> tuple[str, int, str]:
    return (problem.source, problem.line or 0, problem.message)
