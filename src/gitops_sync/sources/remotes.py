"""The Git source: fetch one ref of a remote into a local cache, check each new commit out into a
directory of its own, and swap it in atomically.

The cache holds, for each remote and ref (see :attr:`GitRemote.workspace`)::

    repo.git/             a bare repository: shallow fetches of the ref only (depth 1)
    checkouts/<commit>/   the manifests' directory of each commit, as checked out
    current -> checkouts/<commit>   replaced by rename(2), so a reader sees one tree or the other

A commit that cannot be fetched, checked out or verified is never half-applied: the directory
stays at the last good commit, which is used only while it is the commit etcd records as applied
(else nothing is synced at all), and the fetch is retried with back-off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from gitops_sync.errors import GitError, SourceUnavailable
from gitops_sync.model.limits import ANCESTRY_STEPS
from gitops_sync.settings import GitRemote
from gitops_sync.sources.git import COMMIT, Git
from gitops_sync.sources.origins import Applied, Update
from gitops_sync.sources.signatures import Signatures

log = logging.getLogger("gitops-sync")

FETCHED: Final = "refs/gitops-sync/fetched"
"""Where the fetched commit is kept in the cache's repository."""
FIRST_RETRY: Final = 0.5
LAST_RETRY: Final = 30.0
KEPT_CHECKOUTS: Final = 2
"""The current checkout and the one before it, which a reader may still be in."""

_CAUSES: Final = (
    (
        (
            "Authentication failed",
            "could not read Username",
            "could not read Password",
            "returned error: 401",
            "returned error: 403",
        ),
        "the remote refused the credentials; check --git-token-file",
    ),
    (
        ("Permission denied (publickey", "Permission denied, please try again"),
        "the remote refused the SSH key (--git-ssh-key-file)",
    ),
    (
        ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "the server's SSH host key is not in --git-known-hosts-file (or it changed)",
    ),
    (
        ("couldn't find remote ref", "not our ref", "no such remote ref", "Remote branch"),
        "the ref does not exist at the remote (deleted, or misspelt in --git-ref?)",
    ),
    (
        (
            "Could not resolve host",
            "Connection refused",
            "timed out",
            "did not finish within",
            "No route to host",
            "unable to access",
            "Could not read from remote repository",
            "does not appear to be a git repository",
            "Repository not found",
            "not found",
        ),
        "the remote cannot be reached",
    ),
)
"""What git's words mean, for the one line an operator reads: failures of the remote, not of the
cache (anything else is taken for a broken cache, which is rebuilt)."""


class _Refused(Exception):
    """A commit that is fetched but must not be applied; the message says why."""


