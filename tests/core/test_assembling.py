"""Assembling the desired state: reuse what etcd already holds, parse what changed, hold what conflicts."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.assembling import Assembly, assemble, desired_state, with_relation_problems
from gitops_sync.core.cross_checking import check_relations
from gitops_sync.core.rendering import encode_record
from gitops_sync.core.unchanged import LeftUnchanged, unchanged_in_etcd
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import DEFAULT_PREFIX, capability_key
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile
from support import CAPABILITIES, EXAMPLE_IDS, rendered, small_manifest, source_file

PREFIX = DEFAULT_PREFIX
EMPTY = RegistryState(revision=1, capability_keys={}, records={})


class Parsed(Mapping[tuple[str, str], DesiredCapability | ManifestError]):
    """What each file parses to, parsed by the real parser only when asked for, recording which
    files were asked for, and refusing some."""

    def __init__(self, sources: Sequence[SourceFile], refuse: Iterable[str] = ()) -> None:
        self.sources = {(source.name, source.sha256): source for source in sources}
        self.refuse = set(refuse)
        self.called: list[str] = []

    def __getitem__(self, key: tuple[str, str]) -> DesiredCapability | ManifestError:
        source = self.sources[key]
        if source.name in self.refuse:
            pytest.fail(f"{source.name} was parsed although etcd already holds it unchanged")
        self.called.append(source.name)
        try:
            return rendered(source)
        except ManifestError as exc:
            return exc

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)


def rendered_values(capability: DesiredCapability) -> Mapping[str, bytes]:
    assert capability.values is not None, "rendered from its file, not taken from etcd"
    return capability.values


def from_etcd(capability: DesiredCapability) -> DesiredCapability:
    """The capability as a restart takes it from etcd: its record says all but the values."""
    return dataclasses.replace(capability, values=None)


def synced(*sources: SourceFile, revision: int = 10) -> RegistryState:
    """etcd as a previous sync of these files left it."""
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    for source in sources:
        capability = rendered(source)
        keys.update((key, KeyState(value, revision)) for key, value in rendered_values(capability).items())
        records[capability.id] = KeyState(capability.record, revision)
    return RegistryState(revision=revision, capability_keys=keys, records=records)


def run(
    sources: list[SourceFile],
    actual: RegistryState,
    refuse: Iterable[str] = (),
    unreadable: Iterable[Problem] = (),
) -> tuple[Assembly, list[str]]:
    """The desired state as a sync assembles it (what etcd holds unchanged is not parsed, relations
    are checked), and the files it parsed."""
    parsed = Parsed(sources, refuse)
    unchanged = unchanged_in_etcd(sources, actual, prefix=PREFIX)
    assembly = desired_state(sources, unreadable, actual, parsed=parsed, unchanged=unchanged, strict=False)
    return assembly, parsed.called


A = source_file("a.yaml", small_manifest("chora.test.a"))
B = source_file("b.yaml", small_manifest("chora.test.b"))
BROKEN = b"metadata:\n  dc_identifier: chora.test.a\n  dc_title: [unclosed\n"


def test_everything_is_parsed_when_etcd_is_empty() -> None:
    assembly, parsed = run([A, B], EMPTY)
    assert parsed == ["a.yaml", "b.yaml"]
    assert assembly.unparsed == frozenset()
    assert errors(assembly) == ()
    assert assembly.desired.capabilities == {"chora.test.a": rendered(A), "chora.test.b": rendered(B)}
    assert assembly.desired.held == frozenset()


def test_unchanged_files_whose_keys_match_are_reused_without_parsing() -> None:
    changed_b = source_file("b.yaml", small_manifest("chora.test.b", version="2.0.0"))
    assembly, parsed = run([A, changed_b], synced(A, B), refuse=["a.yaml"])

    assert parsed == ["b.yaml"]
    assert assembly.unparsed == frozenset({"chora.test.a"})
    assert errors(assembly) == ()
    assert assembly.desired.capabilities["chora.test.a"] == from_etcd(rendered(A))
    assert assembly.desired.capabilities["chora.test.b"] == rendered(changed_b)


def test_a_restart_with_nothing_changed_parses_nothing() -> None:
    assembly, parsed = run([A, B], synced(A, B), refuse=["a.yaml", "b.yaml"])
    assert parsed == []
    assert assembly.unparsed == frozenset({"chora.test.a", "chora.test.b"})
    assert assembly.desired.capabilities == {
        "chora.test.a": from_etcd(rendered(A)),
        "chora.test.b": from_etcd(rendered(B)),
    }


def test_reuse_works_for_the_example_manifests() -> None:
    sources = [source_file(path.name, path.read_bytes()) for path in sorted(CAPABILITIES.glob("*.yaml"))]
    assembly, _ = run(sources, synced(*sources), refuse=[source.name for source in sources])
    assert assembly.unparsed == frozenset(EXAMPLE_IDS)
    assert {c.type for c in assembly.desired.capabilities.values()} == {"service", "pattern"}


def test_a_changed_file_is_parsed() -> None:
    edited = source_file("a.yaml", b"# edited\n" + A.data)
    assembly, parsed = run([edited], synced(A))
    assert parsed == ["a.yaml"]
    assert assembly.unparsed == frozenset()
    assert assembly.desired.capabilities["chora.test.a"].values == rendered_values(rendered(A))


@pytest.mark.parametrize("edit", ["changed", "deleted"])
def test_an_unchanged_file_whose_keys_were_edited_in_etcd_is_parsed(edit: str) -> None:
    actual = synced(A)
    version_key = capability_key(PREFIX, "chora.test.a", "version")
    keys = dict(actual.capability_keys)
    if edit == "changed":
        keys[version_key] = KeyState(b"9.9.9", 11)
    else:
        del keys[version_key]
    actual = RegistryState(revision=11, capability_keys=keys, records=actual.records)

    assembly, parsed = run([A], actual)
    assert parsed == ["a.yaml"]
    assert assembly.unparsed == frozenset()
    assert assembly.desired.capabilities["chora.test.a"] == rendered(A)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(b"garbage", id="garbage"),
        pytest.param(
            encode_record(ManagedRecord("other.yaml", A.sha256, "pattern", "1.0.0", ())), id="other-source"
        ),
        pytest.param(
            encode_record(ManagedRecord("a.yaml", "0" * 64, "pattern", "1.0.0", ())), id="other-hash"
        ),
    ],
)
def test_a_record_that_does_not_vouch_for_the_keys_means_parsing(record: bytes) -> None:
    actual = synced(A)
    actual = RegistryState(
        revision=actual.revision,
        capability_keys=actual.capability_keys,
        records={"chora.test.a": KeyState(record, 10)},
    )
    assembly, parsed = run([A], actual)
    assert parsed == ["a.yaml"]
    assert assembly.unparsed == frozenset()


def errors(assembly: Assembly) -> tuple[Problem, ...]:
    """The problems that block; these tests name files a.yaml, b.yaml, which only warns."""
    return tuple(p for p in assembly.problems if p.severity == "error")


def duplicate_problems(assembly: Assembly) -> dict[str, str]:
    return {p.source: p.message for p in assembly.problems if "also defined in" in p.message}


def test_two_files_with_the_same_id_are_both_errors_and_the_id_is_held() -> None:
    copy = source_file("copy.yaml", small_manifest("chora.test.a", version="2.0.0"))
    assembly, _ = run([A, copy, B], EMPTY)

    problems = duplicate_problems(assembly)
    assert set(problems) == {"a.yaml", "copy.yaml"}
    assert "copy.yaml" in problems["a.yaml"]
    assert "a.yaml" in problems["copy.yaml"]
    assert "chora.test.a" in problems["a.yaml"]
    assert all(p.severity == "error" for p in assembly.problems if "also defined in" in p.message)
    assert "chora.test.a" in assembly.desired.held
    assert "chora.test.a" not in assembly.desired.capabilities
    assert set(assembly.desired.capabilities) == {"chora.test.b"}


def test_a_new_copy_of_a_reused_file_holds_the_id_too() -> None:
    copy = source_file("copy.yaml", A.data)
    assembly, _ = run([A, copy], synced(A), refuse=["a.yaml"])
    assert set(duplicate_problems(assembly)) == {"a.yaml", "copy.yaml"}
    assert assembly.desired.held == frozenset({"chora.test.a"})
    assert assembly.desired.capabilities == {}
    assert assembly.unparsed == frozenset()


def test_three_claims_name_the_two_other_files() -> None:
    claims = [source_file(f"{n}.yaml", small_manifest("chora.test.a")) for n in ("x", "y", "z")]
    problems = duplicate_problems(run(claims, EMPTY)[0])
    assert "y.yaml, z.yaml" in problems["x.yaml"]
    assert "x.yaml, z.yaml" in problems["y.yaml"]
    assert "x.yaml, y.yaml" in problems["z.yaml"]


def test_a_file_that_fails_to_load_holds_the_id_its_record_names() -> None:
    broken = source_file("a.yaml", BROKEN)
    assembly, _ = run([broken, B], synced(A, B))

    (problem,) = errors(assembly)
    assert problem.source == "a.yaml"
    assert problem.line == 4
    assert "not valid YAML" in problem.message
    assert assembly.desired.held == frozenset({"chora.test.a"})
    assert set(assembly.desired.capabilities) == {"chora.test.b"}


def test_a_new_file_that_fails_to_load_holds_nothing() -> None:
    assembly, _ = run([source_file("new.yaml", BROKEN)], synced(B))
    assert [p.source for p in assembly.problems] == ["new.yaml"]
    assert assembly.desired.held == frozenset()
    assert assembly.desired.capabilities == {}


def test_unreadable_problems_are_kept_and_hold_their_ids() -> None:
    unreadable = [
        Problem("a.yaml", "cannot read: permission denied"),
        Problem("gone.yaml", "cannot read: no such file"),
        Problem("b.yaml", "a warning only", severity="warning"),
    ]
    assembly, _ = run([B], synced(A, B), unreadable=unreadable)
    assert set(unreadable) <= set(assembly.problems)
    assert len(errors(assembly)) == 2
    assert assembly.desired.held == frozenset({"chora.test.a"})
    assert set(assembly.desired.capabilities) == {"chora.test.b"}


def test_problems_are_sorted_by_file_and_line() -> None:
    assembly, _ = run(
        [source_file("z.yaml", BROKEN), source_file("m.yaml", b"- a list\n")],
        EMPTY,
        unreadable=[Problem("a.yaml", "cannot read")],
    )
    assert [p.location for p in assembly.problems] == ["a.yaml", "m.yaml:1", "z.yaml:4"]


def test_a_file_that_fails_to_load_holds_every_id_recorded_for_it() -> None:
    old_id = source_file("a.yaml", small_manifest("chora.test.old"))
    new_id = source_file("a.yaml", small_manifest("chora.test.new"))
    actual = synced(new_id)
    old = synced(old_id)
    actual = RegistryState(
        revision=actual.revision,
        capability_keys={**actual.capability_keys, **old.capability_keys},
        records={**actual.records, **old.records},
    )
    assembly, _ = run([source_file("a.yaml", BROKEN)], actual)
    assert assembly.desired.held == frozenset({"chora.test.old", "chora.test.new"})


def test_held_and_desired_ids_are_disjoint() -> None:
    claimant = source_file("b.yaml", small_manifest("chora.test.a", version="2.0.0"))
    assembly, _ = run([source_file("a.yaml", BROKEN), claimant], synced(A))
    assert not assembly.desired.held & assembly.desired.capabilities.keys()


# --- assemble, then the relations -----------------------------------------------------------------


def requiring(capability_id: str, required: str, constraint: str) -> bytes:
    return (
        small_manifest(capability_id)
        + (
            f"dc_relation:\n  requires:\n    - capability: {required}\n      version: '{constraint}'\n"
        ).encode()
    )


APP = source_file("app.yaml", requiring("chora.test.app", "chora.test.a", "^2.0.0"))


def test_assemble_leaves_the_relations_to_with_relation_problems() -> None:
    sources = [A, B, APP]
    parsed = Parsed(sources)
    assembled = assemble(sources, (), EMPTY, parsed=parsed, unchanged={})
    assert set(assembled.desired.capabilities) == {"chora.test.a", "chora.test.b", "chora.test.app"}
    assert errors(assembled) == ()

    desired = assembled.desired
    relations = check_relations(desired.capabilities, desired.held, desired.unloadable, strict=False)
    assert [p.source for p in relations if p.severity == "error"] == ["app.yaml"]
    checked = with_relation_problems(assembled, relations)
    assert checked.desired.held == frozenset({"chora.test.app"})
    assert set(checked.desired.capabilities) == {"chora.test.a", "chora.test.b"}
    assert relations
    assert set(checked.problems) == {*assembled.problems, *relations}
    assert checked == run(sources, EMPTY)[0]


def test_a_known_file_is_taken_as_known_without_parsing() -> None:
    capability = rendered(A)
    left = {"a.yaml": (A.sha256, capability)}
    parsed = Parsed([A, B], refuse=["a.yaml"])
    assembly = assemble([A, B], (), synced(A), parsed=parsed, unchanged={}, left=left)
    assert parsed.called == ["b.yaml"]
    assert assembly.desired.capabilities["chora.test.a"] is capability
    assert assembly.unparsed == frozenset()  # left, not taken from etcd's records
    assert assembly.synced_before == frozenset({"chora.test.a"})


def test_a_known_file_with_other_content_is_parsed() -> None:
    edited = source_file("a.yaml", small_manifest("chora.test.a", version="2.0.0"))
    parsed = Parsed([edited])
    assembly = assemble(
        [edited], (), EMPTY, parsed=parsed, unchanged={}, left={"a.yaml": (A.sha256, rendered(A))}
    )
    assert parsed.called == ["a.yaml"]
    assert assembly.desired.capabilities["chora.test.a"] == rendered(edited)
    assert assembly.synced_before == frozenset()


def test_an_unchanged_file_whose_keys_were_edited_is_drift_and_a_changed_one_is_not() -> None:
    c = source_file("c.yaml", small_manifest("chora.test.c"))
    before = synced(A, B, c)
    keys = dict(before.capability_keys)
    keys[capability_key(PREFIX, "chora.test.a", "version")] = KeyState(b"9.9.9", 11)
    actual = RegistryState(11, keys, before.records)
    changed_b = source_file("b.yaml", small_manifest("chora.test.b", version="2.0.0"))

    assembly, parsed = run([A, changed_b, c], actual)

    assert parsed == ["a.yaml", "b.yaml"]
    assert assembly.drifted == frozenset({"chora.test.a"})
    assert assembly.synced_before == frozenset({"chora.test.c"})
    assert assembly.drift_candidates == frozenset({"chora.test.a", "chora.test.c"})


# --- assemble is a pure function ------------------------------------------------------------------

POOL = (
    A,
    B,
    APP,
    source_file("a.yaml", small_manifest("chora.test.a", version="2.0.0")),
    source_file("a.yaml", BROKEN),
    source_file("copy.yaml", A.data),
    source_file("b.yaml", requiring("chora.test.b", "chora.test.app", "*")),
    source_file("app.yaml", requiring("chora.test.app", "chora.test.b", "*")),  # a cycle with the above
)
SYNCED = {(source.name, source.sha256): synced(source) for source in POOL if source.data != BROKEN}


@dataclasses.dataclass(frozen=True)
class Inputs:
    sources: list[SourceFile]
    unreadable: list[Problem]
    actual: RegistryState
    left: dict[str, tuple[str, DesiredCapability]]


@st.composite
def inputs(draw: st.DrawFn) -> Inputs:
    by_name: dict[str, SourceFile] = {}
    for source in draw(st.lists(st.sampled_from(POOL), max_size=6)):
        by_name[source.name] = source
    sources = sorted(by_name.values(), key=lambda source: source.name)
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    earlier = draw(st.lists(st.sampled_from(sorted(SYNCED)), max_size=3))
    current = [(source.name, source.sha256) for source in sources if draw(st.booleans())]
    for state in [*earlier, *(state for state in current if state in SYNCED)]:
        keys.update(SYNCED[state].capability_keys)
        records.update(SYNCED[state].records)
    edit = draw(st.booleans())
    if keys and edit:
        keys[draw(st.sampled_from(sorted(keys)))] = KeyState(b"edited", 11)
    unreadable = draw(
        st.lists(
            st.sampled_from(
                [
                    Problem("gone.yaml", "cannot read"),
                    Problem("a.yaml", "cannot read"),
                    Problem("b.yaml", "odd", severity="warning"),
                ]
            ),
            unique=True,
        )
    )
    loading = [source for source in sources if source.data != BROKEN]
    left = {
        source.name: (draw(st.sampled_from([source.sha256, "0" * 64])), rendered(source))
        for source in (draw(st.lists(st.sampled_from(loading), unique=True)) if loading else [])
    }
    return Inputs(sources, unreadable, RegistryState(11, keys, records), left)


def parse_all(sources: list[SourceFile]) -> dict[tuple[str, str], DesiredCapability | ManifestError]:
    parsed: dict[tuple[str, str], DesiredCapability | ManifestError] = {}
    for source in sources:
        try:
            parsed[(source.name, source.sha256)] = rendered(source)
        except ManifestError as exc:
            parsed[(source.name, source.sha256)] = exc
    return parsed


@settings(max_examples=150, deadline=None, database=None)
@given(inputs(), st.booleans())
def test_assembling_mutates_none_of_its_inputs(given_inputs: Inputs, strict: bool) -> None:
    sources, unreadable, actual, left = (
        given_inputs.sources,
        given_inputs.unreadable,
        given_inputs.actual,
        given_inputs.left,
    )
    parsed = parse_all(sources)
    before = copy.deepcopy((sources, unreadable, actual, left))
    parsed_before = dict(parsed)  # errors compare by identity: the same objects must stay
    capabilities_before = copy.deepcopy({k: v for k, v in parsed.items() if isinstance(v, DesiredCapability)})
    known_arg: LeftUnchanged = left

    unchanged = unchanged_in_etcd(sources, actual, prefix=PREFIX, left=known_arg, recheck=True)
    unchanged_before = copy.deepcopy(unchanged)
    assembled = assemble(sources, unreadable, actual, parsed=parsed, unchanged=unchanged, left=known_arg)
    assembled_before = copy.deepcopy(assembled)
    desired = assembled.desired
    relations = check_relations(desired.capabilities, desired.held, desired.unloadable, strict=strict)
    checked = with_relation_problems(assembled, relations)
    fresh = desired_state(sources, unreadable, actual, parsed=parsed, unchanged=unchanged, strict=strict)

    assert (sources, unreadable, actual, left) == before
    assert parsed == parsed_before
    assert all(parsed[key] is value for key, value in parsed_before.items())
    assert {k: v for k, v in parsed.items() if isinstance(v, DesiredCapability)} == capabilities_before
    assert unchanged == unchanged_before
    assert assembled == assembled_before  # with_relation_problems made a new one
    # And deterministic: the same inputs give the same assembly.
    assert (
        assemble(sources, unreadable, actual, parsed=parsed, unchanged=unchanged, left=known_arg) == assembled
    )
    assert (
        desired_state(sources, unreadable, actual, parsed=parsed, unchanged=unchanged, strict=strict) == fresh
    )
    if not left:  # desired_state is assemble and the relations, checked afresh
        assert fresh == checked
    assert not checked.desired.held & checked.desired.capabilities.keys()
