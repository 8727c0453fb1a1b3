"""Loading manifests: the example files, both layouts, the defaults, every error a user causes (the real
chora-base corpus is in ``tests/interop``)."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.loading import load_manifest
from gitops_sync.errors import ManifestError
from gitops_sync.model.manifests import Dependency, Manifest
from support import CAPABILITIES

RICH = "chora.observability.incident_response"
"""No type block, a top-level ``chora_version``, and three kinds of relation."""


def load_example(capability_id: str) -> Manifest:
    path = CAPABILITIES / f"{capability_id}.yaml"
    return load_manifest(path.name, path.read_bytes())


def load_text(text: str, source: str = "test.yaml") -> Manifest:
    return load_manifest(source, text.encode())


def load_error(text: str | bytes, source: str = "bad.yaml") -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_manifest(source, text.encode() if isinstance(text, str) else text)
    error = caught.value
    assert error.source == source
    assert str(error).startswith(source)
    return error


# --- the example manifests ---------------------------------------------------------------------


def test_all_example_manifests_load() -> None:
    paths = sorted(CAPABILITIES.glob("*.yaml"))
    manifests = [load_manifest(path.name, path.read_bytes()) for path in paths]

    assert [m.id + ".yaml" for m in manifests] == [path.name for path in paths]
    assert [m.source for m in manifests] == [path.name for path in paths]
    for manifest in manifests:
        assert manifest.metadata["dc_identifier"] == manifest.id
        assert manifest.type == str(manifest.metadata["dc_type"]).lower()
        assert all(dep.capability.startswith("chora.") for dep in manifest.dependencies)
    assert {m.type for m in manifests} == {"service", "pattern"}


def test_rich_manifest_takes_type_from_dc_type_and_version_from_chora_version() -> None:
    manifest = load_example(RICH)
    assert manifest.type == "pattern"
    assert manifest.version == "1.2.0"
    assert "dc_hasVersion" not in manifest.metadata


def test_flat_service_matches_its_file() -> None:
    manifest = load_example("chora.platform.config_store")
    assert manifest.type == "service"
    assert manifest.version == "1.4.0"
    assert manifest.dependencies == (Dependency("chora.platform.conventions", "prerequisite", "~2.3"),)
    assert manifest.metadata["dc_date"] == "2025-10-14"
    assert manifest.metadata["dc_subject"] == ["configuration", "key-value", "live-reload"]


def test_nested_service_matches_its_file() -> None:
    manifest = load_example("chora.platform.event_bus")
    assert manifest.type == "service"
    assert manifest.version == "0.6.2"
    assert manifest.dependencies == (
        Dependency("chora.platform.config_store", "runtime", "^1.2.0"),
        Dependency("chora.platform.conventions", "prerequisite", "^2.0.0"),
    )


def test_rich_manifest_dependencies_include_every_relation_kind_in_file_order() -> None:
    manifest = load_example(RICH)
    assert manifest.dependencies == (
        Dependency("chora.observability.metrics_gateway", "prerequisite", "^2.0.0"),
        Dependency("chora.observability.telemetry_schema", "prerequisite", "~1.0"),
        Dependency("chora.platform.conventions", "extends", "^2.3.0"),
        Dependency("chora.platform.event_bus", "optional", ">=0.5.0"),
    )


# --- layouts and defaults -----------------------------------------------------------------------


def test_nested_layout_loads() -> None:
    manifest = load_text(
        """\
apiVersion: chora.dev/v1
kind: Capability
metadata:
  dc_identifier: chora.test.nested
  dc_title: T
  dc_hasVersion: 0.1.0
  dc_relation:
    requires:
      - capability: chora.test.base
        version: ">=1.0.0"
    optional:
      - chora.test.extra
spec:
  chora_service:
    interfaces: [cli]
"""
    )
    assert manifest.type == "service"
    assert manifest.version == "0.1.0"
    assert manifest.dependencies == (
        Dependency("chora.test.base", "prerequisite", ">=1.0.0"),
        Dependency("chora.test.extra", "optional", "*"),
    )
    assert "dc_relation" in manifest.metadata


def test_nested_pattern_block_gives_pattern() -> None:
    manifest = load_text(
        """\
