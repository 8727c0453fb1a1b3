"""Is it unchanged? What etcd's records vouch for, what this process knows, and the mark of a clean sync."""

from __future__ import annotations

import dataclasses

import pytest

from gitops_sync.core.rendering import encode_record, with_commit
from gitops_sync.core.unchanged import (
    Mark,
    digest,
    files_digest,
    left_unchanged_for,
    may_differ,
    unchanged_in_etcd,
    vouched_for,
)
from gitops_sync.model.keys import DEFAULT_PREFIX, capability_key
from gitops_sync.model.problems import Problem
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile
from support import rendered, small_manifest, source_file

PREFIX = DEFAULT_PREFIX

MARK = Mark(
    files="f" * 64,
    settings="s" * 64,
    read_revision=100,
    transactions=3,
    capabilities=48,
    warnings=(Problem("a.yaml", "dangling", 5, "warning"), Problem("b.yaml", "name", None, "warning")),
)


def test_a_mark_reads_back_as_written() -> None:
    assert Mark.from_json(MARK.as_json()) == MARK


@pytest.mark.parametrize(
    "data",
    [None, [], "mark", {}, {**MARK.as_json(), "read_revision": "100"}, {**MARK.as_json(), "warnings": [1]}],
)
def test_anything_else_is_no_mark(data: object) -> None:
    assert Mark.from_json(data) is None


def test_a_mark_stands_only_if_its_sync_was_the_only_writer_and_nothing_was_written_since() -> None:
    assert MARK.stands(status_revision=104, head_revision=104)
    assert not MARK.stands(status_revision=105, head_revision=105)  # one write by someone else
    assert not MARK.stands(status_revision=104, head_revision=106)  # written to since


def test_the_files_digest_tells_names_and_contents_apart() -> None:
    one = SourceFile("a.yaml", None, "1" * 64)
    assert files_digest([one]) != files_digest([SourceFile("b.yaml", None, "1" * 64)])
    assert files_digest([one]) != files_digest([SourceFile("a.yaml", None, "2" * 64)])
    assert files_digest([one]) != files_digest([one, SourceFile("b.yaml", None, "1" * 64)])
    assert digest(["ab", "c"]) != digest(["a", "bc"])


# --- unchanged in etcd: what the records vouch for -----------------------------------------------


def synced(*sources: SourceFile, revision: int = 10) -> RegistryState:
    """etcd as a sync of these files left it."""
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    for source in sources:
        capability = rendered(source)
        assert capability.values is not None
        keys.update((key, KeyState(value, revision)) for key, value in capability.values.items())
        records[capability.id] = KeyState(capability.record, revision)
    return RegistryState(revision=revision, capability_keys=keys, records=records)


def with_key(actual: RegistryState, key: str, state: KeyState | None) -> RegistryState:
    keys = dict(actual.capability_keys)
    if state is None:
        del keys[key]
    else:
        keys[key] = state
    return RegistryState(max(actual.revision, state.mod_revision if state else 0), keys, actual.records)


A = source_file("a.yaml", small_manifest("chora.test.a"))
B = source_file("b.yaml", small_manifest("chora.test.b"))


def test_etcd_vouches_for_unchanged_files_with_their_capability_as_it_holds_it() -> None:
    found = unchanged_in_etcd([A, B], synced(A, B), prefix=PREFIX)
    assert found == {
        "a.yaml": dataclasses.replace(rendered(A), values=None),
        "b.yaml": dataclasses.replace(rendered(B), values=None),
    }


def test_a_record_with_a_commit_vouches_as_well() -> None:
    actual = synced(A)
    record = actual.records["chora.test.a"]
    actual = RegistryState(
        actual.revision,
        actual.capability_keys,
        {"chora.test.a": KeyState(with_commit(record.value or b"", "1" * 40), 10)},
    )
    assert set(unchanged_in_etcd([A], actual, prefix=PREFIX)) == {"a.yaml"}


