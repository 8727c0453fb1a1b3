"""What each mode of the command does, and the exit codes of DESIGN.md section 4."""

from __future__ import annotations

import logging
import sys
from enum import IntEnum
from typing import Literal, TextIO

from gitops_sync.errors import StoreError, StoreUnavailable
from gitops_sync.model.keys import split_capability_key
from gitops_sync.model.plans import Plan
from gitops_sync.service.syncing import CycleReport, Syncer
from gitops_sync.service.watching import watch
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore

log = logging.getLogger("gitops-sync")

Mode = Literal["sync", "watch", "list", "health-check"]


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1
    """Finished, but some manifests are invalid or some writes failed."""
    USAGE = 2
    """Usage or configuration error."""
    UNREACHABLE = 3
    """etcd could not be reached."""


def run(settings: Settings, mode: Mode, out: TextIO = sys.stdout) -> ExitCode:
    """Run one mode to completion. Configuration errors propagate to the caller."""
    with EtcdStore(settings.endpoints, timeout=settings.etcd_timeout) as store:
        try:
            if mode == "watch":
                return ExitCode(watch(Syncer(settings, store)))
            version = store.version()
            if mode == "health-check":
                print(f"etcd at {store.label} is healthy (version {version})", file=out)
                return ExitCode.OK
            log.info("Connected to etcd at %s", store.label)
            if mode == "list":
                return list_capabilities(settings, store, out)
            report = Syncer(settings, store).run_cycle()
        except StoreUnavailable as exc:
            log.error("%s", exc)
            return ExitCode.UNREACHABLE
        except StoreError as exc:
            log.error("%s", exc)
            return ExitCode.INVALID
    if settings.dry_run:
        print_plan(report, out)
    log.info(
        "Sync complete: %d synced, %d skipped, %d errors",
        report.synced,
        report.skipped,
        report.errors,
    )
    if report.deleted:
        log.info("Pruned %d capabilit%s", report.deleted, "y" if report.deleted == 1 else "ies")
    return ExitCode.OK if report.ok else ExitCode.INVALID


def list_capabilities(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    ids = sorted(
        {
            parts[0]
            for key in store.keys(settings.prefix)
            if (parts := split_capability_key(settings.prefix, key)) is not None
        }
    )
    print(f"Found {len(ids)} capability/ies in etcd:\n", file=out)
    for capability_id in ids:
        print(f"  - {capability_id}", file=out)
    return ExitCode.OK


def print_plan(report: CycleReport, out: TextIO) -> None:
    """The dry run's account of what a sync would write; nothing has been written."""
    plan: Plan = report.plan
    print("Dry run: nothing is written to etcd.", file=out)
    for change in plan.changes:
        if change.kind == "create":
            print(f"  create {change.capability_id} ({change.type})", file=out)
        elif change.kind == "update":
            print(f"  update {change.capability_id}: {', '.join(change.fields)}", file=out)
        elif change.kind == "delete":
            print(f"  delete {change.capability_id}", file=out)
    for capability_id in plan.withheld_deletes:
        print(f"  keep   {capability_id} (its manifest is gone; not pruned)", file=out)
    if plan.prune_refusal:
        print(f"Not pruning: {plan.prune_refusal}", file=out)
    counts = {kind: len(plan.of_kind(kind)) for kind in ("create", "update", "delete")}
    print(
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete, {report.desired - counts['create'] - counts['update']} "
        f"unchanged, {report.errors} invalid",
        file=out,
    )
