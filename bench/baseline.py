"""The baseline: what the seed's original script does, for comparison with gitops-sync.

Per manifest: parse it with PyYAML's pure-Python ``SafeLoader`` (every time, nothing is skipped),
then write its four keys with four separate ``put`` calls, no transaction, logging each capability.
Same key schema as gitops-sync, so the two write the same amount of data.

    python bench/baseline.py --capabilities DIR --etcd-host 127.0.0.1 --etcd-port PORT
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import etcd3
import yaml

PREFIX = "/chora/capabilities/"
log = logging.getLogger("gitops-sync")


def capability_type(document: dict[str, Any]) -> str:
    if "chora_service" in document:
        return "service"
    if "chora_pattern" in document:
        return "pattern"
    return str(document["metadata"].get("dc_type", "unknown")).lower()


def dependencies(document: dict[str, Any]) -> list[dict[str, str]]:
    relations = document.get("dc_relation") or {}
    found = []
    for kind, entries in relations.items():
        for entry in entries or ():
            fields = {"capability": entry} if isinstance(entry, str) else entry
            found.append(
                {
                    "capability": fields["capability"],
                    "relationship": fields.get(
                        "relationship", "prerequisite" if kind == "requires" else kind
                    ),
                    "version": fields.get("version", "*"),
                }
            )
    return found


def sync(directory: Path, client: Any) -> tuple[int, int]:
    synced = errors = 0
    for path in sorted(directory.glob("*.yaml")):
        try:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
            metadata = document["metadata"]
            capability_id = metadata["dc_identifier"]
            kind = capability_type(document)
            version = str(metadata.get("dc_hasVersion") or metadata.get("chora_version") or "0.0.0")
            base = f"{PREFIX}{capability_id}/"
            client.put(base + "metadata", json.dumps(metadata, default=str))
            client.put(base + "type", kind)
            client.put(base + "version", version)
            client.put(base + "dependencies", json.dumps(dependencies(document)))
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            log.error("Failed to sync %s: %s", path.name, exc)
            errors += 1
            continue
        log.info("Synced: %s (%s)", capability_id, kind)
        synced += 1
    return synced, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capabilities", type=Path, required=True)
    parser.add_argument("--etcd-host", default="127.0.0.1")
    parser.add_argument("--etcd-port", type=int, required=True)
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s - %(name)s - %(levelname)s - %(message)s",
        stream=sys.stderr,
    )
    client = etcd3.client(options.etcd_host, options.etcd_port)
    log.info("Connected to etcd at %s:%d", options.etcd_host, options.etcd_port)
    try:
        synced, errors = sync(options.capabilities, client)
    finally:
        client.close()
    log.info("Sync complete: %d synced, 0 skipped, %d errors", synced, errors)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
