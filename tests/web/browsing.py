"""Driving Debian's Chromium for the web-view tests and the screenshot helper (no browser downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path(os.environ.get("GITOPS_SYNC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI containers, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Playwright) -> Browser:
    """Chromium at CHROMIUM with the project's flags; fails saying how to install it when it is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (or set GITOPS_SYNC_CHROMIUM)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)


_PAINTED = """() => [...document.querySelectorAll("#graph canvas")].reduce((sum, canvas) => {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted += 1;
    return sum + painted;
}, 0)"""


def painted(page: Page) -> int:
    """How many pixels of the graph's canvases are painted (not transparent)."""
    return int(page.evaluate(_PAINTED))
