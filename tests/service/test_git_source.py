"""The Git source end to end: real repositories made here (over file:// and over HTTP with a token,
served by ``git http-backend``), a real etcd, the command as operators run it."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import etcd3
import pytest
from git_support import MANIFESTS, REGISTRY, Remote, git, gpg_key, http_server, signing_key

from gitops_sync.service.watching import Watcher
from gitops_sync.settings import EtcdConnection, GitRemote, Settings
from gitops_sync.sources.remotes import GitSource
from gitops_sync.store.etcd import EtcdStore
from gitops_sync.testing import EtcdProcess, wait_for
from support import PREFIX, Cli, keys_under, services, value_of

STATUS = "/chora/sync/status"
RECORDS = "/chora/sync/managed/"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    """A remote whose ``main`` holds three manifests."""
    made = Remote(tmp_path)
    made.commit("three manifests")
    made.push()
    return made


def status(etcd: etcd3.MultiEndpointEtcd3Client) -> dict[str, object]:
    value = value_of(etcd, STATUS)
    assert value is not None
    loaded = json.loads(value)
    assert isinstance(loaded, dict)
    return loaded


def record_commits(etcd: etcd3.MultiEndpointEtcd3Client) -> dict[str, str | None]:
    return {
        key.removeprefix(RECORDS): json.loads(value).get("commit")
        for key, (value, _) in keys_under(etcd, RECORDS).items()
    }


def version(etcd: etcd3.MultiEndpointEtcd3Client) -> bytes | None:
    return value_of(etcd, f"{PREFIX}{REGISTRY}/version")


def test_a_one_shot_sync_applies_the_ref_and_records_its_commit(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    first = remote.sha()
    result = cli("--git-url", remote.url, "--git-ref", "main", "--git-cache", tmp_path / "cache")

    assert result.code == 0, result.err
    assert f"Sync complete: {len(MANIFESTS)} synced, 0 skipped, 0 errors" in result.err
    assert f"at commit {first}" in result.err
    assert len(keys_under(etcd, PREFIX)) == 4 * len(MANIFESTS)
    assert status(etcd)["commit"] == first
    assert set(record_commits(etcd).values()) == {first}


def test_a_new_commit_rewrites_only_the_records_of_what_it_changed(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cache = tmp_path / "cache"
    first = remote.sha()
    assert cli("--git-url", remote.url, "--git-cache", cache).code == 0
    before = keys_under(etcd, RECORDS)

    remote.set_version("1.4.0")
    second = remote.commit("registry 1.4.0")
    remote.push()
    (remote.work / "README.md").write_text("no manifest changes here\n")
    third = remote.commit("docs only")
    remote.push()
    result = cli("--git-url", remote.url, "--git-cache", cache)

    assert result.code == 0, result.err
    assert "Sync complete: 1 synced, 2 skipped, 0 errors" in result.err
    assert version(etcd) == b"1.4.0"
    assert status(etcd)["commit"] == third
    commits = record_commits(etcd)
    assert commits.pop(REGISTRY) == third  # the commit applied, which holds the change
    assert set(commits.values()) == {first}
    after = keys_under(etcd, RECORDS)
    assert {key: after[key] for key in after if REGISTRY not in key} == {
        key: before[key] for key in before if REGISTRY not in key
    }  # not rewritten: same bytes, same revision
    assert second != third


def test_the_dry_run_names_the_commit(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    result = cli("--git-url", remote.url, "--git-cache", tmp_path / "cache", "--dry-run")

    assert result.code == 0, result.err
    assert f"Commit: {remote.sha()}" in result.out
    assert f"Plan: {len(MANIFESTS)} to create" in result.out
    assert keys_under(etcd, "/") == {}


def test_a_tag_and_a_commit_can_be_the_ref(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    first = remote.sha()
    git("tag", "-a", "-m", "release", "v1", cwd=remote.work)
    git("push", "--quiet", "origin", "v1", cwd=remote.work)
    remote.set_version("1.2.0")
    remote.commit()
    remote.push()

    assert cli("--git-url", remote.url, "--git-ref", "v1", "--git-cache", tmp_path / "c1").code == 0
    assert version(etcd) == b"1.0.0"
    assert status(etcd)["commit"] == first
    assert cli("--git-url", remote.url, "--git-ref", remote.sha(), "--git-cache", tmp_path / "c2").code == 0
    assert version(etcd) == b"1.2.0"
    assert status(etcd)["commit"] == remote.sha()


def test_validate_checks_the_manifests_of_the_ref(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    (remote.work / "capabilities" / "broken.yaml").write_text("metadata: [unclosed\n")
    remote.commit("a broken manifest")
    remote.push()

    result = cli("--git-url", remote.url, "--git-cache", tmp_path / "cache", "--validate")

    assert result.code == 1
    assert "broken.yaml:" in result.out
    assert f"{len(MANIFESTS) + 1} manifests checked: 1 error" in result.out


def test_capabilities_and_git_url_exclude_each_other(cli: Cli, remote: Remote, tmp_path: Path) -> None:
    result = cli("--capabilities", tmp_path, "--git-url", remote.url)

    assert result.code == 2
    assert "--capabilities and --git-url exclude each other" in result.err


def test_a_force_push_to_an_older_commit_is_applied(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cache = tmp_path / "cache"
    first = remote.sha()
    remote.set_version("1.5.0")
    remote.commit()
    remote.push()
    assert cli("--git-url", remote.url, "--git-cache", cache).code == 0
    assert version(etcd) == b"1.5.0"

    git("reset", "--quiet", "--hard", first, cwd=remote.work)
    remote.push(force=True)
    result = cli("--git-url", remote.url, "--git-cache", cache)

    assert result.code == 0, result.err
    assert "was force-pushed back" in result.err
    assert version(etcd) == b"1.0.0"
    assert status(etcd)["commit"] == remote.sha() == first


def test_a_deleted_ref_leaves_etcd_unchanged_with_one_clear_error(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cache = tmp_path / "cache"
    remote.push("release")
    assert cli("--git-url", remote.url, "--git-ref", "release", "--git-cache", cache).code == 0
    before = keys_under(etcd, "/")
    git("--git-dir", remote.bare, "branch", "--quiet", "-D", "release")

    kept = cli("--git-url", remote.url, "--git-ref", "release", "--git-cache", cache)
    fresh = cli("--git-url", remote.url, "--git-ref", "release", "--git-cache", tmp_path / "other")

    assert kept.code == 1  # synced what etcd holds, and says why it is not newer
    assert kept.err.count("the ref does not exist at the remote") == 1
    assert fresh.code == 1  # an empty cache: etcd's commit fetched by its id
    assert fresh.err.count("the ref does not exist at the remote") == 1
    after = keys_under(etcd, "/")
    assert {key: after[key] for key in after if key != STATUS} == {
        key: before[key] for key in before if key != STATUS
    }
    assert status(etcd)["commit"] == remote.sha()
    assert "the ref does not exist at the remote" in str(status(etcd)["source_error"])


def test_a_broken_cache_is_rebuilt(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cache = tmp_path / "cache"
    assert cli("--git-url", remote.url, "--git-cache", cache).code == 0
    (repo,) = cache.glob("*/repo.git")
    shutil.rmtree(repo / "objects")
    (repo / "HEAD").write_text("garbage\n")
    remote.set_version("1.6.0")
    remote.commit()
    remote.push()

    result = cli("--git-url", remote.url, "--git-cache", cache)

    assert result.code == 0, result.err
    assert "is broken" in result.err
    assert version(etcd) == b"1.6.0"
    assert status(etcd)["commit"] == remote.sha()


TOKEN = "s3cr3t-t0ken-for-the-test"  # noqa: S105 - made up for the test server


def test_https_style_token_auth_over_http_backend(
    cli: Cli,
    remote: Remote,
    tmp_path: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        commands.append(list(args))
        return real_popen(args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    wrong_file = tmp_path / "wrong-token"
    wrong_file.write_text("not-the-token\n")
    with http_server(remote.bare.parent, TOKEN) as server:
        url = server.url(remote.bare.name)
        wrong = cli("--git-url", url, "--git-token-file", wrong_file, "--git-cache", tmp_path / "c1")
        assert wrong.code == 2
        assert wrong.err.count("the remote refused the credentials") == 1
        assert "not-the-token" not in wrong.err + wrong.out
        assert value_of(etcd, STATUS) is None
        assert keys_under(etcd, "/") == {}
        assert server.refused >= 1

        result = cli("--git-url", url, "--git-token-file", token_file, "--git-cache", tmp_path / "c2")

    assert result.code == 0, result.err
    assert TOKEN not in result.err + result.out
    assert any("fetch" in command for command in commands)
    assert not any(TOKEN in argument for command in commands for argument in command)
    assert status(etcd)["commit"] == remote.sha()
    assert len(keys_under(etcd, PREFIX)) == 4 * len(MANIFESTS)


def test_a_wrong_token_after_a_sync_leaves_etcd_unchanged(
    cli: Cli, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    cache = tmp_path / "cache"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with http_server(remote.bare.parent, TOKEN) as server:
        url = server.url(remote.bare.name)
        assert cli("--git-url", url, "--git-token-file", token_file, "--git-cache", cache).code == 0
        before = keys_under(etcd, PREFIX)
        remote.set_version("1.9.9")
        remote.commit()
        remote.push()
        token_file.write_text("rotated-elsewhere")
        result = cli("--git-url", url, "--git-token-file", token_file, "--git-cache", cache)

    assert result.code == 1
    assert result.err.count("the remote refused the credentials") == 1
    assert keys_under(etcd, PREFIX) == before
    assert status(etcd)["commit"] != remote.sha()


@pytest.fixture
def signers(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A key whose signatures are allowed, one whose are not, and the allowed signers file."""
    allowed, allowed_public = signing_key(tmp_path, "allowed")
    other, _ = signing_key(tmp_path, "other")
    signers_file = tmp_path / "allowed_signers"
    signers_file.write_text(f"test@example.com {allowed_public}\n")
    return allowed, other, signers_file


