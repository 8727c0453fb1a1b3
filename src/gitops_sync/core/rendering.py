"""Render a manifest into the exact bytes of its four etcd keys and the service's record of them.

Serialization is canonical (sorted keys, no insignificant white space), so the same manifest always
gives the same bytes and "unchanged" is a byte compare.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import CAPABILITY_FIELDS, capability_key
from gitops_sync.model.manifests import Dependency, Manifest
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.registry import ManagedRecord
from gitops_sync.model.sources import SourceFile

RENDERING: Final = 1
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


def record_source(value: bytes | None) -> str | None:
    """The file a record names, also for a record this version cannot otherwise use (one of an
    older format, say): a broken file must still hold what it made."""
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


def request_size(puts: Mapping[str, bytes] | tuple[tuple[str, bytes], ...]) -> int:
    """A close upper estimate of the bytes these puts, with a compare each, add to a request."""
    items = puts.items() if isinstance(puts, Mapping) else puts
    return sum(2 * len(key) + len(value) + 32 for key, value in items)


def desire(
    manifest: Manifest, source: SourceFile, *, prefix: str, max_request_bytes: int
) -> DesiredCapability:
    """The capability as Git wants it in etcd, with the record that lets a restart skip it."""
    values = render_values(manifest, prefix)
    size = request_size(values)
    if size > max_request_bytes:
        raise ManifestError(
            source.name,
            f"renders to {size:,} bytes of etcd keys, over the {max_request_bytes:,} bytes etcd "
            "accepts in one request; move bulky content out of the manifest",
        )
    record = ManagedRecord(source.name, source.sha256, manifest.type, manifest.version, manifest.dependencies)
    return DesiredCapability(
        id=manifest.id,
        type=manifest.type,
        source=source.name,
        version=manifest.version,
        dependencies=manifest.dependencies,
        values=values,
        record=encode_record(record),
    )
