"""Checks across manifests: dangling ids, version ranges, requires cycles, file names."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.assembling import desired_state
from gitops_sync.core.cross_checking import RelationChecks, check_relations, strongly_connected
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import desire
from gitops_sync.model.keys import DEFAULT_PREFIX
from gitops_sync.model.manifests import Dependency
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import RegistryState
from gitops_sync.model.sources import SourceFile

EMPTY = RegistryState(revision=1, capability_keys={}, records={})


def capability(
    capability_id: str, version: str = "1.0.0", relations: dict[str, list[object]] | None = None
) -> DesiredCapability:
    text = (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: T\n  dc_hasVersion: '{version}'\n"
        f"chora_pattern: {{}}\ndc_relation: {json.dumps(relations or {})}\n"
    ).encode()
    source = SourceFile(f"{capability_id}.yaml", text, hashlib.sha256(text).hexdigest())
    return desire(load_manifest(source.name, text), source, prefix=DEFAULT_PREFIX, max_request_bytes=10**6)


def check(
    *capabilities: DesiredCapability, strict: bool = False, held: frozenset[str] = frozenset()
) -> list[str]:
    found = check_relations({c.id: c for c in capabilities}, held, strict=strict)
    return [str(problem) for problem in found]


def test_a_consistent_registry_has_no_problems() -> None:
    base = capability("chora.t.base", "1.4.2")
    assert (
        check(
            base,
            capability(
                "chora.t.app", relations={"requires": [{"capability": "chora.t.base", "version": "^1.2.0"}]}
            ),
            capability("chora.t.tool", relations={"optional": ["chora.t.base"], "extends": ["chora.t.app"]}),
        )
        == []
    )


def test_a_dangling_dependency_is_a_warning_or_with_strict_an_error() -> None:
    app = capability("chora.t.app", relations={"requires": ["chora.t.gone"]})
    message = (
        "dc_relation.requires: chora.t.gone is not defined by any manifest; add its manifest or fix the id"
    )
    assert check(app) == [f"chora.t.app.yaml:6: warning: {message}"]
    assert check(app, strict=True) == [f"chora.t.app.yaml:6: error: {message}"]
    assert check(app, held=frozenset({"chora.t.gone"})) == []  # held at its last good state: it exists


@pytest.mark.parametrize(
    ("constraint", "version", "satisfied"),
    [
        ("^1.0.0", "1.9.3", True),
        ("^1.0.0", "2.0.0", False),
        ("~1.2", "1.2.9", True),
        ("~1.2", "1.3.0", False),
        (">=1.0.0 <2.0.0", "1.5.0", True),
        (">=1.0.0 <2.0.0", "2.0.0", False),
        ("*", "0.1.0-beta.1", True),
        ("^1.0.0", "1.1.0-rc.1", True),
        ("1.x", "1.7.0", True),
    ],
)
def test_version_constraints(constraint: str, version: str, satisfied: bool) -> None:
    problems = check(
        capability("chora.t.base", version),
        capability(
            "chora.t.app", relations={"requires": [{"capability": "chora.t.base", "version": constraint}]}
        ),
    )
    if satisfied:
        assert problems == []
    else:
        assert problems == [
            f"chora.t.app.yaml:6: error: dc_relation.requires: chora.t.base: version {constraint!r} is not "
            f"satisfied by its version {version} (chora.t.base.yaml); update the constraint or the dependency"
        ]


def test_a_constraint_that_is_no_range_is_an_error() -> None:
    problems = check(
        capability("chora.t.base"),
        capability(
            "chora.t.app", relations={"optional": [{"capability": "chora.t.base", "version": "latest"}]}
        ),
    )
    assert problems == [
        "chora.t.app.yaml:6: error: dc_relation.optional: chora.t.base: version 'latest' is not a SemVer "
        "range; write one like ^1.0.0, ~1.2, >=1.0.0 <2.0.0 or *"
    ]


def test_a_requires_cycle_is_an_error_for_each_member() -> None:
    problems = check(
        capability("chora.t.a", relations={"requires": ["chora.t.b"]}),
        capability("chora.t.b", relations={"requires": ["chora.t.c"]}),
        capability("chora.t.c", relations={"requires": ["chora.t.a"], "optional": ["chora.t.d"]}),
        capability("chora.t.d", relations={"requires": ["chora.t.a"]}),
    )
    assert sorted(problems) == [
        f"chora.t.{member}.yaml:6: error: dc_relation.requires: chora.t.{target} closes a requires cycle "
        "among chora.t.a, chora.t.b, chora.t.c; remove one of these requires"
        for member, target in (("a", "b"), ("b", "c"), ("c", "a"))
    ]


def test_cycles_through_other_relations_are_allowed() -> None:
    assert (
        check(
            capability("chora.t.a", relations={"requires": ["chora.t.b"]}),
            capability("chora.t.b", relations={"optional": ["chora.t.a"], "extends": ["chora.t.b"]}),
        )
        == []
    )


def test_a_file_named_other_than_its_id_is_a_warning() -> None:
    base = capability("chora.t.base")
    renamed = DesiredCapability(
        base.id, base.type, "base.yaml", base.version, base.dependencies, base.values, base.record
    )
    assert check(renamed) == [
        "base.yaml: warning: the file name does not match its dc_identifier chora.t.base; rename it to "
        "chora.t.base.yaml"
    ]


def test_errors_hold_only_the_manifests_they_concern() -> None:
    files = [
        ("chora.t.base", "2.0.0", {}),
        ("chora.t.app", "1.0.0", {"requires": [{"capability": "chora.t.base", "version": "^1.0.0"}]}),
        ("chora.t.tool", "1.0.0", {"requires": [{"capability": "chora.t.base", "version": "^2.0.0"}]}),
        ("chora.t.loner", "1.0.0", {"optional": ["chora.t.nowhere"]}),
    ]
    sources = []
    for capability_id, version, relations in files:
        text = (
            f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: T\n  dc_hasVersion: '{version}'\n"
            f"chora_pattern: {{}}\ndc_relation: {json.dumps(relations)}\n"
        ).encode()
        sources.append(SourceFile(f"{capability_id}.yaml", text, hashlib.sha256(text).hexdigest()))

    parsed = {
        (source.name, source.sha256): desire(
            load_manifest(source.name, source.data), source, prefix=DEFAULT_PREFIX, max_request_bytes=10**6
        )
        for source in sources
    }
    assembly = desired_state(sources, (), EMPTY, parsed=parsed, unchanged={}, strict=False)

    assert assembly.desired.held == {"chora.t.app"}
    assert set(assembly.desired.capabilities) == {"chora.t.base", "chora.t.tool", "chora.t.loner"}
    assert [(p.source, p.severity) for p in assembly.problems] == [
        ("chora.t.app.yaml", "error"),
        ("chora.t.loner.yaml", "warning"),
    ]


GRAPHS = st.dictionaries(
    st.sampled_from("abcdefgh"), st.lists(st.sampled_from("abcdefghxy"), max_size=4), max_size=8
)


@settings(max_examples=200, deadline=None, database=None)
@given(GRAPHS)
def test_strongly_connected_finds_exactly_the_nodes_on_cycles(edges: dict[str, list[str]]) -> None:
    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = [c for c in edges.get(start, []) if c in edges]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(c for c in edges.get(node, []) if c in edges)
        return False

    on_cycles = {node for node in edges if reaches(node, node)}
    components = strongly_connected(edges)
    assert {node for component in components for node in component} == on_cycles
    for component in components:
        assert all(reaches(a, b) for a in component for b in component if a != b)
    for one in components:  # and each is whole: no two could be one
        for other in components:
            assert one is other or not (reaches(one[0], other[0]) and reaches(other[0], one[0]))


IDS = "abcdef"
DEPENDENCIES = st.lists(
    st.builds(
        Dependency,
        capability=st.sampled_from(IDS + "z"),
        relationship=st.just("prerequisite"),
        version=st.sampled_from(["*", "^1.0.0", "^2.0.0", "not a range"]),
        kind=st.sampled_from(["requires", "optional"]),
        line=st.integers(1, 9),
    ),
    max_size=3,
)
REGISTRIES = st.dictionaries(
    st.sampled_from(IDS),
    st.tuples(st.sampled_from(["1.0.0", "2.1.0"]), DEPENDENCIES, st.booleans()),
    max_size=len(IDS),
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.lists(st.tuples(REGISTRIES, st.sets(st.sampled_from(IDS + "z"))), min_size=1, max_size=6),
    st.booleans(),
)
def test_checks_kept_between_calls_give_what_checking_afresh_gives(
    steps: list[tuple[dict[str, tuple[str, list[Dependency], bool]], set[str]]], strict: bool
) -> None:
    """Each step keeps, as unchanged, the objects of the capabilities it did not redraw."""
    kept = RelationChecks(strict=strict)
    previous: dict[str, DesiredCapability] = {}
    for registry, also_known in steps:
        capabilities: dict[str, DesiredCapability] = {}
        for capability_id, (version, dependencies, keep) in registry.items():
            if keep and capability_id in previous:
                capabilities[capability_id] = previous[capability_id]
            else:
                source = f"{capability_id}.yaml" if version == "1.0.0" else f"other-{capability_id}.yaml"
                capabilities[capability_id] = DesiredCapability(
                    capability_id, "pattern", source, version, tuple(dependencies), {}, b""
                )

        def key(problem: Problem) -> tuple[str, int, str, str]:
            return (problem.source, problem.line or 0, problem.message, problem.severity)

        assert sorted(kept.check(capabilities, also_known), key=key) == sorted(
            check_relations(capabilities, also_known, strict=strict), key=key
        )
        previous = capabilities
