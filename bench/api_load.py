"""Load on the Registry API: many concurrent clients, each sending one request after another.

Used by ``bench/run.py --api``: it measures ``GET /v1/capabilities?limit=100`` and one-id GETs
against a watch-mode service with ``--http``, on loopback only, for a bounded number of requests.

The clients share the machine's CPUs with the service, so they must cost little: each is one
keep-alive HTTP/1.1 connection spoken over asyncio streams (about 0.1 CPU-ms a request, where
httpx's async client took about 4 and set the pace instead of the service). Answers must carry a
``Content-Length`` (Starlette's JSON responses do); anything else is an error, not a guess.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

TIMEOUT: Final = 60.0
"""Seconds one request may take before the load fails."""
MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 64 * 1024 * 1024


class LoadError(Exception):
    """A request failed or was answered with something other than 200."""


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise LoadError(f"GET {path}: answer head over {MAX_HEAD} bytes")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None or length > MAX_BODY:
        raise LoadError(f"GET {path}: answered {status} without a usable Content-Length")
    body = await reader.readexactly(length)
    if status != 200:
        raise LoadError(f"GET {path} answered {status}: {body[:200]!r}")


async def _client(
    address: tuple[str, int],
    paths: Sequence[str],
    requests: int,
    latencies: dict[str, list[float]],
    seed: int,
) -> None:
    chooser = random.Random(seed)  # noqa: S311 - picks which path to ask for, nothing secret
    host = f"{address[0]}:{address[1]}"
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), TIMEOUT)
    try:
        for _ in range(requests):
            path = chooser.choice(paths)
            started = time.perf_counter()
            await asyncio.wait_for(_get(reader, writer, host, path), TIMEOUT)
            latencies[path].append(time.perf_counter() - started)
    finally:
        writer.close()
        await writer.wait_closed()


async def _load(base_url: str, paths: Sequence[str], clients: int, requests: int) -> dict[str, list[float]]:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"{base_url!r}: give http://HOST:PORT")
    address = (parts.hostname, parts.port)
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    await asyncio.gather(
        *(_client(address, paths, requests // clients, latencies, seed) for seed in range(clients))
    )
    return latencies


def measure(base_url: str, paths: Sequence[str], *, clients: int = 50, requests: int = 2_000) -> list[float]:
    """The latency of each of ``requests`` GETs of ``paths`` (chosen at random), in seconds, sent by
    ``clients`` clients at once, each waiting for its answer before sending the next; raises
    :class:`LoadError` on any answer but 200."""
    return [
        seconds
        for each in measure_by_path(base_url, paths, clients=clients, requests=requests).values()
        for seconds in each
    ]


def measure_by_path(
    base_url: str, paths: Sequence[str], *, clients: int = 50, requests: int = 2_000
) -> dict[str, list[float]]:
    """As :func:`measure`, the latencies kept apart by path."""
    return asyncio.run(_load(base_url, paths, clients, requests))
