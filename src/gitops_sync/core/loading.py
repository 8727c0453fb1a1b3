"""Turn one manifest file's bytes into a :class:`Manifest`, or a :class:`ManifestError` naming the file.

No file can crash, hang or trick the loader: size, encoding, nesting and alias expansion are bounded
before anything walks the document, every YAML construction error carries its line, and the
structure is checked against the published schema (:mod:`gitops_sync.core.validating`) before any
field is read. Both layouts (docs/architecture.md, "Manifests") load: the flat one in use (type block and
``dc_relation`` at the top level) and the nested one (``spec.chora_*``, ``metadata.dc_relation``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitops_sync.core.validating import validate
from gitops_sync.errors import ManifestError
from gitops_sync.model.limits import MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_VALUES
from gitops_sync.model.manifests import CAPABILITY_TYPES, Dependency, Manifest

DEFAULT_RELATIONSHIP: Final[Mapping[str, str]] = MappingProxyType({"requires": "prerequisite"})
"""The relationship an entry gets when it names none; any other list's entries get the list's name."""

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_STR_TAG: Final = "tag:yaml.org,2002:str"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_NULL_TAG: Final = "tag:yaml.org,2002:null"


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader; dates become ISO-8601 strings, duplicate keys and bad scalars errors."""

    def resolve(self, kind: type[Node], value: str | None, implicit: Any) -> str:
        """PyYAML's resolver without its lookups of wildcard and path resolvers, which the safe loader
        has none of; libyaml calls it and the two below for every node (bench/README.md)."""
        if kind is not ScalarNode or value is None:
            return _SEQ_TAG if kind is SequenceNode else _MAP_TAG
        for tag, pattern in _IMPLICIT_RESOLVERS.get(value[:1], ()) if implicit[0] else ():
            if pattern.match(value):
                return tag
        return _STR_TAG

    def descend_resolver(self, current_node: Node | None, current_index: object) -> None:
        """Path resolvers are not used (see :meth:`resolve`), so there is no path to track."""

    def ascend_resolver(self) -> None:
        """See :meth:`descend_resolver`."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # ``!!map`` on a list or a scalar: PyYAML's error
            return super().construct_mapping(node, deep)
        merges = any(key.tag == _MERGE_TAG for key, _ in node.value)
        written = len(node.value)
        mapping = super().construct_mapping(node, deep)
        if len(mapping) < written and not merges:  # a key came twice; rare, so found only then
            _raise_duplicate(self, node)
        return mapping


_IMPLICIT_RESOLVERS: Final[dict[str, list[tuple[str, re.Pattern[str]]]]] = _Loader.yaml_implicit_resolvers
"""The tags a plain scalar may resolve to, by its first character."""


def _raise_duplicate(loader: _Loader, node: MappingNode) -> None:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key_node.value!r} (first on line {seen[key]}); keep one",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1


def _checked(
    construct: Callable[[_Loader, ScalarNode], object],
) -> Callable[[_Loader, ScalarNode], object]:
    """PyYAML's scalar constructors raise plain errors for values such as 2025-13-01 or ``!!int x``:
    turn them into YAML errors that carry the line."""

    def constructor(loader: _Loader, node: ScalarNode) -> object:
        try:
            return construct(loader, node)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {kind}", node.start_mark
            ) from None

    return constructor


def _timestamp_as_iso(loader: _Loader, node: ScalarNode) -> str:
    value: dt.date = yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    return value.isoformat()


for _tag, _scalar in (
    ("tag:yaml.org,2002:timestamp", _timestamp_as_iso),
    ("tag:yaml.org,2002:int", yaml.constructor.SafeConstructor.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.constructor.SafeConstructor.construct_yaml_float),
    ("tag:yaml.org,2002:bool", yaml.constructor.SafeConstructor.construct_yaml_bool),
    ("tag:yaml.org,2002:binary", yaml.constructor.SafeConstructor.construct_yaml_binary),
):
    _Loader.add_constructor(_tag, _checked(_scalar))


def load_manifest(source: str, content: bytes) -> Manifest:
    """Parse and check one manifest. Raises :class:`ManifestError` naming ``source`` (and the line)."""
    try:
        return _load(source, content)
    except RecursionError:
        raise ManifestError(source, f"nested deeper than {MAX_DEPTH} levels; flatten it") from None


def _load(source: str, content: bytes) -> Manifest:
    loader = _Loader(_decode(source, content))
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


def _compose(source: str, loader: _Loader) -> Node:
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
    source: str, loader: _Loader, root: Node, lines: _KeyLines, *, aliases: bool
) -> dict[str, Any]:
    """The document, built by :class:`_Builder` if it can; else by PyYAML, bounded and checked."""
    try:
        return _Builder(loader).document(root)
    except _Unusual:
        pass
    # Without an alias ('*name') a document is no bigger than its text; only then is it counted.
    if aliases:
        _check_bounds(source, root)
    document = _construct_with_pyyaml(source, loader, root)
    _check_plain_data(source, document, lines)
    return document


class _Unusual(Exception):
    """The document holds something :class:`_Builder` leaves to PyYAML's constructor."""


