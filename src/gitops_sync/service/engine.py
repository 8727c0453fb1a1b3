"""The sync engine: one cycle reads as observe -> desire -> reconcile -> apply -> settle.

The cycle is level-based: it always computes the whole desired state and diffs it against what etcd
holds, so a missed file event only delays convergence. A transaction that loses to a concurrent
writer is not retried blindly: the cycle reads etcd again and reconciles again, and Git's value wins.
Each step is a method named after it; what a cycle remembers for the next is in :class:`CycleCache`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence, Set
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

from gitops_sync.core.assembling import Assembly, Parsed, assemble, with_relation_problems
from gitops_sync.core.batching import batches
from gitops_sync.core.unchanged import Mark, files_digest, may_differ, vouched_for
from gitops_sync.errors import GitOpsSyncError, StoreConflict, StoreError
from gitops_sync.model.keys import status_key
from gitops_sync.model.plans import Change, Plan
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.model.sources import SourceFile
from gitops_sync.service.cache import CycleCache
from gitops_sync.service.collector import collector_paused
from gitops_sync.service.cycle_log import CycleLog
from gitops_sync.service.manifests import source_for
from gitops_sync.service.outcomes import CycleListener, CycleOutcome
from gitops_sync.service.parsing import (
    PARALLEL_FROM,
    read_and_render,
    render_in_parallel,
    scan_and_render_in_parallel,
)
from gitops_sync.service.recording import StatusRecorder, recorded, settings_digest
from gitops_sync.service.reports import CycleReport, failure_outcome, mark_of, outcome_of, restored
from gitops_sync.service.triggers import Trigger
from gitops_sync.service.view import RegistryView, reconcile_against
from gitops_sync.settings import Settings
from gitops_sync.sources.origins import Source, Update
from gitops_sync.sources.remotes import GitSource
from gitops_sync.sources.scanning import Scan, Scanner
from gitops_sync.store.etcd import EtcdStore, Fence

log = logging.getLogger("gitops-sync")

_Read = TypeVar("_Read")

MAX_ATTEMPTS: Final = 3
"""Reconciles per cycle when transactions keep losing to a concurrent writer."""
IN_FLIGHT: Final = 2
"""Transactions sent to etcd at once: while etcd applies one, the next is on its way."""


@dataclass(frozen=True, slots=True)
class _Observed:
    """What a cycle found of the files and etcd before desiring anything."""

    files: Scan
    read: RegistryState | None = None
    """etcd, if it was read while the files were scanned."""
    mark: tuple[Mark, int] | None = None
    """The last clean sync's mark, standing at etcd's revision: etcd was not read."""


@dataclass(slots=True)
class _Desired:
    """The desired state of one attempt, and which of its capabilities to compare with etcd."""

    assembly: Assembly
    compare: Set[str]
    differing: Set[str] | None
    """The only capabilities that may have changed since the last cycle, if the view was current."""


@dataclass(slots=True)
class _Run:
    """One cycle in progress: why it runs, under which fence, and what its transactions did."""

    trigger: Trigger
    started: datetime
    fence: Fence | None
    current: bool = False
    """The view was current (not read) in the current attempt."""
    applied: list[Change] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    failed: tuple[str, ...] = ()
    transactions: int = 0


class Engine:
    """Runs sync cycles against one store. Built for one-shot use (``one_shot``: nothing is kept
    for a next cycle) or to run cycle after cycle (watch mode)."""

    def __init__(
        self,
        settings: Settings,
        store: EtcdStore,
        source: Source | None = None,
        *,
        one_shot: bool,
        listener: CycleListener | None = None,
        fence: Callable[[], Fence | None] = lambda: None,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        """``fence``: the fence of this replica's leadership term, if it leads a group of replicas
        (its writes go through only while that holds). ``on_commit``: told the revision of each
        transaction the engine commits. ``listener``: told what each cycle did."""
        self.settings = settings
        self.store = store
        self.source = source or source_for(settings)
        """Where the manifests come from; asked for an update at the start of every cycle."""
        self.update = Update(commit=None)
        """The source's answer this cycle: the commit it is at, or why it is not at the latest."""
        self._one_shot = one_shot
        self._listener = listener
        self._fence = fence
        self._on_commit = on_commit
        self._scanner = Scanner(self.source.directory)
        self._cache = CycleCache(strict=settings.strict)
        self._recorder = StatusRecorder(store, settings.sync_prefix)
        self._log = CycleLog(settings.prefix, settings.sync_prefix)
        self._settings_digest = settings_digest(settings)

    @property
    def drift_restored(self) -> int:
        """Capabilities put back to Git's values after someone changed their keys in etcd, in all."""
        return self._recorder.drift_restored

    def run_cycle(self, trigger: Trigger) -> CycleReport:
        """Reconcile once. Raises SourceUnavailable or StoreUnavailable before writing anything."""
        started = datetime.now(UTC)
        fence = self._fence()
        try:
            self.update = self.source.update(self._recorder.applied_commit)
            if self.update.moved:
                trigger = trigger.every_file()  # another tree
            with collector_paused():
                report = self._cycle(_Run(trigger, started, fence))
        except BaseException as exc:
            self._cache.invalidate()  # whatever this cycle saw or half did
            if isinstance(exc, GitOpsSyncError):
                self._tell(failure_outcome(exc, trigger.cause, started, leader=fence is not None))
            raise
        if self._one_shot:
            self._cache.invalidate()
        if not self.settings.dry_run:
            self._tell(outcome_of(report, trigger.cause, started, leader=fence is not None))
        return report

    def _tell(self, outcome: CycleOutcome) -> None:
        if self._listener is not None:
            self._listener.cycle_finished(outcome)

    def _cycle(self, run: _Run) -> CycleReport:
        observed = self._observe(run.trigger)
        if observed.mark is not None:
            return self._report_unchanged(*observed.mark)
        last = self._last_if_nothing_new(run.trigger, observed.files)
        if last is not None:
            return self._repeat(last)
        read = observed.read
        for attempt in range(1, MAX_ATTEMPTS + 1):
            view = self._actual(run, attempt, read)
            read = None
            desired = self._desire(observed.files, view, run.current, first=attempt == 1)
            planned = self._reconcile(view, desired)
            if self.settings.dry_run or self._apply(planned, desired.assembly, run, attempt):
                break
        return self._settle(planned, observed.files, desired, view.state, run)

    # observe

    def _observe(self, trigger: Trigger) -> _Observed:
        """The files, and etcd (or the mark of the last clean sync), unless the cycle need not read
        it: read while the files are scanned."""
        if self._cache.last is None:
            return self._first_look()
        if trigger.registry_quiet and self._cache.view is not None:
            return _Observed(self._scanner.scan(trigger.changed_files))
        files, read = self._scanned_while(self._read, trigger.changed_files)
        return _Observed(files, read)

    def _first_look(self) -> _Observed:
        """The first look at the files and at etcd since the cache was invalidated.

        A first sync into this etcd (etcd holds neither a status nor a record of this service)
        parses every file: then the parse workers scan the files too, reading and hashing each
        once. They are forked once etcd has been read, as gRPC does not support a fork while a
        call is in flight. Otherwise etcd is read (or the last sync's mark trusted) while the files
        are scanned here."""
        status, head = self.store.get_at_head(status_key(self.settings.sync_prefix))
        if status is None and not self._cache.has_parsed:
            read = self._read()
            scanned = None if read.records else scan_and_render_in_parallel(self.settings, self._scanner)
            if scanned is None:
                return _Observed(self._scanner.scan(), read)
            files, parsed = scanned
            self._cache.add_parsed(parsed)
            return _Observed(files, read)
        files, found = self._scanned_while(functools.partial(self._mark_or_read, status, head))
        if isinstance(found, RegistryState):
            return _Observed(files, found)
        if files.problems or found[0].files != files_digest(files.files):
            return _Observed(files)  # the files changed since: etcd is read now
        return _Observed(files, mark=found)

    def _scanned_while(
        self, read: Callable[[], _Read], changed_files: frozenset[str] | None = None
    ) -> tuple[Scan, _Read]:
        """The files, scanned while ``read`` reads etcd in a thread, and what it read."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read etcd") as reader:
            reading = reader.submit(read)
            return self._scanner.scan(changed_files), reading.result()

    def _mark_or_read(self, status: KeyState | None, head: int) -> RegistryState | tuple[Mark, int]:
        """The mark of the last clean sync with etcd's revision ``head``, if ``status`` holds a
        mark that stands and was made with these settings (the files are compared once scanned);
        else etcd as it is now."""
        record = recorded(status)
        mark = Mark.from_json(record.get("converged")) if record is not None else None
        if (
            status is not None
            and record is not None
            and mark is not None
            and mark.settings == self._settings_digest
            and mark.stands(status.mod_revision, head)
            # A new commit that changed no manifest still goes into the status.
            and record.get("commit") == self.update.commit
            and self.update.problem is None
        ):
            return mark, head
        return self._read()

    def _read(self) -> RegistryState:
        return self.store.read(self.settings.prefix, self.settings.sync_prefix)

    def _repeat(self, last: CycleReport) -> CycleReport:
        """The last cycle's report, logged again."""
        self._log.findings(last)
        self._log.complete(last)
        return last

    def _last_if_nothing_new(self, trigger: Trigger, files: Scan) -> CycleReport | None:
        """The last cycle's report, if nobody wrote to etcd, no file changed, and the last cycle
        applied everything it planned and recorded it: this cycle would find what it found."""
        last = self._cache.last
        nothing_new = (
            trigger.registry_quiet
            and files.unchanged
            and last is not None
            and not last.failed
            and not self._recorder.pending
            and self.update.problem == self._recorder.reported_problem
        )
        return last if nothing_new else None

    def _actual(self, run: _Run, attempt: int, read: RegistryState | None) -> RegistryView:
        """etcd as the view holds it: unless someone else wrote, etcd is what the last cycle read,
        plus what it wrote since (the view is current). Else (and after a conflict) etcd is read
        again (or ``read`` taken, if the cycle read it already)."""
        view = self._cache.view
        run.current = view is not None and run.trigger.registry_quiet and attempt == 1
        if view is None or not run.current:
            settings = self.settings
            view = RegistryView(
                read or self._read(), prefix=settings.prefix, sync_prefix=settings.sync_prefix
            )
            # A one-shot sync does not keep the view up to date with its writes: no cycle follows.
            self._cache.view = None if self._one_shot else view
        return view

    def _report_unchanged(self, mark: Mark, head: int) -> CycleReport:
        """The cycle a restart need not run: the last clean sync's result, as that cycle logged it."""
        report = CycleReport(
            plan=Plan(),
            problems=mark.warnings,
            desired=mark.capabilities,
            revision=head,
            commit=self.update.commit,
        )
        self._log.found(mark.capabilities)
        log.debug(
            "Files unchanged and etcd untouched since the last sync (revision %d): nothing to read or parse",
            head,
        )
        self._log.findings(report)
        if not self.settings.dry_run:
            self._log.complete(report)
        self._cache.settle(report, None, None, self._scanner.sha256_of)
        return report

    # desire

    def _desire(self, files: Scan, view: RegistryView, current: bool, *, first: bool) -> _Desired:
        """The desired state: each file's capability (unchanged in etcd, else parsed), checked
        against the others; and which capabilities etcd may not hold unchanged. While the view is
        current, etcd holds unchanged what the last cycle left; after a read, what its records
        vouch for."""
        actual, cache, prefix = view.state, self._cache, self.settings.prefix
        unchanged, unvouched = vouched_for(
            files.files, actual, prefix=prefix, left=cache.left_unchanged, recheck=not current
        )
        if first:
            self._log.found(len(files.files) + len(files.problems))
        left = cache.left_unchanged if current else None
        parsed = self._parse(unvouched)
        assembly = assemble(
            files.files, files.problems, actual, parsed=parsed, unchanged=unchanged, left=left
        )
        desired = assembly.desired
        checked = cache.relations.check(desired.capabilities, desired.held, desired.unloadable)
        assembly = with_relation_problems(assembly, checked)
        if current:
            differing = may_differ(assembly.desired.capabilities, cache.unchanged)
            return _Desired(assembly, differing, differing)
        by_records = {capability.id for capability in unchanged.values()}
        return _Desired(assembly, assembly.desired.capabilities.keys() - by_records, None)

    def _parse(self, unvouched: Sequence[SourceFile]) -> Parsed:
        """Parse what nothing vouches for: many files on every core (a cold start, a big checkout),
        a few here and now."""
        settings, read = self.settings, self._scanner.read
        needed = self._cache.to_parse(unvouched)
        results = render_in_parallel(settings, read, needed) if len(needed) >= PARALLEL_FROM else None
        if results is None:
            results = [read_and_render(settings, read, source) for source in needed]
        return self._cache.add_parsed(
            {(source.name, source.sha256): result for source, result in zip(needed, results, strict=True)}
        )

    # reconcile

    def _reconcile(self, view: RegistryView, desired: _Desired) -> Plan:
        return reconcile_against(
            self.settings, self.store, view, desired.assembly.desired, desired.compare, commit=self._commit()
        )

    def _commit(self) -> str | None:
        return self.update.commit if isinstance(self.source, GitSource) else None

    # apply

    def _apply(self, planned: Plan, assembly: Assembly, run: _Run, attempt: int) -> bool:
        """Commit the plan; False if a transaction lost to a concurrent writer (reconcile again)."""
        try:
            run.transactions = self._commit_batches(planned, assembly.drift_candidates, run)
        except StoreConflict as exc:
            self._cache.view = None
            log.warning("Conflict (attempt %d of %d): %s; re-planning", attempt, MAX_ATTEMPTS, exc)
            run.failed = tuple(change.capability_id for change in planned.changes)
            return False
        run.failed = ()
        return True

    def _commit_batches(self, planned: Plan, drift_candidates: frozenset[str], run: _Run) -> int:
        """Commit the plan's batches, a few at a time: while etcd applies one, the next is sent.
        Returns how many were committed (all of them: else it raises).

        Each batch stands alone (a capability is never split), so their order does not matter; what
        went through is applied to the view, logged in plan order, and added to ``run``. If any
        batch fails, no more are sent, and the first failure is raised once those in flight have
        finished."""
        max_ops, max_bytes = self.settings.change_budget
        groups = batches(planned.changes, max_ops=max_ops, max_bytes=max_bytes)
        failure: StoreError | None = None
        pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="commit")
        try:
            committing = [(batch, pool.submit(self._commit_one, batch, run.fence)) for batch in groups]
            for batch, future in committing:
                try:
                    revision = future.result()
                except CancelledError:
                    continue
                except StoreError as exc:
                    failure = failure or exc
                    for _, waiting in committing:
                        waiting.cancel()
                    continue
                self._committed(batch, revision, drift_candidates, run)
        finally:
            # On any other error (Ctrl+C in a one-shot sync, say), no more batches go out.
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure
        return len(committing)

    def _commit_one(self, batch: Sequence[Change], fence: Fence | None) -> int:
        revision = self.store.commit(batch, fence)
        if self._on_commit is not None:  # before its watch event can arrive, if possible
            self._on_commit(revision)
        return revision

    def _committed(
        self, batch: Sequence[Change], revision: int, drift_candidates: frozenset[str], run: _Run
    ) -> None:
        if self._cache.view is not None:
            self._cache.view.apply(batch, revision)
        run.applied.extend(batch)
        run.committed.append(revision)
        repaired = restored(batch, drift_candidates)
        self._recorder.drift_restored += len(repaired)
        self._log.applied(batch, frozenset(repaired))

    # settle

    def _report(self, planned: Plan, assembly: Assembly, actual: RegistryState, run: _Run) -> CycleReport:
        applied = tuple(run.applied)
        return CycleReport(
            plan=planned,
            problems=assembly.problems,
            desired=len(assembly.desired.capabilities),
            applied=applied,
            failed=tuple(sorted(set(run.failed) - {change.capability_id for change in applied})),
            held=assembly.desired.held,
            revision=actual.revision,
            undecodable=actual.undecodable,
            commit=self.update.commit,
            source_problem=self.update.problem,
            written_revision=max(run.committed, default=0),
            drift_restored=restored(applied, assembly.drift_candidates),
        )

    def _settle(
        self, planned: Plan, files: Scan, desired: _Desired, actual: RegistryState, run: _Run
    ) -> CycleReport:
        """Report and log the cycle, remember what it left for the next, and record its status;
        ``actual``: etcd as the last attempt reconciled against."""
        report = self._report(planned, desired.assembly, actual, run)
        self._log.findings(report)
        log.debug("%d manifest(s) taken unchanged from etcd without parsing", len(desired.assembly.unparsed))
        if self.settings.dry_run:
            self._cache.settle(report, None, None, self._scanner.sha256_of)
            return report
        keep = None if self._one_shot else desired.assembly
        self._cache.settle(report, keep, desired.differing, self._scanner.sha256_of)
        mark = None if run.current else mark_of(report, files, self._settings_digest, run.transactions)
        cycle = (run.trigger.cause, run.started)
        written = self._recorder.record(report, actual.status, mark, cycle, run.fence)
        if written is not None:
            value, revision = written
            if self._on_commit is not None:
                self._on_commit(revision)
            if self._cache.view is not None:
                self._cache.view.set_status(value, revision)
        self._log.complete(report, run.trigger.cause)
        return report
