"""How other Python services read the registry: straight from etcd, by the key schema.

    from gitops_sync.client import Registry

    with Registry(endpoints=[("etcd1", 2379)], cacert="ca.pem", user="reader", password=...) as registry:
        api = registry.get("chora.devex.registry")            # a Capability, or None
        for capability in registry.list(type="service", version="^1.0.0"):
            print(capability.id, capability.version)
        for link in registry.dependencies("chora.devex.registry", transitive=True):
            print(link.id, link.link.constraint, link.satisfied)

        registry.watch()                                      # keep a local copy current from now on
        registry.wait_past(registry.revision, timeout=30)     # block until something changes

Without :meth:`Registry.watch`, every call reads the prefix once, at one revision. After it, calls
answer from a local copy that a watch keeps current (re-reading etcd after a dropped connection or a
compaction, with back-off), so they cost no request. The reader needs read access to the capability
prefix only. Errors are the service's own (:mod:`gitops_sync.errors`): ``StoreUnavailable`` when etcd
cannot be reached, ``StoreAccessDenied`` for bad credentials.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from gitops_sync.core.catalog import Catalog, Direction, Entry, Neighbour
from gitops_sync.model.keys import DEFAULT_PREFIX
from gitops_sync.service.cataloging import LiveCatalog
from gitops_sync.settings import EtcdConnection
from gitops_sync.store.etcd import EtcdStore

Capability = Entry
"""One capability: ``id``, ``type``, ``version``, ``metadata``, ``dependencies`` (links with
``capability``, ``relationship``, ``constraint``), and ``revision`` (its keys' newest)."""

__all__ = ["Capability", "Neighbour", "Registry"]


class Registry:
    """A read-only view of the capability registry in etcd."""

    def __init__(
        self,
        *,
        endpoints: Iterable[tuple[str, int]] = (("localhost", 2379),),
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 5.0,
        cacert: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        """The same options as the service's (``--etcd-endpoints``, ``--prefix``, TLS, auth)."""
        connection = EtcdConnection(
            endpoints=tuple(endpoints),
            timeout=timeout,
            cacert=_path(cacert),
            cert=_path(cert),
            key=_path(key),
            user=user,
            password=password,
        )
        self._prefix = prefix
        self._store = EtcdStore(connection)
        self._live: LiveCatalog | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None
        self._store.close()

    # --- questions --------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The etcd revision the answers are consistent at (the local copy's, when watching)."""
        return self._catalog().revision

    def list(
        self,
        *,
        type: str | None = None,
        text: str | None = None,
        depends_on: str | None = None,
        version: str | None = None,
    ) -> list[Capability]:
        """The capabilities that pass every filter given, sorted by id. ``version``: an npm-style
        range (raises ``ValueError`` if it is none)."""
        catalog = self._catalog()
        found, _ = catalog.select(
            type_=type, text=text, depends_on=depends_on, version=version, limit=len(catalog.ids) + 1
        )
        return found

    def get(self, capability_id: str) -> Capability | None:
        return self._catalog().entries.get(capability_id)

    def dependencies(self, capability_id: str, *, transitive: bool = False) -> builtins.list[Neighbour]:
        """What it depends on (with each constraint and whether the version there satisfies it)."""
        return self._related(capability_id, "dependencies", transitive)

    def dependents(self, capability_id: str, *, transitive: bool = False) -> builtins.list[Neighbour]:
        """What depends on it."""
        return self._related(capability_id, "dependents", transitive)

    # --- keeping a local copy -----------------------------------------------------------------------

    def watch(self, timeout: float | None = None) -> None:
        """Keep a local copy current from now on; returns once it holds the registry (or raises
        ``TimeoutError`` after ``timeout`` seconds, the connection's timeout by default)."""
        if self._live is None:
            self._live = LiveCatalog(self._store, self._prefix, sync_prefix=None)
            self._live.start()
        deadline = self._store.connection.timeout if timeout is None else timeout
        if not self._live.wait_ready(deadline):
            raise TimeoutError(f"the registry was not read within {deadline} s; is etcd reachable?")

    def wait_past(self, revision: int, timeout: float) -> int:
        """While watching: block until the registry changes after ``revision`` (or ``timeout``);
        returns the revision then."""
        if self._live is None:
            raise RuntimeError("call watch() first")
        return self._live.wait_past(revision, timeout).revision

    def _related(
        self, capability_id: str, direction: Direction, transitive: bool
    ) -> builtins.list[Neighbour]:
        return self._catalog().neighbours(capability_id, direction, transitive=transitive)

    def _catalog(self) -> Catalog:
        if self._live is not None:
            return self._live.current
        keys, revision = self._store.snapshot(self._prefix)
        raw = {key: (state.value or b"", state.mod_revision) for key, state in keys.items()}
        return Catalog.build(revision, raw, self._prefix)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