def test_only_commits_signed_by_an_allowed_key_are_applied(
    cli: Cli,
    tmp_path: Path,
    etcd: etcd3.MultiEndpointEtcd3Client,
    signers: tuple[Path, Path, Path],
) -> None:
    allowed, other, signers_file = signers
    remote = Remote(tmp_path)
    signed = remote.commit("signed", signing_key=allowed)
    remote.push()
    args = ("--git-url", remote.url, "--git-cache", tmp_path / "cache", "--git-allowed-signers", signers_file)

    assert cli(*args).code == 0
    assert status(etcd)["commit"] == signed

    for refused, why in (
        (None, "not signed"),
        (other, "signed by a key that is not trusted"),
    ):
        remote.set_version(f"1.8.{len(why)}")
        commit = remote.commit("not to be applied", signing_key=refused)
        remote.push()
        result = cli(*args)
        assert result.code == 1
        assert result.err.count(f"commit {commit} not applied: {why}") == 1
        assert version(etcd) == b"1.0.0"
        assert status(etcd)["commit"] == signed
        assert f"commit {commit} not applied: {why}" in str(status(etcd)["source_error"])

    # A new leader, whose cache is empty, starts from the commit etcd records, not the refused one.
    elsewhere = cli(*args[:2], "--git-cache", tmp_path / "elsewhere", *args[4:])
    assert elsewhere.code == 1
    assert elsewhere.err.count(f"etcd keeps commit {signed}") == 1
    assert version(etcd) == b"1.0.0"
    assert status(etcd)["commit"] == signed

    remote.set_version("1.8.99")
    verified = remote.commit("signed again", signing_key=allowed)
    remote.push()
    result = cli(*args)
    assert result.code == 0, result.err
    assert version(etcd) == b"1.8.99"
    assert status(etcd)["commit"] == verified
    assert "source_error" not in status(etcd)


