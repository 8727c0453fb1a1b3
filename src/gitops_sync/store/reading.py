"""Paged reads: a prefix read at one pinned revision, and many keys' values, each in pages sized by
count and by bytes, so a large registry (or a huge value) is read consistently and under gRPC's
receive limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import grpc
from etcd3 import etcdrpc
from etcd3.utils import prefix_range_end

from gitops_sync.model.registry import KeyState
from gitops_sync.store.cluster import Cluster
from gitops_sync.store.members import Attempt

PAGE_SIZE: Final = 1000
"""Keys per read request with values, at most: 1,000 records are well within the receive limit."""
FIRST_PAGE_SIZE: Final = 100
"""Keys in the first page of a read with values; later pages are sized by the bytes per key so
far (up to :data:`PAGE_SIZE`). A page too slow or too large to answer is asked for in quarters."""
KEYS_PAGE_SIZE: Final = 10_000
"""Keys per read request without values, at most."""
RESPONSE_BYTES: Final = 8 * 1024 * 1024
"""What one read response should hold at most: the next page is sized by the last one's bytes per
key. A response larger than gRPC's receive limit is asked for again in smaller pages."""
_TOO_LARGE: Final = "larger than max"
"""gRPC's words (code RESOURCE_EXHAUSTED) for a response over the receive limit."""


def read_prefix(
    cluster: Cluster, prefix: str, *, revision: int | None = None, keys_only: bool = False
) -> tuple[dict[str, KeyState], int, tuple[bytes, ...]]:
    """The keys under ``prefix`` at ``revision`` (etcd's current one if None), in pages; the
    revision read at; and the keys that are not UTF-8."""
    start = prefix.encode()
    end = prefix_range_end(start)
    found: dict[str, KeyState] = {}
    undecodable: list[bytes] = []
    most = KEYS_PAGE_SIZE if keys_only else PAGE_SIZE
    limit = most if keys_only else FIRST_PAGE_SIZE
    while True:

        def page(attempt: Attempt, start: bytes = start, revision: int | None = revision) -> Any:
            nonlocal limit
            while True:
                request = etcdrpc.RangeRequest(
                    key=start, range_end=end, limit=limit, revision=revision or 0, keys_only=keys_only
                )
                try:
                    return attempt.unary(attempt.member.kv.Range, request)
                except grpc.RpcError as exc:
                    if _timed_out(exc):
                        limit = max(1, limit // 4)  # the next attempt asks for less
                    if limit == 1 or not _too_large(exc):
                        raise
                    limit = max(1, limit // 4)

        response = cluster.call("read", page)
        revision = revision or int(response.header.revision)
        for kv in response.kvs:
            key = decoded(kv.key)
            if key is None:
                undecodable.append(bytes(kv.key))
            else:
                found[key] = KeyState(None if keys_only else kv.value, kv.mod_revision)
        if not response.more or not response.kvs:
            return found, revision, tuple(undecodable)
        start = response.kvs[-1].key + b"\0"
        limit = _next_page(limit, response.ByteSize(), len(response.kvs), most)


def read_values(cluster: Cluster, keys: Sequence[str], per_request: int) -> dict[str, KeyState]:
    """The current value and mod revision of each of ``keys`` that exists, read ``per_request``
    keys at a time at most, fewer where their values are large."""
    found: dict[str, KeyState] = {}
    start, size = 0, max(1, per_request)
    while start < len(keys):

        def get(attempt: Attempt, start: int = start) -> tuple[dict[str, KeyState], int, int]:
            nonlocal size
            chunk = keys[start : start + size]
            try:
                return (*_get_many(attempt, chunk), len(chunk))
            except grpc.RpcError as exc:
                if _timed_out(exc):
                    size = max(1, size // 4)  # the next attempt asks for less
                raise

        states, received, count = cluster.call("read", get)
        found.update(states)
        start += count
        size = _next_page(size, received, count, per_request)
    return found


def decoded(key: bytes) -> str | None:
    """``key`` as text, or None if it is not UTF-8 (no key of this service's)."""
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def _timed_out(exc: grpc.RpcError) -> bool:
    return isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _too_large(exc: grpc.RpcError) -> bool:
    return (
        isinstance(exc, grpc.Call)
        and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and _TOO_LARGE in (exc.details() or "")
    )


def _next_page(size: int, received: int, count: int, most: int) -> int:
    """How many keys the next page asks for: as many as fit :data:`RESPONSE_BYTES` at the last
    page's bytes per key, at most ``most``."""
    if not count:
        return size
    return max(1, min(most, RESPONSE_BYTES * count // max(1, received)))


def _get_many(attempt: Attempt, keys: Sequence[str]) -> tuple[dict[str, KeyState], int]:
    """The states of those of ``keys`` that exist, read at one revision in one transaction, or
    in halves if the answer would be larger than the receive limit; and the bytes received."""
    request = etcdrpc.TxnRequest(
        success=[etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=key.encode())) for key in keys]
    )
    try:
        response = attempt.unary(attempt.member.kv.Txn, request)
    except grpc.RpcError as exc:
        if len(keys) == 1 or not _too_large(exc):
            raise
        half = len(keys) // 2
        first, first_bytes = _get_many(attempt, keys[:half])
        second, second_bytes = _get_many(attempt, keys[half:])
        return first | second, first_bytes + second_bytes
    found = {
        key: KeyState(kv.value, kv.mod_revision)
        for key, part in zip(keys, response.responses, strict=True)
        for kv in part.response_range.kvs
    }
    return found, response.ByteSize()
