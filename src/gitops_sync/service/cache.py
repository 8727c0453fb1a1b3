"""Everything the engine remembers from one cycle to the next, in one place.

Remembered: what each file content parsed to, the view of etcd (as last read, with the service's own
writes since applied), which capabilities the last cycle left unchanged in etcd, the cross-manifest
checks, and the last report. :meth:`CycleCache.invalidate` forgets all that concerns etcd (after a
failed cycle, or one no other follows); :meth:`CycleCache.settle` takes in what a cycle left.
"""

from __future__ import annotations

import dataclasses
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence, Set

from gitops_sync.core.assembling import Assembly, Parsed
from gitops_sync.core.cross_checking import RelationChecks
from gitops_sync.core.unchanged import LeftUnchanged
from gitops_sync.errors import ManifestError, SourceChanged
from gitops_sync.model.plans import DesiredCapability
from gitops_sync.model.sources import SourceFile
from gitops_sync.service.reports import CycleReport
from gitops_sync.service.view import RegistryView


class CycleCache:
    def __init__(self, *, strict: bool) -> None:
        self._strict = strict
        self._parsed: dict[tuple[str, str], DesiredCapability | ManifestError] = {}
        """By file name and content hash, what the content parsed to; kept across invalidations,
        as a content parses the same whatever etcd holds."""
        self._left: dict[str, tuple[str, DesiredCapability]] = {}
        """By file name, the content hash and capability of the files whose capability etcd held
        unchanged at the end of the last cycle; used only where etcd, read again, vouches for it."""
        self._unchanged: dict[str, DesiredCapability] = {}
        """The same capabilities by id, while the view is current."""
        self.view: RegistryView | None = None
        """etcd as last read, with this service's writes since applied to it; None: read etcd."""
        self.last: CycleReport | None = None
        """The last cycle's report, without its changes; None: no cycle since the last invalidation."""
        self.relations = RelationChecks(strict=strict)
        """The cross-manifest checks as the last cycle left them."""

    @property
    def left_unchanged(self) -> LeftUnchanged:
        """By file name, the content hash and capability the last cycle left unchanged in etcd."""
        return self._left

    @property
    def unchanged(self) -> Mapping[str, DesiredCapability]:
        """By id, the capabilities the last cycle left unchanged in etcd."""
        return self._unchanged

    def invalidate(self) -> None:
        """Trust nothing seen of etcd so far: the next cycle starts as the first one does. What was
        parsed stays, by content hash, and what was left is used only where etcd vouches for it."""
        self.view = None
        self.last = None
        self._unchanged = {}
        self.relations = RelationChecks(strict=self._strict)

    def to_parse(self, sources: Sequence[SourceFile]) -> list[SourceFile]:
        """Those of ``sources`` whose content was not parsed yet."""
        parsed = self._parsed
        return [source for source in sources if (source.name, source.sha256) not in parsed]

    def add_parsed(self, results: Mapping[tuple[str, str], DesiredCapability | ManifestError]) -> Parsed:
        """Take in what contents parsed to, by file name and content hash; returns what every content
        parsed to. A file that changed while it was read is not kept: it is parsed again next time."""
        passing: dict[tuple[str, str], DesiredCapability | ManifestError] = {}
        for key, result in results.items():
            if isinstance(result, SourceChanged):
                passing[key] = result
            else:
                self._parsed[key] = result
        return ChainMap(passing, self._parsed) if passing else self._parsed

    @property
    def has_parsed(self) -> bool:
        return bool(self._parsed)

    def settle(
        self,
        report: CycleReport,
        assembly: Assembly | None,
        differing: Set[str] | None,
        sha256_of: Callable[[str], str | None],
    ) -> None:
        """Remember the cycle's report and which files etcd now holds unchanged, so the next cycle
        need not look again; forget what was parsed from files that are gone or now unchanged.

        ``assembly``: the cycle's, if it wrote (None: remember only the report).
        ``differing``: the only capabilities that may have changed since the last cycle, if known.
        """
        self.last = dataclasses.replace(
            report, plan=dataclasses.replace(report.plan, changes=()), applied=(), drift_restored=()
        )
        if assembly is None:
            return
        desired = assembly.desired.capabilities
        if differing is None:
            self._unchanged = {key: value for key, value in desired.items() if key not in report.failed}
            self._left = {
                capability.source: (sha256_of(capability.source) or "", capability)
                for capability in self._unchanged.values()
            }
        else:
            self._settle_differing(desired, report.failed, differing, sha256_of)
        left = self._left
        self._parsed = {
            (name, sha): parsed
            for (name, sha), parsed in self._parsed.items()
            if sha256_of(name) == sha and left.get(name, (None,))[0] != sha
        }

    def _settle_differing(
        self,
        desired: Mapping[str, DesiredCapability],
        failed: Sequence[str],
        differing: Set[str],
        sha256_of: Callable[[str], str | None],
    ) -> None:
        unchanged, left = self._unchanged, self._left
        for capability_id in (unchanged.keys() - desired.keys()).union(differing, failed):
            gone = unchanged.pop(capability_id, None)
            if gone is not None and left.get(gone.source, (None, None))[1] is gone:
                del left[gone.source]
        for capability_id in differing - set(failed):
            capability = unchanged[capability_id] = desired[capability_id]
            left[capability.source] = (sha256_of(capability.source) or "", capability)
