"""Reconciling: creates, updates, record-only changes, deletions of managed ids only, and the prune guards."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitops_sync.core.loading import load_manifest
from gitops_sync.core.reconciling import Policy, PrunePolicy, keys_by_id, reconcile
from gitops_sync.core.rendering import desire, encode_record, is_record, record_commit, without_commit
from gitops_sync.core.validating import schema
from gitops_sync.model.keys import (
    CAPABILITY_FIELDS,
    CAPABILITY_ID,
    DEFAULT_PREFIX,
    DEFAULT_SYNC_PREFIX,
    capability_key,
    capability_keys,
    managed_key,
    managed_prefix,
    split_capability_key,
)
from gitops_sync.model.manifests import Dependency, Manifest
from gitops_sync.model.plans import DesiredCapability, DesiredState, Plan
from gitops_sync.model.registry import KeyState, ManagedRecord, RegistryState
from gitops_sync.model.sources import SourceFile

PREFIX = DEFAULT_PREFIX
SYNC = DEFAULT_SYNC_PREFIX
ALLOW_ALL = PrunePolicy(enabled=True, max_deletes=1_000, allow_empty=True)


def manifest_text(
    capability_id: str,
    *,
    version: str = "1.0.0",
    title: str = "A capability",
    requires: str = "chora.test.base",
) -> bytes:
    return (
        f"metadata:\n  dc_identifier: {capability_id}\n  dc_title: {title}\n  dc_hasVersion: {version}\n"
        f"chora_service: {{}}\ndc_relation:\n  requires:\n    - {requires}\n"
    ).encode()


def desired_capability(capability_id: str, text: bytes | None = None) -> DesiredCapability:
    content = manifest_text(capability_id) if text is None else text
    source = SourceFile(f"{capability_id}.yaml", content, hashlib.sha256(content).hexdigest())
    return desire(load_manifest(source.name, content), source, prefix=PREFIX, max_request_bytes=1_500_000)


def desired_state(*capabilities: DesiredCapability, held: Iterable[str] = ()) -> DesiredState:
    return DesiredState({c.id: c for c in capabilities}, frozenset(held))


def rendered_values(capability: DesiredCapability) -> Mapping[str, bytes]:
    assert capability.values is not None, "rendered from its file, not taken from etcd"
    return capability.values


def stored(*capabilities: DesiredCapability, managed: bool = True, revision: int = 10) -> RegistryState:
    """etcd after a sync wrote these capabilities (with their records, if ``managed``)."""
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    for capability in capabilities:
        keys.update((key, KeyState(value, revision)) for key, value in rendered_values(capability).items())
        if managed:
            records[capability.id] = KeyState(capability.record, revision)
    return RegistryState(revision=revision, capability_keys=keys, records=records)


def merged(*states: RegistryState) -> RegistryState:
    return RegistryState(
        revision=max(s.revision for s in states),
        capability_keys={k: v for s in states for k, v in s.capability_keys.items()},
        records={k: v for s in states for k, v in s.records.items()},
    )


def make_plan(desired: DesiredState, actual: RegistryState, prune: PrunePolicy = ALLOW_ALL) -> Plan:
    return reconcile(desired, actual, Policy(PREFIX, SYNC, prune))


def apply(the_plan: Plan, actual: RegistryState) -> RegistryState:
    """What etcd holds after the plan's transactions succeed: each change at a new revision."""
    keys = dict(actual.capability_keys)
    records = dict(actual.records)
    revision = actual.revision
    records_at = managed_prefix(SYNC)
    for change in the_plan.changes:
        revision += 1
        for key, expected_revision in change.expected:
            current = keys.get(key) if not key.startswith(records_at) else records.get(key[len(records_at) :])
            assert (current.mod_revision if current else 0) == expected_revision, key
        for key, value in change.puts:
            if key.startswith(records_at):
                records[key[len(records_at) :]] = KeyState(value, revision)
            else:
                keys[key] = KeyState(value, revision)
        for key in change.deletes:
            if key.startswith(records_at):
                del records[key[len(records_at) :]]
            else:
                del keys[key]
    return RegistryState(revision=revision, capability_keys=keys, records=records)


