"""A real headless Chromium (Debian's ``chromium``) for the web-view tests, driven through Playwright.

The browser is started once per session and closed at its end; each test gets a fresh page in a fresh
context. Playwright's own browser downloads are never used: ``scripts/install-browser.sh`` installs the
distribution's package.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from web.browsing import launch


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page at 1280x800 that fails the test on any error the page's scripts throw."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if _is_error(message.type, message.text) else None,
    )
    yield page
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def _is_error(kind: str, text: str) -> bool:
    """An error the page's own code logged; a 404 answer the page handles logs one too, and is not."""
    return kind == "error" and not text.startswith("Failed to load resource")
