"""Exit codes: one table decides them in every mode, ``--help`` prints it, and the process exits with
each code where the README says it does (a real ``gitops-sync`` process, a real etcd)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest

from gitops_sync import errors
from gitops_sync.errors import (
    ConfigurationError,
    GitError,
    GitOpsSyncError,
    HookRejected,
    ManifestError,
    SourceChanged,
    SourceUnavailable,
    StoreAccessDenied,
    StoreConflict,
    StoreError,
    StoreUnavailable,
    UnsupportedUpload,
    UploadError,
    UploadTooLarge,
)
from gitops_sync.exits import ERRORS, MEANINGS, ExitCode, ended_by, exit_code_for
from gitops_sync.testing import EtcdProcess, free_port
from support import CAPABILITIES, PREFIX, etcdctl, keys_under

DOCUMENTED: tuple[tuple[BaseException, ExitCode], ...] = (
    (ConfigurationError("--prefix 'x' must start and end with '/'"), ExitCode.USAGE),
    (SourceUnavailable("cannot fetch; etcd keeps commit 0123abc"), ExitCode.USAGE),
    (StoreUnavailable("etcd at 127.0.0.1:2379 is unreachable"), ExitCode.UNREACHABLE),
    (StoreAccessDenied("etcd refused the credentials of user 'u'"), ExitCode.UNREACHABLE),
    (StoreConflict("the compare failed"), ExitCode.INVALID),
    (StoreError("etcd refused the write"), ExitCode.INVALID),
    (ManifestError("a.yaml", "is not valid YAML", 3), ExitCode.INVALID),
    (SourceChanged("a.yaml", "changed while it was read"), ExitCode.INVALID),
    (GitError("fatal: repository not found"), ExitCode.INVALID),
    (HookRejected(401, "not signed with the secret"), ExitCode.INVALID),
    (UploadError("truncated archive"), ExitCode.INVALID),
    (UploadTooLarge("over 64 MiB"), ExitCode.INVALID),
    (UnsupportedUpload("text/plain"), ExitCode.INVALID),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    (BrokenPipeError(32, "Broken pipe"), ExitCode.OK),
)
"""Every error class of the tree, and the two the process meets from outside, with the code the
README and errors.py's docstring give them."""


