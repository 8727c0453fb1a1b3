"""What etcd holds: keys with their values and revisions, and the service's records of what it manages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gitops_sync.model.manifests import Dependency


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key's value and the revision that last modified it."""

    value: bytes | None
    """None when only the key was read, not its value."""
    mod_revision: int


@dataclass(frozen=True, slots=True)
class ManagedRecord:
    """What the service wrote, next to the capability, when it last synced it.

    It is written in the same transaction as every write of the capability's keys, so a key whose
    mod revision is no newer than its record's still holds what was written then. If the file's
    hash is unchanged too, a restarted service takes the capability from the record, without
    reading the keys' values or parsing the file.
    """

    source: str
    source_sha256: str
    type: str
    version: str
    dependencies: tuple[Dependency, ...]
    """With the list each came from and its line, so relations can be checked without parsing."""


@dataclass(frozen=True, slots=True)
class RegistryState:
    """etcd as read at one revision: the capability keys and the bookkeeping keys."""

    revision: int
    capability_keys: Mapping[str, KeyState]
    """Every key under the capability prefix, managed or not; values only where needed."""
    records: Mapping[str, KeyState]
    """Raw managed records, by capability id."""
    status: KeyState | None = None
    undecodable: tuple[bytes, ...] = ()
    """Keys under either prefix that are not UTF-8: no key of this service's, so left out of the
    mappings above and left alone."""