def owner(key: str) -> str | None:
    """The capability id a key belongs to: a schema key under the prefix, or a managed record."""
    if key.startswith(managed_prefix(SYNC)):
        return key[len(managed_prefix(SYNC)) :]
    parts = split_capability_key(PREFIX, key)
    return parts[0] if parts else None


# --- upserts ------------------------------------------------------------------------------------


def test_create_puts_four_keys_and_the_record_expecting_them_absent() -> None:
    capability = desired_capability("chora.test.a")
    result = make_plan(desired_state(capability), RegistryState(revision=5, capability_keys={}, records={}))

    (change,) = result.changes
    assert change.kind == "create"
    assert change.capability_id == "chora.test.a"
    assert change.type == "service"
    assert change.fields == CAPABILITY_FIELDS
    assert change.puts == (
        *rendered_values(capability).items(),
        (managed_key(SYNC, "chora.test.a"), capability.record),
    )
    assert change.expected == tuple((key, 0) for key, _ in change.puts)  # all five, absent
    assert change.deletes == ()
    assert change.op_count == 5
    assert result.unchanged == frozenset()


def test_update_puts_only_the_changed_keys_and_the_record() -> None:
    old = desired_capability("chora.test.a")
    new = desired_capability("chora.test.a", manifest_text("chora.test.a", requires="chora.test.other"))
    actual = stored(old, revision=7)

    (change,) = make_plan(desired_state(new), actual).changes
    dependencies_key = capability_key(PREFIX, "chora.test.a", "dependencies")
    record_key = managed_key(SYNC, "chora.test.a")
    assert change.kind == "update"
    assert change.fields == ("dependencies",)
    assert change.puts == (
        (dependencies_key, rendered_values(new)[dependencies_key]),
        (record_key, new.record),
    )
    # All four keys are expected as read, also those not written: the record vouches for them all.
    assert change.expected == (
        *((key, 7) for key in capability_keys(PREFIX, "chora.test.a")),
        (record_key, 7),
    )


def test_a_new_version_changes_the_metadata_and_version_keys() -> None:
    old = desired_capability("chora.test.a")
    new = desired_capability("chora.test.a", manifest_text("chora.test.a", version="1.1.0"))
    (change,) = make_plan(desired_state(new), stored(old)).changes
    assert change.kind == "update"
    assert change.fields == ("metadata", "version")
    assert (capability_key(PREFIX, "chora.test.a", "version"), b"1.1.0") in change.puts


def test_update_compares_each_key_at_its_own_revision() -> None:
    old = desired_capability("chora.test.a")
    new = desired_capability("chora.test.a", manifest_text("chora.test.a", version="2.0.0", title="Renamed"))
    actual = stored(old, revision=7)
    metadata_key = capability_key(PREFIX, "chora.test.a", "metadata")
    version_key = capability_key(PREFIX, "chora.test.a", "version")
    keys = dict(actual.capability_keys)
    keys[metadata_key] = replace(keys[metadata_key], mod_revision=3)
    keys[version_key] = replace(keys[version_key], mod_revision=4)
    actual = replace(actual, capability_keys=keys)

    (change,) = make_plan(desired_state(new), actual).changes
    assert change.kind == "update"
    assert change.fields == ("metadata", "version")
    type_key = capability_key(PREFIX, "chora.test.a", "type")
    dependencies_key = capability_key(PREFIX, "chora.test.a", "dependencies")
    assert change.expected == (
        (metadata_key, 3),
        (type_key, 7),
        (version_key, 4),
        (dependencies_key, 7),
        (managed_key(SYNC, "chora.test.a"), 7),
    )


