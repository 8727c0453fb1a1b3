"""``scripts/install-browser.sh``, which ``make test`` runs first: idempotent, and clear when it cannot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support import ROOT
from web.browsing import CHROMIUM

SCRIPT = ROOT / "scripts" / "install-browser.sh"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_with_the_browser_there_it_does_nothing_and_says_so() -> None:
    result = run({**os.environ, "GITOPS_SYNC_CHROMIUM": str(CHROMIUM)})

    assert result.returncode == 0, result.stderr
    assert f"{CHROMIUM} is already installed" in result.stdout


def test_without_the_browser_or_a_way_to_install_it_it_fails_saying_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "chromium"

    result = run({"PATH": str(tmp_path), "GITOPS_SYNC_CHROMIUM": str(missing)})

    assert result.returncode == 1
    assert f"{missing} is missing and this machine has no apt-get" in result.stderr
    assert "apt-get install chromium" in result.stderr
    assert not missing.exists()
