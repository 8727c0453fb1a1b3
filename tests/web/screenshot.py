"""Take the README's screenshot of the web view: ``.venv/bin/python tests/web/screenshot.py``.

By default the page is served by the test stand-in with the 48 chora-base manifests (loaded by the
service's own loader) and a few problems; ``--url`` photographs a running service instead, e.g.
``--url http://127.0.0.1:8080/``. ``--select ID`` opens that capability's detail panel first.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from gitops_sync.testing import wait_for

if not __package__:  # run as a script: find `web.*` where pytest finds it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Browser, ViewportSize, sync_playwright

from gitops_sync.core.loading import load_manifest
from web.browsing import launch, painted
from web.fake_registry import FakeRegistry, Json, satisfies, serving

ROOT = Path(__file__).resolve().parents[2]
CHORA_BASE = Path(
    os.environ.get("CHORA_BASE_CORPUS", ROOT.parent / "shared" / "fixtures" / "chora-base" / "capabilities")
)
"""The 48 real manifests, where they are checked out beside the repository (the default corpus)."""
SAMPLES = next(
    (path for path in (ROOT / "capabilities", ROOT / "examples" / "capabilities") if path.is_dir()),
    ROOT / "capabilities",
)
"""The example manifests the project ships, used when the real corpus is not there."""
DEFAULT_SELECTION = "chora.awareness.sap_adoption_verification"
SIZE: ViewportSize = {"width": 1440, "height": 900}


def registry_from(directory: Path) -> FakeRegistry:
    """A FakeRegistry holding every manifest in ``directory``, each with the state the page shows."""
    items: dict[str, Json] = {}
    for file in sorted(directory.glob("*.yaml")):
        manifest = load_manifest(file.name, file.read_bytes())
        items[manifest.id] = {
            "id": manifest.id,
            "type": manifest.type,
            "version": manifest.version,
            "metadata": dict(manifest.metadata),
            "dependencies": [
                {"capability": d.capability, "relationship": d.relationship, "version": d.version}
                for d in manifest.dependencies
            ],
        }
    problems = []
    for item in items.values():
        unmet = [
            dependency
            for dependency in item["dependencies"]
            if satisfies(items.get(dependency["capability"]), dependency["version"]) is not True
        ]
        item["state"] = "warning" if unmet else "ok"
        problems += [
            {
                "file": f"capabilities/{item['id']}.yaml",
                "line": None,
                "severity": "warning",
                "message": f"requires {d['capability']} {d['version']}, which the registry does not satisfy",
            }
            for d in unmet
        ]
    return FakeRegistry(items.values(), problems)


@contextmanager
def stand_in(directory: Path) -> Iterator[str]:
    with serving(registry_from(directory)) as url:
        yield url


def take(url: str, out: Path, select: str | None, browser: Browser) -> None:
    """Open ``url`` in ``browser``, wait for the table and the graph, and save a PNG at ``out``."""
    context = browser.new_context(viewport=SIZE, device_scale_factor=1)
    try:
        page = context.new_page()
        page.goto(url + (f"#{select}" if select else ""))
        page.locator("#capabilities tbody tr.row").first.wait_for()
        # A selector, not a JavaScript predicate: the page's CSP (script-src 'self') forbids eval.
        page.locator("#graph[data-nodes]:not([data-nodes='']):not([data-nodes='0'])").wait_for()
        if select:
            page.locator("#detail .edges").first.wait_for()
        wait_for(lambda: painted(page) > 1_000, timeout=10)
        page.wait_for_timeout(300)  # and settled: no frame half-drawn
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running service's web view (default: the stand-in)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "web-view.png")
    parser.add_argument("--select", default=DEFAULT_SELECTION, help="capability to open ('' for none)")
    parser.add_argument("--capabilities", type=Path, default=CHORA_BASE if CHORA_BASE.is_dir() else SAMPLES)
    options = parser.parse_args(argv)
    serving = nullcontext(options.url) if options.url else stand_in(options.capabilities)
    with serving as url, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            take(url, options.out, options.select or None, browser)
        finally:
            browser.close()
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
