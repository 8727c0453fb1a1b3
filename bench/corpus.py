"""The manifests the benchmark syncs: N generated ones, or a copy of the real 48-file corpus.

Generated manifests look like the real ones (flat layout, ~1-2 KB, a ``chora_service`` or
``chora_pattern`` block, one to three ``requires`` on other generated ids) and are valid: ids match
the schema, versions are SemVer ``1.x.y``, every constraint is satisfied, nothing dangles, and there
are no ``requires`` cycles (a manifest only depends on lower-numbered ones). The same seed always
gives the same bytes.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final


def _real_corpus() -> Path | None:
    configured = os.environ.get("CHORA_BASE_CORPUS")
    if configured:
        path = Path(configured).expanduser()
        return path / "capabilities" if (path / "capabilities").is_dir() else path
    beside = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "chora-base" / "capabilities"
    return beside if beside.is_dir() else None


REAL_CORPUS: Final = _real_corpus()
"""The real chora-base corpus: ``$CHORA_BASE_CORPUS``, else beside the repository (as on CI), else None
(the benchmark then generates its 48 manifests too)."""
VERSION_LINE: Final = re.compile(rb"^(  dc_hasVersion: )'?(\d+)\.(\d+)\.(\d+)'?[ \t]*$", re.MULTILINE)
"""The metadata's version line, as both the generator and the real corpus write it."""

DOMAINS: Final = (
    "awareness",
    "devex",
    "infrastructure",
    "observability",
    "platform",
    "quality",
    "security",
    "data",
    "integration",
    "react",
    "storage",
    "ml",
)
WORDS: Final = (
    "agent",
    "alert",
    "api",
    "audit",
    "auth",
    "batch",
    "bridge",
    "cache",
    "catalog",
    "config",
    "connector",
    "dashboard",
    "discovery",
    "event",
    "feature",
    "gateway",
    "graph",
    "health",
    "index",
    "ingest",
    "inventory",
    "ledger",
    "lint",
    "memory",
    "metrics",
    "migration",
    "notebook",
    "policy",
    "queue",
    "registry",
    "release",
    "router",
    "scheduler",
    "schema",
    "search",
    "secret",
    "session",
    "snapshot",
    "stream",
    "template",
    "trace",
    "vault",
    "workflow",
)
SUBJECTS: Final = (
    "service-mesh",
    "discovery",
    "observability",
    "automation",
    "documentation",
    "testing",
    "security",
    "developer-experience",
    "data-pipeline",
    "agent-awareness",
    "ci-cd",
    "quality-gates",
)
FORMATS: Final = ("application/x-executable", "text/markdown", "application/vnd.chora.sap+markdown")
CONSTRAINTS: Final = ("^1.0.0", ">=1.0.0 <2.0.0", "^1.0.0", "*", "1.x")
RELATIONSHIPS: Final = ("prerequisite", "runtime", "prerequisite")
ARTIFACTS: Final = (
    "capability_charter",
    "protocol_specification",
    "awareness_guide",
    "adoption_blueprint",
    "adoption_ledger",
    "reference_guide",
)


@dataclass(frozen=True, slots=True)
class Corpus:
    """A directory of manifests, and what the benchmark needs to know about it."""

    directory: Path
    files: tuple[Path, ...]
    """The manifests whose version the edit benchmarks may change (they have a ``dc_hasVersion``)."""
    ids: dict[Path, str]
    """The capability id of each editable file."""
    count: int
    """Manifest files in the directory."""
    real: bool
    """The real corpus (one dangling reference: a warning), not a generated one."""


def generate(directory: Path, count: int, seed: int = 5) -> Corpus:
    """Write ``count`` valid, realistic manifests into ``directory`` (created empty)."""
    directory.mkdir(parents=True, exist_ok=False)
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    ids: list[str] = []
    files: dict[Path, str] = {}
    for index in range(count):
        domain = DOMAINS[index % len(DOMAINS)]
        name = f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{index:05d}"
        capability_id = f"chora.{domain}.{name}"
        version = f"1.{rng.randrange(10)}.{rng.randrange(20)}"
        dependencies = rng.sample(ids, k=min(len(ids), rng.randint(1, 3)))
        path = directory / f"{capability_id}.yaml"
        text = _manifest(
            rng, capability_id, domain=domain, name=name, version=version, dependencies=dependencies
        )
        path.write_text(text, encoding="utf-8")
        ids.append(capability_id)
        files[path] = capability_id
    return Corpus(directory, tuple(files), files, count, real=False)


