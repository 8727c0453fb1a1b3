"""Checks across manifests: what one manifest says about others.

A dependency on an id no manifest defines (a warning, an error with ``--strict``); a version
constraint the target's version does not satisfy, or that is not a range at all; a cycle among
``requires`` edges; a file whose name is not its ``dc_identifier`` (a warning). Each problem names
the manifest it concerns; errors keep that manifest's last good state in etcd, warnings never block.

:class:`RelationChecks` keeps the answer between cycles: in watch mode one edit re-checks the edited
capability and those that depend on it, not all of them.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import TYPE_CHECKING

from gitops_sync.model.limits import MAX_RANGE_LENGTH, MAX_VERSION_LENGTH
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem, printable

if TYPE_CHECKING:
    import nodesemver

RANGE_EXAMPLES = "^1.0.0, ~1.2, >=1.0.0 <2.0.0 or *"


def check_relations(
    capabilities: Mapping[str, DesiredCapability],
    also_known: Set[str],
    unloadable: Sequence[str] = (),
    *,
    strict: bool,
) -> list[Problem]:
    """Problems of every capability's relations to the others. ``also_known``: ids that exist in
    etcd (held at their last good state) but are not in ``capabilities`` this cycle.
    ``unloadable``: files that do not load; a dependency on the id a file is named after is
    told that its manifest is invalid, not that none defines it."""
    return RelationChecks(strict=strict).check(capabilities, also_known, unloadable)


class RelationChecks:
    """:func:`check_relations`, remembered from one call to the next.

    A capability's own problems depend only on it and on the capabilities it names, so only those
    that changed (a different object, or came or went) and those that name them are checked again.
    The requires cycles are searched for again only when a requires edge or a capability came or
    went. Capabilities are immutable, so "changed" is an identity test.
    """

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self._capabilities: Mapping[str, DesiredCapability] = {}
        self._also_known: frozenset[str] = frozenset()
        self._broken: dict[str, str] = {}
        """By id, the file named after it that does not load."""
        self._own: dict[str, list[Problem]] = {}
        """Each capability's dependency and file-name problems, for those with any."""
        self._names: dict[str, tuple[str, ...]] = {}
        """The ids each capability names in its dependencies."""
        self._dependents: dict[str, set[str]] = defaultdict(set)
        """For each id, the capabilities that name it in a dependency."""
        self._requires: dict[str, list[str]] = {}
        self._cycles: list[list[str]] = []

    def check(
        self,
        capabilities: Mapping[str, DesiredCapability],
        also_known: Set[str],
        unloadable: Sequence[str] = (),
    ) -> list[Problem]:
        also_known = frozenset(also_known)
        broken = {_stem(name): name for name in unloadable}
        changed = self._changed(capabilities, also_known)
        changed.update(broken.keys() ^ self._broken.keys())
        self._capabilities, self._also_known, self._broken = dict(capabilities), also_known, broken
        edges_changed = False
        for capability_id in changed:
            edges_changed |= self._follow(capability_id, capabilities.get(capability_id))
        again = set(changed)
        for capability_id in changed:
            again.update(self._dependents.get(capability_id, ()))
        for capability_id in again:
            capability = capabilities.get(capability_id)
            own = (
                [
                    *_dependency_problems(capability, capabilities, also_known, broken, strict=self.strict),
                    *_name_problems(capability),
                ]
                if capability is not None
                else []
            )
            if own:
                self._own[capability_id] = own
            else:
                self._own.pop(capability_id, None)
        if edges_changed:
            self._cycles = strongly_connected(self._requires)
        problems = [problem for own in self._own.values() for problem in own]
        problems.extend(_cycle_problems(self._cycles, capabilities))
        return problems

    def _changed(self, capabilities: Mapping[str, DesiredCapability], also_known: frozenset[str]) -> set[str]:
        before = self._capabilities
        changed = {
            capability_id
            for capability_id, capability in capabilities.items()
            if before.get(capability_id) is not capability
        }
        changed.update(before.keys() - capabilities.keys())
        changed.update(also_known ^ self._also_known)
        return changed

    def _follow(self, capability_id: str, capability: DesiredCapability | None) -> bool:
        """Update the edges of one capability; True if its requires edges changed."""
        before = self._names.pop(capability_id, ())
        for target in before:
            dependents = self._dependents[target]
            dependents.discard(capability_id)
            if not dependents:  # ids come and go over a long watch: keep no empty entries
                del self._dependents[target]
        after = tuple(d.capability for d in capability.dependencies) if capability else ()
        if after:
            self._names[capability_id] = after
        for target in after:
            self._dependents[target].add(capability_id)
        requires = (
            [d.capability for d in capability.dependencies if d.kind == "requires"] if capability else None
        )
        if requires == self._requires.get(capability_id):
            return False
        if requires is None:
            del self._requires[capability_id]
        else:
            self._requires[capability_id] = requires
        return True


