"""Pack per-capability changes into etcd transactions within etcd's limits.

A change is never split across transactions, so every capability changes atomically; many changes
share a transaction for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gitops_sync.core.rendering import request_size
from gitops_sync.model.plans import Change


def change_size(change: Change) -> int:
    return request_size(change.puts) + sum(2 * len(key) + 32 for key in change.deletes)


def batches(changes: Iterable[Change], *, max_ops: int, max_bytes: int) -> Iterator[tuple[Change, ...]]:
    """Group changes in order, each group within ``max_ops`` operations and ``max_bytes``."""
    batch: list[Change] = []
    ops = size = 0
    for change in changes:
        change_ops, bytes_ = change.op_count, change_size(change)
        if change_ops > max_ops or bytes_ > max_bytes:
            raise ValueError(
                f"{change.capability_id}: {change_ops} ops / {bytes_} bytes cannot fit one "
                f"transaction of {max_ops} ops / {max_bytes} bytes"
            )
        if batch and (ops + change_ops > max_ops or size + bytes_ > max_bytes):
            yield tuple(batch)
            batch, ops, size = [], 0, 0
        batch.append(change)
        ops += change_ops
        size += bytes_
    if batch:
        yield tuple(batch)
