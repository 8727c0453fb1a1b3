"""One sync cycle: read files and etcd, assemble, plan, apply, report.

The cycle is level-based: it always computes the whole desired state and diffs it against what etcd
holds, so a missed file event only delays convergence. A transaction that loses to a concurrent
writer is not retried blindly: the cycle re-reads etcd and plans again, and Git's value wins.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence, Set
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

from gitops_sync import __version__
from gitops_sync.core.assembling import Assembly, Desire, assemble, find_reusable, remembered_for
from gitops_sync.core.batching import batches
from gitops_sync.core.convergence import Converged, digest, files_digest
from gitops_sync.core.cross_checking import RelationChecks
from gitops_sync.core.planning import PrunePolicy, plan
from gitops_sync.core.rendering import RENDERING, to_json
from gitops_sync.errors import GitOpsSyncError, ManifestError, SourceChanged, StoreConflict, StoreError
from gitops_sync.model.keys import managed_prefix, status_key
from gitops_sync.model.plans import Change, DesiredCapability, DesiredState, Plan
from gitops_sync.model.problems import Problem, printable
from gitops_sync.model.registry import KeyState, RegistryState
from gitops_sync.model.sources import SourceFile
from gitops_sync.service.outcomes import CycleListener, CycleOutcome, Result, Trigger
from gitops_sync.service.parsing import (
    PARALLEL_FROM,
    Reader,
    Rendered,
    read_and_render,
    render_in_parallel,
    scan_and_render_in_parallel,
)
from gitops_sync.service.view import RegistryView
from gitops_sync.settings import Settings
from gitops_sync.sources.origins import DirectorySource, Source, Update
from gitops_sync.sources.remotes import GitSource
from gitops_sync.sources.scanning import Scan, Scanner
from gitops_sync.store.etcd import EtcdStore, Fence

log = logging.getLogger("gitops-sync")

T = TypeVar("T")

MAX_ATTEMPTS: Final = 3
"""Plans per cycle when transactions keep losing to a concurrent writer."""
MARK_WARNINGS: Final = 100
"""The most warnings a cycle may have and still leave a mark, which repeats them: the status key
must stay well within etcd's request limit."""
STATUS_LISTS: Final = 100
"""The most errors, and failed ids, the status lists (with how many in all): it must stay well
within etcd's request limit, however many files break at once."""
IN_FLIGHT: Final = 2
"""Transactions sent to etcd at once: while etcd applies one, the next is on its way (measured:
25% faster than one at a time; more gain nothing)."""


LONG_LIVED: Final = 50_000
"""Objects the collector tracks that a cycle may leave behind before they are frozen (see
:func:`collector_paused`): about 3,000 capabilities' worth; walking fewer takes under 15 ms."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile; what a cycle throws away is freed by reference
    counting as before, and the rare reference cycle once the cycle is over.

    A cold sync builds about a million objects that live on (the desired state, the view of
    etcd), and the collector would walk all of them again and again as they pile up: 0.15 s of a
    cold sync at 10,000 capabilities. A cycle that leaves more than :data:`LONG_LIVED` of them
    (a start, a big checkout) freezes them, so the collector never walks them at all. Else it
    would, for 40 ms at 10,000 capabilities: right after the cycle, twice more as they age (in
    watch mode, in the way of the next edits), and once more when the process exits. A cold sync
    at 10,000 leaves no reference cycle to collect, so freezing keeps no garbage; and frozen
    objects are freed as ever when no longer used.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            if gc.get_count()[0] >= LONG_LIVED:  # tracked objects made, less those freed, meanwhile
                gc.freeze()
            gc.enable()


@dataclass(frozen=True, slots=True)
class CycleReport:
    plan: Plan
    problems: tuple[Problem, ...]
    desired: int
    """Capabilities the manifests define (valid and unique)."""
    applied: tuple[Change, ...] = ()
    failed: tuple[str, ...] = ()
    """Capabilities whose writes did not go through."""
    held: frozenset[str] = field(default_factory=frozenset)
    revision: int = 0
    """The etcd revision the cycle read at."""
    undecodable: tuple[bytes, ...] = ()
    """Keys under the prefixes that are not UTF-8, left alone."""
    commit: str | None = None
    """The Git commit the manifests were read at, if known."""
    source_problem: str | None = None
    """Why the manifests are not at the remote's latest commit (a failed fetch, a refused commit)."""
    written_revision: int = 0
    """The revision of the cycle's last write to a capability; 0 if it wrote none."""
    drift_restored: tuple[str, ...] = ()
    """Ids put back to Git's values after someone changed their keys in etcd."""

    @property
    def synced(self) -> int:
        return sum(change.kind in ("create", "update") for change in self.applied)

    @property
    def deleted(self) -> int:
        return sum(change.kind == "delete" for change in self.applied)

    @property
    def skipped(self) -> int:
        return self.desired - self.synced - len(self.failed)

    @property
    def errors(self) -> int:
        return (
            sum(p.severity == "error" for p in self.problems)
            + len(self.failed)
            + (self.source_problem is not None)
        )

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def result(self) -> Result:
        return "failed" if self.failed else "applied" if self.applied else "unchanged"


