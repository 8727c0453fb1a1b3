"""What etcd holds: keys with their values and revisions, and the service's records of what it manages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key's value and the revision that last modified it."""

    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class ManagedRecord:
    """What the service wrote, next to the capability, when it last synced it.

    ``source_sha256`` and ``keys_sha256`` let a restarted service see that a file and the keys made
    from it are both unchanged, and so skip parsing the file at all.
    """

    source: str
    source_sha256: str
    keys_sha256: str
    kinds: tuple[str, ...] = ()
    """The ``dc_relation`` list of each entry of the dependencies key, in order, so a restart can
    check relations (a ``requires`` cycle, say) without parsing the file."""
    lines: tuple[int | None, ...] = ()
    """The line of each dependency entry, so messages about it can point there."""


@dataclass(frozen=True, slots=True)
class RegistryState:
    """etcd as read at one revision: the capability keys and the bookkeeping keys."""

    revision: int
    capability_keys: Mapping[str, KeyState]
    """Every key under the capability prefix, managed or not."""
    records: Mapping[str, KeyState]
    """Raw managed records, by capability id."""
    status: KeyState | None = None