def test_a_key_deleted_by_hand_is_put_back_expecting_it_absent_with_the_record() -> None:
    capability = desired_capability("chora.test.a")
    actual = stored(capability, revision=7)
    type_key = capability_key(PREFIX, "chora.test.a", "type")
    actual = replace(
        actual, capability_keys={k: v for k, v in actual.capability_keys.items() if k != type_key}
    )

    (change,) = make_plan(desired_state(capability), actual).changes
    assert change.kind == "update"
    assert change.fields == ("type",)
    # The record is written again with it, so it is newer than every key it vouches for.
    record_key = managed_key(SYNC, "chora.test.a")
    assert change.puts == ((type_key, b"service"), (record_key, capability.record))
    assert change.expected == tuple(
        (key, 0 if key == type_key else 7) for key in (*capability_keys(PREFIX, "chora.test.a"), record_key)
    )


def test_keys_present_without_a_record_are_adopted() -> None:
    capability = desired_capability("chora.test.a")
    (change,) = make_plan(desired_state(capability), stored(capability, managed=False)).changes
    assert change.kind == "record"
    assert change.puts == ((managed_key(SYNC, "chora.test.a"), capability.record),)
    record_key = managed_key(SYNC, "chora.test.a")
    assert change.expected == (
        *((key, 10) for key in capability_keys(PREFIX, "chora.test.a")),
        (record_key, 0),
    )


def test_record_only_change_when_the_file_changed_but_its_keys_did_not() -> None:
    before = desired_capability("chora.test.a")
    after = desired_capability(
        "chora.test.a", b"# a comment changes the file, not the keys\n" + manifest_text("chora.test.a")
    )
    assert before.values == after.values
    assert before.record != after.record

    (change,) = make_plan(desired_state(after), stored(before, revision=9)).changes
    assert change.kind == "record"
    assert change.fields == ()
    assert change.puts == ((managed_key(SYNC, "chora.test.a"), after.record),)
    record_key = managed_key(SYNC, "chora.test.a")
    assert change.expected == (
        *((key, 9) for key in capability_keys(PREFIX, "chora.test.a")),
        (record_key, 9),
    )


def test_unchanged_capability_gives_an_empty_plan() -> None:
    a, b = desired_capability("chora.test.a"), desired_capability("chora.test.b")
    result = make_plan(desired_state(b, a), stored(a, b))
    assert result.is_empty
    assert result.changes == ()
    assert result.unchanged == {"chora.test.a", "chora.test.b"}
    assert result.foreign == ()
    assert result.prune_refusal is None


def test_changes_come_in_id_order() -> None:
    capabilities = [desired_capability(f"chora.test.{name}") for name in ("c", "a", "b")]
    result = make_plan(
        desired_state(*capabilities), RegistryState(revision=1, capability_keys={}, records={})
    )
    assert [c.capability_id for c in result.changes] == ["chora.test.a", "chora.test.b", "chora.test.c"]
    assert result.of_kind("create") == result.changes
    assert result.of_kind("delete") == ()


# --- deletions ----------------------------------------------------------------------------------


def test_prune_deletes_exactly_the_four_keys_and_the_record() -> None:
    kept, gone = desired_capability("chora.test.kept"), desired_capability("chora.test.gone")
    actual = stored(kept, gone, revision=4)
    extra = {
        f"{PREFIX}chora.test.gone/notes": KeyState(b"hand-written", 2),
        f"{PREFIX}chora.test.gone": KeyState(b"not a schema key", 2),
        f"{PREFIX}chora.test.gone_too/metadata": KeyState(b"{}", 2),
        f"{PREFIX}chora.test.gone.more/metadata": KeyState(b"{}", 2),
    }
    actual = replace(actual, capability_keys={**actual.capability_keys, **extra})

    result = make_plan(desired_state(kept), actual)
    (change,) = result.changes
    assert change.kind == "delete"
    assert change.capability_id == "chora.test.gone"
    assert change.puts == ()
    assert change.deletes == (
        *capability_keys(PREFIX, "chora.test.gone"),
        managed_key(SYNC, "chora.test.gone"),
    )
    assert change.expected == tuple((key, 4) for key in change.deletes)
    assert change.fields == CAPABILITY_FIELDS
    assert result.unchanged == {"chora.test.kept"}
    assert result.withheld_deletes == ()
    assert set(result.foreign) == {"chora.test.gone_too", "chora.test.gone.more"}


