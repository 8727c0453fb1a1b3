"""The YAML side of loading a manifest: libyaml's safe loader, made strict and lean for manifests,
and a fast builder for the plain JSON data nearly every manifest is.

:class:`ManifestLoader` turns dates into ISO-8601 strings, and duplicate keys and scalars it cannot
read into errors with their line. :class:`Builder` builds a document straight from the loader's
nodes, and raises :class:`Unusual` for anything it leaves to PyYAML's constructor, which then builds
that document (or reports its first error) exactly as it would have.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitops_sync.model.limits import MAX_DEPTH, MAX_VALUES

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_STR_TAG: Final = "tag:yaml.org,2002:str"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_NULL_TAG: Final = "tag:yaml.org,2002:null"


class ManifestLoader(yaml.CSafeLoader):
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


_IMPLICIT_RESOLVERS: Final[dict[str, list[tuple[str, re.Pattern[str]]]]] = (
    ManifestLoader.yaml_implicit_resolvers
)
"""The tags a plain scalar may resolve to, by its first character."""


def _raise_duplicate(loader: ManifestLoader, node: MappingNode) -> None:
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
    construct: Callable[[ManifestLoader, ScalarNode], object],
) -> Callable[[ManifestLoader, ScalarNode], object]:
    """PyYAML's scalar constructors raise plain errors for values such as 2025-13-01 or ``!!int x``:
    turn them into YAML errors that carry the line."""

    def constructor(loader: ManifestLoader, node: ScalarNode) -> object:
        try:
            return construct(loader, node)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {kind}", node.start_mark
            ) from None

    return constructor


def _timestamp_as_iso(loader: ManifestLoader, node: ScalarNode) -> str:
    value: dt.date = yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    return value.isoformat()


for _tag, _scalar in (
    ("tag:yaml.org,2002:timestamp", _timestamp_as_iso),
    ("tag:yaml.org,2002:int", yaml.constructor.SafeConstructor.construct_yaml_int),
    ("tag:yaml.org,2002:float", yaml.constructor.SafeConstructor.construct_yaml_float),
    ("tag:yaml.org,2002:bool", yaml.constructor.SafeConstructor.construct_yaml_bool),
    ("tag:yaml.org,2002:binary", yaml.constructor.SafeConstructor.construct_yaml_binary),
):
    ManifestLoader.add_constructor(_tag, _checked(_scalar))


class Unusual(Exception):
    """The document holds something :class:`Builder` leaves to PyYAML's constructor."""


class Builder:
    """Builds a document of plain JSON data, which nearly every manifest is, straight from its nodes,
    without PyYAML's constructor and its per-node generators and bookkeeping (bench/README.md).

    It raises :class:`Unusual` for anything else, and PyYAML builds that document, or reports its
    first error, as before: a merge key, a duplicate or non-string key, binary, a set, NaN, a tag it
    does not know, a scalar PyYAML rejects, more than :data:`MAX_VALUES` values (aliases expanded)
    or :data:`MAX_DEPTH` levels. So what it builds would pass the loading module's bounds and
    plain-data checks, and needs neither. Aliased nodes are built once per use, not shared."""

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

    def __init__(self, loader: ManifestLoader) -> None:
        self._loader = loader
        self._budget = MAX_VALUES

    def document(self, root: Node) -> dict[str, Any]:
        if not isinstance(root, MappingNode):
            raise Unusual
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
        raise Unusual

    def _mapping(self, pairs: list[tuple[Node, Node]], depth: int) -> dict[str, Any]:
        self._count(2 * len(pairs), depth)
        mapping: dict[str, Any] = {}
        for key, value in pairs:
            if key.tag != _STR_TAG or not isinstance(key, ScalarNode):
                raise Unusual
            mapping[key.value] = self._value(value, depth)
        if len(mapping) < len(pairs):
            raise Unusual
        return mapping

    def _sequence(self, items: list[Node], depth: int) -> list[Any]:
        self._count(len(items), depth)
        return [self._value(item, depth) for item in items]

    def _count(self, values: int, depth: int) -> None:
        """Count ``values`` more values at ``depth``, as the loading module's bounds check does."""
        self._budget -= values
        if self._budget < 0 or (values and depth > MAX_DEPTH):
            raise Unusual

    def _scalar(self, node: ScalarNode) -> object:
        """A scalar other than a string."""
        tag = node.tag
        if tag == _NULL_TAG:
            return None
        if tag not in self._SCALARS:
            raise Unusual
        try:
            value = self._loader.yaml_constructors[tag](self._loader, node)
        except yaml.YAMLError:
            raise Unusual from None
        if isinstance(value, float) and not math.isfinite(value):
            raise Unusual
        return value
