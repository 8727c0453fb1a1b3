"""Helpers the tests share: where the fixtures are, and how to look at etcd and wait on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import etcd3

ROOT = Path(__file__).resolve().parents[1]
CHORA_BASE = ROOT.parent / "shared" / "fixtures" / "chora-base" / "capabilities"
EXAMPLES = ROOT / "examples" / "capabilities"
PREFIX = "/chora/capabilities/"

T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


def keys_under(client: etcd3.MultiEndpointEtcd3Client, prefix: str) -> dict[str, tuple[bytes, int]]:
    """Every key under ``prefix`` with its value and mod revision."""
    return {meta.key.decode(): (value, meta.mod_revision) for value, meta in client.get_prefix(prefix)}


def value_of(client: etcd3.MultiEndpointEtcd3Client, key: str) -> bytes | None:
    value, _ = client.get(key)
    return value if value is None else bytes(value)


def wait_for(condition: Callable[[], T | None], *, timeout: float, interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise AssertionError(msg)
        time.sleep(interval)
