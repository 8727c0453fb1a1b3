"""Render a manifest into the exact bytes of its four etcd keys and the service's record of them.

Serialization is canonical (sorted keys, no insignificant white space), so the same manifest always
gives the same bytes and "unchanged" is a byte compare.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping

from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import CAPABILITY_FIELDS, capability_key
from gitops_sync.model.manifests import Manifest
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.registry import ManagedRecord
from gitops_sync.model.sources import SourceFile


def to_json(value: object) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode()


def render_values(manifest: Manifest, prefix: str) -> dict[str, bytes]:
    """The four keys of DESIGN.md section 2, in :data:`CAPABILITY_FIELDS` order."""
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


def keys_digest(values: Mapping[str, bytes]) -> str:
    """A digest of a capability's keys and values, order included, for the managed record."""
    digest = hashlib.sha256()
    for key, value in values.items():
        for part in (key.encode(), value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def encode_record(record: ManagedRecord) -> bytes:
    return to_json(
        {
            "source": record.source,
            "source_sha256": record.source_sha256,
            "keys_sha256": record.keys_sha256,
            "kinds": list(record.kinds),
            "lines": list(record.lines),
        }
    )


@functools.lru_cache(maxsize=1 << 16)
def decode_record(value: bytes) -> ManagedRecord | None:
    """The record, or None if the value is not one (hand-edited, or from another version)."""
    try:
        data = json.loads(value)
        return ManagedRecord(
            source=str(data["source"]),
            source_sha256=str(data["source_sha256"]),
            keys_sha256=str(data["keys_sha256"]),
            kinds=tuple(str(kind) for kind in data.get("kinds", ())),
            lines=tuple(line if isinstance(line, int) else None for line in data.get("lines", ())),
        )
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


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
    record = ManagedRecord(
        source.name,
        source.sha256,
        keys_digest(values),
        kinds=tuple(dependency.kind for dependency in manifest.dependencies),
        lines=tuple(dependency.line for dependency in manifest.dependencies),
    )
    return DesiredCapability(
        id=manifest.id,
        type=manifest.type,
        source=source.name,
        version=manifest.version,
        dependencies=manifest.dependencies,
        values=values,
        record=encode_record(record),
    )
