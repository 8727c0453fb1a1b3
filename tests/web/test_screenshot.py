"""The README's screenshot helper keeps working: it photographs the page as a PNG of the documented size."""

from __future__ import annotations

import struct
from pathlib import Path

from playwright.sync_api import Browser

from web.fake_registry import serving
from web.screenshot import SAMPLES, SIZE, registry_from, take


def test_the_helper_writes_a_png_of_the_page_with_a_capability_open(browser: Browser, tmp_path: Path) -> None:
    registry = registry_from(SAMPLES)
    out = tmp_path / "docs" / "web-view.png"

    with serving(registry) as url:
        take(url, out, "chora.devex.service_template", browser)

    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (SIZE["width"], SIZE["height"])
    assert len(png) > 50_000  # a drawn page, not a blank one


def test_the_stand_in_holds_every_example_with_its_dependencies() -> None:
    registry = registry_from(SAMPLES)

    _, answer = registry.answer("capabilities", {"limit": ["1000"]})
    ids = [item["id"] for item in answer["items"]]
    assert ids == sorted(path.stem for path in SAMPLES.glob("*.yaml"))
    template = next(item for item in answer["items"] if item["id"] == "chora.devex.service_template")
    assert {
        "capability": "chora.platform.conventions",
        "relationship": "prerequisite",
        "version": "^2.3.0",
    } in template["dependencies"]