def source_for(settings: Settings) -> Source:
    """The Git remote of ``--git-url``, else the directory of ``--capabilities``."""
    if settings.git is not None:
        return GitSource(settings.git, settings.interval)
    return DirectorySource(settings.capabilities)


def check_directory(settings: Settings, source: Source | None = None) -> tuple[int, tuple[Problem, ...]]:
    """Every problem of the manifests in the directory, as a sync would see them; no etcd needed.

    Returns the number of manifest files and the problems, sorted by file and line.
    """
    source = source or source_for(settings)
    source.update(lambda: None)
    scanner = Scanner(source.directory)
    files, rendered = scan_and_render_in_parallel(settings, scanner) or (scanner.scan(), {})
    desire = functools.partial(_desired, rendered, settings, scanner.read)
    return len(files.files) + len(files.problems), check_files(settings, files.files, files.problems, desire)


def check_files(
    settings: Settings, sources: Sequence[SourceFile], unreadable: Sequence[Problem], desire: Desire
) -> tuple[Problem, ...]:
    """Every problem of these manifest files (and ``unreadable``, those that could not be read), as
    a sync would see them with nothing in etcd yet; sorted by file and line."""
    nothing = RegistryState(revision=0, capability_keys={}, records={})
    return assemble(
        sources, unreadable, nothing, prefix=settings.prefix, desire=desire, strict=settings.strict
    ).problems


def plan_against(
    settings: Settings,
    store: EtcdStore,
    view: RegistryView,
    desired: DesiredState,
    ids: Set[str],
    *,
    commit: str | None = None,
) -> Plan:
    """The plan of a cycle: ``desired`` against etcd as ``view`` holds it, comparing only the desired
    capabilities ``ids`` (etcd holds the others as desired), its records naming ``commit``. The
    values the plan compares with are read first, where the view has only their keys; nothing is
    written."""
    capabilities = desired.capabilities
    keys = view.without_values(
        key
        for capability_id in ids
        if (values := capabilities[capability_id].values) is not None
        for key in values
    )
    if keys:
        view.fill(keys, store.values(keys, per_request=settings.max_txn_ops))
    return plan(
        desired,
        view.state,
        prefix=settings.prefix,
        sync_prefix=settings.sync_prefix,
        prune=PrunePolicy(settings.prune, settings.max_prune, settings.allow_empty),
        only=ids,
        present=view.present,
        commit=commit,
    )


def _desired(
    rendered: dict[tuple[str, str], Rendered], settings: Settings, read: Reader, source: SourceFile
) -> DesiredCapability:
    """Parse and render a file, once per distinct content: ``rendered`` keeps each by file name
    and hash."""
    key = (source.name, source.sha256)
    cached = rendered.get(key)
    if cached is None:
        cached = read_and_render(settings, read, source)
        if not isinstance(cached, SourceChanged):  # a passing state, not the content's
            rendered[key] = cached
    if isinstance(cached, ManifestError):
        raise cached
    return cached