def test_only_commits_signed_by_a_key_of_the_gpg_keyring_are_applied(
    cli: Cli, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    with gpg_key(tmp_path, "trusted") as trusted, gpg_key(tmp_path, "stranger") as stranger:
        keyring = trusted.export(tmp_path / "keyring.gpg")
        remote = Remote(tmp_path)
        signed = remote.commit("signed", gpg_key=trusted)
        remote.push()
        args = ("--git-url", remote.url, "--git-cache", tmp_path / "cache", "--git-gpg-keyring", keyring)
        assert cli(*args).code == 0
        assert status(etcd)["commit"] == signed

        remote.set_version("1.8.1")
        refused = remote.commit("by a stranger", gpg_key=stranger)
        remote.push()
        result = cli(*args)

    assert result.code == 1
    assert result.err.count(f"commit {refused} not applied: signed by a key that is not trusted") == 1
    assert version(etcd) == b"1.0.0"
    assert status(etcd)["commit"] == signed


@pytest.fixture
def watching(etcd_server: EtcdProcess, remote: Remote, tmp_path: Path) -> Iterator[GitSource]:
    """Watch mode in this process, on ``remote``'s main with ``--interval 60``; yields its source.
    The loop is stopped and its thread joined before the test ends (a failure if it does not stop)."""
    remote_settings = GitRemote(url=remote.url, ref="main", cache=tmp_path / "cache")
    settings = Settings(
        etcd=EtcdConnection(endpoints=((etcd_server.host, etcd_server.client_port),)),
        git=remote_settings,
        interval=60,
    )
    source = GitSource(remote_settings, settings.interval)
    stop = threading.Event()
    with EtcdStore(settings.etcd) as store:
        thread = threading.Thread(target=Watcher(settings, store, source, stop=stop).run, name="git-watch")
        thread.start()
        try:
            yield source
        finally:
            stop.set()
            source.wake()
            thread.join(timeout=20)
    assert not thread.is_alive(), "watch mode did not stop within 20 s of its stop event"


def test_wake_gets_a_pushed_commit_into_etcd_within_2_seconds(
    watching: GitSource,
    remote: Remote,
    etcd: etcd3.MultiEndpointEtcd3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gitops-sync")
    wait_for(lambda: version(etcd) == b"1.0.0", timeout=20)
    remote.set_version("1.3.0")
    remote.commit()
    remote.push()

    woken = time.monotonic()
    for _ in range(5):  # a burst of hooks: one fetch is enough
        watching.wake()
    wait_for(lambda: version(etcd) == b"1.3.0", timeout=10)

    assert time.monotonic() - woken < 10  # woken: long before the interval (60 s) runs out
    wait_for(lambda: status(etcd)["commit"] == remote.sha(), timeout=2)

    # Woken again, with nothing new: a fetch, and nothing written.
    header_revision = etcd.get_response(STATUS).header.revision
    cycles = sum("Sync complete" in record.getMessage() for record in caplog.records)
    watching.wake()
    wait_for(lambda: sum("Sync complete" in r.getMessage() for r in caplog.records) > cycles, timeout=5)
    assert etcd.get_response(STATUS).header.revision == header_revision
    completed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Sync complete")]
    assert completed[-1].startswith("Sync complete: 0 synced")


def test_watch_mode_picks_up_a_pushed_commit_within_the_interval(
    etcd_server: EtcdProcess, remote: Remote, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    endpoint = ("--etcd-host", etcd_server.host, "--etcd-port", str(etcd_server.client_port))
    cache = ("--git-cache", str(tmp_path / "cache"))
    with services(tmp_path) as start:
        service = start("--git-url", remote.url, *cache, "--watch", "--interval", "2", *endpoint)
        service.wait_for_log("Sync cycle complete", timeout=20)
        assert version(etcd) == b"1.0.0"

        remote.set_version("1.7.0")
        remote.commit()
        remote.push()
        pushed = time.monotonic()
        wait_for(lambda: version(etcd) == b"1.7.0", timeout=6)
        assert time.monotonic() - pushed < 6  # the interval (2 s), the fetch, a busy machine
        wait_for(lambda: status(etcd)["commit"] == remote.sha(), timeout=2)

        git("--git-dir", remote.bare, "update-ref", "-d", "refs/heads/main")
        wait_for(lambda: "source_error" in status(etcd), timeout=10)
        cycles = service.count("Sync cycle complete")
        service.wait_for_log("Sync cycle complete", timeout=10, times=cycles + 3)  # fetched again
        assert service.count("the ref does not exist at the remote") == 1
        assert version(etcd) == b"1.7.0"
        assert status(etcd)["commit"] == remote.head()
