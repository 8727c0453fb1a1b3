"""Reconcile: the changes that bring etcd to the desired state, with every safety rule on deletions.

:func:`reconcile` is a pure function: it reads its arguments, mutates nothing, and applying its
plan then reconciling again gives an empty plan (the property tests check exactly that).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from gitops_sync.core.rendering import is_record, with_commit, without_commit
from gitops_sync.model.keys import (
    CAPABILITY_FIELDS,
    capability_key,
    capability_keys,
    is_capability_id,
    managed_key,
)
from gitops_sync.model.plans import (
    Change,
    ChangeKind,
    DesiredCapability,
    DesiredState,
    Plan,
    PruneRefusalReason,
)
from gitops_sync.model.problems import printable
from gitops_sync.model.registry import RegistryState


@dataclass(frozen=True, slots=True)
class PrunePolicy:
    """When capabilities whose manifest is gone may be deleted (docs/architecture.md, "Prune")."""

    enabled: bool = True
    max_deletes: int = 50
    allow_empty: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """Where the keys live and what a plan may do: the settings that shape every plan."""

    prefix: str
    sync_prefix: str
    prune: PrunePolicy = PrunePolicy()
    commit: str | None = None
    """The Git commit the files are at; each record written carries it."""


def reconcile(
    desired: DesiredState,
    actual: RegistryState,
    policy: Policy,
    *,
    only: Set[str] | None = None,
    present: Set[str] | None = None,
) -> Plan:
    """The changes, one per capability, that make ``actual`` match ``desired``.

    ``only``: the desired ids that may differ from ``actual``, when the caller knows that all others
    are unchanged (etcd holds them as desired).
    ``present``: the ids with a key under the prefix, when the caller keeps them up to date;
    otherwise they are found among all keys of ``actual``.
    """
    prefix, sync_prefix, prune = policy.prefix, policy.sync_prefix, policy.prune
    considered = desired.capabilities.keys() if only is None else only & desired.capabilities.keys()
    changes = [
        change
        for capability_id in sorted(considered)
        if (change := _upsert(desired.capabilities[capability_id], actual, sync_prefix, policy.commit))
    ]
    unchanged = desired.capabilities.keys() - {change.capability_id for change in changes}

    gone: list[str] = []
    unproven: list[str] = []
    for capability_id in sorted(actual.records.keys() - desired.capabilities.keys() - desired.held):
        owned = is_capability_id(capability_id) and is_record(actual.records[capability_id].value)
        (gone if owned else unproven).append(capability_id)
    refused = _prune_refusal(gone, desired, prune)
    refusal, reason = refused if refused is not None else (None, None)
    if refusal is None:
        changes.extend(_delete(capability_id, actual, prefix, sync_prefix) for capability_id in gone)

    if present is None:
        present = keys_by_id(actual, prefix).keys()
    foreign = present - actual.records.keys() - desired.capabilities.keys() - desired.held
    return Plan(
        changes=tuple(changes),
        unchanged=frozenset(unchanged),
        withheld_deletes=tuple(gone) if refusal else (),
        prune_refusal=refusal,
        prune_refusal_reason=reason,
        foreign=tuple(sorted(foreign)),
        unproven=tuple(unproven),
    )


def keys_by_id(actual: RegistryState, prefix: str) -> dict[str, int]:
    """How many keys of the schema each id has under the prefix; :func:`split_capability_key`,
    inlined, as this runs over every key."""
    skip = len(prefix)
    counts: dict[str, int] = {}
    for key in actual.capability_keys:
        capability_id, slash, field = key[skip:].partition("/")
        if slash and capability_id and "/" not in field and key.startswith(prefix):
            counts[capability_id] = counts.get(capability_id, 0) + 1
    return counts


def _upsert(
    capability: DesiredCapability, actual: RegistryState, sync_prefix: str, commit: str | None
) -> Change | None:
    """The writes that give ``capability`` its values, with its record.

    The record is written with every write of the keys, and the transaction expects each of the
    four keys at the revision read, also those it does not write: the record vouches for all four
    (see :class:`ManagedRecord`), so none may have changed unseen in between. The record carries
    the commit that wrote it; a record that differs only in its commit is unchanged.
    """
    if capability.values is None:
        return None  # taken from etcd, which holds it as it should be
    puts: list[tuple[str, bytes]] = []
    expected: list[tuple[str, int]] = []
    fields: list[str] = []
    existing = 0
    for key, value in capability.values.items():
        state = actual.capability_keys.get(key)
        existing += state is not None
        expected.append((key, state.mod_revision if state else 0))
        if state is None or state.value != value:
            puts.append((key, value))
            fields.append(key.rpartition("/")[2])  # the key is ``{prefix}{id}/{field}``
    record_key = managed_key(sync_prefix, capability.id)
    record = actual.records.get(capability.id)
    if not puts and record is not None and without_commit(record.value or b"") == capability.record:
        return None
    puts.append((record_key, with_commit(capability.record, commit)))
    expected.append((record_key, record.mod_revision if record else 0))
    kind: ChangeKind = "record" if not fields else "create" if existing == 0 else "update"
    return Change(
        capability_id=capability.id,
        kind=kind,
        puts=tuple(puts),
        expected=tuple(expected),
        fields=tuple(fields),
        type=capability.type,
    )


def _delete(capability_id: str, actual: RegistryState, prefix: str, sync_prefix: str) -> Change:
    """Delete exactly this capability's keys and its record; never a prefix. Only keys the record
    accounts for: written with it or before it (a key written since is someone else's, left alone)."""
    written = actual.records[capability_id].mod_revision
    keys = [
        key
        for key in capability_keys(prefix, capability_id)
        if (state := actual.capability_keys.get(key)) is not None and state.mod_revision <= written
    ]
    expected = [(key, actual.capability_keys[key].mod_revision) for key in keys]
    record_key = managed_key(sync_prefix, capability_id)
    expected.append((record_key, written))
    return Change(
        capability_id=capability_id,
        kind="delete",
        deletes=(*keys, record_key),
        expected=tuple(expected),
        fields=tuple(
            field for field in CAPABILITY_FIELDS if capability_key(prefix, capability_id, field) in keys
        ),
    )


def _prune_refusal(
    gone: list[str], desired: DesiredState, prune: PrunePolicy
) -> tuple[str, PruneRefusalReason] | None:
    if not gone:
        return None
    count = f"{len(gone)} capabilit{'y' if len(gone) == 1 else 'ies'}"
    if not prune.enabled:
        return f"pruning is off (--no-prune); {count} without a manifest kept", "disabled"
    if desired.unloadable:
        files = ", ".join(printable(name) for name in desired.unloadable[:5])
        more = f" and {len(desired.unloadable) - 5} more" if len(desired.unloadable) > 5 else ""
        return (
            f"{len(desired.unloadable)} manifest file(s) do not load ({files}{more}), and any of them "
            f"may define what looks gone; {count} kept until every file loads",
            "unloadable",
        )
    if not desired.capabilities and not desired.held and not prune.allow_empty:
        return (
            f"the capabilities directory yields no manifests; refusing to delete {count} "
            "(pass --allow-empty if the registry really should be emptied)",
            "empty",
        )
    if len(gone) > prune.max_deletes:
        return (
            f"{count} would be deleted, more than --max-prune {prune.max_deletes}; nothing deleted "
            "(raise --max-prune if this is intended)",
            "max_prune",
        )
    return None
