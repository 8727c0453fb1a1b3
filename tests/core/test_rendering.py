"""Rendering: the exact bytes of the four keys, determinism, the keys digest and the managed record."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.batching import change_size
from gitops_sync.core.loading import load_manifest
from gitops_sync.core.rendering import (
    RENDERING,
    decode_record,
    desire,
    encode_record,
    render_values,
)
from gitops_sync.core.validating import schema_text
from gitops_sync.errors import ManifestError
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX, managed_key
from gitops_sync.model.manifests import Dependency
from gitops_sync.model.plans import Change
from gitops_sync.model.registry import ManagedRecord
from gitops_sync.model.sources import SourceFile

TITLE = "Golden \u2013 \u00dcn\u00efcode"
GOLDEN = f"""\
apiVersion: chora.dev/v1
kind: Capability
metadata:
  dc_title: {TITLE}
  dc_identifier: chora.test.golden
  dc_hasVersion: 2.1.0
  dc_date: 2025-11-15
  dc_subject: [zeta, alpha]
  dc_extent: {{pages: 3, ratio: 0.5, draft: true, note: null}}
chora_service:
  interfaces: [cli]
dc_relation:
  requires:
    - chora.test.base
    - capability: chora.test.other
      version: ^1.2.0
  optional:
    - capability: chora.test.extra
      relationship: enhances
"""


def source_file(name: str, text: str) -> SourceFile:
    content = text.encode()
    return SourceFile(name, content, hashlib.sha256(content).hexdigest())


def rendered(text: str, prefix: str = DEFAULT_PREFIX) -> dict[str, bytes]:
    return render_values(load_manifest("test.yaml", text.encode()), prefix)


def test_the_schema_is_the_one_of_this_rendering() -> None:
    """Changing what the schema accepts? Bump RENDERING too, or a restarted service trusts records and
    marks made under the old rules: a file they now refuse would stay in etcd until it changes. A
    change that accepts and refuses the same documents (a rule written another way) only updates
    the digest. (Rendering 2 refuses versions and ranges over 256 characters.)"""
    assert RENDERING == 2
    assert hashlib.sha256(schema_text().encode()).hexdigest() == (
        "6ba0c8a89f3ccdfa707a98d85cea710d34ad5ef4648cb0f126c73558f9ae5567"
    )


def test_golden_keys_and_bytes() -> None:
    """The bytes of renderings 1 and 2. Changing them? Bump RENDERING too, or a restarted service
    trusts records and marks of the old bytes and leaves them in etcd until each file changes."""
    assert RENDERING == 2
    values = rendered(GOLDEN)
    assert values == {
        "/chora/capabilities/chora.test.golden/metadata": (
            '{"dc_date":"2025-11-15","dc_extent":{"draft":true,"note":null,"pages":3,"ratio":0.5},'
            '"dc_hasVersion":"2.1.0","dc_identifier":"chora.test.golden","dc_subject":["zeta","alpha"],'
            f'"dc_title":"{TITLE}"}}'
        ).encode(),
        "/chora/capabilities/chora.test.golden/type": b"service",
        "/chora/capabilities/chora.test.golden/version": b"2.1.0",
        "/chora/capabilities/chora.test.golden/dependencies": (
            b'[{"capability":"chora.test.base","relationship":"prerequisite","version":"*"},'
            b'{"capability":"chora.test.other","relationship":"prerequisite","version":"^1.2.0"},'
            b'{"capability":"chora.test.extra","relationship":"enhances","version":"*"}]'
        ),
    }
    # ensure_ascii=False: non-ASCII text is stored as UTF-8, not as \u escapes.
    assert values["/chora/capabilities/chora.test.golden/metadata"].endswith(
        b'"dc_title":"Golden \xe2\x80\x93 \xc3\x9cn\xc3\xafcode"}'
    )
    assert list(values) == [
        "/chora/capabilities/chora.test.golden/metadata",
        "/chora/capabilities/chora.test.golden/type",
        "/chora/capabilities/chora.test.golden/version",
        "/chora/capabilities/chora.test.golden/dependencies",
    ]


def test_no_dependencies_render_as_an_empty_array() -> None:
    values = rendered(
        "metadata:\n  dc_identifier: chora.test.alone\n  dc_title: T\n  dc_hasVersion: 1.0.0\nchora_pattern: {}\n"
    )
    assert values["/chora/capabilities/chora.test.alone/dependencies"] == b"[]"
    assert values["/chora/capabilities/chora.test.alone/type"] == b"pattern"


def test_prefix_is_used_verbatim() -> None:
    values = rendered(GOLDEN, prefix="/other/")
    assert sorted(values) == [
        "/other/chora.test.golden/dependencies",
        "/other/chora.test.golden/metadata",
        "/other/chora.test.golden/type",
        "/other/chora.test.golden/version",
    ]


def test_same_manifest_gives_same_bytes() -> None:
    assert rendered(GOLDEN) == rendered(GOLDEN)


def test_metadata_key_order_and_layout_do_not_change_the_bytes() -> None:
    reordered = """\
