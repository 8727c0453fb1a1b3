"""Prometheus metrics of a running service, fed by cycle outcomes, etcd requests and webhook deliveries.

Names follow Prometheus's naming guide (``gitops_sync_`` prefix, base units, ``_total`` counters).
No label ever holds a capability id or a file name: their number is unbounded. Every label value
a metric can take is created up front, so each series exists (at 0) from the first scrape and
alert rules need no ``absent()``. Imported only by long-running modes with ``--http``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from gitops_sync import __version__
from gitops_sync.model.plans import PruneRefusalReason
from gitops_sync.service.outcomes import CycleOutcome, Result
from gitops_sync.service.triggers import Cause

CYCLE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WRITE_KINDS: Final = ("create", "update", "delete", "record")
ETCD_OPS: Final = (
    "status",
    "read",
    "transaction",
    "lease_grant",
    "lease_keep_alive",
    "lease_revoke",
    "watch",
)
"""The store's actions, as label values."""
DELIVERY_RESULTS: Final = ("delivered", "failed", "dropped")
"""``failed``: given up after retries, or refused by the receiver; ``dropped``: the endpoint's queue
was full, or the service stopped before it could be sent."""


class Metrics:
    """The service's metrics in their own registry (so several can live in one process, as in tests)."""

    def __init__(self, leading: Callable[[], bool] = lambda: True) -> None:
        """``leading``: whether this replica leads now, read at each scrape."""
        # A ``_created`` series beside each counter would double the scrape for nothing.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = self.registry = CollectorRegistry()
        Gauge(
            "gitops_sync_build_info",
            "Always 1; the version running, as a label.",
            ["version"],
            registry=registry,
        ).labels(__version__).set(1)
        self._cycles = Counter(
            "gitops_sync_cycles",
            "Sync cycles run, by what started them and how they ended.",
            ["trigger", "result"],
            registry=registry,
        )
        for trigger in get_args(Cause):
            for result in get_args(Result):
                self._cycles.labels(trigger, result)
        self._duration = Histogram(
            "gitops_sync_cycle_duration_seconds",
            "How long sync cycles take.",
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self._last_success = Gauge(
            "gitops_sync_last_success_timestamp_seconds",
            "When the last cycle that finished without failing ended (Unix time); 0 before any.",
            registry=registry,
        )
        self._capabilities = Gauge(
            "gitops_sync_capabilities",
            "Capabilities the manifests define and the last cycle kept in etcd.",
            registry=registry,
        )
        self._manifest_errors = Gauge(
            "gitops_sync_manifest_errors",
            "Manifests the last cycle found invalid (errors, not warnings).",
            registry=registry,
        )
        self._writes = Counter(
            "gitops_sync_etcd_writes",
            "Capabilities written to etcd, each in one transaction, by kind of change.",
            ["op"],
            registry=registry,
        )
        for kind in WRITE_KINDS:
            self._writes.labels(kind)
        self._drift = Counter(
            "gitops_sync_drift_restored",
            "Capabilities put back to Git's values after someone changed their keys in etcd.",
            registry=registry,
        )
        self._prune_refused = Counter(
            "gitops_sync_prune_refused",
            "Cycles that held back deleting capabilities whose manifest is gone, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in get_args(PruneRefusalReason):
            self._prune_refused.labels(reason)
        Gauge(
            "gitops_sync_is_leader", "1 if this replica leads (writes), else 0.", registry=registry
        ).set_function(lambda: float(leading()))
        self._requests = Histogram(
            "gitops_sync_etcd_request_duration_seconds",
            "How long etcd requests take, retries included, by operation.",
            ["op"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        for op in ETCD_OPS:
            self._requests.labels(op)
        self._deliveries = Counter(
            "gitops_sync_webhook_deliveries",
            "Webhook events, by how their delivery ended.",
            ["result"],
            registry=registry,
        )
        for result in DELIVERY_RESULTS:
            self._deliveries.labels(result)

    def cycle_finished(self, outcome: CycleOutcome) -> None:
        self._cycles.labels(outcome.trigger, outcome.result).inc()
        self._duration.observe(outcome.duration)
        if outcome.error is not None:  # it never got as far as seeing the manifests
            return
        if outcome.result != "failed":
            self._last_success.set(outcome.finished_at.timestamp())
        self._capabilities.set(outcome.capabilities)
        self._manifest_errors.set(sum(problem.severity == "error" for problem in outcome.problems))
        for kind, count in outcome.writes:
            self._writes.labels(kind).inc(count)
        if outcome.drift_restored:
            self._drift.inc(len(outcome.drift_restored))
        if outcome.prune_refused is not None:
            self._prune_refused.labels(outcome.prune_refused).inc()

    def etcd_request(self, action: str, seconds: float) -> None:
        self._requests.labels(action.replace(" ", "_").replace("-", "_")).observe(seconds)

    def webhook_delivery(self, result: str) -> None:
        self._deliveries.labels(result).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format the scraper's ``Accept`` header asks for, and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
