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
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gitops_sync.core.loading import MAX_MANIFEST_BYTES
from gitops_sync.errors import SourceUnavailable
from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile

MANIFEST_SUFFIXES: Final = (".yaml", ".yml")
RACY_NS: Final = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Scan:
    files: tuple[SourceFile, ...]
    problems: tuple[Problem, ...]


class _Unusable(Exception):
    """A manifest file that cannot be used; the message says why and what to do."""


def is_manifest_name(name: str) -> bool:
    """``*.yaml`` and ``*.yml``, leaving out hidden files (editors' and Git's temporary files)."""
    return name.endswith(MANIFEST_SUFFIXES) and not name.startswith(".")


def scan(directory: Path) -> Scan:
    """Read the manifests in ``directory`` (not its subdirectories), sorted by name."""
    return Scanner(directory).scan()


class Scanner:
    """Scans one directory again and again, reading only the files whose status changed.

    A file is taken from the last scan when its inode, size, modification and change times are all
    the same (nanoseconds; a rewrite changes ``ctime`` even when it keeps ``mtime``); symlinks are
    read every time.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._known: dict[str, tuple[tuple[int, int, int, int], SourceFile]] = {}

    def scan(self) -> Scan:
        directory = self.directory
        try:
            with os.scandir(directory) as listing:
                entries = sorted(
                    (entry for entry in listing if is_manifest_name(entry.name)), key=lambda entry: entry.name
                )
            root = directory.resolve(strict=True)
        except FileNotFoundError:
            raise SourceUnavailable(f"capabilities directory {directory} does not exist") from None
        except NotADirectoryError:
            raise SourceUnavailable(f"{directory} is not a directory") from None
        except OSError as exc:
            raise SourceUnavailable(f"cannot list {directory}: {exc.strerror}") from None

        known, self._known = self._known, {}
        prefix = f"{directory}{os.sep}"
        # A file written within the clock's granularity of now may be written again unseen, with
        # the same size and timestamps (git's "racy" entries): such files are read again next time.
        recent = time.time_ns() - RACY_NS
        files: list[SourceFile] = []
        problems: list[Problem] = []
        for entry in entries:
            name = entry.name
            try:
                signature = None if entry.is_symlink() else _signature(entry.stat(follow_symlinks=False))
                cached = known.get(name)
                if signature is not None and cached is not None and cached[0] == signature:
                    source = cached[1]
                else:
                    content = _read(f"{prefix}{name}", root, symlink=signature is None)
                    if content is None:
                        continue
                    source = SourceFile(name, content, hashlib.sha256(content).hexdigest())
            except FileNotFoundError:
                # Listed, then gone: a checkout replacing it, most likely. Deleting its keys now
                # would make them flap; it is held this cycle, and pruned next if it stays gone.
                problems.append(
                    Problem(
                        name,
                        "disappeared while being read (a checkout in progress?); checked again next cycle",
                    )
                )
                continue
            except _Unusable as exc:
                problems.append(Problem(name, str(exc)))
                continue
            except OSError as exc:
                problems.append(Problem(name, f"cannot read the file ({exc.strerror}); make it readable"))
                continue
            if signature is not None and signature[2] < recent:
                self._known[name] = (signature, source)
            files.append(source)
        return Scan(tuple(files), tuple(problems))


def _signature(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _read(path: str, root: Path, *, symlink: bool) -> bytes | None:
    """The file's bytes; None for a directory that happens to be named ``*.yaml``."""
    if symlink:
        target = Path(path).resolve()
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
        # file, so one call does for almost every file (asking for the whole 1 MiB limit would
        # allocate 1 MiB each time). A file that grew since is read on, up to one byte over the
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
