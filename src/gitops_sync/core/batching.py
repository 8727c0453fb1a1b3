"""What fits in one etcd transaction, and packing per-capability changes into transactions.

:func:`refusal` is the one rule of what fits: loading a manifest (``--validate`` too) applies it to
the largest write the capability can make, so the sync never meets a change it cannot send. A change
is never split across transactions, so every capability changes atomically; many changes share a
transaction for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from gitops_sync.model.plans import Change

OVERHEAD: Final = 16
"""Bytes of framing each compare and each operation adds to a request, rounded up."""


def change_size(change: Change) -> int:
    """A close upper estimate of the bytes ``change`` adds to a transaction request."""
    return (
        sum(len(key) for key, _ in change.expected)
        + sum(len(key) + len(value) for key, value in change.puts)
        + sum(len(key) for key in change.deletes)
        + OVERHEAD * (len(change.expected) + len(change.puts) + len(change.deletes))
    )


def refusal(change: Change, *, max_ops: int, max_bytes: int) -> str | None:
    """Why ``change`` cannot go in one transaction within these limits; None if it can."""
    ops, size = change.op_count, change_size(change)
    if ops > max_ops or size > max_bytes:
        return f"{ops} operations and {size:,} bytes, over one transaction's {max_ops} and {max_bytes:,}"
    return None


def batches(changes: Iterable[Change], *, max_ops: int, max_bytes: int) -> Iterator[tuple[Change, ...]]:
    """Group changes in order, each group within ``max_ops`` operations and ``max_bytes``."""
    batch: list[Change] = []
    ops = size = 0
    for change in changes:
        too_big = refusal(change, max_ops=max_ops, max_bytes=max_bytes)
        if too_big is not None:  # loading applies the same rule, so only a caller's bug gets here
            raise ValueError(f"{change.capability_id}: {too_big}")
        change_ops, bytes_ = change.op_count, change_size(change)
        if batch and (ops + change_ops > max_ops or size + bytes_ > max_bytes):
            yield tuple(batch)
            batch, ops, size = [], 0, 0
        batch.append(change)
        ops += change_ops
        size += bytes_
    if batch:
        yield tuple(batch)
