"""Screenshots of the app for the README (docs/*.png), in a real browser on a fresh studio home.

Usage: python bench/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from studio.serve import CHROMIUM, CHROMIUM_ARGS, start_app_server, stop_app_server  # noqa: E402

SHOTS = {  # page link → (heading, file)
    "Inspect": ("Inspect a run", "app-inspect.png"),
    "Fabricate": ("Fabrication", "app-fabricate.png"),
    "Design": ("Frontend design", "app-design.png"),
}


def main() -> int:
    with tempfile.TemporaryDirectory() as home:
        process, url = start_app_server({"ONN_STUDIO_HOME": home})
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url)
                expect(page.get_by_role("heading", name="Frontend design", level=1)).to_be_visible(timeout=60_000)
                for link, (heading, name) in SHOTS.items():
                    page.get_by_role("link", name=link).click()
                    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible(timeout=60_000)
                    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=90_000)
                    page.wait_for_timeout(1500)  # let Plotly finish drawing
                    page.screenshot(path=str(ROOT / "docs" / name))
                    print("wrote", ROOT / "docs" / name)
                browser.close()
        finally:
            stop_app_server(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