class GitSource:
    """One remote and ref, fetched at most every ``interval`` seconds, and at once when woken."""

    def __init__(
        self, remote: GitRemote, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.remote = remote
        self._interval = interval
        self._clock = clock
        workspace = remote.workspace
        self._repo = workspace / "repo.git"
        self._checkouts = workspace / "checkouts"
        self._current = workspace / "current"
        self._home = workspace / "home"
        self._lock = workspace / "lock"
        self._commit = _linked_commit(self._current)
        """The commit ``current`` leads to."""
        self._signatures = Signatures(remote, self._repo)
        self._wanted = threading.Event()
        self._waker: threading.Event | None = None
        self._fetched_at = -math.inf
        self._failures = 0
        self._retry_at: float | None = None
        self._problem: str | None = None
        """What the status tells until the next update that reaches the remote's commit."""
        self._logged: str | None = None

    @property
    def directory(self) -> Path:
        return self._current / self.remote.path

    @property
    def label(self) -> str:
        return self.remote.label

    @property
    def file_events(self) -> bool:
        return False

    @property
    def commit(self) -> str | None:
        """The commit the directory holds."""
        return self._commit

    def attach(self, wake: threading.Event) -> None:
        """Set ``wake`` too when woken: the watch loop's event, so a hook starts a cycle at once."""
        self._waker = wake

    def wake(self) -> None:
        """Fetch at the next cycle, whenever the last fetch was; a burst of calls makes one fetch.
        Safe from any thread."""
        self._wanted.set()
        if self._waker is not None:
            self._waker.set()

    def due_in(self) -> float | None:
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - self._clock())

    def update(self, applied: Applied) -> Update:
        """Fetch if woken, if ``interval`` has passed, if retrying, or if nothing is checked out;
        check a new commit out and swap it in."""
        now = self._clock()
        due = (
            self._commit is None
            or self._wanted.is_set()
            or now - self._fetched_at >= self._interval
            or (self._retry_at is not None and now >= self._retry_at)
        )
        if not due:
            return Update(self._commit, problem=self._problem)
        self._wanted.clear()
        self._fetched_at = now
        git = Git.for_remote(
            home=self._home,
            scheme=self.remote.scheme,
            token_file=self.remote.token_file,
            ssh_key_file=self.remote.ssh_key_file,
            known_hosts_file=self.remote.known_hosts_file,
            timeout=self.remote.timeout,
        )
        try:
            with self._locked(git):
                target = self._fetch(git)
                refusal = self._signatures.verdict(git, target)
                if refusal is not None:
                    raise _Refused(refusal)
                if target == self._commit and self.directory.is_dir():
                    moved = False
                else:
                    self._check_out(git, target)
                    moved = True
        except GitError as exc:
            self._schedule_retry()
            return self._keep(git, f"cannot fetch {self.label}: {exc}", applied)
        except _Refused as exc:
            self._retry_at = None
            return self._keep(git, str(exc), applied)
        self._failures, self._retry_at, self._problem = 0, None, None
        if self._logged is not None:
            log.info("Git: %s fetched again", self.label)
            self._logged = None
        if moved:
            self._log_move(git, applied(), target)
        return Update(target, moved=moved)

    def _keep(self, git: Git, problem: str, applied: Applied) -> Update:
        """Stay at the commit etcd records: the checkout at hand if it is that commit, else that
        commit fetched by its id (a new leader whose cache is empty or behind); if neither can be
        had (or verified), no tree can be used."""
        recorded = applied()
        self._problem = problem
        moved = False
        if recorded is not None and (recorded != self._commit or not self.directory.is_dir()):
            moved = self._check_out_recorded(git, recorded)
        usable = (
            self._commit is not None
            and self._commit == recorded
            and self.directory.is_dir()
            and self._signatures.verdict(git, self._commit) is None
        )
        if usable:
            if self._logged != problem:
                log.error("%s; etcd keeps commit %s", problem, recorded)
                self._logged = problem
            return Update(self._commit, moved=moved, problem=problem)
        self._logged = problem
        kept = f"etcd keeps commit {recorded}" if recorded else "nothing synced"
        raise SourceUnavailable(f"{problem}; {kept}")

    def _check_out_recorded(self, git: Git, recorded: str) -> bool:
        """Fetch, verify and check out the commit etcd records; whether that worked."""
        if not COMMIT.fullmatch(recorded):
            return False
        try:
            with self._locked(git):
                self._fetch_into_cache(git, recorded)
                if self._signatures.verdict(git, recorded) is not None:
                    return False
                self._check_out(git, recorded)
        except (GitError, _Refused) as exc:
            log.debug("Cannot check out commit %s, which etcd records: %s", recorded, exc)
            return False
        return True

    def _schedule_retry(self) -> None:
        self._failures += 1
        wait = min(FIRST_RETRY * 2 ** (self._failures - 1), LAST_RETRY, self._interval)
        self._retry_at = self._clock() + wait

    @contextlib.contextmanager
    def _locked(self, git: Git) -> Iterator[None]:
        """The workspace to this process alone: another one sharing the cache waits its turn."""
        self._lock.parent.mkdir(parents=True, exist_ok=True)
        self._home.mkdir(exist_ok=True)
        with self._lock.open("a") as handle:
            deadline = self._clock() + git.timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._clock() > deadline:
                        raise GitError(
                            f"the cache {self._lock.parent} is locked by another process"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _fetch(self, git: Git) -> str:
        """Fetch the ref (only its commit); its commit id. A cache that fails for a cause other
        than the remote is rebuilt, once."""
        try:
            return self._fetch_into_cache(git)
        except GitError as exc:
            if _cause(str(exc)) is not None:
                raise GitError(f"{_cause(str(exc))} ({exc})") from None
            log.warning("Git cache %s is broken (%s); rebuilding it", self._repo, exc)
        shutil.rmtree(self._repo, ignore_errors=True)
        try:
            return self._fetch_into_cache(git)
        except GitError as exc:
            raise GitError(f"{_cause(str(exc)) or 'the fetch failed'} ({exc})") from None

    def _fetch_into_cache(self, git: Git, ref: str | None = None) -> str:
        """Fetch ``ref`` (by default, the source's) into :data:`FETCHED`; its commit id."""
        if not (self._repo / "HEAD").is_file():
            shutil.rmtree(self._repo, ignore_errors=True)
            git.run(["init", "--quiet", "--bare", str(self._repo)])
        ref = ref or self.remote.ref or "HEAD"
        git.run(
            [
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--no-recurse-submodules",
                "--no-write-fetch-head",
                self.remote.url,
                f"+{ref}:{FETCHED}",
            ],
            git_dir=self._repo,
        )
        commit = git.run(
            ["rev-parse", "--verify", "--end-of-options", f"{FETCHED}^{{commit}}"], git_dir=self._repo
        )
        commit = commit.strip()
        if not COMMIT.fullmatch(commit):
            raise GitError(f"rev-parse gave {commit!r}, not a commit id")
        return commit

    def _check_out(self, git: Git, commit: str) -> None:
        """Check the commit's manifests' directory out into a new directory, swap it in as
        ``current``, and remove the checkouts no reader can still be in."""
        self._checkouts.mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{commit}-", dir=self._checkouts))
        try:
            index = staging.with_name(staging.name + ".index")
            try:
                git.run(
                    ["--work-tree", str(staging), "checkout", "--quiet", commit, "--", self.remote.path],
                    git_dir=self._repo,
                    env={"GIT_INDEX_FILE": str(index)},
                )
            except GitError as exc:
                if "did not match any file" in str(exc):
                    raise _Refused(
                        f"commit {commit} of {self.label} has no directory {self.remote.path!r} "
                        "(--git-path); not applied"
                    ) from None
                raise
            finally:
                index.unlink(missing_ok=True)
            tree = (staging / self.remote.path).resolve()
            if not tree.is_relative_to(staging.resolve()) or not tree.is_dir():
                raise _Refused(
                    f"commit {commit} of {self.label}: {self.remote.path!r} is not a directory "
                    "in the repository (a file, or a symlink?); not applied"
                )
            final = self._checkouts / commit
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        link = self._current.with_name(f".current-{os.getpid()}")
        link.unlink(missing_ok=True)
        link.symlink_to(Path("checkouts") / commit)
        previous = self._commit
        link.replace(self._current)
        self._commit = commit
        keep = {commit, previous}
        for entry in self._checkouts.iterdir():
            if entry.name not in keep:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _log_move(self, git: Git, before: str | None, after: str) -> None:
        if before is None or before == after:
            log.info("Git: %s at commit %s", self.label, after)
            return
        if _reaches(git, self._repo, before, after):
            log.warning(
                "Git: %s was force-pushed back from %s to %s, an older commit; following Git",
                self.label,
                before,
                after,
            )
        elif _reaches(git, self._repo, after, before):
            log.info("Git: %s moved from %s to %s", self.label, before, after)
        else:
            log.warning(
                "Git: %s moved from %s to %s, which does not follow it in the history at hand "
                "(a force-push, or more than %d new commits); following Git",
                self.label,
                before,
                after,
                ANCESTRY_STEPS,
            )


def _reaches(git: Git, repo: Path, start: str, wanted: str) -> bool:
    """Whether ``wanted`` is among ``start``'s ancestors, following the parents each commit
    object names for as long as the shallow cache holds them (``merge-base`` stops at the
    shallow boundary)."""
    frontier = [start]
    for _ in range(ANCESTRY_STEPS):
        if not frontier:
            return False
        commit = frontier.pop()
        try:
            text = git.run(["cat-file", "commit", commit], git_dir=repo, timeout=10)
        except GitError:
            continue  # not fetched: the history stops here
        parents = [line.split()[1] for line in text.splitlines() if line.startswith("parent ")]
        if wanted in parents:
            return True
        frontier.extend(parents)
    return False


def _cause(said: str) -> str | None:
    for fragments, cause in _CAUSES:
        if any(fragment in said for fragment in fragments):
            return cause
    return None


def _linked_commit(link: Path) -> str | None:
    """The commit a ``current`` link leads to, if it is one this service made."""
    try:
        target = link.readlink()
    except OSError:
        return None
    name = Path(target).name
    return name if COMMIT.fullmatch(name) and (link.parent / "checkouts" / name).is_dir() else None