class Syncer:
    """Runs sync cycles against one store, remembering parsed files between cycles."""

    def __init__(
        self,
        settings: Settings,
        store: EtcdStore,
        source: Source | None = None,
        listener: CycleListener | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.source = source or source_for(settings)
        """Where the manifests come from; asked for an update at the start of every cycle."""
        self.update = Update(commit=None)
        """The source's answer this cycle."""
        self._reported_problem: str | None = None
        self._listener = listener
        """Told what each cycle did (metrics, status, webhooks)."""
        self.fence: Fence | None = None
        """Set while leading a group of replicas: writes go through only while the lease holds."""
        self.drift_restored = 0
        """Capabilities put back to Git's values after someone changed their keys in etcd."""
        self.on_commit: Callable[[int], None] | None = None
        """Told the revision of each transaction this service commits."""
        self._rendered: dict[tuple[str, str], DesiredCapability | ManifestError] = {}
        self._foreign: tuple[str, ...] = ()
        self._unproven: tuple[str, ...] = ()
        self._undecodable: tuple[bytes, ...] = ()
        self._scanner = Scanner(self.source.directory)
        self._last: CycleReport | None = None
        self._settled: dict[str, tuple[str, DesiredCapability]] = {}
        """By file name, the content hash and capability of the files whose capability etcd held
        exactly at the end of the last cycle."""
        self._in_etcd: dict[str, DesiredCapability] = {}
        """The same capabilities by id."""
        self._status_pending = False
        """The last status write failed; the next cycle must not be skipped, so it writes it."""
        self._view: RegistryView | None = None
        """etcd as last read, with this service's writes since applied to it."""
        self._relations = RelationChecks(strict=settings.strict)
        self._fingerprint = digest(
            [
                __version__,
                str(RENDERING),
                *(
                    str(getattr(settings, name))
                    for name in ("prefix", "sync_prefix", "strict", "prune", "max_prune", "allow_empty")
                ),
                str(settings.max_txn_bytes),
            ]
        )
        """The settings that decide what a cycle writes and reports, for :class:`Converged`."""

    def run_cycle(
        self,
        *,
        changed_files: Collection[str] | None = None,
        registry_unchanged: bool = False,
        last: bool = False,
        trigger: Trigger = "start",
    ) -> CycleReport:
        """Reconcile once. Raises SourceUnavailable or StoreUnavailable before writing anything.

        ``changed_files``: the names of the only manifests that may have changed since the last
        cycle (the watch mode's file events tell); None: any may have, so look at every file.
        ``registry_unchanged``: nobody else has written under the prefix since the last cycle (the
        watch mode knows). Then etcd is not read again, and only the capabilities whose files
        changed are compared with it; if no file changed either, and the last cycle applied
        everything it planned, this cycle would plan nothing: it is skipped, its problems reported
        again.
        ``last``: no cycle follows (a one-shot sync). What only a next cycle would use is not kept
        up to date: the view of etcd is not told of this cycle's writes, the files they settled are
        not remembered, and the cache of parsed files is not pruned (a cold sync of 10,000
        capabilities: 0.24 CPU-seconds and 5 MB of peak memory less). Should a cycle follow after
        all, it starts as after a failed one: it trusts only a mark that still stands, or reads etcd.
        ``trigger``: what started the cycle, for the listener.
        """
        started = datetime.now(UTC)
        try:
            self.update = self.source.update(self.applied_commit)
            if self.update.moved:
                changed_files = None  # another tree: look at every file
            with collector_paused():
                report = self._run_cycle(
                    changed_files,
                    registry_unchanged=registry_unchanged,
                    last=last,
                    cycle=(trigger, started),
                )
        except BaseException as exc:
            self._forget()  # whatever this cycle saw or half did
            if self._listener is not None and isinstance(exc, GitOpsSyncError):
                self._listener.cycle_finished(
                    CycleOutcome(
                        trigger=trigger,
                        started_at=started,
                        finished_at=datetime.now(UTC),
                        result="failed",
                        leader=self.fence is not None,
                        error=str(exc),
                    )
                )
            raise
        if last:
            self._forget()
        if self._listener is not None and not self.settings.dry_run:
            self._listener.cycle_finished(self._outcome(report, trigger, started))
        return report

    def _outcome(self, report: CycleReport, trigger: Trigger, started: datetime) -> CycleOutcome:
        applied = report.applied
        kinds = [change.kind for change in applied]
        return CycleOutcome(
            trigger=trigger,
            started_at=started,
            finished_at=datetime.now(UTC),
            result=report.result,
            created=tuple(change.capability_id for change in applied if change.kind == "create"),
            updated=tuple(change.capability_id for change in applied if change.kind == "update"),
            deleted=tuple(change.capability_id for change in applied if change.kind == "delete"),
            unchanged=report.skipped,
            capabilities=report.desired,
            problems=report.problems,
            failed_writes=report.failed,
            revision=max(report.revision, report.written_revision),
            commit=report.commit,
            leader=self.fence is not None,
            drift_restored=report.drift_restored,
            prune_refused=report.plan.prune_refusal_reason,
            prune_refusal=report.plan.prune_refusal,
            writes=tuple((kind, kinds.count(kind)) for kind in sorted(set(kinds))),
        )

    def _forget(self) -> None:
        """Trust nothing the cycles so far saw of etcd: the next one starts as the first does.
        What was parsed stays, by content hash, and what was settled is used only where etcd,
        read again, vouches for it."""
        self._view = None
        self._last = None
        self._in_etcd = {}
        self._relations = RelationChecks(strict=self.settings.strict)

    def _run_cycle(
        self,
        changed_files: Collection[str] | None,
        *,
        registry_unchanged: bool,
        last: bool,
        cycle: tuple[Trigger, datetime],
    ) -> CycleReport:
        settings = self.settings
        files, first = self._scan_and_read(changed_files, registry_unchanged=registry_unchanged)
        if isinstance(first, tuple):
            if not files.problems and first[0].files == files_digest(files.files):
                return self._report_converged(*first)
            first = None  # the files changed since: read etcd now
        if (
            registry_unchanged
            and files.unchanged
            and self._last is not None
            and not self._last.failed
            and not self._status_pending
            and self.update.problem == self._reported_problem
        ):
            report = self._last
            self._log(report, None)
            log.info("Sync complete: 0 synced, %d skipped, %d errors", report.skipped, report.errors)
            return report
        applied: list[Change] = []
        committed: list[int] = []
        failed: tuple[str, ...] = ()
        transactions = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            view = self._view
            # Unless someone else wrote, etcd is what the last cycle read, plus what it wrote since.
            known = registry_unchanged and attempt == 1 and view is not None
            if view is None or not known:
                read, first = first or self.store.read(settings.prefix, settings.sync_prefix), None
                view = self._view = RegistryView(
                    read, prefix=settings.prefix, sync_prefix=settings.sync_prefix
                )
            actual = view.state
            # Trust what this process settled only while its view is current; after a read, etcd
            # must vouch for it again (a hand edit of a key it did not write since, say).
            reusable = find_reusable(
                files.files, actual, prefix=settings.prefix, remembered=self._settled, recheck=not known
            )
            if attempt == 1:
                log.info("Found %d capability manifest(s)", len(files.files) + len(files.problems))
                if changed_files is None or len(changed_files) >= PARALLEL_FROM:
                    self._render_in_parallel(self._unknown(files, reusable))
            assembly = assemble(
                files.files,
                files.problems,
                actual,
                prefix=settings.prefix,
                desire=self._desire,
                strict=settings.strict,
                remembered=self._settled if known else None,
                reusable=reusable,
                relations=self._relations,
            )
            # What etcd may not hold as desired: what changed since the last cycle while the view is
            # current; after a read, what no record vouches for.
            differing = self._differing(assembly) if known else None
            unvouched = (
                differing
                if differing is not None
                else assembly.desired.capabilities.keys() - {c.id for c in reusable.values()}
            )
            planned = plan_against(
                settings,
                self.store,
                view,
                assembly.desired,
                unvouched,
                commit=self.update.commit if isinstance(self.source, GitSource) else None,
            )
            if settings.dry_run:
                break
            if last:
                self._view = None  # not kept up to date with the writes: no cycle will plan against it
            try:
                transactions = self._apply(planned, applied, assembly.drifted | assembly.settled, committed)
            except StoreConflict as exc:
                self._view = None
                log.warning("Conflict (attempt %d of %d): %s; re-planning", attempt, MAX_ATTEMPTS, exc)
                failed = tuple(change.capability_id for change in planned.changes)
                continue
            failed = ()
            break
        report = CycleReport(
            plan=planned,
            problems=assembly.problems,
            desired=len(assembly.desired.capabilities),
            applied=tuple(applied),
            failed=tuple(sorted(set(failed) - {c.capability_id for c in applied})),
            held=assembly.desired.held,
            revision=actual.revision,
            undecodable=actual.undecodable,
            commit=self.update.commit,
            source_problem=self.update.problem,
            written_revision=max(committed, default=0),
            drift_restored=_restored(applied, assembly.drifted | assembly.settled),
        )
        self._log(report, assembly)
        self._last = dataclasses.replace(
            report, plan=dataclasses.replace(planned, changes=()), applied=(), drift_restored=()
        )
        if not settings.dry_run:
            if not last:
                self._settle(assembly, report.failed, differing)
            self._record_status(
                report,
                actual,
                None if known else self._mark(report, files, transactions),
                transactions,
                cycle,
            )
            log.info(
                "Sync complete: %d synced, %d skipped, %d errors",
                report.synced,
                report.skipped,
                report.errors,
                extra={"revision": max(report.revision, report.written_revision), "trigger": cycle[0]},
            )
        return report

    def _scan_and_read(
        self, changed_files: Collection[str] | None, *, registry_unchanged: bool
    ) -> tuple[Scan, RegistryState | tuple[Converged, int] | None]:
        """The files, and etcd (or the mark of the last clean sync, see :meth:`_read_or_trust`),
        unless the cycle need not read it: read while the files are scanned."""
        if self._last is None:
            return self._first_scan_and_read()
        settings = self.settings
        if registry_unchanged and self._view is not None:
            return self._scanner.scan(changed_files), None
        return self._scanned_while(
            functools.partial(self.store.read, settings.prefix, settings.sync_prefix), changed_files
        )

    def _scanned_while(
        self, read: Callable[[], T], changed_files: Collection[str] | None = None
    ) -> tuple[Scan, T]:
        """The files, scanned while ``read`` reads etcd in a thread, and what it read."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read etcd") as reader:
            reading = reader.submit(read)
            return self._scanner.scan(changed_files), reading.result()

    def _first_scan_and_read(self) -> tuple[Scan, RegistryState | tuple[Converged, int]]:
        """The process's first look at the files and at etcd.

        A first sync into this etcd (etcd holds neither a status nor a record of this service)
        parses every file: then the parse workers scan the files too, reading and hashing each
        once, not once to scan it and again to parse it. They are forked once etcd has been read,
        as gRPC does not support a fork while a call is in flight. Otherwise etcd is read (or the
        last sync's mark trusted) while the files are scanned here."""
        settings = self.settings
        status, head = self.store.get_at_head(status_key(settings.sync_prefix))
        if status is None and not self._rendered:
            read = self.store.read(settings.prefix, settings.sync_prefix)
            scanned = None if read.records else scan_and_render_in_parallel(settings, self._scanner)
            if scanned is None:
                return self._scanner.scan(), read
            files, rendered = scanned
            self._rendered.update(rendered)
            return files, read
        return self._scanned_while(functools.partial(self._read_or_trust, status, head))

    def _read_or_trust(self, status: KeyState | None, head: int) -> RegistryState | tuple[Converged, int]:
        """The mark of the last clean sync with etcd's revision ``head``, if ``status`` (the last
        sync's) holds a mark that stands and was made with these settings (the files are compared
        once scanned); else etcd as it is now."""
        settings = self.settings
        recorded = _status_in(status)
        converged = Converged.from_json(recorded.get("converged")) if recorded is not None else None
        if (
            status is not None
            and recorded is not None
            and converged is not None
            and converged.settings == self._fingerprint
            and converged.stands(status.mod_revision, head)
            # A new commit that changed no manifest still goes into the status.
            and recorded.get("commit") == self.update.commit
            and self.update.problem is None
        ):
            return converged, head
        return self.store.read(settings.prefix, settings.sync_prefix)

    def _report_converged(self, converged: Converged, head: int) -> CycleReport:
        """The cycle a restart need not run: the last clean sync's result, as that cycle logged it."""
        report = CycleReport(
            plan=Plan(),
            problems=converged.warnings,
            desired=converged.capabilities,
            revision=head,
            commit=self.update.commit,
        )
        log.info("Found %d capability manifest(s)", converged.capabilities)
        log.debug(
            "Files unchanged and etcd untouched since the last sync (revision %d): nothing to read or parse",
            head,
        )
        self._log(report, None)
        if not self.settings.dry_run:
            log.info("Sync complete: 0 synced, %d skipped, 0 errors", report.skipped)
        self._last = report
        return report

    def _mark(self, report: CycleReport, files: Scan, transactions: int) -> Converged | None:
        """The mark of a cycle that read etcd afresh and left it holding exactly what the files
        render to (see :mod:`gitops_sync.core.convergence`); None for any other."""
        plan = report.plan
        if (
            not report.ok
            or files.problems
            or report.held
            or plan.withheld_deletes
            or plan.foreign
            or plan.unproven
            or len(report.problems) > MARK_WARNINGS
        ):
            return None
        return Converged(
            files=files_digest(files.files),
            settings=self._fingerprint,
            read_revision=report.revision,
            transactions=transactions,
            capabilities=report.desired,
            warnings=report.problems,
        )

    def _desire(self, source: SourceFile) -> DesiredCapability:
        return _desired(self._rendered, self.settings, self._scanner.read, source)

    def _render_in_parallel(self, sources: list[SourceFile]) -> None:
        """Parse many files on every core (a cold start, a big checkout); a few, here and now."""
        rendered = render_in_parallel(self.settings, self._scanner.read, sources)
        if rendered is not None:
            for source, result in zip(sources, rendered, strict=True):
                if not isinstance(result, SourceChanged):  # parsed again, here, when needed
                    self._rendered[(source.name, source.sha256)] = result

    def _unknown(self, files: Scan, reusable: Mapping[str, DesiredCapability]) -> list[SourceFile]:
        """The files neither parsed nor settled already, nor held unchanged by etcd."""
        return [
            source
            for source in files.files
            if (source.name, source.sha256) not in self._rendered
            and source.name not in reusable
            and remembered_for(self._settled, source) is None
        ]

    def _differing(self, assembly: Assembly) -> set[str]:
        """The desired capabilities etcd may not hold: all but those it held after the last cycle."""
        in_etcd = self._in_etcd
        return {
            capability_id
            for capability_id, capability in assembly.desired.capabilities.items()
            if in_etcd.get(capability_id) is not capability
        }

    def _settle(self, assembly: Assembly, failed: tuple[str, ...], differing: set[str] | None) -> None:
        """Remember which files etcd now holds exactly, so the next cycle need not look again, and
        forget what was parsed from files that are gone or settled.

        ``differing``: the only capabilities that may have changed since the last cycle, if known.
        """
        desired = assembly.desired.capabilities
        sha256_of = self._scanner.sha256_of  # what each capability was rendered from, this cycle
        if differing is None:
            self._in_etcd = {
                capability_id: capability
                for capability_id, capability in desired.items()
                if capability_id not in failed
            }
            self._settled = {
                capability.source: (sha256_of(capability.source) or "", capability)
                for capability in self._in_etcd.values()
            }
        else:
            for capability_id in (self._in_etcd.keys() - desired.keys()).union(differing, failed):
                gone = self._in_etcd.pop(capability_id, None)
                if gone is not None and self._settled.get(gone.source, (None, None))[1] is gone:
                    del self._settled[gone.source]
            for capability_id in differing.difference(failed):
                capability = self._in_etcd[capability_id] = desired[capability_id]
                self._settled[capability.source] = (sha256_of(capability.source) or "", capability)
        self._rendered = {
            (name, sha): rendered
            for (name, sha), rendered in self._rendered.items()
            if sha256_of(name) == sha and self._settled.get(name, (None,))[0] != sha
        }

    def _apply(
        self, planned: Plan, applied: list[Change], drifted: frozenset[str], committed: list[int]
    ) -> int:
        """Commit the plan's batches, a few at a time: while etcd applies one, the next is sent.
        Returns how many were committed (all of them: else it raises).

        Each batch stands alone (a capability is never split), so their order does not matter; what
        went through is applied to the view, logged in plan order, and its revision added to
        ``committed``. If any batch fails, no more are sent, and the first failure is raised once
        those in flight have finished.
        """
        fence = self.fence

        def commit(batch: Sequence[Change]) -> int:
            revision = self.store.commit(batch, fence)
            if self.on_commit is not None:  # before its watch event can arrive, if possible
                self.on_commit(revision)
            return revision

        max_ops, max_bytes = self.settings.change_budget
        groups = batches(planned.changes, max_ops=max_ops, max_bytes=max_bytes)
        failure: StoreError | None = None
        pool = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="commit")
        try:
            committing = [(batch, pool.submit(commit, batch)) for batch in groups]
            for batch, future in committing:
                try:
                    revision = future.result()
                except CancelledError:
                    continue
                except StoreError as exc:
                    if failure is None:
                        failure = exc
                        for _, waiting in committing:
                            waiting.cancel()
                    continue
                if self._view is not None:
                    self._view.apply(batch, revision)
                applied.extend(batch)
                committed.append(revision)
                self._log_applied(batch, drifted)
        finally:
            # On any other error (Ctrl+C in a one-shot sync, say), no more batches go out.
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure
        return len(committing)

    def _log_applied(self, batch: Sequence[Change], drifted: frozenset[str]) -> None:
        for change in batch:
            fields = {"capability": change.capability_id}  # for LOG_FORMAT=json
            if change.kind == "delete":
                log.info("Deleted: %s (its manifest is gone)", change.capability_id, extra=fields)
            elif change.kind == "record":
                continue
            elif change.capability_id in drifted:
                self.drift_restored += 1
                log.warning(
                    "Drift: %s was changed in etcd outside Git (%s); restored Git's value",
                    change.capability_id,
                    ", ".join(change.fields),
                    extra=fields,
                )
            else:
                log.info("Synced: %s (%s)", change.capability_id, change.type, extra=fields)

    def _log(self, report: CycleReport, assembly: Assembly | None) -> None:
        for problem in report.problems:
            fields = {"file": printable(problem.source), "line": problem.line}  # for LOG_FORMAT=json
            if problem.severity == "error":
                log.error("Invalid manifest %s: %s", problem.location, problem.text, extra=fields)
            else:
                log.warning("Manifest %s: %s", problem.location, problem.text, extra=fields)
        if report.held:
            log.warning("Kept the last good state in etcd of: %s", ", ".join(sorted(report.held)))
        if report.plan.prune_refusal:
            log.warning("Not pruning: %s", report.plan.prune_refusal)
        if report.plan.foreign != self._foreign:
            self._foreign = report.plan.foreign
            if self._foreign:
                log.info(
                    "Leaving alone %d capabilit(y/ies) under %s not managed by gitops-sync: %s",
                    len(self._foreign),
                    self.settings.prefix,
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
                    managed_prefix(self.settings.sync_prefix),
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
        if assembly is not None:
            log.debug("%d manifest(s) taken unchanged from etcd without parsing", len(assembly.reused))

    def _record_status(
        self,
        report: CycleReport,
        actual: RegistryState,
        converged: Converged | None,
        transactions: int,
        cycle: tuple[Trigger, datetime],
    ) -> None:
        """Write the cycle's result under the sync prefix, with its mark if it has one, when it
        differs from the last, or when the cycle wrote and can leave a new mark (its writes ended
        the last one). Never only to renew a mark: a cycle that changed nothing writes nothing. (A
        mark that no longer stands never misleads: any write to etcd, or a changed file, ends it.)"""
        self._reported_problem = report.source_problem
        errors = [str(problem) for problem in report.problems if problem.severity == "error"]
        status: dict[str, object] = {
            "commit": report.commit,
            "capabilities": report.desired,
            "errors": errors[:STATUS_LISTS],
            "error_count": len(errors),
            "failed": list(report.failed[:STATUS_LISTS]),
            "failed_count": len(report.failed),
            "drift_restored": self.drift_restored,
            "converged": converged.as_json() if converged is not None else None,
            "problems": [problem_json(problem) for problem in report.problems[:STATUS_LISTS]],
            "problem_count": len(report.problems),
        }
        if report.source_problem is not None:
            status["source_error"] = report.source_problem
        previous = _status_in(actual.status)
        renewed = converged is not None and transactions > 0
        if previous is not None and _lasting(previous) == _lasting(status) and not renewed:
            return
        finished = datetime.now(UTC)
        status["updated_at"] = finished.isoformat(timespec="seconds")
        status["revision"] = max(report.revision, report.written_revision)
        trigger, started = cycle
        status["last_cycle"] = {
            "trigger": trigger,
            "result": report.result,
            "started_at": started.isoformat(timespec="milliseconds"),
            "finished_at": finished.isoformat(timespec="milliseconds"),
            "created": sum(change.kind == "create" for change in report.applied),
            "updated": sum(change.kind == "update" for change in report.applied),
            "deleted": report.deleted,
            "unchanged": report.skipped,
            "errors": report.errors,
        }
        try:
            value = to_json(status)
            self._status_pending = True
            revision = self.store.put(status_key(self.settings.sync_prefix), value, self.fence)
            self._status_pending = False
            if self.on_commit is not None:
                self.on_commit(revision)
            if self._view is not None:
                self._view.set_status(value, revision)
        except StoreError as exc:  # the capabilities are in; the next cycle records the result
            log.warning("Could not record the sync status: %s", exc)

    def applied_commit(self) -> str | None:
        """The commit etcd's status records as applied (by any replica)."""
        status, _ = self.store.get_at_head(status_key(self.settings.sync_prefix))
        commit = (_status_in(status) or {}).get("commit")
        return commit if isinstance(commit, str) else None


def _restored(applied: Sequence[Change], drifted: frozenset[str]) -> tuple[str, ...]:
    """The ids among ``drifted`` whose keys the cycle wrote back (as :meth:`Syncer._log_applied`
    logs and counts them)."""
    return tuple(
        change.capability_id
        for change in applied
        if change.kind in ("create", "update") and change.capability_id in drifted
    )


def _status_in(state: KeyState | None) -> dict[str, object] | None:
    try:
        status = json.loads(state.value or b"") if state is not None else None
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


_PASSING: Final = frozenset({"updated_at", "converged", "revision", "last_cycle"})
"""What a status says of the cycle that wrote it, not of the registry: never a reason to write."""


def _lasting(status: Mapping[str, object]) -> dict[str, object]:
    """A status without when and by which cycle it was written, and without its mark."""
    return {key: value for key, value in status.items() if key not in _PASSING}


def problem_json(problem: Problem) -> dict[str, object]:
    """A problem as the status, the HTTP API and webhooks show it."""
    return {
        "file": printable(problem.source),
        "line": problem.line,
        "severity": problem.severity,
        "message": problem.text,
    }
