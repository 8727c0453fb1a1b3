"""The log lines of a cycle, as the README shows them: what was found, synced, left alone, refused.

What etcd holds that the service leaves alone (keys of others, records it did not write, keys that
are not UTF-8) is logged when it changes, not every cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gitops_sync.model.keys import managed_prefix
from gitops_sync.model.plans import Change
from gitops_sync.model.problems import Problem, printable
from gitops_sync.service.reports import CycleReport
from gitops_sync.service.triggers import Cause

log = logging.getLogger("gitops-sync")


class CycleLog:
    """Logs each cycle; remembers what it last said of what the service leaves alone."""

    def __init__(self, prefix: str, sync_prefix: str) -> None:
        self._prefix = prefix
        self._records_prefix = managed_prefix(sync_prefix)
        self._foreign: tuple[str, ...] = ()
        self._unproven: tuple[str, ...] = ()
        self._undecodable: tuple[bytes, ...] = ()

    def found(self, manifests: int) -> None:
        log.info("Found %d capability manifest(s)", manifests)

    def applied(self, batch: Sequence[Change], repaired: frozenset[str]) -> None:
        """The changes of a transaction that went through; ``repaired``: the ids whose writes put
        back Git's values after someone changed them in etcd."""
        for change in batch:
            fields = {"capability": change.capability_id}  # for LOG_FORMAT=json
            if change.kind == "delete":
                log.info("Deleted: %s (its manifest is gone)", change.capability_id, extra=fields)
            elif change.kind == "record":
                continue
            elif change.capability_id in repaired:
                log.warning(
                    "Drift: %s was changed in etcd outside Git (%s); restored Git's value",
                    change.capability_id,
                    ", ".join(change.fields),
                    extra=fields,
                )
            else:
                log.info("Synced: %s (%s)", change.capability_id, change.type, extra=fields)

    def findings(self, report: CycleReport) -> None:
        """The problems, what was held or refused, and what is left alone."""
        _problems(report.problems)
        if report.held:
            log.warning("Kept the last good state in etcd of: %s", ", ".join(sorted(report.held)))
        if report.plan.prune_refusal:
            log.warning("Not pruning: %s", report.plan.prune_refusal)
        self._left_alone(report)

    def complete(self, report: CycleReport, cause: Cause | None = None) -> None:
        extra = {"revision": report.last_revision, "trigger": cause} if cause is not None else None
        log.info(
            "Sync complete: %d synced, %d skipped, %d errors",
            report.synced,
            report.skipped,
            report.errors,
            extra=extra,
        )

    def _left_alone(self, report: CycleReport) -> None:
        if report.plan.foreign != self._foreign:
            self._foreign = report.plan.foreign
            if self._foreign:
                log.info(
                    "Leaving alone %d capabilit(y/ies) under %s not managed by gitops-sync: %s",
                    len(self._foreign),
                    self._prefix,
                    printable(", ".join(self._foreign)),
                )
        if report.plan.unproven != self._unproven:
            self._unproven = report.plan.unproven
            if self._unproven:
                log.warning(
                    "Not pruning %d capabilit(y/ies) whose key under %s is not a record gitops-sync "
                    "wrote (hand-written or damaged; it vouches for nothing): %s. Delete those keys if "
                    "gitops-sync does not manage them",
                    len(self._unproven),
                    self._records_prefix,
                    printable(", ".join(self._unproven)),
                )
        if report.undecodable != self._undecodable:
            self._undecodable = report.undecodable
            if report.undecodable:
                log.warning(
                    "Leaving alone %d key(s) that are not UTF-8, so not this service's: %.300s",
                    len(report.undecodable),
                    ", ".join(repr(key[:80]) for key in report.undecodable[:5]),
                )


def _problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        fields = {"file": printable(problem.source), "line": problem.line}  # for LOG_FORMAT=json
        if problem.severity == "error":
            log.error("Invalid manifest %s: %s", problem.location, problem.text, extra=fields)
        else:
            log.warning("Manifest %s: %s", problem.location, problem.text, extra=fields)
