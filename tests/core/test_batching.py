"""Batching: changes packed in order into transactions within etcd's op and byte limits, never split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.batching import batches, change_size
from gitops_sync.model.plans import Change


def change(
    name: str, puts: int = 0, value_size: int = 10, deletes: int = 0, compares: int | None = None
) -> Change:
    put_keys = [f"/p/chora.test.{name}/k{i}" for i in range(puts)]
    delete_keys = [f"/p/chora.test.{name}/d{i}" for i in range(deletes)]
    touched = put_keys + delete_keys
    return Change(
        capability_id=f"chora.test.{name}",
        kind="delete" if deletes and not puts else "update",
        puts=tuple((key, b"v" * value_size) for key in put_keys),
        deletes=tuple(delete_keys),
        expected=tuple((key, 0) for key in touched[: len(touched) if compares is None else compares]),
    )


def packed(changes: list[Change], *, max_ops: int, max_bytes: int) -> list[list[str]]:
    return [
        [c.capability_id.removeprefix("chora.test.") for c in b]
        for b in batches(changes, max_ops=max_ops, max_bytes=max_bytes)
    ]


def test_no_changes_give_no_batches() -> None:
    assert list(batches([], max_ops=128, max_bytes=1_000)) == []


def test_batches_respect_max_ops() -> None:
    changes = [change(name, puts=5) for name in "abcde"]
    assert packed(changes, max_ops=10, max_bytes=10**9) == [["a", "b"], ["c", "d"], ["e"]]
    assert packed(changes, max_ops=14, max_bytes=10**9) == [["a", "b"], ["c", "d"], ["e"]]
    assert packed(changes, max_ops=15, max_bytes=10**9) == [["a", "b", "c"], ["d", "e"]]


def test_ops_are_counted_as_the_larger_of_compares_and_operations() -> None:
    compares_only = Change("chora.test.a", "update", puts=(), expected=tuple((f"k{i}", 1) for i in range(6)))
    assert compares_only.op_count == 6
    fewer_compares = change("b", puts=6, compares=1)
    assert fewer_compares.op_count == 6
    assert packed([compares_only, fewer_compares], max_ops=11, max_bytes=10**9) == [["a"], ["b"]]
    assert packed([compares_only, fewer_compares], max_ops=12, max_bytes=10**9) == [["a", "b"]]


def test_deletes_count_as_operations_and_bytes() -> None:
    gone = change("gone", deletes=5)
    assert gone.op_count == 5
    assert change_size(gone) == sum(2 * len(key) + 32 for key in gone.deletes)
    assert packed([gone, gone], max_ops=9, max_bytes=10**9) == [["gone"], ["gone"]]


def test_batches_respect_max_bytes() -> None:
    changes = [change(name, puts=1, value_size=1_000) for name in "abcd"]
    size = change_size(changes[0])
    assert size > 1_000
    assert packed(changes, max_ops=128, max_bytes=2 * size) == [["a", "b"], ["c", "d"]]
    assert packed(changes, max_ops=128, max_bytes=2 * size - 1) == [["a"], ["b"], ["c"], ["d"]]
    assert packed(changes, max_ops=128, max_bytes=4 * size) == [["a", "b", "c", "d"]]


def test_batches_keep_order_and_never_split_a_change() -> None:
    changes = [change("a", puts=3), change("b", puts=5), change("c", puts=1), change("d", puts=5)]
    result = list(batches(changes, max_ops=6, max_bytes=10**9))
    assert [list(b) for b in result] == [[changes[0]], [changes[1], changes[2]], [changes[3]]]


@pytest.mark.parametrize(
    ("too_big", "max_ops", "max_bytes"),
    [
        pytest.param(change("big", puts=5), 4, 10**9, id="ops"),
        pytest.param(change("big", puts=1, value_size=10_000), 128, 10_000, id="bytes"),
        pytest.param(change("big", deletes=3), 2, 10**9, id="delete-ops"),
    ],
)
def test_a_change_that_cannot_fit_is_a_value_error(too_big: Change, max_ops: int, max_bytes: int) -> None:
    fits = change("small", puts=1)
    with pytest.raises(ValueError, match=r"^chora\.test\.big: .* over one transaction"):
        list(batches([fits, too_big], max_ops=max_ops, max_bytes=max_bytes))


@st.composite
def changes(draw: st.DrawFn) -> list[Change]:
    return [
        change(
            f"c{i}",
            puts=draw(st.integers(min_value=0, max_value=6)),
            value_size=draw(st.integers(min_value=0, max_value=400)),
            deletes=draw(st.integers(min_value=0, max_value=3)),
            compares=draw(st.none() | st.integers(min_value=0, max_value=9)),
        )
        for i in range(draw(st.integers(min_value=0, max_value=30)))
    ]


@settings(max_examples=200, deadline=None, database=None)
@given(changes(), st.integers(min_value=-2, max_value=20), st.integers(min_value=-200, max_value=3_000))
def test_batching_properties(changes: list[Change], ops_slack: int, bytes_slack: int) -> None:
    # Limits near the largest change, so that most examples fit and some do not.
    max_ops = max(1, max((c.op_count for c in changes), default=0) + ops_slack)
    max_bytes = max(1, max((change_size(c) for c in changes), default=0) + bytes_slack)
    fits = all(c.op_count <= max_ops and change_size(c) <= max_bytes for c in changes)
    if not fits:
        with pytest.raises(ValueError, match="over one transaction"):
            list(batches(changes, max_ops=max_ops, max_bytes=max_bytes))
        return
    result = list(batches(changes, max_ops=max_ops, max_bytes=max_bytes))
    assert [c for batch in result for c in batch] == changes
    for batch in result:
        assert batch
        assert sum(c.op_count for c in batch) <= max_ops
        assert sum(change_size(c) for c in batch) <= max_bytes
    # Greedy: a batch is closed only when the next change would not fit in it.
    for batch, following in itertools.pairwise(result):
        nxt = following[0]
        assert (
            sum(c.op_count for c in batch) + nxt.op_count > max_ops
            or sum(change_size(c) for c in batch) + change_size(nxt) > max_bytes
        )