def test_prune_deletes_only_the_keys_that_still_exist() -> None:
    gone = desired_capability("chora.test.gone")
    actual = stored(gone, revision=4)
    keep = {capability_key(PREFIX, "chora.test.gone", "version")}
    actual = replace(actual, capability_keys={k: v for k, v in actual.capability_keys.items() if k in keep})

    (change,) = make_plan(desired_state(desired_capability("chora.test.other")), actual).of_kind("delete")
    assert change.deletes == (*keep, managed_key(SYNC, "chora.test.gone"))
    assert change.fields == ("version",)


def test_unmanaged_ids_are_reported_as_foreign_and_never_touched() -> None:
    ours = desired_capability("chora.test.ours")
    theirs = desired_capability("chora.test.theirs")
    actual = merged(stored(ours), stored(theirs, managed=False))

    result = make_plan(desired_state(ours), actual)
    assert result.changes == ()
    assert result.foreign == ("chora.test.theirs",)

    emptied = make_plan(desired_state(), actual, PrunePolicy(allow_empty=True))
    assert [c.capability_id for c in emptied.changes] == ["chora.test.ours"]
    assert emptied.foreign == ("chora.test.theirs",)


def test_held_ids_are_never_deleted_nor_foreign() -> None:
    held = desired_capability("chora.test.broken")
    other = desired_capability("chora.test.fine")
    result = make_plan(desired_state(other, held=["chora.test.broken"]), stored(held, other))
    assert result.changes == ()
    assert result.withheld_deletes == ()
    assert result.foreign == ()


def test_held_ids_are_never_deleted_even_when_nothing_else_is_desired() -> None:
    held = desired_capability("chora.test.broken")
    result = make_plan(desired_state(held=["chora.test.broken"]), stored(held))
    assert result.changes == ()
    assert result.prune_refusal is None


# --- prune guards -------------------------------------------------------------------------------


def gone_scene(count: int) -> tuple[DesiredState, RegistryState]:
    """One capability to create and ``count`` managed ones whose manifests are gone."""
    gone = [desired_capability(f"chora.test.gone{i}") for i in range(count)]
    return desired_state(desired_capability("chora.test.new")), stored(*gone)


def test_prune_off_withholds_every_deletion() -> None:
    desired, actual = gone_scene(2)
    result = make_plan(desired, actual, PrunePolicy(enabled=False))
    assert [c.kind for c in result.changes] == ["create"]
    assert result.withheld_deletes == ("chora.test.gone0", "chora.test.gone1")
    assert result.prune_refusal is not None
    assert "--no-prune" in result.prune_refusal
    assert result.prune_refusal_reason == "disabled"
    assert "2 capabilities" in result.prune_refusal


def test_empty_desired_state_withholds_every_deletion() -> None:
    _, actual = gone_scene(3)
    result = make_plan(desired_state(), actual, PrunePolicy(allow_empty=False))
    assert result.changes == ()
    assert result.withheld_deletes == ("chora.test.gone0", "chora.test.gone1", "chora.test.gone2")
    assert result.prune_refusal is not None
    assert "--allow-empty" in result.prune_refusal
    assert result.prune_refusal_reason == "empty"


def test_allow_empty_lets_an_empty_desired_state_prune() -> None:
    _, actual = gone_scene(3)
    result = make_plan(desired_state(), actual, PrunePolicy(allow_empty=True))
    assert [c.kind for c in result.changes] == ["delete"] * 3
    assert result.prune_refusal is None


def test_more_deletions_than_the_limit_withholds_all_of_them() -> None:
    desired, actual = gone_scene(3)
    result = make_plan(desired, actual, PrunePolicy(max_deletes=2))
    assert [c.kind for c in result.changes] == ["create"]
    assert result.withheld_deletes == ("chora.test.gone0", "chora.test.gone1", "chora.test.gone2")
    assert result.prune_refusal is not None
    assert "--max-prune 2" in result.prune_refusal
    assert result.prune_refusal_reason == "max_prune"
    assert "3 capabilities" in result.prune_refusal


