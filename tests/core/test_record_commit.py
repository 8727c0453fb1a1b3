"""A record carries the Git commit that last wrote its capability; a new commit alone rewrites none."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from gitops_sync.core.loading import load_manifest
from gitops_sync.core.reconciling import Policy, reconcile
from gitops_sync.core.rendering import (
    decode_record,
    desire,
    record_commit,
    to_json,
    with_commit,
    without_commit,
)
from gitops_sync.model.keys import DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX, managed_key
from gitops_sync.model.plans import DesiredCapability, DesiredState
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.model.sources import SourceFile

OLD = "1" * 40
NEW = "2" * 40
POLICY = Policy(DEFAULT_PREFIX, DEFAULT_SYNC_PREFIX, commit=NEW)


def manifest_text(capability_id: str, version: str = "1.0.0") -> bytes:
    return (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: A capability\n"
        f"  dc_hasVersion: {version}\nchora_service: {{}}\n"
    ).encode()


def desired_capability(capability_id: str, text: bytes | None = None) -> DesiredCapability:
    content = manifest_text(capability_id) if text is None else text
    source = SourceFile(f"{capability_id}.yaml", content, hashlib.sha256(content).hexdigest())
    return desire(
        load_manifest(source.name, content), source, prefix=DEFAULT_PREFIX, max_request_bytes=1_500_000
    )


def desired_state(*capabilities: DesiredCapability) -> DesiredState:
    return DesiredState({c.id: c for c in capabilities}, frozenset())


def stored(*capabilities: DesiredCapability, revision: int = 10) -> RegistryState:
    """etcd after a directory sync (no commit) wrote these capabilities with their records."""
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    for capability in capabilities:
        assert capability.values is not None
        keys.update((key, KeyState(value, revision)) for key, value in capability.values.items())
        records[capability.id] = KeyState(capability.record, revision)
    return RegistryState(revision=revision, capability_keys=keys, records=records)


def test_the_commit_is_written_as_canonical_json_would_write_it() -> None:
    record = desired_capability("chora.test.a").record

    written = with_commit(record, NEW)

    assert written == to_json({**json.loads(record), "commit": NEW})
    assert record_commit(written) == NEW
    assert without_commit(written) == record
    assert decode_record(written) == decode_record(record)
    assert with_commit(record, None) == record
    assert record_commit(record) is None


@given(st.from_regex(r"[0-9a-f]{40}|[0-9a-f]{64}", fullmatch=True))
def test_any_commit_id_comes_off_again(commit: str) -> None:
    record = desired_capability("chora.test.a").record
    assert without_commit(with_commit(record, commit)) == record


def test_a_record_that_differs_only_in_its_commit_is_not_rewritten() -> None:
    capability = desired_capability("chora.test.a")
    actual = stored(capability)
    written = with_commit(capability.record, OLD)
    actual = RegistryState(
        actual.revision, actual.capability_keys, {capability.id: KeyState(written, actual.revision)}
    )

    planned = reconcile(desired_state(capability), actual, POLICY)

    assert planned.changes == ()


def test_a_changed_capability_gets_the_new_commit_in_its_record() -> None:
    before = desired_capability("chora.test.a")
    after = desired_capability("chora.test.a", manifest_text("chora.test.a", "1.1.0"))
    untouched = desired_capability("chora.test.b")

    planned = reconcile(desired_state(after, untouched), stored(before, untouched), POLICY)

    (change,) = planned.changes
    assert change.capability_id == "chora.test.a"
    puts = dict(change.puts)
    assert record_commit(puts[managed_key(DEFAULT_SYNC_PREFIX, "chora.test.a")]) == NEW
    assert without_commit(puts[managed_key(DEFAULT_SYNC_PREFIX, "chora.test.a")]) == after.record
