"""The registry as its consumers read it: capabilities parsed from their four keys at one etcd
revision, and the questions people ask of it (filters, pages, dependencies, dependents, the graph).

Purely computational. A :class:`Catalog` never changes; :meth:`Catalog.updated` gives the next one
from the keys a watch saw change, parsing only the capabilities they belong to. Values come from
etcd, where anyone may have written anything: a capability whose keys do not parse is left out and
counted, never raised.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gitops_sync.core.cross_checking import is_range, satisfies
from gitops_sync.model.keys import CAPABILITY_FIELDS, split_capability_key
from gitops_sync.model.manifests import JSONValue

State = Literal["ok", "warning", "error"]
Direction = Literal["dependencies", "dependents"]
RawKeys = Mapping[str, tuple[bytes, int]]
"""Keys under the prefix, each with its value and mod revision."""


class QueryError(ValueError):
    """A question the catalog cannot answer as asked (a bad cursor or range); says what to change."""


@dataclass(frozen=True, slots=True)
class Link:
    """One dependency as the ``dependencies`` key holds it."""

    capability: str
    relationship: str
    constraint: str


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    type: str
    version: str
    metadata: Mapping[str, JSONValue]
    dependencies: tuple[Link, ...]
    revision: int
    """The newest mod revision of its four keys: changes whenever any of them does."""

    def as_json(self, state: State = "ok") -> dict[str, JSONValue]:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "metadata": dict(self.metadata),
            "dependencies": [
                {"capability": link.capability, "relationship": link.relationship, "version": link.constraint}
                for link in self.dependencies
            ],
            "state": state,
        }

    def mentions(self, text: str) -> bool:
        """Whether ``text`` (lower-case) is in its id, title or description."""
        return any(
            text in str(value).lower()
            for value in (self.id, self.metadata.get("dc_title", ""), self.metadata.get("dc_description", ""))
        )


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A capability reached along dependencies (or against them), and the link that reached it."""

    id: str
    link: Link
    """From the capability that depends to the one depended on."""
    version: str | None
    """The version the link's constraint is tested against (the depended-on one's), if it exists."""
    present: bool
    """Whether the capability ``id`` names is in the registry."""
    satisfied: bool | None
    """Whether that version satisfies the constraint; None when there is nothing to test."""
    depth: int

    def as_json(self) -> dict[str, JSONValue]:
        return {
            "id": self.id,
            "via": self.link.capability,
            "relationship": self.link.relationship,
            "constraint": self.link.constraint,
            "version": self.version,
            "present": self.present,
            "satisfied": self.satisfied,
            "depth": self.depth,
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    revision: int
    entries: Mapping[str, Entry] = field(default_factory=dict)
    ids: tuple[str, ...] = ()
    """The ids, sorted."""
    dependents: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """For each id, the capabilities that name it in a dependency."""
    unreadable: frozenset[str] = frozenset()
    """Ids with keys under the prefix that do not make a capability (missing or malformed)."""

    @classmethod
    def build(cls, revision: int, raw: RawKeys, prefix: str) -> Catalog:
        return cls(revision).updated(revision, raw, prefix, ids_of(raw, prefix))

    def updated(self, revision: int, raw: RawKeys, prefix: str, changed: Iterable[str]) -> Catalog:
        """The catalog at ``revision``, where ``raw`` holds every key under the prefix and only the
        capabilities ``changed`` may differ from this one."""
        entries = dict(self.entries)
        dependents = {target: set(sources) for target, sources in self.dependents.items()}
        unreadable = set(self.unreadable)
        for capability_id in set(changed):
            old = entries.pop(capability_id, None)
            for link in old.dependencies if old else ():
                dependents[link.capability].discard(capability_id)
            unreadable.discard(capability_id)
            new = parse_entry(capability_id, raw, prefix)
            if new is None:
                if any(key in raw for key in _keys(prefix, capability_id)):
                    unreadable.add(capability_id)
                continue
            entries[capability_id] = new
            for link in new.dependencies:
                dependents.setdefault(link.capability, set()).add(capability_id)
        return Catalog(
            revision=revision,
            entries=entries,
            ids=self.ids if entries.keys() == self.entries.keys() else tuple(sorted(entries)),
            dependents={target: frozenset(sources) for target, sources in dependents.items() if sources},
            unreadable=frozenset(unreadable),
        )

    def select(
        self,
        *,
        type_: str | None = None,
        text: str | None = None,
        depends_on: str | None = None,
        version: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Entry], str | None]:
        """One page of the capabilities that pass every filter given, sorted by id, and the cursor of
        the next page (None after the last). A cursor names the last id of its page, so paging
        through a registry that changes meanwhile still gives each id at most once."""
        if version is not None and not is_range(version):
            raise QueryError(f"version={version!r} is not a SemVer range; write one like ^1.0.0 or >=1 <2")
        start = bisect.bisect_right(self.ids, decode_cursor(cursor)) if cursor else 0
        needle = text.lower() if text else None
        named = self.dependents.get(depends_on, frozenset()) if depends_on is not None else None
        page: list[Entry] = []
        for capability_id in self.ids[start:]:
            entry = self.entries[capability_id]
            if (
                (type_ is None or entry.type == type_)
                and (named is None or capability_id in named)
                and (needle is None or entry.mentions(needle))
                and (version is None or satisfies(entry.version, version))
            ):
                if len(page) == limit:
                    return page, encode_cursor(page[-1].id)
                page.append(entry)
        return page, None

    def neighbours(self, capability_id: str, direction: Direction, *, transitive: bool) -> list[Neighbour]:
        """What ``capability_id`` depends on, or what depends on it; with ``transitive``, all that can
        be reached so, each once, nearest first (cycles end where they close)."""
        found: list[Neighbour] = []
        seen = {capability_id}
        frontier = [capability_id]
        depth = 0
        while frontier and (transitive or depth == 0):
            depth += 1
            reached: list[str] = []
            for current in frontier:
                for neighbour in self._step(current, direction, depth):
                    if neighbour.id not in seen:
                        seen.add(neighbour.id)
                        found.append(neighbour)
                        reached.append(neighbour.id)
            frontier = sorted(reached_id for reached_id in reached if reached_id in self.entries)
        return found

    def _step(self, capability_id: str, direction: Direction, depth: int) -> Iterator[Neighbour]:
        if direction == "dependencies":
            entry = self.entries.get(capability_id)
            for link in entry.dependencies if entry else ():
                yield self._neighbour(link.capability, link, link.capability, depth)
        else:
            for dependent in sorted(self.dependents.get(capability_id, ())):
                for link in self.entries[dependent].dependencies:
                    if link.capability == capability_id:
                        yield self._neighbour(dependent, link, capability_id, depth)
                        break

    def _neighbour(self, neighbour_id: str, link: Link, depended_on: str, depth: int) -> Neighbour:
        target = self.entries.get(depended_on)
        satisfied = None if target is None else satisfies(target.version, link.constraint)
        return Neighbour(
            id=neighbour_id,
            link=link,
            version=target.version if target else None,
            present=neighbour_id in self.entries,
            satisfied=satisfied,
            depth=depth,
        )

    def graph(self) -> dict[str, JSONValue]:
        """Every capability as a node and every dependency as an edge (to ids that may be absent)."""
        nodes: list[JSONValue] = [
            {"id": entry.id, "type": entry.type, "version": entry.version}
            for entry in (self.entries[capability_id] for capability_id in self.ids)
        ]
        edges: list[JSONValue] = []
        for capability_id in self.ids:
            for link in self.entries[capability_id].dependencies:
                target = self.entries.get(link.capability)
                edges.append(
                    {
                        "from": capability_id,
                        "to": link.capability,
                        "relationship": link.relationship,
                        "constraint": link.constraint,
                        "satisfied": None if target is None else satisfies(target.version, link.constraint),
                    }
                )
        return {"revision": self.revision, "nodes": nodes, "edges": edges}

    def dot(self) -> str:
        """The graph in Graphviz's language; an unsatisfied edge is red, a missing target dashed."""
        lines = ["digraph registry {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"]
        for capability_id in self.ids:
            label = _quoted(f"{capability_id}\n{self.entries[capability_id].version}")
            lines.append(f"  {_quoted(capability_id)} [label={label}];")
        for capability_id in self.ids:
            for link in self.entries[capability_id].dependencies:
                target = self.entries.get(link.capability)
                style = ["style=dashed"] if target is None else []
                if target is not None and not satisfies(target.version, link.constraint):
                    style.append("color=red")
                label = f"label={_quoted(f'{link.relationship} {link.constraint}')}"
                attributes = ", ".join([label, *style])
                lines.append(f"  {_quoted(capability_id)} -> {_quoted(link.capability)} [{attributes}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


def ids_of(raw: Iterable[str], prefix: str) -> set[str]:
    """The ids the keys under the prefix belong to."""
    return {parts[0] for key in raw if (parts := split_capability_key(prefix, key)) is not None}


def parse_entry(capability_id: str, raw: RawKeys, prefix: str) -> Entry | None:
    """The capability made of its four keys, or None if any is missing or malformed."""
    found = [raw.get(key) for key in _keys(prefix, capability_id)]
    if any(item is None for item in found):
        return None
    (metadata, m_rev), (kind, t_rev), (version, v_rev), (dependencies, d_rev) = found  # type: ignore[misc]
    try:
        parsed_metadata = json.loads(metadata)
        parsed_dependencies = json.loads(dependencies)
        links = tuple(
            Link(str(item["capability"]), str(item.get("relationship", "")), str(item.get("version", "*")))
            for item in parsed_dependencies
        )
        text_type, text_version = kind.decode(), version.decode()
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not isinstance(parsed_metadata, dict):
        return None
    return Entry(
        capability_id, text_type, text_version, parsed_metadata, links, max(m_rev, t_rev, v_rev, d_rev)
    )


def _keys(prefix: str, capability_id: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{capability_id}/{name}" for name in CAPABILITY_FIELDS)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise QueryError(f"cursor={cursor!r} is not a cursor this API gave; start again without it") from None


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
