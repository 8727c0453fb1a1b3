"""The project's one error tree. Library errors are translated into these where the library is called.

GitOpsSyncError
├── ManifestError        a manifest file cannot become a capability (names the file, and the line)
│   └── SourceChanged       the file changed while it was being read: a passing state, not its content
├── ConfigurationError   options or environment that cannot work (exit code 2)
│   └── SourceUnavailable   the capabilities directory is missing or cannot be listed, or no commit of
│                           the Git remote can be used (nothing fetched yet that etcd also holds)
├── GitError             a git command failed; the Git source turns it into a clear cause
├── HookRejected         a push hook's request is not signed with the secret (HTTP 401)
├── StoreError           etcd did not do what was asked
│   ├── StoreUnavailable    etcd cannot be reached, or timed out (exit code 3)
│   ├── StoreAccessDenied   etcd refused the credentials or a permission (exit code 3)
│   └── StoreConflict       a compare-and-swap transaction lost to a concurrent writer
└── UploadError          an uploaded set of manifests cannot be read: broken or hostile (HTTP 400)
    ├── UploadTooLarge      the body, the unpacked bytes or the member count is over its limit (HTTP 413)
    └── UnsupportedUpload   neither a gzip-compressed tar nor multipart form data (HTTP 415)
"""

from __future__ import annotations

from gitops_sync.model.problems import MAX_SHOWN, printable


class GitOpsSyncError(Exception):
    """Base class of every error this package raises on purpose."""


class ManifestError(GitOpsSyncError):
    """A manifest cannot be turned into a capability; ``str()`` is ``file[:line]: message``."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.message = printable(message, 2 * MAX_SHOWN)  # a message may quote what the file holds
        self.line = line
        super().__init__(self.location + ": " + message)

    def __reduce__(self) -> tuple[type[ManifestError], tuple[str, str, int | None]]:
        # Rendered in worker processes, errors travel back pickled.
        return type(self), (self.source, self.message, self.line)

    @property
    def location(self) -> str:
        name = printable(self.source)
        return name if self.line is None else f"{name}:{self.line}"


class SourceChanged(ManifestError):
    """The file is no longer what the scan found; the next cycle looks at it anew."""


class ConfigurationError(GitOpsSyncError):
    """An option, environment variable or path that cannot work as given."""


class SourceUnavailable(ConfigurationError):
    """The capabilities directory is missing or cannot be listed; nothing is pruned then."""


class GitError(GitOpsSyncError):
    """A git command failed, timed out or could not start; ``str()`` is git's own words, secrets masked."""


class HookRejected(GitOpsSyncError):
    """A push hook's request is refused, and wakes nothing: ``status`` is the HTTP answer (401: not
    signed with the secret; 413: too large)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


class StoreError(GitOpsSyncError):
    """etcd refused or failed a request."""


class StoreUnavailable(StoreError):
    """etcd could not be reached, or did not answer in time."""


class StoreAccessDenied(StoreError):
    """etcd refused the credentials, or the user lacks a permission; retrying will not help."""


class StoreConflict(StoreError):
    """A transaction's compare failed: someone else changed a key since it was read."""


class UploadError(GitOpsSyncError):
    """An upload (the Plan API's set of manifests) is refused as a whole: the archive is corrupt,
    truncated or hostile. ``str()`` says what is wrong and what to send instead."""


class UploadTooLarge(UploadError):
    """The upload is over one of its limits: the body, the unpacked bytes, or the member count."""


class UnsupportedUpload(UploadError):
    """The upload's content type is neither ``application/gzip`` nor ``multipart/form-data``."""
