"""What each mode of the command does, and the exit codes the README lists."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import Final, Literal, TextIO

from gitops_sync.errors import StoreAccessDenied, StoreError, StoreUnavailable
from gitops_sync.model.keys import split_capability_key
from gitops_sync.model.plans import Plan
from gitops_sync.service.syncing import CycleReport, Syncer, check_directory, source_for
from gitops_sync.settings import Settings
from gitops_sync.store.etcd import EtcdStore

log = logging.getLogger("gitops-sync")

HEALTH_CHECK_SECONDS: Final = 1.5
"""How long ``--health-check`` waits for etcd at most (less if ``--etcd-timeout`` says so): it
must answer within 3 s, process start included, well inside a container health check's 5 s."""

Mode = Literal["sync", "watch", "list", "health-check", "validate", "print-schema"]


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1
    """Finished, but some manifests are invalid or some writes failed."""
    USAGE = 2
    """Usage or configuration error."""
    UNREACHABLE = 3
    """etcd could not be reached."""


def run(settings: Settings, mode: Mode, out: TextIO | None = None) -> ExitCode:
    """Run one mode to completion; what it prints goes to ``out`` (stdout). Configuration errors
    propagate to the caller."""
    out = out or sys.stdout
    if mode == "validate":
        return validate_directory(settings, out)
    if mode == "print-schema":
        from gitops_sync.core.validating import schema_text  # noqa: PLC0415 - as every parse does

        out.write(schema_text())
        return ExitCode.OK
    connection = settings.etcd
    if mode == "health-check":
        connection = dataclasses.replace(connection, timeout=min(connection.timeout, HEALTH_CHECK_SECONDS))
    with EtcdStore(connection) as store:
        try:
            return MODES[mode](settings, store, out)
        except (StoreUnavailable, StoreAccessDenied) as exc:
            log.error("%s", exc)
            return ExitCode.UNREACHABLE
        except StoreError as exc:
            log.error("%s", exc)
            return ExitCode.INVALID


def sync_once(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    connect(store)
    report = Syncer(settings, store).run_cycle(last=True)
    if settings.dry_run:
        print_plan(report, out)
    return ExitCode.OK if report.ok else ExitCode.INVALID


def validate_directory(settings: Settings, out: TextIO) -> ExitCode:
    """Print every problem as ``path:line: error|warning: message``; exit 1 if any is an error."""
    source = source_for(settings)
    count, problems = check_directory(settings, source)
    for problem in problems:
        where = problem.source if settings.git is not None else str(settings.capabilities / problem.source)
        print(dataclasses.replace(problem, source=where), file=out)
    errors = sum(problem.severity == "error" for problem in problems)
    warnings = len(problems) - errors
    print(
        f"{count} manifest{'s' * (count != 1)} checked: {errors} error{'s' * (errors != 1)}, "
        f"{warnings} warning{'s' * (warnings != 1)}",
        file=out,
    )
    return ExitCode.INVALID if errors else ExitCode.OK


def watch_changes(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    from gitops_sync.service.watching import watch  # noqa: PLC0415 - its file watcher, only for this mode

    return ExitCode(watch(Syncer(settings, store)))


def health_check(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    """Healthy: etcd answers, and lets this service's user read the capability prefix."""
    version = store.check_access(settings.prefix)
    print(f"etcd at {store.label} is healthy (version {version})", file=out)
    return ExitCode.OK


def connect(store: EtcdStore) -> None:
    store.version()
    log.info("Connected to etcd at %s", store.label)


def list_capabilities(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    connect(store)
    keys, undecodable = store.keys(settings.prefix)
    ids = sorted(
        {parts[0] for key in keys if (parts := split_capability_key(settings.prefix, key)) is not None}
    )
    print(f"Found {len(ids)} capability/ies in etcd:\n", file=out)
    for capability_id in ids:
        print(f"  - {capability_id}", file=out)
    if undecodable:
        print(f"\nLeft out {len(undecodable)} key(s) that are not UTF-8, so no capability's.", file=out)
    return ExitCode.OK


def print_plan(report: CycleReport, out: TextIO) -> None:
    """The dry run's account of what a sync would write; nothing has been written."""
    plan: Plan = report.plan
    print("Dry run: nothing is written to etcd.", file=out)
    if report.commit is not None:
        print(f"Commit: {report.commit}", file=out)
    if report.source_problem is not None:
        print(f"Not at the remote's latest commit: {report.source_problem}", file=out)
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


MODES: dict[str, Callable[[Settings, EtcdStore, TextIO], ExitCode]] = {
    "sync": sync_once,
    "watch": watch_changes,
    "list": list_capabilities,
    "health-check": health_check,
}
