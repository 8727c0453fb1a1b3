"""Assembling the desired state: reuse what etcd already holds, parse what changed, hold what conflicts."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import pytest

from gitops_sync.core.assembling import Assembly, desired_state
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import desire, encode_record
from gitops_sync.core.unchanged import unchanged_in_etcd
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import DEFAULT_PREFIX, capability_key
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile
from support import CAPABILITIES, EXAMPLE_IDS

PREFIX = DEFAULT_PREFIX
EMPTY = RegistryState(revision=1, capability_keys={}, records={})


def manifest_text(capability_id: str, *, version: str = "1.0.0") -> bytes:
    return (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: T\n  dc_hasVersion: {version}\n"
        "chora_pattern: {}\n"
    ).encode()


def source_file(name: str, content: bytes) -> SourceFile:
    return SourceFile(name, content, hashlib.sha256(content).hexdigest())


def real_desire(source: SourceFile) -> DesiredCapability:
    return desire(load_manifest(source.name, source.data), source, prefix=PREFIX, max_request_bytes=1_500_000)


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
            return real_desire(source)
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
        capability = real_desire(source)
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


A = source_file("a.yaml", manifest_text("chora.test.a"))
B = source_file("b.yaml", manifest_text("chora.test.b"))
BROKEN = b"metadata:\n  dc_identifier: chora.test.a\n  dc_title: [unclosed\n"


def test_everything_is_parsed_when_etcd_is_empty() -> None:
    assembly, parsed = run([A, B], EMPTY)
    assert parsed == ["a.yaml", "b.yaml"]
    assert assembly.unparsed == frozenset()
    assert errors(assembly) == ()
    assert assembly.desired.capabilities == {"chora.test.a": real_desire(A), "chora.test.b": real_desire(B)}
    assert assembly.desired.held == frozenset()


def test_unchanged_files_whose_keys_match_are_reused_without_parsing() -> None:
    changed_b = source_file("b.yaml", manifest_text("chora.test.b", version="2.0.0"))
    assembly, parsed = run([A, changed_b], synced(A, B), refuse=["a.yaml"])

    assert parsed == ["b.yaml"]
    assert assembly.unparsed == frozenset({"chora.test.a"})
    assert errors(assembly) == ()
    assert assembly.desired.capabilities["chora.test.a"] == from_etcd(real_desire(A))
    assert assembly.desired.capabilities["chora.test.b"] == real_desire(changed_b)


def test_a_restart_with_nothing_changed_parses_nothing() -> None:
    assembly, parsed = run([A, B], synced(A, B), refuse=["a.yaml", "b.yaml"])
    assert parsed == []
    assert assembly.unparsed == frozenset({"chora.test.a", "chora.test.b"})
    assert assembly.desired.capabilities == {
        "chora.test.a": from_etcd(real_desire(A)),
        "chora.test.b": from_etcd(real_desire(B)),
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
    assert assembly.desired.capabilities["chora.test.a"].values == rendered_values(real_desire(A))


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
    assert assembly.desired.capabilities["chora.test.a"] == real_desire(A)


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
    copy = source_file("copy.yaml", manifest_text("chora.test.a", version="2.0.0"))
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
    claims = [source_file(f"{n}.yaml", manifest_text("chora.test.a")) for n in ("x", "y", "z")]
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
    old_id = source_file("a.yaml", manifest_text("chora.test.old"))
    new_id = source_file("a.yaml", manifest_text("chora.test.new"))
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
    claimant = source_file("b.yaml", manifest_text("chora.test.a", version="2.0.0"))
    assembly, _ = run([source_file("a.yaml", BROKEN), claimant], synced(A))
    assert not assembly.desired.held & assembly.desired.capabilities.keys()
