"""The command line as users type it: the seed's script, exit codes, logging, and the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import etcd3
import pytest

from gitops_sync.cli import build_parser, main
from gitops_sync.testing import EtcdProcess, free_port
from support import CAPABILITIES, EXAMPLE_IDS, PREFIX, ROOT, Cli, add_dangling_reference, keys_under


def test_the_seed_commands_work_verbatim(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    """As the README prints them, from the repository's root, on the ``capabilities/`` it ships."""
    count = len(EXAMPLE_IDS)
    environment = {**os.environ, "ETCD_HOST": etcd_server.host, "ETCD_PORT": str(etcd_server.client_port)}

    def seed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "gitops-sync-registry.py"), *args],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    dry = seed("--capabilities", "capabilities/", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Plan: {count} to create, 0 to update, 0 to delete, 0 unchanged, 0 invalid" in dry.stdout
    assert keys_under(etcd, PREFIX) == {}

    once = seed("--capabilities", "capabilities/")
    assert once.returncode == 0, once.stderr
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - gitops-sync - INFO - "
    assert re.search(
        line + f"Connected to etcd at {etcd_server.host}:{etcd_server.client_port}$", once.stderr, re.M
    )
    assert re.search(line + rf"Found {count} capability manifest\(s\)$", once.stderr, re.M)
    assert re.search(line + r"Synced: chora\.platform\.config_store \(service\)$", once.stderr, re.M)
    assert re.search(line + f"Sync complete: {count} synced, 0 skipped, 0 errors$", once.stderr, re.M)

    listed = seed("--list")
    assert listed.returncode == 0
    assert listed.stdout == f"Found {count} capability/ies in etcd:\n\n" + "".join(
        f"  - {capability_id}\n" for capability_id in EXAMPLE_IDS
    )


def test_unreachable_etcd_exits_3_with_one_clear_line(capabilities: Path) -> None:
    port = free_port()
    code = main(["--capabilities", str(capabilities), "--etcd-port", str(port), "--etcd-timeout", "1"])
    assert code == 3


def test_unreachable_etcd_message(capabilities: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    main(
        [
            "--capabilities",
            str(capabilities),
            "--etcd-host",
            "127.0.0.1",
            "--etcd-port",
            str(port),
            "--etcd-timeout",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert f"ERROR - etcd at 127.0.0.1:{port} is unreachable" in err
    assert "Traceback" not in err


def test_health_check(cli: Cli) -> None:
    healthy = cli("--health-check")
    assert healthy.code == 0
    assert "is healthy (version 3." in healthy.out
    assert main(["--health-check", "--etcd-port", str(free_port()), "--etcd-timeout", "1"]) == 3


def test_missing_capabilities_directory_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("--capabilities", tmp_path / "nope")
    assert result.code == 2
    assert f"capabilities directory {tmp_path / 'nope'} does not exist" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "/chora/capabilities"], "--prefix '/chora/capabilities' must start and end with '/'"),
        (["--prefix", "chora/caps/"], "--prefix 'chora/caps/' must start and end with '/'"),
        (["--sync-prefix", "sync/"], "--sync-prefix 'sync/' must start and end with '/'"),
        (["--sync-prefix", "/chora/capabilities/sync/"], "must not overlap"),
        (["--watch", "--interval", "0"], "--interval must be from 0.1 to 86400 seconds, not 0.0"),
        (["--watch", "--interval", "nan"], "--interval must be from 0.1 to 86400 seconds, not nan"),
        (["--watch", "--interval", "inf"], "--interval must be from 0.1 to 86400 seconds, not inf"),
        (["--watch", "--lease-ttl", "1"], "--lease-ttl must be from 2 to 3600 seconds, not 1"),
        (["--watch", "--lease-ttl", "100000000000"], "--lease-ttl must be from 2 to 3600 seconds"),
        (["--etcd-timeout", "nan"], "--etcd-timeout must be from 0.1 to 600 seconds, not nan"),
        (["--etcd-timeout", "inf"], "--etcd-timeout must be from 0.1 to 600 seconds, not inf"),
        (["--etcd-timeout", "0"], "--etcd-timeout must be from 0.1 to 600 seconds, not 0.0"),
        (["--etcd-port", "0"], "not a port (1 to 65535) in"),
        (["--etcd-endpoints", "a:1,b:65536"], "not a port (1 to 65535) in a:1,b:65536"),
        (["--max-txn-ops", "5"], "--max-txn-ops must be at least 6"),
        (["--max-txn-ops", "1000000"], "--max-txn-ops must be from 6 to 100000, not 1000000"),
        (["--max-prune", "-1"], "--max-prune must be 0 or more"),
        (["--interval", "30"], "--interval only applies with --watch; add --watch or leave it out"),
        (["--dry-run", "--lease-ttl", "5"], "--lease-ttl only applies with --watch"),
        (["--interval", "30", "--lease-ttl", "5"], "--interval and --lease-ttl only apply with --watch"),
    ],
)
def test_settings_that_cannot_work_exit_2(
    cli: Cli, capabilities: Path, args: list[str], message: str
) -> None:
    result = cli("--capabilities", capabilities, *args)
    assert result.code == 2
    assert message in result.err


