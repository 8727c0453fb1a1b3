"""The benchmark's own view of etcd: connect, read every key (paged), wipe, and save keys to a file.

Only the harness and its helper scripts use this; the service under test has its own adapter. Reads
are paged because 10,000 capabilities are ~15 MB, over gRPC's default 4 MiB message limit.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import etcd3
from etcd3 import etcdrpc
from etcd3.utils import prefix_range_end

HOST: Final = "127.0.0.1"
PAGE_SIZE: Final = 1000
EVERYTHING: Final = b"\0"
"""As both the start and the end of a range, etcd reads it as every key."""
GRPC_OPTIONS: Final = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
CAPABILITY_PREFIX: Final = "/chora/capabilities/"
_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Entry:
    value: bytes
    mod_revision: int


def connect(port: int, host: str = HOST) -> Any:
    """A python3-etcd3 client (untyped: the library ships no type information)."""
    return etcd3.client(host, port, timeout=30, grpc_options=GRPC_OPTIONS)


def read(client: Any, prefix: str | None = None) -> tuple[dict[bytes, Entry], int]:
    """Every key under ``prefix`` (None: the whole key space), read at one revision, and that revision."""
    start = prefix.encode() if prefix else EVERYTHING
    end = prefix_range_end(start) if prefix else EVERYTHING
    found: dict[bytes, Entry] = {}
    revision: int | None = None
    while True:
        response = client.get_range_response(start, end, limit=PAGE_SIZE, revision=revision)
        revision = revision or int(response.header.revision)
        for kv in response.kvs:
            found[bytes(kv.key)] = Entry(bytes(kv.value), int(kv.mod_revision))
        if not response.more or not response.kvs:
            return found, revision
        start = bytes(response.kvs[-1].key) + b"\0"


def count(client: Any, prefix: str | None = None) -> int:
    """Keys under ``prefix`` (None: the whole key space)."""
    start = prefix.encode() if prefix else EVERYTHING
    end = prefix_range_end(start) if prefix else EVERYTHING
    return int(client.get_range_response(start, end, count_only=True).count)


def modified_after(client: Any, prefix: str, revision: int) -> list[bytes]:
    """Keys under ``prefix`` last modified after ``revision``.

    Not paged and not ``count_only``: etcd applies ``min_mod_revision`` to the keys it returns but
    not to the count, nor before the limit.
    """
    start = prefix.encode()
    response = client.get_range_response(
        start, prefix_range_end(start), keys_only=True, min_mod_revision=revision + 1
    )
    return [bytes(kv.key) for kv in response.kvs]


def revision(client: Any) -> int:
    return int(client.get_range_response(EVERYTHING, EVERYTHING, count_only=True).header.revision)


def wipe(client: Any) -> None:
    """Delete every key, then compact the history, so each run starts from the same empty etcd."""
    request = etcdrpc.DeleteRangeRequest(key=EVERYTHING, range_end=EVERYTHING)
    response = client.kvstub.DeleteRange(request, client.timeout)
    client.compact(int(response.header.revision), physical=True)


def save(path: Path, entries: dict[bytes, Entry]) -> None:
    """Keys and values, length-prefixed, in key order."""
    with path.open("wb") as out:
        for key in sorted(entries):
            value = entries[key].value
            out.write(_LENGTH.pack(len(key)) + key + _LENGTH.pack(len(value)) + value)


def load(path: Path) -> Iterator[tuple[bytes, bytes]]:
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        parts: list[bytes] = []
        for _ in range(2):
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += _LENGTH.size
            parts.append(data[offset : offset + length])
            offset += length
        yield parts[0], parts[1]
