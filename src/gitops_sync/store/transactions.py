"""Writes as etcd's own transaction messages: planned changes with a compare on every key's mod
revision (and the leader's fence), and the read that tells a lost answer from a conflict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from etcd3 import etcdrpc

from gitops_sync.model.plans import Change
from gitops_sync.store.members import Attempt

_MOD: Final = etcdrpc.Compare.MOD
_EQUAL: Final = etcdrpc.Compare.EQUAL


@dataclass(frozen=True, slots=True)
class Fence:
    """Writes go through only while this key still has this create revision: a leader that lost
    its lease can no longer write."""

    key: str
    create_revision: int


def txn_request(changes: Sequence[Change], fence: Fence | None) -> Any:
    """The transaction as etcd's own message, each part filled in where it lies in the message:
    python3-etcd3's wrapper objects cost CPU (bench/README.md, "Writes")."""
    request = etcdrpc.TxnRequest()
    compare, success = request.compare.add, request.success.add
    for change in changes:
        for key, revision in change.expected:
            compare(key=key.encode(), target=_MOD, result=_EQUAL, mod_revision=revision)
        for key, value in change.puts:
            put = success().request_put
            put.key, put.value = key.encode(), value
        for key in change.deletes:
            success().request_delete_range.key = key.encode()
    if fence is not None:
        request.compare.append(created_at(fence.key, fence.create_revision))
    return request


def created_at(key: str, revision: int) -> Any:
    """The compare: ``key`` was created at ``revision`` (0: it does not exist)."""
    return etcdrpc.Compare(
        key=key.encode(), target=etcdrpc.Compare.CREATE, result=_EQUAL, create_revision=revision
    )


def applied_at(attempt: Attempt, changes: Sequence[Change]) -> int | None:
    """The revision at which a transaction of ``changes`` whose answer was lost went through, or
    None if etcd does not hold what it wrote: every key it put holds its value, all from one
    revision, and every key it deleted is gone. (If etcd holds just that because someone else
    wrote it, it holds what was wanted all the same.)"""
    puts = {key: value for change in changes for key, value in change.puts}
    deletes = [key for change in changes for key in change.deletes]
    keys = [*puts, *deletes]
    request = etcdrpc.TxnRequest(
        success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode())) for key in keys]
    )
    response = attempt.unary(attempt.member.kv.Txn, request)
    found = {
        key: part.response_range.kvs[0]
        for key, part in zip(keys, response.responses, strict=True)
        if part.response_range.kvs
    }
    if any(key in found for key in deletes):
        return None
    if any(key not in found or found[key].value != value for key, value in puts.items()):
        return None
    revisions = {int(found[key].mod_revision) for key in puts}
    if len(revisions) > 1:
        return None
    # Deletes only: their revision is not kept; etcd's current one stands in for it (the registry
    # watch then takes the deletion for someone else's, and the loop reads etcd once more).
    return revisions.pop() if revisions else int(response.header.revision)
