"""How git is run: the SSH command, the environment, secrets kept out of arguments and messages, and
the options of a Git remote checked before anything runs."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path

import pytest

from gitops_sync.errors import ConfigurationError, GitError
from gitops_sync.settings import GitRemote
from gitops_sync.sources.git import Git, read_token, ssh_command


def test_the_ssh_command_uses_only_the_key_and_known_hosts_strictly(tmp_path: Path) -> None:
    key = tmp_path / "deploy keys" / "id_ed25519"
    known = tmp_path / "it's" / "known_hosts"

    command = shlex.split(ssh_command(key, known))  # as the shell git hands it to reads it

    assert command[0] == "ssh"
    assert command[command.index("-i") + 1] == str(key)
    options = [command[i + 1] for i, part in enumerate(command) if part == "-o"]
    assert "IdentitiesOnly=yes" in options
    assert "StrictHostKeyChecking=yes" in options
    assert f"UserKnownHostsFile={known}" in options
    assert "BatchMode=yes" in options
    assert not any("accept-new" in option or option.endswith("=no") for option in options)


def test_git_runs_without_user_or_system_config_and_never_prompts(tmp_path: Path) -> None:
    git = Git.for_remote(home=tmp_path, scheme="https")

    assert git.env["GIT_TERMINAL_PROMPT"] == "0"
    assert git.env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert git.env["HOME"] == str(tmp_path)
    assert "GIT_TRACE" not in git.env
    config = {
        git.env[f"GIT_CONFIG_KEY_{i}"]: git.env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(git.env["GIT_CONFIG_COUNT"]))
    }
    assert config["protocol.allow"] == "never"
    assert config["protocol.https.allow"] == "always"
    assert "http.extraHeader" not in config


@pytest.mark.parametrize(("text", "user"), [("tok3n\n", "x-access-token"), ("oauth2:tok3n", "oauth2")])
def test_the_token_travels_as_a_header_in_the_environment(tmp_path: Path, text: str, user: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(text)

    git = Git.for_remote(home=tmp_path, scheme="https", token_file=token_file)

    header = f"Authorization: Basic {base64.b64encode(f'{user}:tok3n'.encode()).decode()}"
    assert header in git.env.values()
    assert git.mask("fatal: tok3n and " + header) == "fatal: *** and Authorization: Basic ***"


def test_a_failing_command_says_why_without_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok3n")
    git = Git.for_remote(home=tmp_path, scheme="file", token_file=token_file)

    with pytest.raises(GitError) as failed:
        git.run(["rev-parse", "--verify", "tok3n"], git_dir=tmp_path / "nothing")

    assert "tok3n" not in str(failed.value)
    assert "not a git repository" in str(failed.value)


def test_a_command_past_its_deadline_is_stopped(tmp_path: Path) -> None:
    git = Git.for_remote(home=tmp_path, scheme="file", timeout=0.5)

    with pytest.raises(GitError, match=r"did not finish within 0.5s"):
        git.run_program("sleep", ["30"])


@pytest.mark.parametrize(
    "text", ["", "two\nlines", "with space", "tab\there"], ids=["empty", "lines", "space", "tab"]
)
def test_a_token_file_must_hold_one_token(tmp_path: Path, text: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(text)
    with pytest.raises(ConfigurationError, match="--git-token-file"):
        read_token(token_file)


@pytest.mark.parametrize(
    "url",
    ["https://host/repo.git", "ssh://git@host/repo.git", "git@github.com:org/repo.git", "file:///srv/r"],
)
def test_the_four_kinds_of_url_are_accepted(url: str, tmp_path: Path) -> None:
    assert GitRemote(url=url, cache=tmp_path).scheme in ("https", "ssh", "file")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://host/repo"}, "use https://"),
        ({"url": "ext::sh -c touch% /tmp/x"}, "use https://"),
        ({"url": "https://user:secret@host/repo.git"}, "must not hold a password"),
        ({"url": "https://host/r.git", "ref": "--upload-pack=evil"}, "is not a branch"),
        ({"url": "https://host/r.git", "ref": "main..other"}, "is not a branch"),
        ({"url": "https://host/r.git", "path": "../etc"}, "inside the repository"),
        ({"url": "https://host/r.git", "path": "/etc"}, "inside the repository"),
        ({"url": "http://example.com/r.git", "token_file": "token"}, "in the clear"),
        ({"url": "ssh://git@host/r.git", "token_file": "token"}, "for https://"),
        ({"url": "ssh://git@host/r.git", "ssh_key_file": "token"}, "needs --git-known-hosts-file"),
        ({"url": "https://host/r.git", "ssh_key_file": "token"}, "for ssh://"),
        (
            {"url": "https://host/r.git", "allowed_signers": "token", "gpg_keyring": "token"},
            "exclude each other",
        ),
        ({"url": "https://host/r.git", "allowed_signers": "missing"}, "is not a readable file"),
    ],
)
def test_a_remote_that_cannot_work_is_refused_up_front(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    (tmp_path / "token").write_text("t")
    options: dict[str, object] = {
        name: tmp_path / value if name.endswith(("_file", "signers", "keyring")) else value
        for name, value in kwargs.items()
    }
    with pytest.raises(ConfigurationError, match=message):
        GitRemote(cache=tmp_path, **options)  # type: ignore[arg-type]


def test_a_token_over_plain_http_is_allowed_on_loopback_only(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    assert GitRemote(url="http://127.0.0.1:8080/r.git", token_file=token, cache=tmp_path).scheme == "http"


def test_each_remote_and_ref_has_its_own_workspace(tmp_path: Path) -> None:
    main = GitRemote(url="https://host/r.git", ref="main", cache=tmp_path)
    other = GitRemote(url="https://host/r.git", ref="other", cache=tmp_path)
    assert main.workspace.parent == tmp_path
    assert main.workspace != other.workspace
    assert main.workspace == GitRemote(url="https://host/r.git", ref="main", cache=tmp_path).workspace