@pytest.mark.parametrize("args", [["--lease-ttl", "1e11"], ["--interval", "soon"], ["--etcd-port", "abc"]])
def test_numbers_that_are_not_numbers_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--watch", *args])
    assert exited.value.code == 2
    assert f"argument {args[0]}: invalid" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "2379.5"])
def test_a_bad_etcd_port_in_the_environment_exits_2_with_one_line(
    capabilities: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ETCD_PORT", value)
    assert main(["--capabilities", str(capabilities), "--list"]) == 2
    assert capsys.readouterr().err == (
        f"gitops-sync: error: ETCD_PORT={value!r} is not a port number (1 to 65535)\n"
    )


def test_conflicting_modes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--watch", "--list"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_log_level(
    cli: Cli, capabilities: Path, monkeypatch: pytest.MonkeyPatch, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    where = add_dangling_reference(capabilities)
    monkeypatch.setenv("LOG_LEVEL", "warning")
    quiet = cli("--capabilities", capabilities)
    assert quiet.code == 0
    # the one dangling reference is a warning; nothing at INFO is shown
    assert quiet.err.count("\n") == 1
    assert f" - WARNING - Manifest {where}: " in quiet.err

    monkeypatch.setenv("LOG_LEVEL", "debug")
    chatty = cli("--capabilities", capabilities)
    assert "DEBUG - Files unchanged and etcd untouched since the last sync" in chatty.err

    for alias in ("warn", "WARN", "Warning"):  # as other tools spell it
        monkeypatch.setenv("LOG_LEVEL", alias)
        again = cli("--capabilities", capabilities).err
        assert [line[19:] for line in again.splitlines()] == [line[19:] for line in quiet.err.splitlines()]
    for silent in ("error", "err", "critical", "fatal"):
        monkeypatch.setenv("LOG_LEVEL", silent)
        assert cli("--capabilities", capabilities).err == ""

    monkeypatch.setenv("LOG_LEVEL", "loud")
    wrong = cli("--capabilities", capabilities)
    assert wrong.code == 2
    assert wrong.err == (
        "gitops-sync: error: LOG_LEVEL='loud' is not one of debug, info, warning (warn), error (err), "
        "critical (fatal)\n"
    )


def test_examples_sync_cleanly(cli: Cli, etcd: etcd3.MultiEndpointEtcd3Client) -> None:
    result = cli("--capabilities", CAPABILITIES)
    count = len(EXAMPLE_IDS)
    assert result.code == 0
    assert f"Sync complete: {count} synced, 0 skipped, 0 errors" in result.err
    assert len(keys_under(etcd, PREFIX)) == 4 * count


def test_readme_documents_every_option_and_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    docs = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    # argparse keeps its list of options private; the usage line and the help's option list name
    # each of them (the usage has no --help, the list wraps within some descriptions).
    parser = build_parser()
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", parser.format_usage()))
    options |= set(re.findall(r"^  (?:-\w+, )*(--[a-z][a-z0-9-]*)", parser.format_help(), re.M))
    assert {"--help", "--etcd-endpoints", "--watch"} <= options
    missing = sorted(option for option in options if f"`{option}" not in readme + docs)
    assert not missing, f"neither README.md nor docs/ document {missing}"
    for code in range(4):
        assert re.search(rf"^\| *`?{code}`? *\|", readme, re.M), f"exit code {code} not in README"
    for command in ("make run", "make test", "make install"):
        assert command in readme


def test_the_seed_script_without_its_dependencies_says_how_to_run_it() -> None:
    """As with the system ``python3`` and no venv: one line, no traceback."""
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            str(ROOT / "scripts" / "gitops-sync-registry.py"),
            "--list",
        ],  # -S: no site-packages
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.fullmatch(
        r"gitops-sync: \S+ is not installed for \S+: run `make install`, then "
        r"`\.venv/bin/python scripts/gitops-sync-registry\.py \.\.\.` \(or activate \.venv\)\n",
        result.stderr,
    ), result.stderr
