"""What each mode of the command does, and with which exit code (:mod:`gitops_sync.exits`) it ends."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal, TextIO

from gitops_sync.exits import HANDLED, ExitCode, ended_by
from gitops_sync.model.keys import split_capability_key
from gitops_sync.model.plans import Plan
from gitops_sync.service.engine import Engine
from gitops_sync.service.manifests import check_directory, source_for
from gitops_sync.service.reports import CycleReport
from gitops_sync.service.triggers import Trigger
from gitops_sync.settings import EtcdConnection, Settings
from gitops_sync.store.etcd import EtcdStore

if TYPE_CHECKING:
    from gitops_sync.service.observing import Observers, Serve

log = logging.getLogger("gitops-sync")

HEALTH_CHECK_SECONDS: Final = 1.5
"""How long ``--health-check`` waits for etcd at most (less if ``--etcd-timeout`` says so): it
must answer within 3 s, process start included, well inside a container health check's 5 s."""

Mode = Literal["sync", "watch", "list", "health-check", "validate", "print-schema", "status"]


def run(settings: Settings, mode: Mode, out: TextIO | None = None, serve: Serve | None = None) -> ExitCode:
    """Run one mode to completion; what it prints goes to ``out`` (stdout). The error that ends it,
    if one does, is reported and mapped to the exit code by :mod:`gitops_sync.exits`.
    ``serve``: the HTTP server, for watch mode with ``--http``."""
    out = out or sys.stdout
    try:
        if mode == "validate":
            return validate_directory(settings, out)
        if mode == "print-schema":
            return print_schema(out)
        return _on_etcd(settings, mode, out, serve)
    except HANDLED as exc:
        return ended_by(exc)


def _on_etcd(settings: Settings, mode: Mode, out: TextIO, serve: Serve | None) -> ExitCode:
    """A mode that opens etcd; observers (webhooks) get their bounded time to deliver however it ends."""
    observers = _observers(settings, mode)
    on_request = observers.etcd_request if observers is not None and observers.metrics else None
    with EtcdStore(_connection(settings, mode), on_request) as store:
        try:
            if mode in MODES:
                return MODES[mode](settings, store, out)
            return (
                watch_changes(settings, store, out, observers, serve)
                if mode == "watch"
                else sync_once(settings, store, out, observers)
            )
        finally:
            if observers is not None:
                _flush(observers, mode)


def _connection(settings: Settings, mode: Mode) -> EtcdConnection:
    """How to reach etcd in this mode: ``--health-check`` waits less."""
    if mode == "health-check":
        return dataclasses.replace(settings.etcd, timeout=min(settings.etcd.timeout, HEALTH_CHECK_SECONDS))
    return settings.etcd


def print_schema(out: TextIO) -> ExitCode:
    from gitops_sync.core.validating import schema_text  # noqa: PLC0415 - as every parse does

    out.write(schema_text())
    return ExitCode.OK


def _observers(settings: Settings, mode: Mode) -> Observers | None:
    """Metrics, status and webhooks, if the settings ask for them in this mode."""
    if mode not in ("sync", "watch") or not (settings.webhook_urls or (mode == "watch" and settings.http)):
        return None
    from gitops_sync.service.observing import observers_for  # noqa: PLC0415 - not for a plain sync

    return observers_for(settings, watching=mode == "watch")


def _flush(observers: Observers, mode: Mode) -> None:
    from gitops_sync.service.observing import FLUSH_SECONDS, STOP_FLUSH_SECONDS  # noqa: PLC0415

    observers.close(FLUSH_SECONDS if mode == "sync" else STOP_FLUSH_SECONDS)


def sync_once(
    settings: Settings, store: EtcdStore, out: TextIO, observers: Observers | None = None
) -> ExitCode:
    """One cycle; with webhooks, their events are sent before it returns (for a bounded time)."""
    connect(store)
    listener = observers.listener if observers is not None else None
    report = Engine(settings, store, one_shot=True, listener=listener).run_cycle(Trigger.full())
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


def watch_changes(
    settings: Settings,
    store: EtcdStore,
    out: TextIO,
    observers: Observers | None = None,
    serve: Serve | None = None,
) -> ExitCode:
    """Watch mode; with ``serve`` (and observers built for ``--http``), the HTTP server runs beside it."""
    from gitops_sync.service.watching import Watcher  # noqa: PLC0415 - its file watcher, only for this mode

    listener = observers.listener if observers is not None else None
    watcher = Watcher(
        settings, store, listener=listener, role=observers.role if observers is not None else None
    )
    if serve is None or observers is None or observers.metrics is None:
        watcher.run()
    else:
        with serve(observers.observed(store, lambda: watcher.running, watcher.engine.source)):
            watcher.run()
    return ExitCode.OK


def show_status(settings: Settings, store: EtcdStore, out: TextIO) -> ExitCode:
    """Print the status the last sync recorded in etcd; 1 if it found errors or none is recorded."""
    from gitops_sync.service.status import as_text, recorded_status  # noqa: PLC0415

    status = recorded_status(store, settings.sync_prefix)
    if status is None:
        log.error(
            "No sync status recorded under %s: has gitops-sync synced into this etcd?", settings.sync_prefix
        )
        return ExitCode.INVALID
    if settings.output == "json":
        print(json.dumps(status, indent=2), file=out)
    else:
        out.write(as_text(status))
    errors = sum(problem.get("severity") == "error" for problem in status["problems"])
    cycle = status.get("last_cycle") or {}
    return ExitCode.INVALID if errors or cycle.get("errors") else ExitCode.OK


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
    "list": list_capabilities,
    "health-check": health_check,
    "status": show_status,
}
