"""The command line as users type it: the seed's script, exit codes, logging, and the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import etcd3
import pytest

from gitops_sync.cli import build_parser, main
from gitops_sync.testing import EtcdProcess, free_port
from support import CHORA_BASE, EXAMPLES, PREFIX, ROOT, Cli, keys_under


def test_the_seed_commands_work_verbatim(
    etcd_server: EtcdProcess, tmp_path: Path, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    shutil.copytree(CHORA_BASE, tmp_path / "capabilities")
    environment = {**os.environ, "ETCD_HOST": etcd_server.host, "ETCD_PORT": str(etcd_server.client_port)}

    def seed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "gitops-sync-registry.py"), *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    dry = seed("--capabilities", "capabilities/", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Plan: 48 to create, 0 to update, 0 to delete, 0 unchanged, 0 invalid" in dry.stdout
    assert keys_under(etcd, PREFIX) == {}

    once = seed("--capabilities", "capabilities/")
    assert once.returncode == 0, once.stderr
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - gitops-sync - INFO - "
    assert re.search(
        line + f"Connected to etcd at {etcd_server.host}:{etcd_server.client_port}$", once.stderr, re.M
    )
    assert re.search(line + r"Found 48 capability manifest\(s\)$", once.stderr, re.M)
    assert re.search(line + r"Synced: chora\.devex\.registry \(service\)$", once.stderr, re.M)
    assert re.search(line + "Sync complete: 48 synced, 0 skipped, 0 errors$", once.stderr, re.M)

    listed = seed("--list")
    assert listed.returncode == 0
    assert listed.stdout.startswith(
        "Found 48 capability/ies in etcd:\n\n  - chora.awareness.agent_awareness\n"
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
        (["--prefix", "/chora/capabilities"], "--prefix '/chora/capabilities' must end with '/'"),
        (["--sync-prefix", "/chora/capabilities/sync/"], "must not overlap"),
        (["--interval", "0"], "--interval must be more than 0 seconds"),
        (["--max-txn-ops", "5"], "--max-txn-ops must be at least 6"),
    ],
)
def test_settings_that_cannot_work_exit_2(
    cli: Cli, capabilities: Path, args: list[str], message: str
) -> None:
    result = cli("--capabilities", capabilities, *args)
    assert result.code == 2
    assert message in result.err


def test_conflicting_modes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--watch", "--list"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_log_level(
    cli: Cli, capabilities: Path, monkeypatch: pytest.MonkeyPatch, etcd: etcd3.MultiEndpointEtcd3Client
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    quiet = cli("--capabilities", capabilities)
    assert quiet.code == 0
    # the corpus's one dangling reference is a warning; nothing at INFO is shown
    assert quiet.err.count("\n") == 1
    assert " - WARNING - Manifest chora.awareness.sap_adoption_verification.yaml:56: " in quiet.err

    monkeypatch.setenv("LOG_LEVEL", "debug")
    chatty = cli("--capabilities", capabilities)
    assert "DEBUG - Files unchanged and etcd untouched since the last sync" in chatty.err

    monkeypatch.setenv("LOG_LEVEL", "loud")
    wrong = cli("--capabilities", capabilities)
    assert wrong.code == 2
    assert "LOG_LEVEL='loud' is not one of debug, info, warning, error" in wrong.err


def test_examples_sync_cleanly(cli: Cli, etcd: etcd3.MultiEndpointEtcd3Client) -> None:
    result = cli("--capabilities", EXAMPLES)
    count = len(list(EXAMPLES.glob("*.yaml")))
    assert result.code == 0
    assert f"Sync complete: {count} synced, 0 skipped, 0 errors" in result.err
    assert len(keys_under(etcd, PREFIX)) == 4 * count


def test_readme_documents_every_option_and_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    docs = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    options = {
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    missing = sorted(option for option in options if f"`{option}" not in readme + docs)
    assert not missing, f"neither README.md nor docs/ document {missing}"
    for code in range(4):
        assert re.search(rf"^\| *`?{code}`? *\|", readme, re.M), f"exit code {code} not in README"
    for command in ("make run", "make test", "make install"):
        assert command in readme
