"""The Git source on its own: real repositories, no etcd (``applied`` says what etcd would hold)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from git_support import Remote, git

from gitops_sync.errors import SourceUnavailable
from gitops_sync.settings import GitRemote
from gitops_sync.sources.remotes import GitSource


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    made = Remote(tmp_path)
    made.commit()
    made.push()
    return made


def source_of(remote: Remote, tmp_path: Path, clock: Clock | None = None, **options: object) -> GitSource:
    settings = GitRemote(url=remote.url, ref="main", cache=tmp_path / "cache", **options)  # type: ignore[arg-type]
    return GitSource(settings, interval=60, clock=clock or Clock())


def test_each_commit_is_checked_out_anew_and_swapped_in(remote: Remote, tmp_path: Path) -> None:
    source = source_of(remote, tmp_path)
    first = source.update(lambda: None)
    seen = source.directory.resolve()

    remote.set_version("1.1.0")
    second_commit = remote.commit()
    remote.push()
    source.wake()
    second = source.update(lambda: first.commit)

    assert first.moved
    assert second.moved
    assert second.commit == second_commit
    assert source.directory.resolve() != seen
    assert source.directory.resolve().parent.name == second_commit
    assert seen.is_dir()  # the one before stays, for a reader still in it
    remote.set_version("1.2.0")
    remote.commit()
    remote.push()
    source.wake()
    source.update(lambda: second_commit)
    assert not seen.exists()  # older ones go
    checkouts = source.directory.resolve().parent.parent
    assert len(list(checkouts.iterdir())) == 2


def test_a_fetch_happens_when_woken_or_when_the_interval_passed(remote: Remote, tmp_path: Path) -> None:
    clock = Clock()
    source = source_of(remote, tmp_path, clock)
    commit = source.update(lambda: None).commit
    remote.set_version("1.1.0")
    remote.commit()
    remote.push()

    assert source.update(lambda: commit) == source.update(lambda: commit)
    assert source.update(lambda: commit).commit == commit  # not due: nothing fetched

    for _ in range(3):
        source.wake()
    assert source.update(lambda: commit).commit == remote.sha()
    assert not source.update(lambda: commit).moved  # the burst made one fetch

    remote.set_version("1.2.0")
    remote.commit()
    remote.push()
    clock.now += 60
    assert source.update(lambda: commit).commit == remote.sha()


def test_a_failed_fetch_keeps_the_commit_etcd_holds_and_retries_with_back_off(
    remote: Remote, tmp_path: Path
) -> None:
    clock = Clock()
    source = source_of(remote, tmp_path, clock)
    commit = source.update(lambda: None).commit
    git("--git-dir", remote.bare, "update-ref", "-d", "refs/heads/main")
    source.wake()

    kept = source.update(lambda: commit)

    assert kept.commit == commit
    assert not kept.moved
    assert kept.problem is not None
    assert "the ref does not exist at the remote" in kept.problem
    waits = []
    for _ in range(4):
        due = source.due_in()
        assert due is not None
        waits.append(due)
        clock.now += due
        source.update(lambda: commit)
    assert waits == [0.5, 1.0, 2.0, 4.0]

    source.wake()
    with pytest.raises(SourceUnavailable, match="etcd keeps commit " + "f" * 40):
        source.update(lambda: "f" * 40)  # another replica applied a newer commit: do not go back


def test_a_git_path_that_is_not_a_directory_is_not_applied(remote: Remote, tmp_path: Path) -> None:
    source = source_of(remote, tmp_path)
    commit = source.update(lambda: None).commit
    git("rm", "-r", "--quiet", "capabilities", cwd=remote.work)
    (remote.work / "capabilities").symlink_to("/etc")
    remote.commit()
    remote.push()
    source.wake()

    kept = source.update(lambda: commit)

    assert kept.commit == commit
    assert kept.problem is not None
    assert "'capabilities' is not a directory in the repository" in kept.problem


def test_ssh_runs_with_the_key_and_strict_host_checking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git runs ``GIT_SSH_COMMAND``: a stand-in ``ssh`` first on PATH records what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorded = tmp_path / "ssh-args"
    fake = bin_dir / "ssh"
    fake.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{recorded}"\necho "Permission denied (publickey)." >&2\nexit 255\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    key = tmp_path / "deploy key"
    key.write_text("not a real key")
    known = tmp_path / "known_hosts"
    known.write_text("")
    settings = GitRemote(
        url="git@git.example.com:org/manifests.git",
        ssh_key_file=key,
        known_hosts_file=known,
        cache=tmp_path / "cache",
    )

    with pytest.raises(SourceUnavailable, match="refused the SSH key"):
        GitSource(settings, interval=60).update(lambda: None)

    args = recorded.read_text().splitlines()
    assert args[args.index("-i") + 1] == str(key)
    assert "StrictHostKeyChecking=yes" in args
    assert "IdentitiesOnly=yes" in args
    assert f"UserKnownHostsFile={known}" in args
    assert "git@git.example.com" in args
