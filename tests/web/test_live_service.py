"""The web view against the real service: ``gitops-sync --watch --http`` on a real etcd, in Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from gitops_sync.testing import EtcdProcess, free_port, wait_for
from support import CAPABILITIES, services, watch_args

EDITED = "chora.platform.event_bus"


def answering(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/capabilities", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_an_edit_in_git_appears_on_the_open_page_without_reload(
    page: Page, tmp_path: Path, etcd_server: EtcdProcess
) -> None:
    directory = tmp_path / "capabilities"
    directory.mkdir()
    for path in CAPABILITIES.glob("*.yaml"):
        (directory / path.name).write_text(path.read_text())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with services(tmp_path) as start:
        service = start(
            *watch_args(directory, etcd_server, "--interval", "3600", "--http", f"127.0.0.1:{port}")
        )
        service.wait_for_log("Sync cycle complete", timeout=20)
        wait_for(lambda: answering(base), timeout=20)
        page.goto(base + "/")
        version = page.locator(f'#capabilities tbody tr.row[data-id="{EDITED}"] .col-version')
        version.wait_for(timeout=10_000)
        assert version.inner_text() == "0.6.2"
        rows = page.locator("#capabilities tbody tr.row").count()
        assert rows == len(list(CAPABILITIES.glob("*.yaml")))
        page.evaluate("window.__notReloaded = true")

        path = directory / f"{EDITED}.yaml"
        path.write_text(path.read_text().replace('dc_hasVersion: "0.6.2"', 'dc_hasVersion: "0.7.1"'))
        edited = time.monotonic()
        # --interval 3600 and no reload: only the event stream can bring it (how soon is bench's).
        expect(version).to_have_text("0.7.1", timeout=20_000)
        took = time.monotonic() - edited
        assert page.evaluate("window.__notReloaded") is True  # the same page, updated in place
        print(f"edit in Git on the open page after {took * 1000:.0f} ms")
