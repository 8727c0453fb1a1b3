"""etcd as this service last read it, kept current with the service's own writes.

Between reads, a watch-mode cycle reconciles against this view: the registry watch tells the loop when
anyone else wrote, and then the next cycle reads etcd again.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Mapping, Set

from gitops_sync.core.reconciling import Policy, PrunePolicy, keys_by_id, reconcile
from gitops_sync.model.keys import managed_prefix, split_capability_key
from gitops_sync.model.plans import Change, DesiredState, Plan
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore


class RegistryView:
    """A :class:`RegistryState` that the service's own transactions are applied to, in place."""

    def __init__(self, read: RegistryState, *, prefix: str, sync_prefix: str) -> None:
        self.revision = read.revision
        """The revision it was read at (the registry watch follows from there)."""
        self._keys = dict(read.capability_keys)
        self._records = dict(read.records)
        self._status = read.status
        self._undecodable = read.undecodable
        self._prefix = prefix
        self._records_prefix = managed_prefix(sync_prefix)
        self._counts = keys_by_id(read, prefix)

    @property
    def state(self) -> RegistryState:
        """The view as a state to plan against. It shares the view's mappings, so it changes with
        every :meth:`apply` and :meth:`fill`."""
        return RegistryState(self.revision, self._keys, self._records, self._status, self._undecodable)

    @property
    def present(self) -> KeysView[str]:
        """The ids with a key of the schema under the prefix."""
        return self._counts.keys()

    def apply(self, changes: Iterable[Change], revision: int) -> None:
        """What etcd holds after ``changes`` were committed at ``revision``."""
        for change in changes:
            for key, value in change.puts:
                if key.startswith(self._records_prefix):
                    self._records[key.removeprefix(self._records_prefix)] = KeyState(value, revision)
                else:
                    if key not in self._keys:
                        self._count(key, +1)
                    self._keys[key] = KeyState(value, revision)
            for key in change.deletes:
                if key.startswith(self._records_prefix):
                    self._records.pop(key.removeprefix(self._records_prefix), None)
                elif self._keys.pop(key, None) is not None:
                    self._count(key, -1)

    def without_values(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` that exist, but whose value was not read."""
        known = self._keys
        return [key for key in keys if (state := known.get(key)) is not None and state.value is None]

    def fill(self, keys: Iterable[str], found: Mapping[str, KeyState]) -> None:
        """``keys`` as read again: ``found`` holds those that still exist, with their values."""
        for key in keys:
            state = found.get(key)
            if state is not None:
                self._keys[key] = state
            elif self._keys.pop(key, None) is not None:
                self._count(key, -1)

    def set_status(self, value: bytes, revision: int) -> None:
        self._status = KeyState(value, revision)

    def _count(self, key: str, step: int) -> None:
        parts = split_capability_key(self._prefix, key)
        if parts is None:
            return
        count = self._counts.get(parts[0], 0) + step
        if count:
            self._counts[parts[0]] = count
        else:
            del self._counts[parts[0]]


def policy_for(settings: Settings, commit: str | None = None) -> Policy:
    """The policy of every plan these settings make; records carry ``commit``."""
    return Policy(
        prefix=settings.prefix,
        sync_prefix=settings.sync_prefix,
        prune=PrunePolicy(settings.prune, settings.max_prune, settings.allow_empty),
        commit=commit,
    )


def reconcile_against(
    settings: Settings,
    store: EtcdStore,
    view: RegistryView,
    desired: DesiredState,
    compare: Set[str],
    *,
    commit: str | None = None,
) -> Plan:
    """:func:`reconcile` against etcd as ``view`` holds it, comparing only the desired capabilities
    ``compare`` (etcd holds the others unchanged), its records naming ``commit``. The values it
    compares with are read first, where the view has only their keys; nothing is written."""
    capabilities = desired.capabilities
    keys = view.without_values(
        key
        for capability_id in compare
        if (values := capabilities[capability_id].values) is not None
        for key in values
    )
    if keys:
        view.fill(keys, store.values(keys, per_request=settings.max_txn_ops))
    return reconcile(desired, view.state, policy_for(settings, commit), only=compare, present=view.present)