def test_a_changed_file_is_not_unchanged() -> None:
    edited = source_file("a.yaml", b"# edited\n" + A.data)
    assert unchanged_in_etcd([edited, B], synced(A, B), prefix=PREFIX).keys() == {"b.yaml"}


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(KeyState(b"9.9.9", 11), id="written-after-the-record"),
        pytest.param(KeyState(b"1.0.0", 11), id="rewritten-with-the-same-value"),
        pytest.param(None, id="deleted"),
    ],
)
def test_a_key_written_after_the_record_or_gone_means_not_unchanged(state: KeyState | None) -> None:
    actual = with_key(synced(A, B), capability_key(PREFIX, "chora.test.a", "version"), state)
    assert unchanged_in_etcd([A, B], actual, prefix=PREFIX).keys() == {"b.yaml"}


def test_a_record_naming_another_file_or_hash_vouches_for_nothing() -> None:
    actual = synced(A)
    for record in (
        encode_record(ManagedRecord("other.yaml", A.sha256, "pattern", "1.0.0", ())),
        encode_record(ManagedRecord("a.yaml", "0" * 64, "pattern", "1.0.0", ())),
        b"garbage",
    ):
        records = {"chora.test.a": KeyState(record, 10)}
        assert unchanged_in_etcd([A], RegistryState(10, actual.capability_keys, records), prefix=PREFIX) == {}


def test_a_file_not_named_after_its_id_is_found_by_its_record() -> None:
    misnamed = source_file("misnamed.yaml", A.data)
    found = unchanged_in_etcd([misnamed], synced(misnamed), prefix=PREFIX)
    assert found == {"misnamed.yaml": dataclasses.replace(rendered(misnamed), values=None)}


def test_files_left_unchanged_are_left_out_unless_etcd_is_checked_again() -> None:
    capability = rendered(A)
    left = {"a.yaml": (A.sha256, capability)}
    actual = synced(A, B)

    assert unchanged_in_etcd([A, B], actual, prefix=PREFIX, left=left).keys() == {"b.yaml"}

    rechecked = unchanged_in_etcd([A, B], actual, prefix=PREFIX, left=left, recheck=True)
    assert rechecked.keys() == {"a.yaml", "b.yaml"}
    assert rechecked["a.yaml"] is capability  # the known object, so what depends on it holds still

    edited = with_key(actual, capability_key(PREFIX, "chora.test.a", "version"), KeyState(b"9.9.9", 11))
    assert unchanged_in_etcd([A, B], edited, prefix=PREFIX, left=left, recheck=True).keys() == {"b.yaml"}


def test_what_was_left_unchanged_of_other_content_vouches_for_nothing() -> None:
    capability = rendered(A)
    left = {"a.yaml": ("0" * 64, capability)}
    assert left_unchanged_for(left, A) is None
    assert left_unchanged_for({"a.yaml": (A.sha256, capability)}, A) is capability
    assert left_unchanged_for(None, A) is None
    # Left unchanged with other content, so etcd is asked, and vouches.
    assert unchanged_in_etcd([A], synced(A), prefix=PREFIX, left=left).keys() == {"a.yaml"}


def test_may_differ_is_every_id_not_held_unchanged_as_the_very_same_object() -> None:
    a, b = rendered(A), rendered(B)
    c = rendered(source_file("c.yaml", small_manifest("chora.test.c")))
    desired = {a.id: a, b.id: b, c.id: c}
    equal_copy = dataclasses.replace(b)
    assert equal_copy == b
    assert may_differ(desired, {a.id: a, b.id: equal_copy}) == {b.id, c.id}
    assert may_differ(desired, desired) == set()
    assert may_differ(desired, {}) == set(desired)


def test_what_nothing_vouches_for_is_to_be_parsed_in_order() -> None:
    c = source_file("c.yaml", small_manifest("chora.test.c"))
    changed = source_file("b.yaml", small_manifest("chora.test.b", version="2.0.0"))
    left = {"a.yaml": (A.sha256, rendered(A))}

    found, unvouched = vouched_for([A, changed, c], synced(B), prefix=PREFIX, left=left)
    assert (found, unvouched) == ({}, [changed, c])  # A is left unchanged: neither found nor to parse

    found, unvouched = vouched_for([A, changed, c], synced(B), prefix=PREFIX, left=left, recheck=True)
    assert (found, unvouched) == ({}, [A, changed, c])  # etcd, read again, holds no record of A