# the same capability, written differently
dc_relation:
  requires: [chora.test.base, {version: ^1.2.0, capability: chora.test.other}]
  optional: [{relationship: enhances, capability: chora.test.extra}]
chora_service: {interfaces: [cli]}
metadata:
  dc_extent:
    note: ~
    draft: yes
    ratio: 0.50
    pages: 0x3
  dc_subject:
    - zeta
    - alpha
  dc_date: '2025-11-15'
  dc_hasVersion: "2.1.0"
  dc_identifier: chora.test.golden
  dc_title: "Golden \\u2013 \\u00dcn\\u00efcode"
"""
    assert rendered(reordered) == rendered(GOLDEN)


def test_list_order_is_kept() -> None:
    swapped = GOLDEN.replace("[zeta, alpha]", "[alpha, zeta]")
    assert rendered(swapped) != rendered(GOLDEN)


def test_record_round_trip() -> None:
    record = ManagedRecord(
        "chora.test.golden.yaml",
        "a" * 64,
        "service",
        "2.1.0",
        (
            Dependency("chora.test.base", "prerequisite", "^1.0.0", kind="requires", line=12),
            Dependency("chora.test.x", "optional", "*", kind="optional", line=None),
        ),
    )
    encoded = encode_record(record)
    assert encoded == (
        b'{"dependencies":[["chora.test.base","prerequisite","^1.0.0","requires",12],'
        b'["chora.test.x","optional","*","optional",null]],"rendering":2,'
        b'"source":"chora.test.golden.yaml",'
        b'"source_sha256":"' + b"a" * 64 + b'","type":"service","version":"2.1.0"}'
    )
    decoded = decode_record(encoded)
    assert decoded == record
    assert decoded is not None
    assert [(d.kind, d.line) for d in decoded.dependencies] == [("requires", 12), ("optional", None)]


@pytest.mark.parametrize("rendering", [None, RENDERING - 1, RENDERING + 1])
def test_a_record_of_another_rendering_vouches_for_nothing(rendering: int | None) -> None:
    """After an upgrade that renders manifests differently, every capability is rendered again."""
    record = ManagedRecord("a.yaml", "a" * 64, "service", "1.0.0", ())
    data = json.loads(encode_record(record))
    if rendering is None:
        del data["rendering"]  # as written before records said which rendering wrote them
    else:
        data["rendering"] = rendering

    assert decode_record(json.dumps(data).encode()) is None


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(), st.text(), st.text(), st.text(), st.lists(st.tuples(st.text(), st.text(), st.text())))
def test_record_round_trip_for_any_text(
    source: str, source_sha256: str, kind: str, version: str, dependencies: list[tuple[str, str, str]]
) -> None:
    record = ManagedRecord(
        source, source_sha256, kind, version, tuple(Dependency(*d, kind=kind) for d in dependencies)
    )
    assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"42",
        b'"a string"',
        b"[]",
        b"{}",
        b'{"source": "a.yaml"}',
        b'{"source": "a.yaml", "source_sha256": "x"}',
        b'{"source": "a.yaml", "source_sha256": "x", "type": "t", "version": "1"}',
        b'{"source": "a.yaml", "source_sha256": "x", "type": "t", "version": "1", "dependencies": [[1]]}',
        b"{'source': 'a.yaml'}",
    ],
)
def test_decode_of_garbage_gives_none(garbage: bytes) -> None:
    assert decode_record(garbage) is None


def test_decode_of_deeply_nested_garbage_gives_none() -> None:
    assert decode_record(b"[" * 100_000) is None


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary())
def test_decode_of_arbitrary_bytes_gives_a_record_or_none(value: bytes) -> None:
    assert decode_record(value) is None or isinstance(decode_record(value), ManagedRecord)


def test_desire_renders_values_and_the_record_of_them() -> None:
    source = source_file("chora.test.golden.yaml", GOLDEN)
    manifest = load_manifest(source.name, source.data)
    capability = desire(manifest, source, prefix=DEFAULT_PREFIX, max_request_bytes=1_500_000)
    values = render_values(manifest, DEFAULT_PREFIX)
    assert capability.id == "chora.test.golden"
    assert capability.type == "service"
    assert capability.source == "chora.test.golden.yaml"
    assert capability.values == values
    record = decode_record(capability.record)
    assert record == ManagedRecord(source.name, source.sha256, "service", "2.1.0", capability.dependencies)
    assert record is not None
    assert [(d.kind, d.line) for d in record.dependencies] == [
        ("requires", 14),
        ("requires", 15),
        ("optional", 18),
    ]
    assert capability.version == "2.1.0"
    assert [(d.capability, d.kind) for d in capability.dependencies] == [
        ("chora.test.base", "requires"),
        ("chora.test.other", "requires"),
        ("chora.test.extra", "optional"),
    ]


def test_desire_refuses_a_capability_whose_largest_write_is_over_the_request_limit() -> None:
    """The keys and the record together, each compared: what the sync's batches will send."""
    source = source_file("huge.yaml", GOLDEN)
    manifest = load_manifest(source.name, source.data)
    capability = desire(manifest, source, prefix=DEFAULT_PREFIX, max_request_bytes=1_500_000)
    assert capability.values is not None
    record_key = managed_key(DEFAULT_SYNC_PREFIX, capability.id)
    puts = (*capability.values.items(), (record_key, capability.record))
    size = change_size(Change(capability.id, "create", puts=puts, expected=tuple((k, 0) for k, _ in puts)))

    assert desire(manifest, source, prefix=DEFAULT_PREFIX, max_request_bytes=size).id == manifest.id
    with pytest.raises(ManifestError) as caught:
        desire(manifest, source, prefix=DEFAULT_PREFIX, max_request_bytes=size - 1)
    assert caught.value.source == "huge.yaml"
    assert str(caught.value).startswith("huge.yaml: ")
    assert f"{size:,} bytes" in caught.value.message
    assert "move bulky content out of the manifest" in caught.value.message
    with pytest.raises(ManifestError, match="5 operations"):
        desire(manifest, source, prefix=DEFAULT_PREFIX, max_ops=4, max_request_bytes=size)


def test_desire_refuses_a_manifest_whose_keys_outgrow_one_etcd_request() -> None:
    # Under the file size limit, but an alias repeats a 100 KB title into 2 MB of metadata.
    copies = "".join(f"  copy_{i}: *big\n" for i in range(20))
    text = GOLDEN.replace(f"dc_title: {TITLE}\n", "dc_title: &big " + "x" * 100_000 + "\n" + copies)
    source = source_file("bulky.yaml", text)
    assert len(source.data) < 1024 * 1024
    manifest = load_manifest(source.name, source.data)
    with pytest.raises(ManifestError, match=r"^bulky\.yaml: renders to .* 2,10\d,\d{3} bytes"):
        desire(manifest, source, prefix=DEFAULT_PREFIX, max_request_bytes=1_572_864)