metadata:
  dc_identifier: chora.test.nested_pattern
  dc_title: T
  dc_hasVersion: 1.0.0
spec:
  chora_pattern: {}
"""
    )
    assert manifest.type == "pattern"
    assert manifest.dependencies == ()


def test_bare_strings_and_relationship_and_version_defaults() -> None:
    manifest = load_text(
        """\
metadata:
  dc_identifier: chora.test.defaults
  dc_title: T
  dc_type: service
  dc_hasVersion: 1.0.0
dc_relation:
  requires:
    - chora.test.a
    - capability: chora.test.b
    - capability: chora.test.c
      relationship: runtime
      version: ^2.0.0
  extends:
    - chora.test.d
  recommends:
    - capability: chora.test.e
  empty_kind:
"""
    )
    assert manifest.type == "service"
    assert manifest.dependencies == (
        Dependency("chora.test.a", "prerequisite", "*"),
        Dependency("chora.test.b", "prerequisite", "*"),
        Dependency("chora.test.c", "runtime", "^2.0.0"),
        Dependency("chora.test.d", "extends", "*"),
        Dependency("chora.test.e", "recommends", "*"),
    )


def test_no_dc_relation_means_no_dependencies() -> None:
    manifest = load_text(
        "metadata:\n  dc_identifier: chora.test.alone\n  dc_title: T\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n"
    )
    assert manifest.dependencies == ()


def test_unquoted_dates_and_datetimes_become_iso_strings() -> None:
    manifest = load_text(
        """\
metadata:
  dc_identifier: chora.test.dates
  dc_title: T
  dc_hasVersion: 1.0.0
  dc_date: 2025-11-15
  dc_modified: 2025-11-15 22:30:00
  dc_created: 2025-11-15T22:30:00Z
  history:
    - 2024-01-02