class _Builder:
    """Builds a document of plain JSON data, which nearly every manifest is, straight from its nodes,
    without PyYAML's constructor and its per-node generators and bookkeeping (bench/README.md).

    It raises :class:`_Unusual` for anything else, and PyYAML builds that document, or reports its
    first error, as before: a merge key, a duplicate or non-string key, binary, a set, NaN, a tag it
    does not know, a scalar PyYAML rejects, more than :data:`MAX_VALUES` values (aliases expanded)
    or :data:`MAX_DEPTH` levels. So what it builds would pass :func:`_check_bounds` and
    :func:`_check_plain_data`, and needs neither. Aliased nodes are built once per use, not shared."""

    __slots__ = ("_budget", "_loader")

    _SCALARS: Final = frozenset(
        {
            "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:int",
            "tag:yaml.org,2002:float",
            "tag:yaml.org,2002:timestamp",
        }
    )
    """Tags whose values are JSON data, built by the loader's own (checked) constructors."""

    def __init__(self, loader: _Loader) -> None:
        self._loader = loader
        self._budget = MAX_VALUES

    def document(self, root: Node) -> dict[str, Any]:
        if not isinstance(root, MappingNode):
            raise _Unusual
        self._count(1, 1)
        document: dict[str, Any] = self._value(root, 1)
        return document

    def _value(self, node: Node, depth: int) -> Any:
        """The value of ``node``, ``depth`` levels deep (the root is 1)."""
        if isinstance(node, ScalarNode):
            return node.value if node.tag == _STR_TAG else self._scalar(node)
        if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node.value, depth + 1)
        if isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
            return self._sequence(node.value, depth + 1)
        raise _Unusual

    def _mapping(self, pairs: list[tuple[Node, Node]], depth: int) -> dict[str, Any]:
        self._count(2 * len(pairs), depth)
        mapping: dict[str, Any] = {}
        for key, value in pairs:
            if key.tag != _STR_TAG or not isinstance(key, ScalarNode):
                raise _Unusual
            mapping[key.value] = self._value(value, depth)
        if len(mapping) < len(pairs):
            raise _Unusual
        return mapping

    def _sequence(self, items: list[Node], depth: int) -> list[Any]:
        self._count(len(items), depth)
        return [self._value(item, depth) for item in items]

    def _count(self, values: int, depth: int) -> None:
        """Count ``values`` more values at ``depth``, as :func:`_check_bounds` does."""
        self._budget -= values
        if self._budget < 0 or (values and depth > MAX_DEPTH):
            raise _Unusual

    def _scalar(self, node: ScalarNode) -> object:
        """A scalar other than a string."""
        tag = node.tag
        if tag == _NULL_TAG:
            return None
        if tag not in self._SCALARS:
            raise _Unusual
        try:
            value = self._loader.yaml_constructors[tag](self._loader, node)
        except yaml.YAMLError:
            raise _Unusual from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _Unusual
        return value


def _check_bounds(source: str, root: Node) -> None:
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


def _construct_with_pyyaml(source: str, loader: _Loader, root: Node) -> dict[str, Any]:
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