def test_deletions_up_to_the_limit_go_ahead() -> None:
    desired, actual = gone_scene(2)
    result = make_plan(desired, actual, PrunePolicy(max_deletes=2))
    assert [c.kind for c in result.changes] == ["create", "delete", "delete"]
    assert result.withheld_deletes == ()
    assert result.prune_refusal is None


def test_no_refusal_when_nothing_is_gone() -> None:
    result = make_plan(
        desired_state(), RegistryState(revision=1, capability_keys={}, records={}), PrunePolicy()
    )
    assert result.prune_refusal is None
    assert result.is_empty


# --- properties over random states --------------------------------------------------------------

IDS = tuple(f"chora.prop.c{i}" for i in range(6))


@dataclass(frozen=True, slots=True)
class Scene:
    desired: DesiredState
    actual: RegistryState
    prune: PrunePolicy


def rendering(capability_id: str, variant: int) -> DesiredCapability:
    """One revision of a capability's manifest, rendered by the real renderer."""
    manifest = Manifest(
        source=f"{capability_id}.yaml",
        id=capability_id,
        type=("service", "pattern")[variant % 2],
        version=("1.0.0", "1.1.0", "2.0.0-rc.1")[variant % 3],
        metadata={"dc_identifier": capability_id, "dc_title": ("A", "Ü")[variant // 3 % 2]},
        dependencies=tuple(Dependency(dep, "prerequisite") for dep in IDS[: variant % 3]),
    )
    content = f"revision {variant}".encode()
    source = SourceFile(manifest.source, content, hashlib.sha256(content).hexdigest())
    return desire(manifest, source, prefix=PREFIX, max_request_bytes=1_500_000)


RENDERINGS = {capability_id: tuple(rendering(capability_id, v) for v in range(7)) for capability_id in IDS}
"""A few revisions per id, rendered once: drawing from them keeps the examples fast."""


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    capabilities: dict[str, DesiredCapability] = {}
    held: set[str] = set()
    keys: dict[str, KeyState] = {}
    records: dict[str, KeyState] = {}
    revisions = st.integers(min_value=1, max_value=100)
    for capability_id in IDS:
        role = draw(st.sampled_from(["desired", "held", "absent"]))
        wanted = draw(st.sampled_from(RENDERINGS[capability_id]))
        if role == "desired":
            capabilities[capability_id] = wanted
        elif role == "held":
            held.add(capability_id)
        other = draw(st.sampled_from(RENDERINGS[capability_id]))
        for key in capability_keys(PREFIX, capability_id):
            source = draw(st.sampled_from(["absent", "wanted", "other", "garbage"]))
            if source != "absent":
                value = {"wanted": rendered_values(wanted), "other": rendered_values(other)}.get(
                    source, {}
                ).get(key, b"\x00garbage")
                keys[key] = KeyState(value, draw(revisions))
        if draw(st.booleans()):
            keys[f"{PREFIX}{capability_id}/unrelated"] = KeyState(b"not ours", draw(revisions))
        record = draw(st.sampled_from(["absent", "wanted", "other", "stale", "garbage"]))
        if record != "absent":
            value = {
                "wanted": wanted.record,
                "other": other.record,
                "stale": encode_record(ManagedRecord("moved.yaml", "0" * 64, "pattern", "1.0.0", ())),
            }.get(record, b"garbage")
            records[capability_id] = KeyState(value, draw(revisions))
    prune = PrunePolicy(
        enabled=draw(st.booleans()),
        max_deletes=draw(st.integers(min_value=0, max_value=len(IDS))),
        allow_empty=draw(st.booleans()),
    )
    return Scene(
        DesiredState(capabilities, frozenset(held)),
        RegistryState(revision=1_000, capability_keys=keys, records=records),
        prune,
    )


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


@PROPERTY_SETTINGS
@given(scenes())
def test_applying_the_plan_then_planning_again_changes_nothing(scene: Scene) -> None:
    first = make_plan(scene.desired, scene.actual, ALLOW_ALL)
    after = apply(first, scene.actual)
    second = make_plan(scene.desired, after, ALLOW_ALL)
    assert second.changes == ()
    assert second.unchanged == set(scene.desired.capabilities)
    for capability in scene.desired.capabilities.values():
        for key, value in rendered_values(capability).items():
            assert after.capability_keys[key].value == value
        assert after.records[capability.id].value == capability.record

    # Under a policy that withholds deletions, only those withheld deletions remain.
    first = make_plan(scene.desired, scene.actual, scene.prune)
    second = make_plan(scene.desired, apply(first, scene.actual), scene.prune)
    assert second.changes == ()
    assert second.withheld_deletes == first.withheld_deletes


@PROPERTY_SETTINGS
@given(scenes())
def test_the_plan_never_touches_unmanaged_or_held_ids(scene: Scene) -> None:
    result = make_plan(scene.desired, scene.actual, scene.prune)
    desired = scene.desired.capabilities.keys()
    for change in result.changes:
        if change.kind == "delete":
            assert change.capability_id in scene.actual.records
            assert change.capability_id not in desired
            assert change.capability_id not in scene.desired.held
        else:
            assert change.capability_id in desired
    touched = {owner(key) for change in result.changes for key, _ in change.expected}
    assert not touched & scene.desired.held
    present = {owner(key) for key in scene.actual.capability_keys} - {None}
    assert set(result.foreign) == present - scene.actual.records.keys() - desired - scene.desired.held
    assert not touched & set(result.foreign)

    # Only what a record this service wrote vouches for may be pruned; the rest is reported.
    candidates = sorted(scene.actual.records.keys() - desired - scene.desired.held)
    gone = [
        capability_id for capability_id in candidates if is_record(scene.actual.records[capability_id].value)
    ]
    assert list(result.unproven) == [
        capability_id for capability_id in candidates if capability_id not in gone
    ]
    # A delete takes only the keys written with the record or before it.
    for change in result.of_kind("delete"):
        written = scene.actual.records[change.capability_id].mod_revision
        for key in change.deletes:
            if key in scene.actual.capability_keys:
                assert scene.actual.capability_keys[key].mod_revision <= written
    # Pruning is all or nothing.
    deleted = [change.capability_id for change in result.of_kind("delete")]
    if result.prune_refusal is None:
        assert deleted == gone
        assert result.withheld_deletes == ()
    else:
        assert gone
        assert deleted == []
        assert list(result.withheld_deletes) == gone


@PROPERTY_SETTINGS
@given(scenes())
def test_every_change_touches_only_its_own_capability(scene: Scene) -> None:
    result = make_plan(scene.desired, scene.actual, scene.prune)
    touched_anywhere: list[str] = []
    for change in result.changes:
        own = {*capability_keys(PREFIX, change.capability_id), managed_key(SYNC, change.capability_id)}
        keys = [key for key, _ in change.puts] + list(change.deletes)
        assert set(keys) <= own
        assert len(keys) == len(set(keys)), "a transaction may not touch a key twice"
        compared = [key for key, _ in change.expected]
        assert set(keys) <= set(compared), "every touched key is compared"
        if change.kind != "delete":  # and all four keys its record vouches for
            assert compared == [
                *capability_keys(PREFIX, change.capability_id),
                managed_key(SYNC, change.capability_id),
            ]
        touched_anywhere.extend(keys)
        for key, revision in change.expected:
            current = (
                scene.actual.records.get(change.capability_id)
                if key == managed_key(SYNC, change.capability_id)
                else scene.actual.capability_keys.get(key)
            )
            assert revision == (current.mod_revision if current else 0), key
        if change.kind != "delete":
            changed_fields = tuple(
                parts[1] for key in keys if (parts := split_capability_key(PREFIX, key)) is not None
            )
            assert change.fields == changed_fields
            existing = [
                k for k in capability_keys(PREFIX, change.capability_id) if k in scene.actual.capability_keys
            ]
            assert change.kind == ("record" if not changed_fields else "update" if existing else "create")
            assert change.type == scene.desired.capabilities[change.capability_id].type
    assert len(touched_anywhere) == len(set(touched_anywhere))
    changed = {change.capability_id for change in result.changes}
    assert result.unchanged == scene.desired.capabilities.keys() - changed


# --- reconcile is a pure function -----------------------------------------------------------------

COMMITS = (None, "1" * 40, "2" * 40)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    prune = PrunePolicy(
        enabled=draw(st.booleans()),
        max_deletes=draw(st.integers(min_value=0, max_value=len(IDS))),
        allow_empty=draw(st.booleans()),
    )
    return Policy(PREFIX, SYNC, prune, commit=draw(st.sampled_from(COMMITS)))


def differing(desired: DesiredState, actual: RegistryState) -> set[str]:
    """The desired ids etcd does not hold as desired: a key or the record (its commit aside) differs."""
    ids: set[str] = set()
    for capability in desired.capabilities.values():
        record = actual.records.get(capability.id)
        if record is None or without_commit(record.value or b"") != capability.record:
            ids.add(capability.id)
        for key, value in rendered_values(capability).items():
            state = actual.capability_keys.get(key)
            if state is None or state.value != value:
                ids.add(capability.id)
    return ids


@PROPERTY_SETTINGS
@given(scenes(), policies())
def test_reconcile_mutates_none_of_its_arguments(scene: Scene, policy: Policy) -> None:
    before = copy.deepcopy((scene.desired, scene.actual, policy))
    only = set(IDS[::2])
    present = set(keys_by_id(scene.actual, PREFIX))
    arguments = copy.deepcopy((only, present))

    reconcile(scene.desired, scene.actual, policy)
    reconcile(scene.desired, scene.actual, policy, only=only, present=present)

    assert (scene.desired, scene.actual, policy) == before
    assert (only, present) == arguments


@PROPERTY_SETTINGS
@given(scenes(), policies())
def test_reconcile_is_deterministic(scene: Scene, policy: Policy) -> None:
    """The same inputs give equal plans, also from equal copies (nothing depends on identity)."""
    first = reconcile(scene.desired, scene.actual, policy)
    assert reconcile(scene.desired, scene.actual, policy) == first
    assert reconcile(*copy.deepcopy((scene.desired, scene.actual, policy))) == first


@PROPERTY_SETTINGS
@given(scenes(), policies())
def test_with_a_commit_applying_the_plan_then_reconciling_again_changes_nothing(
    scene: Scene, policy: Policy
) -> None:
    first = reconcile(scene.desired, scene.actual, policy)
    after = apply(first, scene.actual)
    second = reconcile(scene.desired, after, policy)
    assert second.changes == ()
    assert second.withheld_deletes == first.withheld_deletes
    assert second.unchanged == set(scene.desired.capabilities)
    for change in first.changes:
        if change.kind != "delete":  # each record written carries the commit
            record = after.records[change.capability_id].value
            assert record is not None
            assert record_commit(record) == policy.commit
            assert without_commit(record) == scene.desired.capabilities[change.capability_id].record


@PROPERTY_SETTINGS
@given(scenes(), policies(), st.sets(st.sampled_from(IDS)))
def test_only_the_ids_that_differ_give_the_same_plan_as_all(
    scene: Scene, policy: Policy, more: set[str]
) -> None:
    everything = reconcile(scene.desired, scene.actual, policy)
    differ = differing(scene.desired, scene.actual)
    assert {c.capability_id for c in everything.changes if c.kind != "delete"} == differ
    assert reconcile(scene.desired, scene.actual, policy, only=differ) == everything
    assert reconcile(scene.desired, scene.actual, policy, only=differ | more) == everything
    present = keys_by_id(scene.actual, PREFIX).keys()
    assert reconcile(scene.desired, scene.actual, policy, only=differ, present=present) == everything

    # And ``only`` is honoured: an id left out gets no change, the others the very same one.
    restricted = reconcile(scene.desired, scene.actual, policy, only=more)
    upserts = {c.capability_id: c for c in everything.changes if c.kind != "delete"}
    assert [c for c in restricted.changes if c.kind != "delete"] == [
        upserts[capability_id] for capability_id in sorted(upserts.keys() & more)
    ]
    assert restricted.of_kind("delete") == everything.of_kind("delete")


STRAYS = (
    "/chora/capabilities-old/{id}/metadata",  # a sibling of the prefix, not under it
    "/chora/{id}/metadata",
    "/chora/sync/{id}",
    "/chora/sync/managed-old/{id}",
    "{id}/metadata",
)


@PROPERTY_SETTINGS
@given(scenes(), policies(), st.sets(st.tuples(st.sampled_from(STRAYS), st.sampled_from(IDS))))
def test_no_deletion_touches_a_key_outside_the_prefixes_and_a_withheld_prune_deletes_nothing(
    scene: Scene, policy: Policy, strays: set[tuple[str, str]]
) -> None:
    """Even keys outside the prefixes in what was read (a caller that read too much) are left alone."""
    keys = dict(scene.actual.capability_keys)
    keys.update(
        (pattern.format(id=capability_id), KeyState(b"not ours", 1)) for pattern, capability_id in strays
    )
    actual = RegistryState(scene.actual.revision, keys, scene.actual.records)

    result = reconcile(scene.desired, actual, policy)

    deleted = [key for change in result.changes for key in change.deletes]
    for change in result.changes:
        own = {*capability_keys(PREFIX, change.capability_id), managed_key(SYNC, change.capability_id)}
        assert set(change.deletes) <= own
        assert {key for key, _ in change.puts} <= own
    assert all(key.startswith((PREFIX, managed_prefix(SYNC))) for key in deleted)
    assert not {pattern.format(id=capability_id) for pattern, capability_id in strays} & set(deleted)
    if result.prune_refusal is not None:
        assert deleted == []
        assert result.withheld_deletes
    if not policy.prune.enabled:
        assert deleted == []


def test_nothing_is_pruned_while_a_file_does_not_load() -> None:
    """Its id is unknown: it may define the capability that looks gone (a rename and a typo)."""
    kept, gone = desired_capability("chora.test.kept"), desired_capability("chora.test.gone")
    desired = DesiredState({kept.id: kept}, unloadable=("renamed.yaml",))
    result = make_plan(desired, stored(kept, gone))
    assert result.of_kind("delete") == ()
    assert result.withheld_deletes == ("chora.test.gone",)
    assert result.prune_refusal is not None
    assert "1 manifest file(s) do not load (renamed.yaml)" in result.prune_refusal
    assert result.prune_refusal_reason == "unloadable"


@pytest.mark.parametrize(
    ("capability_id", "record"),
    [
        pytest.param("chora.test.gone", b"garbage", id="garbage"),
        pytest.param("chora.test.gone", b'{"source":"x.yaml"}', id="no-hash"),
        pytest.param("chora.test.gone", b"", id="empty"),
        pytest.param("", None, id="empty-id"),
        pytest.param("chora.test.gone/metadata", None, id="not-an-id"),
    ],
)
def test_a_record_this_service_did_not_write_vouches_for_nothing(
    capability_id: str, record: bytes | None
) -> None:
    gone = desired_capability("chora.test.gone")
    value = gone.record if record is None else record
    actual = RegistryState(
        revision=10,
        capability_keys={f"{PREFIX}{capability_id}/metadata": KeyState(b"{}", 5)},
        records={capability_id: KeyState(value, 5)},
    )
    result = make_plan(desired_state(desired_capability("chora.test.kept")), actual)
    assert result.of_kind("delete") == ()
    assert result.unproven == (capability_id,)
    assert result.prune_refusal is None


def test_prune_leaves_keys_written_after_the_record() -> None:
    gone = desired_capability("chora.test.gone")
    actual = stored(gone, revision=10)
    edited = f"{PREFIX}chora.test.gone/version"
    actual = RegistryState(
        revision=12,
        capability_keys={**actual.capability_keys, edited: KeyState(b"9.9.9", 12)},
        records=actual.records,
    )
    (delete,) = make_plan(desired_state(), actual).of_kind("delete")
    assert edited not in delete.deletes
    assert len(delete.deletes) == 4  # three keys and the record


def test_the_id_pattern_is_the_schemas() -> None:
    assert schema()["definitions"]["identifier"]["pattern"] == CAPABILITY_ID.pattern
