"""Exit codes: the one table from errors to the code the process exits with, and how each is reported.

Every mode ends here: ``service.running.run`` and ``cli.main`` map what they catch through
:data:`ERRORS`, and ``gitops-sync --help`` prints :data:`MEANINGS`, so the two cannot disagree.
argparse's own usage errors exit 2 (``ExitCode.USAGE``) before any of this runs.
"""

from __future__ import annotations

import logging
import sys
from enum import IntEnum
from typing import Final

from gitops_sync.errors import (
    ConfigurationError,
    GitError,
    GitOpsSyncError,
    HookRejected,
    ManifestError,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
    UploadError,
)

log = logging.getLogger("gitops-sync")


class ExitCode(IntEnum):
    """What the process exits with; :data:`MEANINGS` says what each means."""

    OK = 0
    INVALID = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it


MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "every manifest synced (or nothing to do)",
    ExitCode.INVALID: "finished, but some manifests are invalid or some writes failed",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.UNREACHABLE: "etcd could not be reached, or refused the credentials or a permission",
    ExitCode.INTERRUPTED: "interrupted (Ctrl+C); watch mode stops cleanly and exits 0",
}
"""One line per code, for ``--help``; the README's table says the same at more length."""

ERRORS: Final[tuple[tuple[type[BaseException], ExitCode], ...]] = (
    (ConfigurationError, ExitCode.USAGE),  # SourceUnavailable too: no usable directory or commit
    (StoreUnavailable, ExitCode.UNREACHABLE),
    (StoreAccessDenied, ExitCode.UNREACHABLE),  # retrying will not help: the user or role must change
    (StoreError, ExitCode.INVALID),  # a write etcd refused: some writes failed
    (ManifestError, ExitCode.INVALID),  # cycles count these; one that escapes them is still a 1
    (GitError, ExitCode.INVALID),  # the Git source turns these into SourceUnavailable first
    (HookRejected, ExitCode.INVALID),  # an HTTP answer; never ends a run
    (UploadError, ExitCode.INVALID),  # an HTTP answer; never ends a run
    (GitOpsSyncError, ExitCode.INVALID),
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
    (BrokenPipeError, ExitCode.OK),  # `gitops-sync --list | head`: the reader left; that is fine
)
"""Ordered: the first row whose class the error is an instance of gives its code. An error no row
names is a bug: it propagates with its traceback (and Python exits 1)."""

HANDLED: Final = tuple(error for error, _ in ERRORS)
"""What a mode catches to end with :func:`ended_by`: every class the table names."""


def exit_code_for(exc: BaseException) -> ExitCode | None:
    """The code :data:`ERRORS` gives ``exc``; None for an error it does not name."""
    return next((code for error, code in ERRORS if isinstance(exc, error)), None)


def ended_by(exc: BaseException) -> ExitCode:
    """Report ``exc`` in one line, as its kind is reported, and return its exit code; an error the
    table does not name is raised again."""
    code = exit_code_for(exc)
    if code is None:
        raise exc
    if isinstance(exc, BrokenPipeError):
        sys.stderr.close()  # Python's flush of stdout at exit fails again: let it say nothing
    elif isinstance(exc, KeyboardInterrupt):
        log.info("Interrupted")
    elif code == ExitCode.USAGE:
        print(f"gitops-sync: error: {exc}", file=sys.stderr)  # as argparse says its own
    else:
        log.error("%s", exc)
    return code


def described() -> str:
    """The ``exit codes:`` section of ``--help``."""
    width = max(len(str(code.value)) for code in MEANINGS)
    lines = (f"  {code.value:<{width}}  {meaning}" for code, meaning in MEANINGS.items())
    return "exit codes:\n" + "\n".join(lines) + "\n"
