"""What watches a run from beside the engine: metrics, the status board and webhooks, each built
only when the settings ask for it (so a one-shot sync imports none of their libraries), and the
read-only view an inbound adapter (the HTTP server) is given of a running watch mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gitops_sync.service.leading import Role
from gitops_sync.service.outcomes import CycleListener, Listeners
from gitops_sync.settings import Settings

if TYPE_CHECKING:
    from gitops_sync.model.problems import Problem
    from gitops_sync.service.cataloging import LiveCatalog
    from gitops_sync.service.health import Health
    from gitops_sync.service.metrics import Metrics
    from gitops_sync.service.previewing import Preview
    from gitops_sync.service.status import StatusBoard
    from gitops_sync.service.webhooks import Webhooks
    from gitops_sync.sources.origins import Source
    from gitops_sync.sources.push_hooks import Delivery
    from gitops_sync.sources.unpacking import Upload
    from gitops_sync.store.etcd import EtcdStore

FLUSH_SECONDS: Final = 10.0
"""How long a one-shot sync waits at exit for its webhooks to be delivered (retries included)."""
STOP_FLUSH_SECONDS: Final = 5.0
"""How long watch mode, once stopped, keeps delivering webhooks still queued."""


@dataclass(frozen=True, slots=True)
class Observed:
    """What the HTTP adapter may read of a running watch mode; every call is read-only and bounded."""

    health: Health
    status: Callable[[], dict[str, Any]]
    """The status document (see :mod:`gitops_sync.service.status`)."""
    metrics: Callable[[str | None], tuple[bytes, str]]
    """The metrics exposition for a scraper's ``Accept`` header, and its content type."""
    catalog: LiveCatalog
    """The registry as this replica serves it (leader or standby), kept current by a watch."""
    validate: Callable[[Upload], tuple[Problem, ...]]
    """The problems of a set of manifests, as ``--validate`` finds them."""
    plan: Callable[[Upload], Preview]
    """What a sync of exactly these manifests would change in etcd; writes nothing."""
    push_hook: Callable[[Mapping[str, str], bytes], Delivery] | None = None
    """Verify a push hook and wake the Git source's fetch (with a Git remote and a hook secret)."""


Serve = Callable[[Observed], AbstractContextManager[object]]
"""Serves an :class:`Observed` while the context lasts (the HTTP server; given by the CLI)."""


class Observers:
    """The listeners of one run that the settings ask for, and what feeds them."""

    def __init__(self, settings: Settings, *, serving: bool, notifying: bool) -> None:
        self.role = Role()
        self._settings = settings
        self._sync_prefix = settings.sync_prefix
        self._catalog: LiveCatalog | None = None
        self.metrics: Metrics | None = None
        self.board: StatusBoard | None = None
        self.webhooks: Webhooks | None = None
        if serving:
            from gitops_sync.service.metrics import Metrics  # noqa: PLC0415 - only with --http
            from gitops_sync.service.status import StatusBoard  # noqa: PLC0415

            self.metrics = Metrics(leading=lambda: self.role.leading)
            self.board = StatusBoard(self.role)
        if notifying:
            from gitops_sync.service.webhooks import Webhooks  # noqa: PLC0415 - only with --webhook-url

            self.webhooks = Webhooks(
                settings.webhook_urls,
                settings.webhook_key,
                counted=self.metrics.webhook_delivery if self.metrics is not None else None,
            )
        parts: list[CycleListener | None] = [self.metrics, self.board, self.webhooks]
        self.listener = Listeners([part for part in parts if part is not None])

    def etcd_request(self, action: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.etcd_request(action, seconds)

    def observed(
        self, store: EtcdStore, running: Callable[[], bool], source: Source | None = None
    ) -> Observed:
        """The read-only view of this run for the HTTP adapter (needs ``--http``); starts the
        registry catalog, which :meth:`close` stops. ``source``: the run's source, for the push hook.
        Raises :class:`ConfigurationError` for an unusable hook secret."""
        from gitops_sync.service.cataloging import LiveCatalog  # noqa: PLC0415 - only with --http
        from gitops_sync.service.health import EtcdProbe, Health  # noqa: PLC0415
        from gitops_sync.service.previewing import plan_upload, validate_upload  # noqa: PLC0415
        from gitops_sync.service.status import recorded_status  # noqa: PLC0415
        from gitops_sync.sources.push_hooks import read_secret, receive  # noqa: PLC0415
        from gitops_sync.sources.remotes import GitSource  # noqa: PLC0415

        board, metrics, role, sync_prefix = self.board, self.metrics, self.role, self._sync_prefix
        if board is None or metrics is None:
            raise TypeError("observed() needs observers built for --http")

        def status() -> dict[str, Any]:
            if role.standing_by:  # it runs no cycles: the leader's, as recorded
                recorded = recorded_status(store, sync_prefix)
                if recorded is not None:
                    return {**recorded, "leader": False}
            return board.document()

        settings = self._settings
        push_hook = None
        git = settings.git
        if git is not None and git.webhook_secret_file is not None and isinstance(source, GitSource):
            secret = read_secret(git.webhook_secret_file)
            push_hook = functools.partial(receive, secret=secret, source=source, ref=git.ref)
        catalog = self._catalog = LiveCatalog(store, settings.prefix, settings.sync_prefix)
        catalog.start()
        return Observed(
            health=Health(board, role, EtcdProbe(store.version), running),
            status=status,
            metrics=metrics.exposition,
            catalog=catalog,
            validate=functools.partial(validate_upload, settings),
            plan=functools.partial(plan_upload, settings, store),
            push_hook=push_hook,
        )

    def close(self, timeout: float) -> None:
        """Stop following the registry; deliver the webhooks still queued, for at most ``timeout``
        seconds."""
        if self._catalog is not None:
            self._catalog.close()
        if self.webhooks is not None:
            self.webhooks.close(timeout)


def observers_for(settings: Settings, *, watching: bool) -> Observers | None:
    """The observers a run needs, or None (one-shot modes without webhooks need none)."""
    serving = watching and settings.http is not None
    notifying = bool(settings.webhook_urls) and not settings.dry_run
    if not serving and not notifying:
        return None
    return Observers(settings, serving=serving, notifying=notifying)
