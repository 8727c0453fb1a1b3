"""Read every manifest file in the capabilities directory, once per cycle.

Files that vanish between listing and reading are simply gone (a checkout in progress); a file that
cannot be read is reported by name and keeps its last good state in etcd.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gitops_sync.errors import SourceUnavailable
from gitops_sync.model.problems import Problem
from gitops_sync.model.sources import SourceFile

MANIFEST_SUFFIXES: Final = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Scan:
    files: tuple[SourceFile, ...]
    problems: tuple[Problem, ...]


def is_manifest_name(name: str) -> bool:
    """``*.yaml`` and ``*.yml``, leaving out hidden files (editors' and Git's temporary files)."""
    return name.endswith(MANIFEST_SUFFIXES) and not name.startswith(".")


def scan(directory: Path) -> Scan:
    """Read the manifests in ``directory`` (not its subdirectories), sorted by name."""
    try:
        names = sorted(entry.name for entry in directory.iterdir() if is_manifest_name(entry.name))
    except FileNotFoundError:
        raise SourceUnavailable(f"capabilities directory {directory} does not exist") from None
    except NotADirectoryError:
        raise SourceUnavailable(f"{directory} is not a directory") from None
    except OSError as exc:
        raise SourceUnavailable(f"cannot list {directory}: {exc.strerror}") from None

    files: list[SourceFile] = []
    problems: list[Problem] = []
    for name in names:
        path = directory / name
        try:
            if not path.is_file():
                continue
            content = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(Problem(name, f"cannot read the file ({exc.strerror}); make it readable"))
            continue
        files.append(SourceFile(name, content, hashlib.sha256(content).hexdigest()))
    return Scan(tuple(files), tuple(problems))