def _dependency_problems(
    capability: DesiredCapability,
    capabilities: Mapping[str, DesiredCapability],
    also_known: Set[str],
    broken: Mapping[str, str],
    *,
    strict: bool,
) -> Iterator[Problem]:
    for dependency in capability.dependencies:
        where = f"dc_relation.{dependency.kind}: {dependency.capability}"
        target = capabilities.get(dependency.capability)
        if target is None and dependency.capability not in also_known:
            invalid = broken.get(dependency.capability)
            yield Problem(
                capability.source,
                f"{where} is not defined by any manifest; add its manifest or fix the id"
                if invalid is None
                else f"{where}: its manifest {printable(invalid)} is invalid (see its error); fix that file",
                dependency.line,
                "error" if strict else "warning",
            )
        if dependency.version == "*":
            continue
        if not is_range(dependency.version):
            yield Problem(
                capability.source,
                f"{where}: version {dependency.version!r} is not a SemVer range; write one like "
                f"{RANGE_EXAMPLES}",
                dependency.line,
            )
        elif target is not None and not satisfies(target.version, dependency.version):
            yield Problem(
                capability.source,
                f"{where}: version {dependency.version!r} is not satisfied by its version "
                f"{target.version} ({target.source}); update the constraint or the dependency",
                dependency.line,
            )


def is_range(constraint: str) -> bool:
    """An npm-style range (``^1.0.0``, ``~1.2``, ``>=1 <2``, ``*``) of at most
    :data:`~gitops_sync.model.limits.MAX_RANGE_LENGTH` characters."""
    return _range(constraint) is not None


@functools.lru_cache(maxsize=65536)
def satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` is in the range ``constraint`` (pre-releases included); False if it is none."""
    tested = _range(constraint) if len(version) <= MAX_VERSION_LENGTH else None
    # Pre-releases count: the registry checks consistency, it does not pick versions to install.
    return tested is not None and bool(tested.test(version, include_prerelease=True))


@functools.lru_cache(maxsize=4096)
def _range(constraint: str) -> nodesemver.Range | None:
    """The constraint, parsed once: a registry has few distinct ones, and parsing is most of a test."""
    import nodesemver  # noqa: PLC0415 - imported on first use, as most registries have no ranges to check

    if len(constraint) > MAX_RANGE_LENGTH:
        return None
    try:
        return nodesemver.make_range(constraint, loose=False)
    except ValueError:  # not a range (as nodesemver.valid_range and satisfies see it)
        return None


def _cycle_problems(
    cycles: list[list[str]], capabilities: Mapping[str, DesiredCapability]
) -> Iterator[Problem]:
    for component in cycles:
        members = set(component)
        for capability_id in component:
            capability = capabilities[capability_id]
            edge = next(
                d for d in capability.dependencies if d.kind == "requires" and d.capability in members
            )
            yield Problem(
                capability.source,
                f"dc_relation.requires: {edge.capability} closes a requires cycle among "
                f"{', '.join(component)}; remove one of these requires",
                edge.line,
            )


def _stem(name: str) -> str:
    """A file's name without its directory and suffix: the id it is named after."""
    return name.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _name_problems(capability: DesiredCapability) -> Iterator[Problem]:
    if _stem(capability.source) != capability.id:
        yield Problem(
            capability.source,
            f"the file name does not match its dc_identifier {capability.id}; rename it to "
            f"{capability.id}.yaml",
            severity="warning",
        )


def strongly_connected(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """The cycles of the graph, each sorted, in a stable order: Tarjan's algorithm, iteratively,
    on what is left once every node that reaches no cycle is peeled off (most of a registry).

    Only components with more than one node, or a node with an edge to itself, are returned; edges
    to nodes outside ``edges`` are ignored.
    """
    remaining = _reaching_cycles(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: dict[str, int] = {}
    """Position on ``stack`` of each node still on it."""
    cycles: list[list[str]] = []
    for root in sorted(remaining):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        on_stack[root] = len(stack)
        stack.append(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in remaining:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    on_stack[child] = len(stack)
                    stack.append(child)
                    work.append((child, iter(edges[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                component = _closed_component(node, index, low, stack, on_stack)
                if component is not None and (len(component) > 1 or node in edges[node]):
                    cycles.append(sorted(component))
    return sorted(cycles)


def _closed_component(
    node: str, index: dict[str, int], low: dict[str, int], stack: list[str], on_stack: dict[str, int]
) -> list[str] | None:
    """If ``node`` is the root of a strongly connected component (Tarjan), that component, taken
    off ``stack``; else None."""
    if low[node] != index[node]:
        return None
    component = stack[on_stack[node] :]
    del stack[on_stack[node] :]
    for member in component:
        del on_stack[member]
    return component


def _reaching_cycles(edges: Mapping[str, list[str]]) -> set[str]:
    """The nodes from which a cycle can be reached: all but those peeled off, leaf first (Kahn)."""
    pointing_at: dict[str, list[str]] = defaultdict(list)
    out_degree: dict[str, int] = {}
    for node, children in edges.items():
        inside = [child for child in children if child in edges]
        out_degree[node] = len(inside)
        for child in inside:
            pointing_at[child].append(node)
    leaves = [node for node, degree in out_degree.items() if degree == 0]
    while leaves:
        for parent in pointing_at.get(leaves.pop(), ()):
            out_degree[parent] -= 1
            if out_degree[parent] == 0:
                leaves.append(parent)
    return {node for node, degree in out_degree.items() if degree > 0}
