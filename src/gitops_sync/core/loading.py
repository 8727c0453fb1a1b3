"""Turn one manifest file's text into a :class:`Manifest`, or a :class:`ManifestError` naming the file.

Both layouts of DESIGN.md section 2 load: the flat one in use (type block and ``dc_relation`` at the
top level) and the nested one of the reference schemas (``spec.chora_*``, ``metadata.dc_relation``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any, Final

import yaml

from gitops_sync.errors import ManifestError
from gitops_sync.model.manifests import CAPABILITY_TYPES, Dependency, JSONValue, Manifest

ID_PATTERN: Final = re.compile(r"^chora\.[a-z_]+\.[a-z0-9_]{1,50}$")
"""``chora.{domain}.{name}``; the id is a path segment of every key, so it is kept to safe characters."""

SEMVER_PATTERN: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
"""SemVer 2.0.0, as published at semver.org."""

MAX_VALUES: Final = 200_000
"""Values a manifest may expand to. Real manifests hold hundreds; YAML aliases can make billions."""

DEFAULT_RELATIONSHIP: Final = {"requires": "prerequisite"}
"""The relationship an entry gets when it names none; any other list's entries get the list's name."""


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader, keeping YAML dates and datetimes as ISO-8601 strings."""


def _timestamp_as_iso(loader: yaml.CSafeLoader, node: yaml.ScalarNode) -> str:
    value: dt.date = yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    return value.isoformat()


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_iso)


def load_manifest(source: str, text: bytes) -> Manifest:
    """Parse and check one manifest. Raises :class:`ManifestError` naming ``source`` (and the line)."""
    try:
        return _load(source, text)
    except RecursionError:
        raise ManifestError(source, "YAML nested too deeply to load") from None


def _load(source: str, text: bytes) -> Manifest:
    root, document = _parse(source, text)
    lines = _KeyLines(root)
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise ManifestError(
            source,
            "no 'metadata:' mapping; add one holding dc_identifier, dc_title and the version",
            lines.of("metadata"),
        )
    spec = document.get("spec")
    spec = spec if isinstance(spec, dict) else {}

    capability_id = _capability_id(source, metadata, lines)
    return Manifest(
        source=source,
        id=capability_id,
        type=_capability_type(source, document, metadata, spec, lines),
        version=_version(source, document, metadata, lines),
        metadata=_as_json_object(source, metadata, lines.of("metadata")),
        dependencies=_dependencies(source, document, metadata, lines),
    )


def _parse(source: str, text: bytes) -> tuple[yaml.Node, dict[str, Any]]:
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            document = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ManifestError(source, f"not valid YAML: {_yaml_reason(exc)}", _line(exc)) from None
    except yaml.YAMLError as exc:
        raise ManifestError(source, f"not valid YAML: {exc}") from None
    if root is None:
        raise ManifestError(source, "the file is empty; a manifest needs a 'metadata:' mapping")
    if not isinstance(document, dict):
        raise ManifestError(
            source,
            f"the top level is a {_kind(document)}, not a mapping of 'metadata:' and other blocks",
            root.start_mark.line + 1,
        )
    return root, document


