"""Render a manifest into the exact bytes of its four etcd keys and the service's record of them.

Serialization is canonical (sorted keys, no insignificant white space), so the same manifest always
gives the same bytes and "unchanged" is a byte compare.
"""

from __future__ import annotations

import json
import re
from typing import Final

from gitops_sync.core.batching import refusal
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import (
    CAPABILITY_FIELDS,
    DEFAULT_SYNC_PREFIX,
    OPS_PER_CAPABILITY,
    capability_key,
    managed_key,
)
from gitops_sync.model.manifests import Dependency, Manifest
from gitops_sync.model.plans import Change, DesiredCapability
from gitops_sync.model.registry import ManagedRecord
from gitops_sync.model.sources import SourceFile

RENDERING: Final = 2
"""How manifest files become key values, or errors. Bump it with any change that renders the same
file to other bytes, or accepts or refuses it differently (the golden bytes and the schema's digest
in ``tests/core/test_rendering.py`` fail until you do): records and marks of another rendering
vouch for nothing, so every file is parsed and checked again once, and its keys rewritten only
where their bytes differ."""


_CANONICAL: Final = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)
"""Made once: ``json.dumps`` with options builds a new encoder on every call, a fifth of its cost."""


def to_json(value: object) -> bytes:
    return _CANONICAL.encode(value).encode()


def render_values(manifest: Manifest, prefix: str) -> dict[str, bytes]:
    """The four keys of the key schema (docs/architecture.md), in :data:`CAPABILITY_FIELDS` order."""
    fields = {
        "metadata": to_json(manifest.metadata),
        "type": manifest.type.encode(),
        "version": manifest.version.encode(),
        "dependencies": to_json(
            [
                {"capability": d.capability, "relationship": d.relationship, "version": d.version}
                for d in manifest.dependencies
            ]
        ),
    }
    return {capability_key(prefix, manifest.id, name): fields[name] for name in CAPABILITY_FIELDS}


def encode_record(record: ManagedRecord) -> bytes:
    return to_json(
        {
            "source": record.source,
            "source_sha256": record.source_sha256,
            "type": record.type,
            "version": record.version,
            "dependencies": [d.as_row() for d in record.dependencies],
            "rendering": RENDERING,
        }
    )


_COMMIT_FIELD: Final = b'{"commit":"'


def with_commit(record: bytes, commit: str | None) -> bytes:
    """The record as written: with the commit that wrote it (first, as canonical JSON sorts it),
    when the manifests come from a commit. The commit is not part of the rendering: a new commit
    alone rewrites no record (see :func:`without_commit`)."""
    if commit is None or not record.startswith(b"{"):
        return record
    return _COMMIT_FIELD[:-1] + to_json(commit) + b"," + record[1:]


def without_commit(value: bytes) -> bytes:
    """A record as :func:`desire` renders it, whichever commit wrote it: what reconciling compares."""
    if not value.startswith(_COMMIT_FIELD):
        return value
    end = value.find(b'",', len(_COMMIT_FIELD))
    return value if end < 0 else b"{" + value[end + 2 :]


def record_commit(value: bytes | None) -> str | None:
    """The commit that last wrote the capability, if a commit did."""
    if value is None or not value.startswith(_COMMIT_FIELD):
        return None
    end = value.find(b'",', len(_COMMIT_FIELD))
    return value[len(_COMMIT_FIELD) : end].decode(errors="replace") if end > 0 else None


def decode_record(value: bytes | None) -> ManagedRecord | None:
    """The record, or None if the value is not one (hand-edited, from another version, or of
    another :data:`RENDERING`)."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        if data["rendering"] != RENDERING:
            return None
        return ManagedRecord(
            source=str(data["source"]),
            source_sha256=str(data["source_sha256"]),
            type=str(data["type"]),
            version=str(data["version"]),
            dependencies=tuple(Dependency.from_row(row) for row in data["dependencies"]),
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


def is_record(value: bytes | None) -> bool:
    """Whether ``value`` is a record as this service writes them, of any rendering: only such a
    record makes a capability this service's to prune (a hand-written or garbled one vouches for
    nothing)."""
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(source := data.get("source"), str)
        and bool(source)
        and isinstance(digest := data.get("source_sha256"), str)
        and _SHA256.fullmatch(digest) is not None
        and isinstance(data.get("rendering"), int)
    )


_SHA256: Final = re.compile(r"[0-9a-f]{64}")


def record_source(value: bytes | None) -> str | None:
    """The file a record names, also for a record this version cannot otherwise use (one of an
    older format, say): a broken file must still hold what it made."""
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


def desire(
    manifest: Manifest,
    source: SourceFile,
    *,
    prefix: str,
    sync_prefix: str = DEFAULT_SYNC_PREFIX,
    max_ops: int = OPS_PER_CAPABILITY,
    max_request_bytes: int,
) -> DesiredCapability:
    """The capability as Git wants it in etcd, with the record that lets a restart skip it.

    Raises :class:`ManifestError` if its largest write (every key and the record, each compared)
    would not fit one transaction of ``max_ops`` and ``max_request_bytes`` (:func:`refusal`)."""
    values = render_values(manifest, prefix)
    record = ManagedRecord(source.name, source.sha256, manifest.type, manifest.version, manifest.dependencies)
    encoded = encode_record(record)
    puts = (*values.items(), (managed_key(sync_prefix, manifest.id), encoded))
    largest = Change(manifest.id, "create", puts=puts, expected=tuple((key, 0) for key, _ in puts))
    too_big = refusal(largest, max_ops=max_ops, max_bytes=max_request_bytes)
    if too_big is not None:
        raise ManifestError(
            source.name,
            f"renders to etcd keys that need {too_big} (etcd's request limit, less room for a "
            "leader's fence); move bulky content out of the manifest",
        )
    return DesiredCapability(
        id=manifest.id,
        type=manifest.type,
        source=source.name,
        version=manifest.version,
        dependencies=manifest.dependencies,
        values=values,
        record=encoded,
    )
