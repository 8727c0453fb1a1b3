"""The Git commit the capabilities directory is at, recorded with each sync's result."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def head_commit(directory: Path) -> str | None:
    """``HEAD``'s commit id, or None when the directory is not in a Git work tree (or Git is absent)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [git, "-C", str(directory), "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None
