"""Run commands as a user would, timed from fork to exit, and measure their memory.

Memory is the proportional set size (PSS) summed over a process and every descendant, sampled from
``/proc/<pid>/smaps_rollup``: pages shared between processes (after a fork, say) count once in
total, which RSS would count in every process. A child that still shares its parent's memory (between
``vfork`` and ``exec``, as ``subprocess`` starts ``git``) reports the parent's whole PSS as its own,
so processes on one address space are counted once (``kcmp(2)`` tells).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

SAMPLE_EVERY: Final = 0.005
"""Seconds between memory samples."""
SYNC_COMPLETE: Final = re.compile(r"Sync complete: (\d+) synced, (\d+) skipped, (\d+) errors")
CYCLE_COMPLETE: Final = "Sync cycle complete"
_KCMP: Final = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
"""The ``kcmp`` system call's number; None where unknown (then shared address spaces count twice)."""
_KCMP_VM: Final = 1
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Finished:
    """A command that ran to its end."""

    seconds: float
    returncode: int
    stderr: str
    peak_pss_kb: int | None = None

    @property
    def counts(self) -> tuple[int, int, int] | None:
        """``(synced, skipped, errors)`` from the last ``Sync complete`` line, if any."""
        found = SYNC_COMPLETE.findall(self.stderr)
        if not found:
            return None
        synced, skipped, errors = found[-1]
        return int(synced), int(skipped), int(errors)

    def tail(self, lines: int = 5) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


def run(command: Sequence[str], *, env: dict[str, str] | None = None, sample: bool = False) -> Finished:
    """Run ``command`` to its end; with ``sample``, also record its process tree's peak PSS.

    Output goes to a file, not a pipe, so a chatty command never blocks on a full pipe.
    """
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)  # noqa: S603
        peak = 0
        try:
            if sample:
                while process.poll() is None:
                    peak = max(peak, tree_pss_kb(process.pid))
                    time.sleep(SAMPLE_EVERY)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        seconds = time.perf_counter() - started
        stderr.seek(0)
        text = stderr.read().decode(errors="replace")
    return Finished(seconds, process.returncode, text, peak if sample else None)


def tree_pss_kb(pid: int) -> int:
    """PSS of ``pid`` and all its descendants, in KiB; 0 for processes that are gone."""
    total = 0
    counted: list[int] = []
    for member in descendants(pid):
        if any(same_memory(member, other) for other in counted):
            continue
        counted.append(member)
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds used so far by ``pid`` and its living descendants (and the
    children they waited for); processes that are gone count 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which may hold spaces: utime, stime, cutime, cstime are
        # the 14th to 17th of the line, the 12th to 15th after ") ".
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(field) for field in fields[11:15])
    return total / ticks


def same_memory(pid: int, other: int) -> bool:
    """Whether two processes share one address space (a ``vfork`` child and its parent)."""
    if _KCMP is None:
        return False
    return int(_libc.syscall(_KCMP, pid, other, _KCMP_VM, 0, 0)) == 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from ``/proc/<pid>/task/*/children``."""
    found = [pid]
    index = 0
    while index < len(found):
        tasks = Path(f"/proc/{found[index]}/task")
        index += 1
        try:
            children = [task / "children" for task in tasks.iterdir()]
        except OSError:
            continue
        for path in children:
            try:
                found.extend(int(child) for child in path.read_text().split())
            except OSError:
                continue
    return found


class Watcher:
    """``gitops-sync --watch`` running in the background; counts the cycles it logs.

    A context manager: the process is stopped (SIGTERM, then SIGKILL) on leaving, error or not.
    """

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self._process = subprocess.Popen(  # noqa: S603
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
        )
        self._cycles = 0
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="watch-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def cycles(self) -> int:
        with self._changed:
            return self._cycles

    def wait_cycles(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` cycles have completed since start; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._cycles < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._process.poll() is not None:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    def tail(self, lines: int = 10) -> str:
        with self._changed:
            return "\n".join(self._lines[-lines:])

    def stop(self) -> int:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=5)
        return self._process.returncode

    def _read(self) -> None:
        assert self._process.stderr is not None  # noqa: S101 - set by Popen(stderr=PIPE)
        for line in self._process.stderr:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                del self._lines[:-200]
                if CYCLE_COMPLETE in line:
                    self._cycles += 1
                self._changed.notify_all()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class PeakPss:
    """Samples a process tree's PSS in a thread while in the ``with`` block; ``kb`` is the peak."""

    def __init__(self, pid: int, every: float) -> None:
        self.kb = 0
        self._pid = pid
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="pss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.kb = max(self.kb, tree_pss_kb(self._pid))
            if self._stop.wait(self._every):
                return

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.kb = max(self.kb, tree_pss_kb(self._pid))


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used so far by the whole machine, and by this process and its waited-for children."""

    machine: float
    ours: float

    @classmethod
    def now(cls) -> CpuUse:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(field) for field in fields[:8])
        ticks = os.sysconf("SC_CLK_TCK")
        times = os.times()
        return cls(
            machine=(user + nice + system + irq + softirq + steal) / ticks,
            ours=times.user + times.system + times.children_user + times.children_system,
        )

    def others_since(self, earlier: CpuUse) -> float:
        """CPU seconds that processes outside this benchmark used in between: noise in its numbers."""
        return max(0.0, (self.machine - earlier.machine) - (self.ours - earlier.ours))


def environment(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}
