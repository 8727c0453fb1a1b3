"""Commit signatures: whether a fetched commit may be applied under ``--git-allowed-signers`` (SSH)
or ``--git-gpg-keyring`` (GnuPG), each commit checked once."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from gitops_sync.errors import GitError
from gitops_sync.settings import GitRemote
from gitops_sync.sources.git import Git

MAX_VERDICTS: Final = 1000
"""Commits whose signature check is remembered (each is checked once, not at every fetch)."""


class Signatures:
    """The signature policy of one remote, and the verdicts on the commits of its cache's ``repo``."""

    def __init__(self, remote: GitRemote, repo: Path) -> None:
        self.remote = remote
        self._repo = repo
        self._verdicts: dict[str, str | None] = {}
        """By commit: why it must not be applied, or None when it may."""

    def verdict(self, git: Git, commit: str) -> str | None:
        """Why ``commit`` must not be applied (its signature does not verify), or None."""
        if commit not in self._verdicts:
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[commit] = self._verify(git, commit)
        return self._verdicts[commit]

    def _verify(self, git: Git, commit: str) -> str | None:
        remote = self.remote
        if remote.allowed_signers is not None:
            policy = f"--git-allowed-signers {remote.allowed_signers}"
            args = ["-c", f"gpg.ssh.allowedSignersFile={remote.allowed_signers}", "verify-commit", commit]
            return _refusal(git, commit, policy, lambda: git.run(args, git_dir=self._repo, timeout=30))
        if remote.gpg_keyring is not None:
            policy = f"--git-gpg-keyring {remote.gpg_keyring}"
            return _refusal(git, commit, policy, lambda: self._verify_gpg(git, commit))
        return None

    def _verify_gpg(self, git: Git, commit: str) -> None:
        """``verify-commit`` against the keyring alone: a GnuPG home of its own, with the keyring
        imported and each of its keys trusted (the keyring is the list of trusted signers)."""
        keyring = self.remote.gpg_keyring
        assert keyring is not None  # noqa: S101 - checked by the caller
        with tempfile.TemporaryDirectory(prefix="gitops-sync-gnupg-") as home:
            env = {"GNUPGHOME": home}
            gpg = ["-c", "gpg.program=gpg"]
            run = _gpg(git, env)
            run(["--import", str(keyring)])
            listing = run(["--with-colons", "--fingerprint", "--list-keys"])
            fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
            trust = Path(home) / "trust"
            trust.write_text("".join(f"{fingerprint}:6:\n" for fingerprint in fingerprints))
            run(["--import-ownertrust", str(trust)])
            git.run([*gpg, "verify-commit", commit], git_dir=self._repo, env=env, timeout=30)


def _refusal(git: Git, commit: str, policy: str, verify: Callable[[], object]) -> str | None:
    try:
        verify()
    except GitError as exc:
        said = str(exc)
        if "No principal matched" in said or "public key not found" in said or "No public key" in said:
            why = "signed by a key that is not trusted"
        elif "no signature" in said or "said nothing" in said:
            why = "not signed"
        else:
            why = f"its signature does not verify ({git.mask(said)})"
        return f"commit {commit} not applied: {why} ({policy})"
    return None


def _gpg(git: Git, env: dict[str, str]) -> Callable[[list[str]], str]:
    def run(args: list[str]) -> str:
        try:
            return Git(env={**git.env, **env}, timeout=30).run_program("gpg", ["--batch", "--quiet", *args])
        except GitError as exc:
            raise GitError(f"gpg {args[0]}: {exc}") from None

    return run
