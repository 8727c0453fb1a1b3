"""The etcd key layout: the public capability keys and the service's own bookkeeping keys.

Consumers read ``{prefix}{id}/{field}`` for the four fields below (docs/architecture.md). The service
records what it manages under a separate prefix, so listing the capability prefix shows exactly four
keys per capability.
"""

from __future__ import annotations

import re
from typing import Final

from gitops_sync.model.limits import MAX_ID_NAME_LENGTH

CAPABILITY_ID: Final = re.compile(rf"^chora\.[a-z_]+\.[a-z0-9_]{{1,{MAX_ID_NAME_LENGTH}}}$")
"""What a capability id looks like; the schema's ``identifier`` says the same (a test checks)."""

CAPABILITY_FIELDS: Final = ("metadata", "type", "version", "dependencies")
OPS_PER_CAPABILITY: Final = len(CAPABILITY_FIELDS) + 1
"""A capability's keys and its bookkeeping record, changed together in one transaction."""

DEFAULT_PREFIX: Final = "/chora/capabilities/"
DEFAULT_SYNC_PREFIX: Final = "/chora/sync/"


def is_capability_id(text: str) -> bool:
    """A well-formed id: the only kind the service ever writes, so the only kind it may prune."""
    return CAPABILITY_ID.fullmatch(text) is not None


def capability_key(prefix: str, capability_id: str, field: str) -> str:
    return f"{prefix}{capability_id}/{field}"


def capability_keys(prefix: str, capability_id: str) -> tuple[str, ...]:
    """The exact keys of one capability, in a fixed order."""
    return tuple(capability_key(prefix, capability_id, field) for field in CAPABILITY_FIELDS)


def managed_prefix(sync_prefix: str) -> str:
    """Where the service records, one key per id, which capabilities it manages."""
    return f"{sync_prefix}managed/"


def managed_key(sync_prefix: str, capability_id: str) -> str:
    return managed_prefix(sync_prefix) + capability_id


def leader_key(sync_prefix: str) -> str:
    """Held, through a lease, by the replica that writes (the others stand by)."""
    return f"{sync_prefix}leader"


def status_key(sync_prefix: str) -> str:
    """Where the result of the last sync that changed anything is recorded."""
    return f"{sync_prefix}status"


def split_capability_key(prefix: str, key: str) -> tuple[str, str] | None:
    """``(id, field)`` for a key under ``prefix``, or None for a key outside the schema."""
    if not key.startswith(prefix):
        return None
    capability_id, slash, field = key[len(prefix) :].partition("/")
    if not slash or not capability_id or "/" in field:
        return None
    return capability_id, field
