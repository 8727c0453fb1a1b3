"""Read every manifest file in the capabilities directory, once per cycle.

A file that vanishes between listing and reading (a checkout in progress), cannot be read, is too
large, is not a regular file, or is a symlink leading out of the directory is reported by name, and
keeps its last good state in etcd; nothing here can hang or crash the cycle.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gitops_sync.errors import SourceChanged, SourceUnavailable
from gitops_sync.model.limits import MAX_MANIFEST_BYTES
from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile

MANIFEST_SUFFIXES: Final = (".yaml", ".yml")
RACY_NS: Final = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Scan:
    files: tuple[SourceFile, ...]
    """By name and hash; :meth:`Scanner.read` reads a file's content when it is to be parsed."""
    problems: tuple[Problem, ...]
    unchanged: bool = field(default=False, compare=False)
    """The same files, contents and problems as the scan before."""


Signature = tuple[int, int, int, int]
"""A file's inode, size, and modification and change times (nanoseconds)."""


@dataclass(frozen=True, slots=True)
class Examined:
    """What looking at one file found."""

    outcome: SourceFile | Problem | None
    """The manifest by name and hash, what is wrong with the file, or None: not a manifest after
    all (a directory), or gone when it was not listed just now."""
    signature: Signature | None = None
    """The file's status, when its outcome stands until the status changes."""
    content: bytes | None = field(default=None, repr=False, compare=False)
    """The bytes the hash is of, for whoever parses them; the scanner does not keep them."""


class _Unusable(Exception):
    """A manifest file that cannot be used; the message says why and what to do."""


def is_manifest_name(name: str) -> bool:
    """``*.yaml`` and ``*.yml``, leaving out hidden files (editors' and Git's temporary files)."""
    return name.endswith(MANIFEST_SUFFIXES) and not name.startswith(".")


