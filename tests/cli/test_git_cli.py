"""The Git source's options as the command line takes them, and the image that runs them."""

from __future__ import annotations

import re
from pathlib import Path

from gitops_sync.cli import build_parser, settings_from
from support import ROOT, Cli


def test_git_options_need_a_git_url(cli: Cli, tmp_path: Path) -> None:
    result = cli("--capabilities", tmp_path, "--git-ref", "main")

    assert result.code == 2
    assert "--git-ref need(s) --git-url" in result.err


def test_a_git_url_replaces_the_default_capabilities_directory(tmp_path: Path) -> None:
    options = build_parser().parse_args(
        ["--git-url", "https://git.example.com/r.git", "--git-cache", str(tmp_path)]
    )

    git = settings_from(options).git

    assert git is not None
    assert git.path == "capabilities"
    assert git.ref is None
    assert git.cache == tmp_path


def test_a_missing_token_file_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("--git-url", "https://git.example.com/r.git", "--git-token-file", tmp_path / "nope")

    assert result.code == 2
    assert "--git-token-file" in result.err
    assert "is not a readable file" in result.err


def test_the_image_has_git_and_ssh_at_run_time() -> None:
    runtime = (ROOT / "Dockerfile").read_text().rpartition("\nFROM ")[2]
    install = re.search(r"apt-get install[^\n]*", runtime)
    assert install is not None
    assert {"git", "openssh-client", "--no-install-recommends"} <= set(install.group(0).split())
