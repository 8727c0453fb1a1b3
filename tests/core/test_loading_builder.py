"""The loader's fast path: it builds what PyYAML builds, and leaves everything else to PyYAML.

``test_loading`` checks what users see; these tests pin the promise that makes the fast path safe:
whenever :class:`Builder` builds a document, PyYAML's constructor builds the same one (same types,
same key order), so the errors and results of the loader are PyYAML's either way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.loading import check_bounds, load_manifest
from gitops_sync.core.yaml_loader import Builder, ManifestLoader, Unusual
from gitops_sync.errors import ManifestError
from gitops_sync.model.limits import MAX_DEPTH
from support import CAPABILITIES

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    for previous, name in zip("abcd", "bcde", strict=True)
)
"""Over :data:`~gitops_sync.model.limits.MAX_VALUES` values once its aliases are expanded (10 ** 5 in ``e`` alone)."""
DECLINED = "declined"


def compose(text: str) -> yaml.Node:
    root = yaml.compose(text, Loader=ManifestLoader)
    assert root is not None
    return root


def fast_path(text: str) -> object:
    """What the fast path builds, or ``DECLINED``."""
    loader = ManifestLoader("")
    try:
        return Builder(loader).document(compose(text))
    except Unusual:
        return DECLINED
    finally:
        loader.dispose()


def fast_and_pyyaml(text: str) -> tuple[object, object]:
    """What the fast path builds (or ``DECLINED``) and what PyYAML's constructor builds."""
    return fast_path(text), yaml.load(text, Loader=ManifestLoader)  # noqa: S506 - the loader is a safe loader


def same(a: object, b: object) -> bool:
    """Equal, and of the same types and key order all the way down (``True == 1`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("path", sorted(CAPABILITIES.glob("*.yaml")), ids=lambda path: path.stem)
def test_example_manifests_take_the_fast_path_and_build_as_pyyaml_does(path: Path) -> None:
    fast, pyyaml = fast_and_pyyaml(path.read_text(encoding="utf-8"))
    assert fast != DECLINED
    assert same(fast, pyyaml)


JSON_KEYS = st.text(max_size=8)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        ["yes", "no", "on", "~", "null", "0x1F", "010", "1_000", "1:30", ".5", "2025-11-15", "1.0.0"]
    ),
)
JSON_DOCUMENTS = st.dictionaries(
    JSON_KEYS,
    st.recursive(
        JSON_SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(JSON_KEYS, children, max_size=4)
        ),
        max_leaves=30,
    ),
    min_size=1,
)


@settings(max_examples=300, deadline=None, database=None)
@given(JSON_DOCUMENTS, st.sampled_from([None, True, False]))
def test_json_documents_take_the_fast_path_and_build_as_pyyaml_does(
    document: dict[str, object], flow_style: bool | None
) -> None:
    text = yaml.safe_dump(document, allow_unicode=True, default_flow_style=flow_style)
    fast, pyyaml = fast_and_pyyaml(text)
    assert fast != DECLINED
    assert same(fast, pyyaml)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2\n", id="merge-key"),
        pytest.param("a: 1\nb: 2\na: 3\n", id="duplicate-key"),
        pytest.param("a: {b: 1, b: 2}\n", id="nested-duplicate-key"),
        pytest.param("a: {200: ok}\n", id="int-key"),
        pytest.param("a: {~: x}\n", id="null-key"),
        pytest.param("a: {2025-01-01: x}\n", id="date-key"),
        pytest.param("a: {[b]: c}\n", id="list-key"),
        pytest.param("a: {= : x}\n", id="value-key"),
        pytest.param("a: x\n=: y\n", id="value-tag"),
        pytest.param("a: !!binary aGk=\n", id="binary"),
        pytest.param("a: !!set {b, c}\n", id="set"),
        pytest.param("a: !!omap [b: 1]\n", id="omap"),
        pytest.param("a: !!pairs [b: 1, b: 2]\n", id="pairs"),
        pytest.param("a: .nan\n", id="nan"),
        pytest.param("a: [-.inf]\n", id="infinity"),
        pytest.param("a: !custom x\n", id="unknown-tag"),
        pytest.param("a: !!str {b: 1}\n", id="str-tag-on-a-mapping"),
        pytest.param("a: 2025-13-01\n", id="impossible-date"),
        pytest.param("a: !!int many\n", id="bad-int"),
        pytest.param("a: 1.0e+400\n", id="float-overflowing-to-infinity"),
        pytest.param("- a\n", id="top-level-list"),
        pytest.param(ALIAS_BOMB, id="alias-bomb"),
    ],
)
def test_anything_but_plain_json_data_goes_to_pyyaml(text: str) -> None:
    assert fast_path(text) == DECLINED


@pytest.mark.parametrize("levels", [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("inner", ["", "1"])
def test_fast_path_declines_exactly_what_the_bounds_check_rejects(levels: int, inner: str) -> None:
    text = "a: " + "[" * levels + inner + "]" * levels + "\n"
    try:
        check_bounds("deep.yaml", compose(text))
    except ManifestError:
        rejected = True
    else:
        rejected = False
    assert (fast_path(text) == DECLINED) == rejected


def test_what_the_fast_path_declines_still_loads_through_pyyaml() -> None:
    manifest = load_manifest(
        "unusual.yaml",
        b"""\
metadata: &meta
  dc_identifier: chora.test.unusual
  dc_title: T
  dc_hasVersion: 1.0.0
  dc_date: 2025-11-15
chora_pattern:
  codes: {200: ok, 404: missing}
  ratio: .nan
  copy:
    <<: *meta
    dc_title: U
""",
    )
    assert manifest.metadata["dc_date"] == "2025-11-15"
    assert manifest.version == "1.0.0"


def tags(node: yaml.Node) -> list[str]:
    if isinstance(node, yaml.MappingNode):
        return [node.tag, *(tag for pair in node.value for child in pair for tag in tags(child))]
    if isinstance(node, yaml.SequenceNode):
        return [node.tag, *(tag for child in node.value for tag in tags(child))]
    return [node.tag]


TOKENS = st.sampled_from(
    ["a:", " b", "\n", "\n  ", "- ", "[", "]", "{", "}", ", ", ": ", "? ", "&a ", "*a", "'", '"', "!!str "]
)
PLAIN_SCALARS = st.sampled_from(
    [
        "",
        "~",
        "null",
        "yes",
        "No",
        "on",
        "0",
        "-0",
        "+12",
        "0x1F",
        "0o17",
        "017",
        "1_000",
        "1:30",
        ".5",
        "-.inf",
        ".NaN",
        "1e3",
        "2025-11-15",
        "2025-11-15 22:30:00",
        "<<",
        "=",
        "!",
        "&",
        "*",
        "1.0.0",
        "^1.0.0",
        "a b",
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.text(), st.lists(st.one_of(TOKENS, PLAIN_SCALARS), max_size=40).map("".join)))
def test_resolver_tags_nodes_as_pyyamls_does(text: str) -> None:
    """The loader's resolver skips PyYAML's lookups for resolvers the safe loader does not have."""

    def composed(loader_class: type[yaml.CSafeLoader]) -> list[str] | str:
        try:
            node = yaml.compose(text, Loader=loader_class)
        except yaml.YAMLError as exc:
            return str(exc)
        return [] if node is None else tags(node)

    assert composed(ManifestLoader) == composed(yaml.CSafeLoader)


def test_the_loader_has_no_wildcard_or_path_resolvers_its_resolver_skips() -> None:
    assert None not in ManifestLoader.yaml_implicit_resolvers
    assert not ManifestLoader.yaml_path_resolvers
