"""Load on the Registry API: many concurrent clients, each sending one request after another.

Used by ``bench/run.py --api``: it measures ``GET /v1/capabilities?limit=100`` and one-id GETs
against a watch-mode service with ``--http``, on loopback only, for a bounded number of requests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import httpx


async def _client(
    client: httpx.AsyncClient, paths: Sequence[str], requests: int, latencies: list[float], seed: int
) -> None:
    chooser = random.Random(seed)  # noqa: S311 - picks which path to ask for, nothing secret
    for _ in range(requests):
        path = chooser.choice(paths)
        started = time.perf_counter()
        response = await client.get(path)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:200]}")


async def _load(base_url: str, paths: Sequence[str], clients: int, requests: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        await client.get(paths[0])  # warm the connection pool's first connection
        await asyncio.gather(
            *(_client(client, paths, requests // clients, latencies, seed) for seed in range(clients))
        )
    return latencies


def measure(base_url: str, paths: Sequence[str], *, clients: int = 50, requests: int = 2_000) -> list[float]:
    """The latency of each of ``requests`` GETs of ``paths`` (chosen at random), in seconds, sent by
    ``clients`` clients at once, each waiting for its answer before sending the next."""
    return asyncio.run(_load(base_url, paths, clients, requests))
