"""The registry as consumers read it: built from exactly the keys a sync writes, queried purely."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.catalog import Catalog, Entry, QueryError, RawKeys
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import render_values
from gitops_sync.model.keys import DEFAULT_PREFIX
from support import manifest_text, requirement

PREFIX = DEFAULT_PREFIX


def manifest(capability_id: str, version: str = "1.0.0", kind: str = "service", requires: str = "") -> bytes:
    return manifest_text(capability_id, version, kind, requires).encode()


def raw_of(*manifests: bytes, revision: int = 5) -> dict[str, tuple[bytes, int]]:
    raw: dict[str, tuple[bytes, int]] = {}
    for content in manifests:
        loaded = load_manifest(hashlib.sha256(content).hexdigest() + ".yaml", content)
        raw.update((key, (value, revision)) for key, value in render_values(loaded, PREFIX).items())
    return raw


def registry() -> Catalog:
    """api requires core ^1 (satisfied) and store ^2 (not); core requires base (absent); store requires
    api (a cycle through api)."""
    raw = raw_of(
        manifest(
            "chora.t.api",
            requires=requirement("chora.t.core", "^1.0.0") + requirement("chora.t.store", "^2.0.0"),
        ),
        manifest("chora.t.core", "1.4.0", "pattern", requires=requirement("chora.t.base")),
        manifest("chora.t.store", "1.0.0", requires=requirement("chora.t.api")),
        manifest("chora.t.lone", "0.1.0-beta.1", "pattern"),
    )
    return Catalog.build(9, raw, PREFIX)


def ids(entries: list[Entry]) -> list[str]:
    return [entry.id for entry in entries]


def test_it_reads_what_a_sync_writes() -> None:
    catalog = registry()
    assert catalog.ids == ("chora.t.api", "chora.t.core", "chora.t.lone", "chora.t.store")
    api: Any = catalog.entries["chora.t.api"].as_json()
    assert api["type"] == "service"
    assert api["version"] == "1.0.0"
    assert api["metadata"]["dc_title"] == "Title of chora.t.api"
    assert api["dependencies"] == [
        {"capability": "chora.t.core", "relationship": "prerequisite", "version": "^1.0.0"},
        {"capability": "chora.t.store", "relationship": "prerequisite", "version": "^2.0.0"},
    ]
    assert catalog.dependents["chora.t.core"] == {"chora.t.api"}


def test_keys_that_make_no_capability_are_left_out_and_counted() -> None:
    raw: dict[str, tuple[bytes, int]] = raw_of(manifest("chora.t.good"))
    raw[f"{PREFIX}chora.t.half/metadata"] = (b"{}", 3)
    raw.update(
        {
            f"{PREFIX}chora.t.bad/{name}": (b"[not json", 3)
            for name in ("metadata", "type", "version", "dependencies")
        }
    )
    raw[f"{PREFIX}chora.t.bin/metadata"] = (b"\xff", 3)
    catalog = Catalog.build(4, raw, PREFIX)
    assert catalog.ids == ("chora.t.good",)
    assert catalog.unreadable == {"chora.t.half", "chora.t.bad", "chora.t.bin"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"type_": "pattern"}, ["chora.t.core", "chora.t.lone"]),
        ({"text": "STORE"}, ["chora.t.api", "chora.t.store"][1:]),
        ({"text": "does core"}, ["chora.t.core"]),
        ({"depends_on": "chora.t.api"}, ["chora.t.store"]),
        ({"depends_on": "chora.t.base"}, ["chora.t.core"]),
        ({"version": "^1.0.0"}, ["chora.t.api", "chora.t.core", "chora.t.store"]),
        ({"version": ">=0.1.0-0 <1.0.0"}, ["chora.t.lone"]),
        ({"type_": "service", "version": "^1.2.0"}, []),
    ],
)
def test_filters(query: dict[str, str], expected: list[str]) -> None:
    page, cursor = registry().select(**query)  # type: ignore[arg-type]
    assert ids(page) == expected
    assert cursor is None


@pytest.mark.parametrize("query", [{"version": "not a range"}, {"version": "1" * 300}, {"cursor": "%%%"}])
def test_a_question_that_cannot_be_answered_says_what_to_change(query: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        registry().select(**query)  # type: ignore[arg-type]


def test_pages_follow_each_other() -> None:
    catalog = registry()
    first, cursor = catalog.select(limit=3)
    assert ids(first) == ["chora.t.api", "chora.t.core", "chora.t.lone"]
    second, end = catalog.select(limit=3, cursor=cursor)
    assert ids(second) == ["chora.t.store"]
    assert end is None


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.sets(st.integers(0, 200), max_size=60),
    st.integers(1, 7),
    st.lists(st.tuples(st.booleans(), st.integers(0, 200)), max_size=20),
)
def test_paging_gives_each_id_once_while_the_registry_changes(
    numbers: set[int], limit: int, edits: list[tuple[bool, int]]
) -> None:
    """Ids there from start to end come exactly once; none comes twice; order is kept."""
    raw: dict[str, tuple[bytes, int]] = raw_of(*(manifest(f"chora.t.c{n:03d}") for n in numbers))
    catalog = Catalog.build(1, raw, PREFIX)
    throughout = set(catalog.ids)
    seen: list[str] = []
    cursor: str | None = None
    revision = 1
    while True:
        page, cursor = catalog.select(limit=limit, cursor=cursor)
        seen.extend(ids(page))
        if cursor is None:
            break
        if edits:  # someone adds or removes a capability between two pages
            add, number = edits.pop()
            capability_id = f"chora.t.c{number:03d}"
            revision += 1
            if add:
                raw.update(raw_of(manifest(capability_id), revision=revision))
            else:
                for key in [key for key in raw if key.startswith(f"{PREFIX}{capability_id}/")]:
                    del raw[key]
                throughout.discard(capability_id)
            catalog = catalog.updated(revision, raw, PREFIX, [capability_id])
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert throughout <= set(seen)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.booleans()), max_size=30))
def test_an_updated_catalog_is_the_one_built_from_scratch(steps: list[tuple[int, int, bool]]) -> None:
    raw: dict[str, tuple[bytes, int]] = {}
    catalog = Catalog.build(0, raw, PREFIX)
    for revision, (number, target, present) in enumerate(steps, start=1):
        capability_id = f"chora.t.c{number}"
        for key in [key for key in raw if key.startswith(f"{PREFIX}{capability_id}/")]:
            del raw[key]
        if present:
            raw.update(
                raw_of(manifest(capability_id, requires=requirement(f"chora.t.c{target}")), revision=revision)
            )
        catalog = catalog.updated(revision, raw, PREFIX, [capability_id])
        assert catalog == Catalog.build(revision, raw, PREFIX)


def test_dependencies_direct_and_transitive_with_marks() -> None:
    catalog = registry()
    direct: Any = [
        item.as_json() for item in catalog.neighbours("chora.t.api", "dependencies", transitive=False)
    ]
    assert [(i["id"], i["version"], i["present"], i["satisfied"], i["depth"]) for i in direct] == [
        ("chora.t.core", "1.4.0", True, True, 1),
        ("chora.t.store", "1.0.0", True, False, 1),
    ]
    closure = catalog.neighbours("chora.t.api", "dependencies", transitive=True)
    assert [(item.id, item.depth, item.present, item.satisfied) for item in closure] == [
        ("chora.t.core", 1, True, True),
        ("chora.t.store", 1, True, False),
        ("chora.t.base", 2, False, None),  # no such capability: nothing to test
    ]  # store -> api closes a cycle: api is not listed again


def test_dependents_direct_and_transitive() -> None:
    catalog = registry()
    direct = catalog.neighbours("chora.t.core", "dependents", transitive=False)
    assert [(item.id, item.link.constraint, item.version, item.satisfied) for item in direct] == [
        ("chora.t.api", "^1.0.0", "1.4.0", True)
    ]
    closure = catalog.neighbours("chora.t.core", "dependents", transitive=True)
    assert [(item.id, item.depth) for item in closure] == [("chora.t.api", 1), ("chora.t.store", 2)]
    assert catalog.neighbours("chora.t.nothing", "dependents", transitive=True) == []


def test_the_graph_and_its_dot() -> None:
    catalog = registry()
    graph: Any = catalog.graph()
    assert graph["revision"] == 9
    assert len(graph["nodes"]) == 4
    edges = {(e["from"], e["to"]): e["satisfied"] for e in graph["edges"]}
    assert edges == {
        ("chora.t.api", "chora.t.core"): True,
        ("chora.t.api", "chora.t.store"): False,
        ("chora.t.core", "chora.t.base"): None,
        ("chora.t.store", "chora.t.api"): True,
    }
    dot = catalog.dot()
    assert dot.startswith("digraph registry {")
    assert '"chora.t.api" -> "chora.t.store" [label="prerequisite ^2.0.0", color=red];' in dot
    assert '"chora.t.core" -> "chora.t.base" [label="prerequisite *", style=dashed];' in dot


def test_raw_keys_type_is_a_mapping() -> None:
    raw: RawKeys = raw_of(manifest("chora.t.one"))
    assert Catalog.build(1, raw, PREFIX).ids == ("chora.t.one",)