def gitops_sync(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``gitops-sync ARGS`` in its own process, without the ETCD_* and LOG_* of whoever runs the tests."""
    return subprocess.run(
        [sys.executable, "-m", "gitops_sync", *args],
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    own = {name: value for name, value in os.environ.items() if not name.startswith(("ETCD_", "LOG_"))}
    return {**own, **(extra or {})}


def errors_logged(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " - ERROR - " in line]


@pytest.mark.parametrize(("error", "code"), DOCUMENTED, ids=[type(error).__name__ for error, _ in DOCUMENTED])
def test_each_error_maps_to_its_documented_code(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_every_error_of_the_tree_is_documented_here() -> None:
    """A new class in errors.py needs a decision on its exit code (and a row in DOCUMENTED); an
    adapter's private errors are translated before they leave it."""
    tree: list[type[BaseException]] = [GitOpsSyncError]
    for cls in tree:
        tree.extend(cls.__subclasses__())
    public = {cls for cls in tree if cls.__module__ == errors.__name__} - {GitOpsSyncError}
    assert public <= {type(error) for error, _ in DOCUMENTED}


def test_errors_docstring_gives_the_codes_the_table_gives() -> None:
    """errors.py draws the tree with "(exit code N)" beside some classes: the table agrees."""
    drawn = re.findall(r"(\w+) .*\(exit code (\d)\)", errors.__doc__ or "")
    assert drawn, "errors.py's docstring names no exit code"
    instances = {type(error).__name__: error for error, _ in DOCUMENTED}
    for name, code in drawn:
        assert exit_code_for(instances[name]) == int(code), name


def test_an_error_no_row_names_is_raised_again_with_its_traceback() -> None:
    bug = ValueError("a bug")
    assert exit_code_for(bug) is None
    with pytest.raises(ValueError, match="a bug") as raised:
        ended_by(bug)
    assert raised.value is bug


def test_every_code_has_one_meaning() -> None:
    assert set(MEANINGS) == set(ExitCode)
    assert {code for _, code in ERRORS} <= set(MEANINGS)


def test_help_prints_every_exit_code_with_its_meaning() -> None:
    shown = gitops_sync("--help")
    assert shown.returncode == ExitCode.OK
    section = shown.stdout.split("\nexit codes:\n", 1)[1]
    listed = dict(re.findall(r"^  (\d+) +(\S.*)$", section, re.M))
    assert listed == {str(code.value): meaning for code, meaning in MEANINGS.items()}


def test_the_readme_lists_exactly_the_codes_of_the_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    assert [int(code) for code in re.findall(r"^\| `(\d+)` \|", section, re.M)] == sorted(ExitCode)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "capabilities"
    shutil.copytree(CAPABILITIES, directory)
    return directory


def test_0_when_synced_and_1_when_a_manifest_is_invalid(
    etcd_server: EtcdProcess, etcd: etcd3.MultiEndpointEtcd3Client, manifests: Path
) -> None:
    at = ("--capabilities", str(manifests), "--etcd-endpoints", etcd_server.endpoint)
    synced = gitops_sync(*at)
    assert synced.returncode == ExitCode.OK, synced.stderr
    assert keys_under(etcd, PREFIX)

    (manifests / "broken.yaml").write_text("metadata: [unclosed\n")
    for mode in ([], ["--dry-run"], ["--status"]):
        invalid = gitops_sync(*at, *mode)
        assert invalid.returncode == ExitCode.INVALID, invalid.stderr
        assert "broken.yaml:" in invalid.stderr + invalid.stdout
    checked = gitops_sync("--validate", str(manifests))
    assert checked.returncode == ExitCode.INVALID
    assert re.search(r"broken\.yaml:\d+: error: ", checked.stdout)


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--etcd-timeout", "nan"], {}, "--etcd-timeout must be from 0.1 to 600 seconds, not nan"),
        (["--list", "--prefix", "x"], {}, "--prefix 'x' must start and end with '/'"),
        (["--status"], {"ETCD_PORT": "abc"}, "ETCD_PORT='abc' is not a port number (1 to 65535)"),
        (["--print-schema"], {"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not one of"),
        (["--watch", "--list"], {}, "argument --list: not allowed with argument --watch"),
        (["--http", "127.0.0.1:8080"], {}, "--http serves a running service: it needs --watch"),
    ],
    ids=["nan", "prefix", "ETCD_PORT", "LOG_LEVEL", "argparse", "http-without-watch"],
)
def test_2_on_a_usage_or_configuration_error_in_one_line(
    manifests: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    refused = gitops_sync("--capabilities", str(manifests), *args, env=env)
    assert refused.returncode == ExitCode.USAGE
    assert said in refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("gitops-sync: error: ")
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("mode", [[], ["--dry-run"], ["--list"], ["--status"], ["--health-check"]])
def test_3_when_etcd_cannot_be_reached(manifests: Path, mode: list[str]) -> None:
    port = free_port()
    result = gitops_sync(
        "--capabilities",
        str(manifests),
        "--etcd-endpoints",
        f"127.0.0.1:{port}",
        "--etcd-timeout",
        "1",
        *mode,
    )
    assert result.returncode == ExitCode.UNREACHABLE
    [error] = errors_logged(result.stderr)
    assert f"etcd at 127.0.0.1:{port} is unreachable" in error
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def locked_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """etcd with authentication on and a user ``nobody`` (password ``pw``) who may read nothing."""
    with EtcdProcess(tmp_path_factory.mktemp("locked-etcd")) as server:
        etcdctl(server, "user", "add", "root:root-pw")
        etcdctl(server, "user", "grant-role", "root", "root")
        etcdctl(server, "user", "add", "nobody:pw")
        etcdctl(server, "auth", "enable")
        yield server


@pytest.mark.parametrize("mode", [["--watch"], []])
def test_3_when_etcd_denies_the_user_in_watch_mode_too(
    locked_etcd: EtcdProcess, manifests: Path, mode: list[str]
) -> None:
    """Watch mode retries an etcd that is away, but not one that refuses: the operator must act."""
    result = gitops_sync(
        "--capabilities",
        str(manifests),
        "--etcd-endpoints",
        locked_etcd.endpoint,
        "--user",
        "nobody",
        *mode,
        env={"ETCD_PASSWORD": "pw"},
    )
    assert result.returncode == ExitCode.UNREACHABLE
    [error] = errors_logged(result.stderr)
    assert f"etcd at {locked_etcd.endpoint} denied" in error
    assert "user 'nobody' needs readwrite" in error
    assert "Traceback" not in result.stderr


def test_130_when_interrupted_while_waiting_on_etcd(manifests: Path) -> None:
    """Ctrl+C during a one-shot run: the shell's code for SIGINT, one line, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then never answers
        silent.settimeout(60)
        port = silent.getsockname()[1]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gitops_sync",
                "--list",
                "--etcd-endpoints",
                f"127.0.0.1:{port}",
                "--etcd-timeout",
                "60",
            ],
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            connection, _ = silent.accept()  # the run is waiting on etcd now
            with connection:
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert err.splitlines()[-1].endswith(" - INFO - Interrupted")
    assert "Traceback" not in err
    assert out == ""


def test_0_when_the_reader_of_the_output_goes_away() -> None:
    """``gitops-sync --print-schema | head -c 0``: the schema is larger than a pipe's buffer."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "gitops_sync", "--print-schema"],
            env=_environment(),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == ExitCode.OK
    assert result.stderr == ""