def _line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark else None


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, then its context with the line it started on: "did not find ... (while ...)"."""
    reason = exc.problem or exc.context or "syntax error"
    if exc.problem and exc.context:
        started = f" started on line {exc.context_mark.line + 1}" if exc.context_mark else ""
        reason += f" ({exc.context}{started})"
    return reason


class _KeyLines:
    """Line numbers of mapping keys in the parsed document, so messages can point at them."""

    def __init__(self, root: yaml.Node) -> None:
        self._root = root

    def of(self, *path: str) -> int | None:
        node: yaml.Node = self._root
        line: int | None = None
        for key in path:
            if not isinstance(node, yaml.MappingNode):
                return line
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        return line


def _capability_id(source: str, metadata: Mapping[str, Any], lines: _KeyLines) -> str:
    value = metadata.get("dc_identifier")
    line = lines.of("metadata", "dc_identifier") or lines.of("metadata")
    if value is None:
        raise ManifestError(
            source,
            "metadata has no dc_identifier; add 'dc_identifier: chora.{domain}.{name}'",
            line,
        )
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ManifestError(
            source,
            f"dc_identifier {value!r} is not of the form chora.{{domain}}.{{name}} "
            "(lower case letters, digits and underscores)",
            line,
        )
    return value


def _capability_type(
    source: str,
    document: Mapping[str, Any],
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    lines: _KeyLines,
) -> str:
    marked = [name for name, block in CAPABILITY_TYPES.items() if block in document or block in spec]
    blocks = " or ".join(CAPABILITY_TYPES.values())
    if len(marked) > 1:
        found = ", ".join(CAPABILITY_TYPES[name] for name in marked)
        raise ManifestError(source, f"has {found}; keep the one block that describes it")
    if marked:
        return marked[0]
    dc_type = metadata.get("dc_type")
    if isinstance(dc_type, str) and dc_type.lower() in CAPABILITY_TYPES:
        return dc_type.lower()
    known = ", ".join(name.capitalize() for name in CAPABILITY_TYPES)
    raise ManifestError(
        source,
        f"cannot tell the capability type: add a {blocks} block, or set metadata.dc_type to one of "
        f"{known}" + (f" (it is {dc_type!r})" if dc_type is not None else ""),
        lines.of("metadata", "dc_type") or lines.of("metadata"),
    )


def _version(source: str, document: Mapping[str, Any], metadata: Mapping[str, Any], lines: _KeyLines) -> str:
    for path, holder in (
        (("metadata", "dc_hasVersion"), metadata),
        (("metadata", "chora_version"), metadata),
        (("chora_version",), document),
    ):
        value = holder.get(path[-1])
        if value is None:
            continue
        if not isinstance(value, str) or not SEMVER_PATTERN.match(value):
            raise ManifestError(
                source,
                f"{'.'.join(path)} is {value!r}, not a SemVer 2.0 version; write it as a quoted "
                "string such as '1.0.0'",
                lines.of(*path),
            )
        return value
    raise ManifestError(
        source,
        "no version: set metadata.dc_hasVersion (or chora_version) to a SemVer string like '1.0.0'",
        lines.of("metadata"),
    )


def _dependencies(
    source: str, document: Mapping[str, Any], metadata: Mapping[str, Any], lines: _KeyLines
) -> tuple[Dependency, ...]:
    if "dc_relation" in document and "dc_relation" in metadata:
        raise ManifestError(
            source,
            "dc_relation appears both at the top level and inside metadata; keep one",
            lines.of("dc_relation"),
        )
    path = ("dc_relation",) if "dc_relation" in document else ("metadata", "dc_relation")
    relations = document.get("dc_relation", metadata.get("dc_relation"))
    if relations is None:
        return ()
    if not isinstance(relations, dict):
        raise ManifestError(
            source,
            "dc_relation must map relation kinds (requires, optional, ...) to lists",
            lines.of(*path),
        )
    dependencies: list[Dependency] = []
    for kind, entries in relations.items():
        entry_line = lines.of(*path, str(kind))
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ManifestError(source, f"dc_relation.{kind} must be a list of dependencies", entry_line)
        default_relationship = DEFAULT_RELATIONSHIP.get(str(kind), str(kind))
        for position, entry in enumerate(entries, start=1):
            where = f"dc_relation.{kind} entry {position}"
            dependencies.append(_dependency(source, where, entry, default_relationship, entry_line))
    return tuple(dependencies)


def _dependency(
    source: str, where: str, entry: object, default_relationship: str, line: int | None
) -> Dependency:
    if isinstance(entry, str):
        entry = {"capability": entry}
    if not isinstance(entry, dict):
        raise ManifestError(source, f"{where} is a {_kind(entry)}; write it as 'capability: <id>'", line)
    capability = entry.get("capability")
    if not isinstance(capability, str) or not capability:
        raise ManifestError(source, f"{where} has no 'capability: <id>'", line)
    relationship = entry.get("relationship", default_relationship)
    version = entry.get("version", "*")
    for name, value in (("relationship", relationship), ("version", version)):
        if not isinstance(value, str):
            raise ManifestError(
                source,
                f"{where} ({capability}): {name} is {value!r}; write it as a quoted string",
                line,
            )
    return Dependency(capability=capability, relationship=relationship, version=version)


def _as_json_object(source: str, mapping: dict[str, Any], line: int | None) -> dict[str, JSONValue]:
    """Check that ``mapping`` is plain JSON data, within :data:`MAX_VALUES`, and return it."""
    budget = [MAX_VALUES]

    def check(value: object, where: str) -> JSONValue:
        budget[0] -= 1
        if budget[0] < 0:
            raise ManifestError(
                source,
                f"metadata expands to more than {MAX_VALUES:,} values (YAML aliases?); "
                "write the values out instead of repeating anchors",
                line,
            )
        if value is None or isinstance(value, str | bool | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ManifestError(source, f"{where} is {value}, which JSON cannot hold", line)
            return value
        if isinstance(value, list):
            return [check(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, dict):
            result: dict[str, JSONValue] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ManifestError(
                        source, f"{where} has the key {key!r}; quote it to make it a string", line
                    )
                result[key] = check(item, f"{where}.{key}")
            return result
        raise ManifestError(
            source, f"{where} is a {_kind(value)}, which JSON cannot hold; use a string", line
        )

    checked = check(mapping, "metadata")
    assert isinstance(checked, dict)  # noqa: S101 - a dict in gives a dict out
    return checked


def _kind(value: object) -> str:
    names: dict[type, str] = {
        dict: "mapping",
        list: "list",
        str: "string",
        set: "set",
        bytes: "binary value",
    }
    return names.get(type(value), type(value).__name__)
