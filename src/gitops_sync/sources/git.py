"""The ``git`` command line, run safely: fixed argument lists, a deadline, and an environment built
from scratch, so neither the user's nor the system's Git configuration, nor a prompt, can change
what a command does or make it hang; credentials travel in the environment, never in arguments.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gitops_sync.errors import ConfigurationError, GitError
from gitops_sync.model.limits import MAX_GIT_OUTPUT_BYTES

PASSED_THROUGH: Final = (
    "PATH",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
)
"""What a git command takes from this process's environment: where programs are, and how the
network is reached. Nothing else (no ``GIT_TRACE``, which would print the token, no ``GIT_DIR``)."""
COMMIT: Final = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
"""A full commit id, SHA-1 or SHA-256."""


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


def ssh_command(key_file: Path | None, known_hosts_file: Path | None) -> str:
    """``GIT_SSH_COMMAND``: only this key, only hosts already known (never "accept new"), never a
    prompt; each path quoted for the shell git runs it with."""
    parts = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=30"]
    if key_file is not None:
        parts += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    if known_hosts_file is not None:
        parts += ["-o", f"UserKnownHostsFile={known_hosts_file}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return shlex.join(parts)


def read_token(token_file: Path) -> tuple[str, str]:
    """The user name and token in ``token_file``: one line, ``TOKEN`` (user ``x-access-token``, as
    GitHub wants it) or ``USER:TOKEN``."""
    try:
        text = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"--git-token-file {token_file}: {reason}") from None
    if not text or "\n" in text or any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigurationError(
            f"--git-token-file {token_file} must hold one line: the token, or USER:TOKEN, and nothing else"
        )
    user, colon, token = text.rpartition(":")
    return (user, token) if colon and user else ("x-access-token", text)


@dataclass(frozen=True, slots=True)
class Git:
    """How to run ``git`` against one remote: the environment and the secrets to keep out of logs."""

    env: Mapping[str, str]
    secrets: tuple[str, ...] = ()
    timeout: float = 120.0

    @classmethod
    def for_remote(
        cls,
        *,
        home: Path,
        scheme: str,
        token_file: Path | None = None,
        ssh_key_file: Path | None = None,
        known_hosts_file: Path | None = None,
        timeout: float = 120.0,
    ) -> Git:
        """``home``: an empty directory of the service's own, so ``~/.gitconfig`` and ``~/.ssh``
        have no say; ``scheme``: the only transport git may use (``https``, ``ssh``, ...)."""
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
            GIT_LITERAL_PATHSPECS="1",  # --git-path is a path, never a pathspec with magic
            GIT_ASKPASS="",
            SSH_ASKPASS="",
            LC_ALL="C",
            GIT_SSH_COMMAND=ssh_command(ssh_key_file, known_hosts_file),
        )
        config = [
            ("protocol.allow", "never"),
            (f"protocol.{scheme}.allow", "always"),
            ("credential.helper", ""),
            ("core.askPass", ""),
            ("gc.autoDetach", "false"),
            ("http.lowSpeedLimit", "1000"),
            ("http.lowSpeedTime", "30"),
        ]
        secrets: tuple[str, ...] = ()
        if token_file is not None:
            user, token = read_token(token_file)
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
            secrets = (token, basic)
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return cls(env=env, secrets=secrets, timeout=timeout)

    def run(
        self,
        args: Sequence[str],
        *,
        git_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run ``git ARGS``; its standard output. Raises :class:`GitError` with git's own words
        (secrets masked) when it fails, times out or cannot start."""
        return self.run_program(
            "git", [*(["--git-dir", str(git_dir)] if git_dir is not None else []), *args], env, timeout
        )

    def run_program(
        self,
        program: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run ``program ARGS`` (``git``, ``gpg``) in this environment, as :meth:`run` does."""
        found = shutil.which(program, path=self.env.get("PATH"))
        if found is None:
            raise GitError(f"{program} is not installed (or not on PATH); the Git source needs it")
        deadline = self.timeout if timeout is None else timeout
        try:
            # A session of its own: on a timeout, the whole group goes (ssh, git-remote-https),
            # not only git, whose children would otherwise hold the pipes open.
            process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
                [found, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(f"cannot run {program}: {exc.strerror}") from None
        try:
            out, err = process.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise GitError(f"{program} did not finish within {deadline:g}s") from None
        if process.returncode != 0:
            said = self.mask(_last_words(err))
            raise GitError(said or f"{program} exited with status {process.returncode} and said nothing")
        if len(out) > MAX_GIT_OUTPUT_BYTES:
            raise GitError(f"{program} printed more than {MAX_GIT_OUTPUT_BYTES:,} bytes")
        return out.decode(errors="replace")

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    process.communicate()


def _last_words(err: bytes) -> str:
    """What git (and ssh, or the server) said went wrong, without git's boilerplate advice."""
    lines = [
        line.strip()
        for line in err.decode(errors="replace").splitlines()
        if line.strip()
        and not line.startswith(("Please make sure you have", "and the repository exists", "hint:"))
    ]
    return "; ".join(lines[-5:])[:1000]