def copy_real(directory: Path, source: Path | None = REAL_CORPUS) -> Corpus:
    """Copy the real corpus; its files with a ``dc_hasVersion`` line are the editable ones."""
    if source is None:
        raise FileNotFoundError("no chora-base corpus: set CHORA_BASE_CORPUS")
    shutil.copytree(source, directory)
    paths = sorted(path for path in directory.iterdir() if path.suffix in (".yaml", ".yml"))
    editable = {path: path.stem for path in paths if VERSION_LINE.search(path.read_bytes())}
    return Corpus(directory, tuple(editable), editable, len(paths), real=True)


def set_patch(path: Path, patch: int) -> str:
    """Rewrite the file with ``dc_hasVersion`` at patch level ``patch`` (major and minor kept, so every
    constraint on it stays satisfied); returns the new version.

    Written to a hidden file and renamed over the manifest, as a Git checkout does, so the service
    never reads a half-written file.
    """
    text = path.read_bytes()
    found = VERSION_LINE.search(text)
    if found is None:
        raise ValueError(f"{path} has no dc_hasVersion line")
    version = f"{int(found[2])}.{int(found[3])}.{patch}"
    updated = text[: found.start()] + found[1] + version.encode() + text[found.end() :]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(updated)
    temporary.replace(path)
    return version


def _manifest(
    rng: random.Random, capability_id: str, *, domain: str, name: str, version: str, dependencies: list[str]
) -> str:
    words = name.rsplit("_", 1)[0].split("_")
    title = " ".join(word.capitalize() for word in words)
    is_service = rng.random() < 0.5
    subjects = rng.sample(SUBJECTS, k=rng.randint(3, 5))
    lines = [
        "apiVersion: chora.dev/v1",
        "kind: Capability",
        "metadata:",
        f"  dc_identifier: {capability_id}",
        f"  dc_identifier_legacy: SAP-{rng.randrange(1000):03d}",
        f"  dc_title: {title} {'Service' if is_service else 'Pattern'}",
        f"  dc_description: {title} for the {domain} domain, with a registry of its interfaces,",
        "    health monitoring and an adoption guide, so that other capabilities can discover",
        "    it and compose with it dynamically",
        f"  dc_type: {'Service' if is_service else 'Pattern'}",
        f"  dc_hasVersion: {version}",
        "  dc_creator: chora-base",
        f"  dc_date: '2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}'",
        f"  dc_format: {rng.choice(FORMATS)}",
        "  dc_subject:",
        *(f"  - {subject}" for subject in subjects),
    ]
    lines += _service(rng, name) if is_service else _pattern(rng, name)
    lines += ["dc_relation:", "  requires:"]
    for dependency in dependencies:
        lines += [
            f"  - capability: {dependency}",
            f"    version: '{rng.choice(CONSTRAINTS)}'",
            f"    relationship: {rng.choice(RELATIONSHIPS)}",
        ]
    return "\n".join(lines) + "\n"


def _service(rng: random.Random, name: str) -> list[str]:
    package = "chora-" + name.rsplit("_", 1)[0].replace("_", "-")
    return [
        "chora_service:",
        "  interfaces:",
        *(f"  - {interface}" for interface in rng.sample(("cli", "mcp", "rest", "grpc"), k=2)),
        "  health:",
        "    endpoint: /health",
        f"    interval: {rng.choice((5, 10, 30))}",
        "    timeout: 5",
        "    heartbeat_ttl: 30",
        "  endpoints:",
        *(
            line
            for route in rng.sample(("list", "get", "create", "update", "search", "status"), k=3)
            for line in (
                f"  - path: /api/v1/{name}/{route}",
                f"    method: {'GET' if route in ('list', 'get', 'search', 'status') else 'POST'}",
                f"    description: {route.capitalize()} the {name.replace('_', ' ')} resources",
            )
        ),
        "  distribution:",
        "    pypi:",
        f"      package_name: {package}",
        f"      install_command: pip install {package}",
        "    docker:",
        f"      image: ghcr.io/chora/{package}:latest",
    ]


def _pattern(rng: random.Random, name: str) -> list[str]:
    folder = name.rsplit("_", 1)[0].replace("_", "-")
    return [
        "chora_pattern:",
        "  artifacts:",
        *(
            line
            for artifact in rng.sample(ARTIFACTS, k=rng.randint(4, 6))
            for line in (
                f"  - type: {artifact}",
                f"    path: docs/skilled-awareness/{folder}/{artifact.replace('_', '-')}.md",
                "    format: text/markdown",
            )
        ),
    ]
