"""Turn one manifest file's bytes into a :class:`Manifest`, or a :class:`ManifestError` naming the file.

No file can crash, hang or trick the loader: size, encoding, nesting and alias expansion are bounded
before anything walks the document, every YAML construction error carries its line, and the
structure is checked against the published schema (:mod:`gitops_sync.core.validating`) before any
field is read. Both layouts (docs/architecture.md, "Manifests") load: the flat one in use (type block and
``dc_relation`` at the top level) and the nested one (``spec.chora_*``, ``metadata.dc_relation``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitops_sync.core.validating import validate
from gitops_sync.core.yaml_loader import Builder, ManifestLoader, Unusual
from gitops_sync.errors import ManifestError
from gitops_sync.model.limits import MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_VALUES
from gitops_sync.model.manifests import CAPABILITY_TYPES, Dependency, Manifest

DEFAULT_RELATIONSHIP: Final[Mapping[str, str]] = MappingProxyType({"requires": "prerequisite"})
"""The relationship an entry gets when it names none; any other list's entries get the list's name."""


def load_manifest(source: str, content: bytes) -> Manifest:
    """Parse and check one manifest. Raises :class:`ManifestError` naming ``source`` (and the line)."""
    try:
        return _load(source, content)
    except RecursionError:
        raise ManifestError(source, f"nested deeper than {MAX_DEPTH} levels; flatten it") from None


def _load(source: str, content: bytes) -> Manifest:
    loader = ManifestLoader(_decode(source, content))
    try:
        root = _compose(source, loader)
        lines = _KeyLines(root)
        document = _construct(source, loader, root, lines, aliases=b"*" in content)
    finally:
        loader.dispose()
    validate(source, document, lines.of)

    metadata: dict[str, Any] = document["metadata"]
    spec = document.get("spec")
    return Manifest(
        source=source,
        id=metadata["dc_identifier"],
        type=_capability_type(document, metadata, spec if isinstance(spec, dict) else {}),
        version=_version(document, metadata),
        metadata=metadata,
        dependencies=_dependencies(
            document.get("dc_relation", metadata.get("dc_relation")),
            ("dc_relation",) if "dc_relation" in document else ("metadata", "dc_relation"),
            lines,
        ),
    )


def _decode(source: str, content: bytes) -> str:
    if len(content) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            source,
            f"is {len(content):,} bytes, over the {MAX_MANIFEST_BYTES:,}-byte limit for a manifest; "
            "move bulky content out of it",
        )
    if b"\0" in content:
        raise ManifestError(source, "is a binary file (it contains NUL bytes), not YAML text")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            source,
            f"is not valid UTF-8 (byte 0x{content[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            content[: exc.start].count(b"\n") + 1,
        ) from None


def _compose(source: str, loader: ManifestLoader) -> Node:
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, f"is not valid YAML: {exc}") from None
    if root is None:
        raise ManifestError(source, "is empty; a manifest needs at least a 'metadata:' mapping")
    return root


def _construct(
    source: str, loader: ManifestLoader, root: Node, lines: _KeyLines, *, aliases: bool
) -> dict[str, Any]:
    """The document, built by :class:`Builder` if it can; else by PyYAML, bounded and checked."""
    try:
        return Builder(loader).document(root)
    except Unusual:
        pass
    # Without an alias ('*name') a document is no bigger than its text; only then is it counted.
    if aliases:
        check_bounds(source, root)
    document = _construct_with_pyyaml(source, loader, root)
    _check_plain_data(source, document, lines)
    return document


def check_bounds(source: str, root: Node) -> None:
    """Count values with aliases expanded, and depth, without building anything."""
    budget = MAX_VALUES
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ManifestError(
                source,
                f"expands to more than {MAX_VALUES:,} values (YAML aliases repeating anchors?); "
                "write the values out instead",
                node.start_mark.line + 1,
            )
        if depth > MAX_DEPTH:
            raise ManifestError(
                source, f"is nested deeper than {MAX_DEPTH} levels; flatten it", node.start_mark.line + 1
            )
        if isinstance(node, SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend(((key, depth + 1), (value, depth + 1)))


def _construct_with_pyyaml(source: str, loader: ManifestLoader, root: Node) -> dict[str, Any]:
    try:
        document = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    if not isinstance(document, dict):
        raise ManifestError(
            source,
            f"has a {_kind(document)} at the top level, not a mapping of 'metadata:' and other blocks",
            root.start_mark.line + 1,
        )
    return document


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    reason = exc.problem or exc.context or "syntax error"
    if exc.problem and exc.context:
        started = f" started on line {exc.context_mark.line + 1}" if exc.context_mark else ""
        reason += f" ({exc.context}{started})"
    if (exc.context or "").startswith("expected a single document"):
        reason = "holds more than one YAML document ('---'); keep one manifest per file"
        return ManifestError(source, reason, mark.line + 1 if mark else None)
    return ManifestError(source, f"is not valid YAML: {reason}", mark.line + 1 if mark else None)


class _KeyLines:
    """Line numbers of keys and list items in the parsed document, so messages can point at them."""

    def __init__(self, root: Node) -> None:
        self._root = root

    def of(self, path: Sequence[str | int]) -> int | None:
        node: Node = self._root
        line: int | None = None
        for step in path:
            child = self._child(node, step)
            if child is None:
                break
            line, node = child
        return line

    @staticmethod
    def _child(node: Node, step: str | int) -> tuple[int, Node] | None:
        if isinstance(node, MappingNode):
            key = str(step)
            for key_node, value_node in node.value:
                if key_node.value == key and isinstance(key_node, ScalarNode):
                    return key_node.start_mark.line + 1, value_node
        elif isinstance(node, SequenceNode) and isinstance(step, int) and step < len(node.value):
            item = node.value[step]
            return item.start_mark.line + 1, item
        return None


def _check_plain_data(source: str, document: dict[str, Any], lines: _KeyLines) -> None:
    """What is stored or read must be JSON data: string keys, finite numbers, no sets or binary
    values. That is ``metadata`` and ``dc_relation``; the other blocks are neither stored nor read."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [
        (document[key], (key,)) for key in ("metadata", "dc_relation") if key in document
    ]
    while stack:
        value, path = stack.pop()
        where = ".".join(map(str, path))
        if len(path) > MAX_DEPTH:
            message = f"is nested deeper than {MAX_DEPTH} levels; flatten it"
            raise ManifestError(source, message, lines.of(path))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ManifestError(
                        source, f"{where} has the key {key!r}; quote it to make it a string", lines.of(path)
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ManifestError(source, f"{where} is {value}, which JSON cannot hold", lines.of(path))
        elif not (value is None or isinstance(value, str | int | float)):
            raise ManifestError(
                source, f"{where} is a {_kind(value)}, which JSON cannot hold; use a string", lines.of(path)
            )


def _capability_type(
    document: Mapping[str, Any], metadata: Mapping[str, Any], spec: Mapping[str, Any]
) -> str:
    """The block that marks the type, else ``metadata.dc_type``; the schema made sure there is one."""
    for name, block in CAPABILITY_TYPES.items():
        if block in document or block in spec:
            return name
    return str(metadata["dc_type"]).lower()


def _version(document: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """``metadata.dc_hasVersion``, else ``metadata.chora_version``, else top-level ``chora_version``."""
    for value in (
        metadata.get("dc_hasVersion"),
        metadata.get("chora_version"),
        document.get("chora_version"),
    ):
        if value is not None:
            return str(value)
    raise AssertionError("the schema requires a version")  # pragma: no cover


def _dependencies(
    relations: Mapping[str, Sequence[object] | None] | None, path: tuple[str, ...], lines: _KeyLines
) -> tuple[Dependency, ...]:
    """Every entry of every list under ``dc_relation``, in file order."""
    dependencies: list[Dependency] = []
    for kind, entries in (relations or {}).items():
        for position, entry in enumerate(entries or ()):
            fields = {"capability": entry} if isinstance(entry, str) else dict(entry)  # type: ignore[call-overload]
            dependencies.append(
                Dependency(
                    capability=fields["capability"],
                    relationship=fields.get("relationship", DEFAULT_RELATIONSHIP.get(kind, kind)),
                    version=fields.get("version", "*"),
                    kind=kind,
                    line=lines.of((*path, kind, position)),
                )
            )
    return tuple(dependencies)


def _kind(value: object) -> str:
    names: dict[type, str] = {
        dict: "mapping",
        list: "list",
        str: "string",
        set: "set",
        bytes: "binary value",
    }
    return names.get(type(value), type(value).__name__)