class Scanner:
    """Scans one directory again and again, reading only the files whose status changed.

    A file is taken from the last scan when its inode, size, modification and change times are all
    the same (nanoseconds; a rewrite changes ``ctime`` even when it keeps ``mtime``); symlinks are
    read every time. Told which files changed (by file events), it looks at only those, at the
    symlinks, and at the files that had a problem last time. It keeps names and hashes, not
    contents: only the files to parse are read again, by :meth:`read`, which checks the hash (so
    10,000 contents need never be in memory at once, nor be copied into parse workers). Or parse
    workers scan the files themselves, parsing what they read (see :meth:`names`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._outcomes: dict[str, SourceFile | Problem] = {}
        """The last scan's outcome for each file, in name order."""
        self._signatures: dict[str, Signature] = {}
        """The status of each file whose outcome stands until its status changes."""
        self._scanned = False
        self._root: Path | None = None

    def names(self) -> list[str]:
        """The manifest files in the directory, by name in order, as a full scan lists them.

        With :meth:`examine` and :meth:`adopt`, this is a full scan that others can share out:
        parse workers, which read each file once to hash and to parse it."""
        self._resolve()
        return sorted(self._list())

    def examine(self, name: str) -> Examined:
        """Look afresh at a file :meth:`names` listed: read and hash it. The scanner is left as it
        was, so any process can do this."""
        root = self._root or self._resolve()
        return _look(name, f"{self.directory}{os.sep}{name}", root, time.time_ns() - RACY_NS, listed=True)

    def adopt(self, examined: Mapping[str, Examined]) -> Scan:
        """The full scan that :meth:`examine` made of each file :meth:`names` listed; the next
        :meth:`scan` builds on it as on one of its own."""
        before = self._outcomes
        self._outcomes = {}
        self._signatures = {}
        for name in sorted(examined):
            found = examined[name]
            if found.outcome is not None:
                self._outcomes[name] = found.outcome
            if found.signature is not None:
                self._signatures[name] = found.signature
        return self._result(unchanged=self._scanned and self._outcomes == before)

    def scan(self, changed: Collection[str] | None = None) -> Scan:
        """All manifests; ``changed``: the names of the only files that may differ from the last
        scan (None: any may, so list the directory and look at every file)."""
        partial = changed is not None and self._scanned
        root = self._resolve()
        names = self._changed(changed or ()) if partial else self._list()
        unchanged = self._scanned
        if not partial:
            for name in self._outcomes.keys() - names:
                del self._outcomes[name]
                self._signatures.pop(name, None)
                unchanged = False
        added = not names <= self._outcomes.keys()
        prefix = f"{self.directory}{os.sep}"
        # A file written within the clock's granularity of now may be written again unseen, with
        # the same size and timestamps (git's "racy" entries): such files are read again next time.
        recent = time.time_ns() - RACY_NS
        for name in sorted(names):
            outcome = self._outcome(name, f"{prefix}{name}", root, recent, listed=not partial)
            before = self._outcomes.pop(name, None)
            unchanged = unchanged and outcome == before
            if outcome is not None:
                self._outcomes[name] = outcome
        if added:
            self._outcomes = dict(sorted(self._outcomes.items()))
        return self._result(unchanged=unchanged)

    def _result(self, *, unchanged: bool) -> Scan:
        self._scanned = True
        outcomes = self._outcomes.values()
        files = tuple(outcome for outcome in outcomes if isinstance(outcome, SourceFile))
        problems = tuple(outcome for outcome in outcomes if isinstance(outcome, Problem))
        return Scan(files, problems, unchanged=unchanged)

    def _resolve(self) -> Path:
        """The directory's real path, which symlinks must stay inside."""
        try:
            self._root = self.directory.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, on Python 3.11
            raise _unavailable(self.directory, exc) from None
        return self._root

    def _list(self) -> set[str]:
        try:
            with os.scandir(self.directory) as listing:
                return {entry.name for entry in listing if is_manifest_name(entry.name)}
        except OSError as exc:
            raise _unavailable(self.directory, exc) from None

    def _changed(self, changed: Collection[str]) -> set[str]:
        if not self.directory.is_dir():
            raise _unavailable(self.directory, NotADirectoryError())
        names = {name for name in changed if is_manifest_name(name)}
        # And those a file event may not tell about: symlinks (their target changes elsewhere),
        # files with a problem, files written just now.
        names.update(self._outcomes.keys() - self._signatures.keys())
        return names

    def read(self, source: SourceFile) -> SourceFile:
        """``source`` with its content, read again; raises :class:`SourceChanged` if the file is no
        longer what the scan found."""
        found = self.examine(source.name)
        if not isinstance(found.outcome, SourceFile) or found.outcome.sha256 != source.sha256:
            raise SourceChanged(source.name, "changed while being read; checked again next cycle")
        return SourceFile(source.name, found.content, source.sha256)

    def sha256_of(self, name: str) -> str | None:
        """The hash of the content the last scan found in the file ``name``, if it found one."""
        outcome = self._outcomes.get(name)
        return outcome.sha256 if isinstance(outcome, SourceFile) else None

    def _outcome(
        self, name: str, path: str, root: Path, recent: int, *, listed: bool
    ) -> SourceFile | Problem | None:
        """One file's outcome: the last one while the file's status is the same, else what reading
        it finds now."""
        signature = self._signatures.pop(name, None)
        last = self._outcomes.get(name)
        found = _look(
            name,
            path,
            root,
            recent,
            listed=listed,
            last=(signature, last) if signature is not None and isinstance(last, SourceFile) else None,
        )
        if found.signature is not None:
            self._signatures[name] = found.signature
        return found.outcome