chora_pattern: {}
"""
    )
    assert manifest.metadata["dc_date"] == "2025-11-15"
    assert manifest.metadata["dc_modified"] == "2025-11-15T22:30:00"
    assert manifest.metadata["dc_created"] == "2025-11-15T22:30:00+00:00"
    assert manifest.metadata["history"] == ["2024-01-02"]


@pytest.mark.parametrize(
    ("metadata_lines", "top_level", "expected"),
    [
        pytest.param(
            "  dc_hasVersion: 3.0.0\n  chora_version: 2.0.0\n", "chora_version: 1.0.0\n", "3.0.0", id="all"
        ),
        pytest.param("  chora_version: 2.0.0\n", "chora_version: 1.0.0\n", "2.0.0", id="metadata"),
        pytest.param("", "chora_version: 1.0.0\n", "1.0.0", id="top-level"),
        pytest.param("  dc_hasVersion: 3.0.0-rc.1+build.5\n", "", "3.0.0-rc.1+build.5", id="prerelease"),
    ],
)
def test_version_lookup_order(metadata_lines: str, top_level: str, expected: str) -> None:
    text = f"metadata:\n  dc_identifier: chora.test.version\n  dc_title: T\n{metadata_lines}{top_level}chora_pattern: {{}}\n"
    assert load_text(text).version == expected


def test_type_blocks_win_over_dc_type() -> None:
    text = (
        "metadata:\n  dc_identifier: chora.test.t\n  dc_title: T\n  dc_type: Pattern\n  dc_hasVersion: 1.0.0\n"
        "chora_service: {}\n"
    )
    assert load_text(text).type == "service"


# --- errors -------------------------------------------------------------------------------------

HEAD = "metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n"
"""Lines 1-3 of most broken manifests below."""

ERRORS = [
    pytest.param(
        HEAD + "  dc_subject: a: b\n",
        4,
        ["not valid YAML", "mapping values are not allowed"],
        id="invalid-yaml",
    ),
    pytest.param(
        HEAD + "  dc_subject: [a, b\nchora_pattern: {}\n",
        5,
        ["not valid YAML", "did not find expected ',' or ']'", "flow sequence started on line 4"],
        id="unclosed-flow-sequence",
    ),
    pytest.param("", None, ["empty", "'metadata:'"], id="empty"),
    pytest.param("# nothing but a comment\n\n", None, ["empty", "'metadata:'"], id="only-comments"),
    pytest.param("- a\n- b\n", 1, ["list", "not a mapping"], id="top-level-list"),
    pytest.param("\n\njust a string\n", 3, ["string", "not a mapping"], id="top-level-string"),
    pytest.param(
        "a: 1\n---\nb: 2\n", 2, ["more than one YAML document", "one manifest per file"], id="two-documents"
    ),
    pytest.param(
        HEAD + "  dc_title: U\n",
        4,
        ["duplicate key 'dc_title' (first on line 3)", "keep one"],
        id="duplicate-key",
    ),
    pytest.param(HEAD + "\tdc_type: Pattern\n", 4, ["not valid YAML", "tab"], id="tab-indent"),
    pytest.param(
        "kind: Capability\nchora_pattern: {}\n", None, ["no 'metadata:' mapping", "add one"], id="no-metadata"
    ),
    pytest.param(
        "kind: Capability\nmetadata: oops\n",
        2,
        ["metadata 'oops' must be a mapping", "dc_identifier"],
        id="metadata-not-a-mapping",
    ),
    pytest.param(
        "chora_pattern: {}\nmetadata:\n  dc_title: X\n  dc_hasVersion: 1.0.0\n",
        2,
        ["metadata has no dc_identifier", "add it"],
        id="no-dc_identifier",
    ),
    pytest.param(
        "metadata:\n  dc_identifier: chora.test.x\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n",
        1,
        ["metadata has no dc_title", "add it"],
        id="no-dc_title",
    ),
    pytest.param(
        "metadata:\n  dc_title: X\n  dc_identifier: Chora.Devex.Registry\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n",
        3,
        ["metadata.dc_identifier 'Chora.Devex.Registry'", "chora.{domain}.{name}"],
        id="malformed-dc_identifier",
    ),
    pytest.param(
        "metadata:\n  dc_title: X\n  dc_identifier: 42\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n",
        3,
        ["metadata.dc_identifier 42", "chora.{domain}.{name}"],
        id="dc_identifier-not-a-string",
    ),
    pytest.param(
        "metadata:\n  dc_identifier: chora.test.x\n  dc_title: [T]\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n",
        3,
        ["metadata.dc_title must be string"],
        id="wrong-type",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n",
        1,
        ["cannot tell the capability type", "chora_service or chora_pattern", "dc_type"],
        id="no-type",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  dc_type: Widget\n",
        5,
        ["'Widget'", "Service or Pattern"],
        id="unknown-dc_type",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: v1.0\nchora_pattern: {}\n",
        4,
        ["metadata.dc_hasVersion", "'v1.0'", "SemVer", "'1.0.0'"],
        id="version-not-semver",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0\nchora_pattern: {}\n",
        4,
        ["1.0", "quoted string"],
        id="unquoted-float-version",
    ),
    pytest.param(
        HEAD + "chora_pattern: {}\nchora_version: 2\n",
        5,
        ["chora_version 2", "quoted string"],
        id="unquoted-int-top-level-version",
    ),
    pytest.param(
        HEAD + "chora_pattern: {}\n",
        1,
        ["no version", "dc_hasVersion"],
        id="no-version",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\nchora_pattern: {}\ndc_relation:\n  - chora.test.y\n",
        6,
        ["dc_relation must be a mapping of relation kinds"],
        id="dc_relation-not-a-mapping",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  dc_relation: {}\nchora_pattern: {}\ndc_relation: {}\n",
        5,
        ["both at the top level and inside metadata", "keep one"],
        id="dc_relation-twice",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\nchora_pattern: {}\ndc_relation:\n  requires: chora.test.y\n",
        7,
        ["dc_relation.requires must be array or null", "'chora.test.y'"],
        id="relation-kind-not-a-list",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\nchora_pattern: {}\n"
        "dc_relation:\n  requires:\n    - capability: chora.test.y\n    - relationship: runtime\n",
        9,
        ["dc_relation.requires[1]", "'capability: <id>'"],
        id="dependency-without-capability",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\nchora_pattern: {}\ndc_relation:\n  optional:\n    - [chora.test.y]\n",
        8,
        ["dc_relation.optional[0]", "capability: <id>"],
        id="dependency-is-a-list",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\nchora_pattern: {}\n"
        "dc_relation:\n  requires:\n    - capability: chora.test.y\n      version: 1.0\n",
        8,
        ["dc_relation.requires[0]", "capability: <id>"],
        id="version-constraint-not-a-string",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  1: one\nchora_pattern: {}\n",
        1,
        ["metadata has the key 1", "quote it"],
        id="non-string-key-in-metadata",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  nested:\n    yes: 1\nchora_pattern: {}\n",
        5,
        ["metadata.nested has the key True", "quote it"],
        id="non-string-key-nested-in-metadata",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  ratio: .nan\nchora_pattern: {}\n",
        5,
        ["metadata.ratio is nan", "JSON cannot hold"],
        id="nan-in-metadata",
    ),
    pytest.param(
        HEAD + "  dc_hasVersion: 1.0.0\n  blob: !!binary aGk=\nchora_pattern: {}\n",
        5,
        ["metadata.blob is a binary value", "use a string"],
        id="binary-in-metadata",
    ),
    pytest.param(
        b"metadata:\n  dc_title: \xc3\x28\n",
        2,
        ["not valid UTF-8", "byte 0xc3", "save it as UTF-8"],
        id="invalid-utf8",
    ),
    pytest.param(b"metadata:\n  x: \x00\x01\n", None, ["binary file"], id="binary-file"),
    pytest.param(b"a: " + b"x" * (1024 * 1024), None, ["over the 1,048,576-byte limit"], id="too-large"),
]


@pytest.mark.parametrize(("text", "line", "fragments"), ERRORS)
def test_errors_name_the_file_the_line_and_the_fix(
    text: str | bytes, line: int | None, fragments: list[str]
) -> None:
    error = load_error(text)
    assert error.line == line
    for fragment in fragments:
        assert fragment in error.message
    expected_location = "bad.yaml" if line is None else f"bad.yaml:{line}"
    assert str(error) == f"{expected_location}: {error.message}"


BOTH_BLOCKS = "metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n  dc_hasVersion: 1.0.0\nchora_service: {}\nchora_pattern: {}\n"


def test_both_type_blocks_are_an_error() -> None:
    error = load_error(BOTH_BLOCKS)
    assert "both a chora_service and a chora_pattern block" in error.message
    assert "keep the one that describes it" in error.message


@pytest.mark.parametrize(
    ("blocks", "named"),
    [
        ("chora_service: {}\nspec:\n  chora_pattern: {}\n", "spec.chora_pattern"),
        ("chora_pattern: {}\nspec:\n  chora_service: {}\n", "spec.chora_service"),
        ("spec:\n  chora_service: {}\n  chora_pattern: {}\n", "spec.chora_pattern"),
    ],
)
def test_both_type_blocks_across_layouts_are_an_error(blocks: str, named: str) -> None:
    error = load_error(
        "metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n  dc_hasVersion: 1.0.0\n" + blocks
    )
    assert error.message.startswith(f"{named} is one type block too many")
    assert "keep the one that describes it" in error.message
    assert error.line == 7


def test_a_second_type_block_is_named_without_its_value() -> None:
    error = load_error(BOTH_BLOCKS.replace("chora_pattern: {}", "chora_pattern: true"))
    assert error.message.startswith("chora_pattern is one type block too many: ")
    assert error.line == 6


def test_both_type_blocks_error_points_at_a_line() -> None:
    error = load_error(BOTH_BLOCKS)
    assert error.line in {5, 6}


def alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    names = [chr(ord("a") + level) for level in range(levels)]
    lines = [
        "metadata:",
        "  dc_identifier: chora.test.bomb",
        "  dc_title: T",
        "  dc_hasVersion: 1.0.0",
        "  dc_type: Pattern",
        f"  {names[0]}: &{names[0]} [{', '.join(['lol'] * fan_out)}]",
    ]
    for previous, name in itertools.pairwise(names):
        lines.append(f"  {name}: &{name} [{', '.join(['*' + previous] * fan_out)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        pytest.param(alias_bomb(), "expands to more than 100,000 values", id="1-KiB-alias-bomb"),
        pytest.param("metadata: " + "[" * 10_000, "exceeded maximum nesting depth", id="10000-levels"),
        pytest.param(
            "metadata: " + "{a: " * 900 + "1" + "}" * 900, "nested deeper than 64 levels", id="900-levels"
        ),
    ],
)
def test_hostile_documents_are_rejected_fast_in_bounded_memory(text: str, cause: str) -> None:
    """A guard against a file that would hang or exhaust the service; the bounds are generous."""
    assert len(text.encode()) <= 10_010
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = load_error(text)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert cause in error.message
    assert elapsed < 10  # milliseconds; an unguarded alias bomb runs for minutes
    assert peak < 20 * 1024 * 1024


def test_aliases_within_the_budget_load() -> None:
    manifest = load_text(alias_bomb(levels=3, fan_out=3))
    assert manifest.metadata["c"] == [[["lol"] * 3] * 3] * 3


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 10_000, id="top-level"),
        pytest.param(
            "metadata:\n  dc_identifier: chora.test.deep\n  dc_title: T\n  dc_hasVersion: 1.0.0\n  x: "
            + "[" * 10_000
            + "\n",
            id="inside-metadata",
        ),
        pytest.param(
            "metadata:\n  dc_identifier: chora.test.deep\n  dc_title: T\n  dc_hasVersion: 1.0.0\n  x: "
            + "{a: " * 10_000
            + "\n",
            id="mappings",
        ),
    ],
)
def test_deep_nesting_is_a_manifest_error(text: str) -> None:
    error = load_error(text)
    assert "nesting" in error.message or "nested" in error.message


def test_deep_nesting_through_an_alias_chain_is_a_manifest_error() -> None:
    # Each anchor nests the previous one: the document is shallow, the value it builds is 3,000 deep.
    chain = "".join(f"  - &a{i} [{f'*a{i - 1}' if i else 'leaf'}]\n" for i in range(3_000))
    error = load_error(
        "metadata:\n  dc_identifier: chora.test.chain\n  dc_title: T\n  dc_hasVersion: 1.0.0\n  dc_type: Pattern\n  x:\n"
        + chain
    )
    assert "nested deeper than 64 levels" in error.message


# PyYAML's scalar constructors raise plain ValueError, KeyError or AttributeError for these; the
# loader must turn them into a ManifestError with the line, not crash the cycle.
LEAKING_SCALARS = [
    pytest.param("dc_date: 2025-13-01", id="month-13"),
    pytest.param("dc_date: 2025-02-30", id="february-30"),
    pytest.param("dc_date: 0000-01-01", id="year-0"),
    pytest.param("x: !!timestamp soon", id="timestamp-tag"),
    pytest.param("x: !!int many", id="int-tag"),
    pytest.param("x: !!float some", id="float-tag"),
    pytest.param("x: !!bool maybe", id="bool-tag"),
]


@pytest.mark.parametrize("scalar", LEAKING_SCALARS)
def test_unconstructible_scalars_are_manifest_errors(scalar: str) -> None:
    error = load_error(
        f"metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n  dc_hasVersion: 1.0.0\n  {scalar}\nchora_pattern: {{}}\n"
    )
    assert error.line == 5
    assert "cannot read" in error.message


@pytest.mark.parametrize(
    ("node", "found"), [("!!map [a]", "sequence"), ("!!map a", "scalar"), ("!!seq {a: 1}", "mapping")]
)
def test_a_collection_tag_on_the_wrong_kind_of_node_is_a_manifest_error(node: str, found: str) -> None:
    error = load_error(
        f"metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n  dc_hasVersion: 1.0.0\n  x: {node}\nchora_pattern: {{}}\n"
    )
    assert error.line == 5
    assert f"found {found}" in error.message


def test_dc_identifier_with_trailing_newline_is_rejected() -> None:
    error = load_error(
        'metadata:\n  dc_identifier: "chora.test.x\\n"\n  dc_title: T\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n'
    )
    assert "chora.{domain}.{name}" in error.message


def test_version_with_trailing_newline_is_rejected() -> None:
    load_error(
        'metadata:\n  dc_identifier: chora.test.x\n  dc_title: T\n  dc_hasVersion: "1.0.0\\n"\nchora_pattern: {}\n'
    )


# --- nothing but ManifestError, whatever the input ----------------------------------------------

YAML_TOKENS = st.sampled_from(
    [
        "metadata:",
        "dc_identifier:",
        " chora.test.x",
        "dc_hasVersion:",
        "chora_version:",
        " 1.0.0",
        " 1.0",
        "dc_type:",
        " Pattern",
        "chora_service:",
        "chora_pattern:",
        "spec:",
        "dc_relation:",
        "requires:",
        "capability:",
        "version:",
        "\n",
        "\n  ",
        "\n    ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "&a ",
        "*a",
        "'",
        '"',
        "#",
        "null",
        " 2025-11-15",
        " ~",
        " 7",
    ]
)


def check_only_manifest_errors(text: bytes) -> None:
    try:
        manifest = load_manifest("fuzz.yaml", text)
    except ManifestError as error:
        caught = error
    else:
        assert isinstance(manifest, Manifest)
        return
    assert caught.source == "fuzz.yaml"
    assert caught.line is None or caught.line >= 1


@settings(max_examples=200, deadline=None, database=None)
@given(st.text())
def test_arbitrary_text_gives_a_manifest_or_a_manifest_error(text: str) -> None:
    check_only_manifest_errors(text.encode())


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary())
def test_arbitrary_bytes_give_a_manifest_or_a_manifest_error(text: bytes) -> None:
    check_only_manifest_errors(text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(YAML_TOKENS, max_size=40))
def test_yaml_like_text_gives_a_manifest_or_a_manifest_error(tokens: list[str]) -> None:
    check_only_manifest_errors("".join(tokens).encode())


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["chora.test.x", "1.0.0", "^1.0.0", "Service", "Pattern", "requires", "capability"]),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "metadata",
            "dc_identifier",
            "dc_title",
            "dc_hasVersion",
            "chora_version",
            "dc_type",
            "chora_service",
            "chora_pattern",
            "spec",
            "dc_relation",
            "requires",
            "optional",
            "capability",
            "version",
            "relationship",
        ]
    ),
    st.text(max_size=8),
    st.integers(),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(DOCUMENTS)
def test_any_yaml_document_gives_a_manifest_or_a_manifest_error(document: object) -> None:
    """Structured documents reach the schema validator and the field readers, not just the parser."""
    check_only_manifest_errors(yaml.safe_dump(document, allow_unicode=True).encode())


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.fixed_dictionaries(
        {"dc_identifier": SCALARS, "dc_title": SCALARS, "dc_hasVersion": SCALARS, "dc_type": SCALARS},
        optional={"dc_relation": DOCUMENTS, "dc_subject": DOCUMENTS},
    ),
    st.sampled_from([{"chora_service": {}}, {"chora_pattern": {}}, {}, {"spec": {"chora_service": {}}}]),
    st.one_of(st.none(), DOCUMENTS),
)
def test_near_valid_manifests_give_a_manifest_or_a_manifest_error(
    metadata: dict[str, object], block: dict[str, object], relations: object
) -> None:
    document: dict[str, object] = {"metadata": metadata, **block}
    if relations is not None:
        document["dc_relation"] = relations
    check_only_manifest_errors(yaml.safe_dump(document, allow_unicode=True).encode())