def _look(
    name: str,
    path: str,
    root: Path,
    recent: int,
    *,
    listed: bool,
    last: tuple[Signature, SourceFile] | None = None,
) -> Examined:
    """What the file ``name`` at ``path`` holds, read and hashed; or ``last``'s file, while the
    file's status is still ``last``'s signature. ``listed``: the directory listed it just now (so
    if it is gone, it went since)."""
    if not _is_utf8(name):
        return Examined(Problem(name, "has a file name that is not UTF-8; rename it"))
    try:
        status = os.lstat(path)
        symlink = stat.S_ISLNK(status.st_mode)
        signature = None if symlink else _signature(status)
        if last is not None and signature == last[0]:
            return Examined(last[1], signature)
        content = _read(path, root, symlink=symlink)
    except (OSError, _Unusable) as exc:
        return Examined(_problem(name, exc, listed=listed))
    if content is None:
        return Examined(None)
    return Examined(
        SourceFile(name, None, hashlib.sha256(content).hexdigest()),
        # The change time too: an old modification time can be set, but the file is new.
        signature if signature is not None and max(signature[2], signature[3]) < recent else None,
        content,
    )


def _is_utf8(name: str) -> bool:
    """Whether the name was valid UTF-8 on disk (Python keeps other bytes as lone surrogates)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _problem(name: str, exc: OSError | _Unusable, *, listed: bool) -> Problem | None:
    """What is wrong with the file; None when it is gone but was not listed just now: deleted,
    which is why a file event had it looked at."""
    if isinstance(exc, _Unusable):
        return Problem(name, str(exc))
    if not isinstance(exc, FileNotFoundError):
        return Problem(name, f"cannot read the file ({exc.strerror}); make it readable")
    if not listed:
        return None
    # Listed, then gone: a checkout replacing it, most likely. Deleting its keys now would make
    # them flap; it is held this cycle, and pruned next if it stays gone.
    return Problem(name, "disappeared while being read (a checkout in progress?); checked again next cycle")


def _unavailable(directory: Path, exc: OSError | RuntimeError) -> SourceUnavailable:
    if isinstance(exc, RuntimeError):
        return SourceUnavailable(f"{directory} is a symlink loop")
    if isinstance(exc, FileNotFoundError):
        return SourceUnavailable(f"capabilities directory {directory} does not exist")
    if isinstance(exc, NotADirectoryError):
        return SourceUnavailable(f"{directory} is not a directory")
    return SourceUnavailable(f"cannot list {directory}: {exc.strerror}")


def _signature(status: os.stat_result) -> Signature:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _read(path: str, root: Path, *, symlink: bool) -> bytes | None:
    """The file's bytes; None for a directory that happens to be named ``*.yaml``."""
    if symlink:
        try:
            target = Path(path).resolve()
        except RuntimeError:  # Python 3.11 says "Symlink loop"; later versions raise OSError (ELOOP)
            raise _Unusable("is a symlink loop; point it at a manifest file") from None
        if not target.is_relative_to(root):
            msg = f"is a symlink to {target}, outside the capabilities directory; copy the file in instead"
            raise _Unusable(msg)
        if not target.exists():
            msg = f"is a symlink to {target}, which does not exist; fix or remove the link"
            raise _Unusable(msg)
        path = str(target)
    # O_NONBLOCK: a FIFO swapped in after the listing must not block the cycle. O_NOFOLLOW: a
    # symlink swapped in is refused, not followed out of the directory.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            return None
        if not stat.S_ISREG(status.st_mode):
            msg = "is not a regular file (a pipe, socket or device?); a manifest must be a plain file"
            raise _Unusable(msg)
        if status.st_size > MAX_MANIFEST_BYTES:
            msg = (
                f"is {status.st_size:,} bytes, over the {MAX_MANIFEST_BYTES:,}-byte limit for a manifest; "
                "move bulky content out of it"
            )
            raise _Unusable(msg)
        # Ask for one byte more than fstat saw: a short read with all of that is the end of the
        # file, so one call does for almost every file (asking for the whole limit would allocate
        # that much each time). A file that grew since is read on, up to one byte over the
        # limit, which the loader then refuses.
        chunks: list[bytes] = []
        remaining = MAX_MANIFEST_BYTES + 1
        wanted = status.st_size + 1
        while remaining > 0 and (chunk := os.read(descriptor, min(wanted, remaining))):
            chunks.append(chunk)
            remaining -= len(chunk)
            if len(chunk) < wanted and MAX_MANIFEST_BYTES + 1 - remaining >= status.st_size:
                break
            wanted = 64 * 1024
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(descriptor)
