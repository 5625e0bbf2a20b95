"""How fast the app answers in a real browser (Debian Chromium driven by Playwright).

For each page, with the default design, in new browser tabs (each a new Streamlit session; the
browser's cache is warm, as for a returning user) on one server:
* first_render_s — from navigation to the page's headline content being visible
  (Design: the kernel-count metric; Estimate: the estimated accuracy);
* edit_redraw_s — from committing a sidebar edit (metasurface width 4 ↔ 8 mm) to the page
  showing the new design (kernel count 8 ↔ 16 on either page).
Medians over --repeats sessions, after one first visit (the server's first run imports the
libraries and fits the surrogate, and the browser's cache is empty; reported separately).

    python bench/app_latency.py [--repeats 5]

Writes bench/results/app_latency.json (`rows` of {page, first_render_s, edit_redraw_s}).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from onn_core.serve import CHROMIUM, CHROMIUM_ARGS, start_app_server, stop_app_server  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "app_latency.json"
# page → (URL path, what shows its headline, and how the new design shows after an edit)
PAGES = {
    "Design": ("", "Kernels", lambda page, kernels: _metric(page, "Kernels"), lambda kernels: str(kernels)),
    "Estimate": ("estimate", "Estimated accuracy", lambda page, kernels: page.get_by_text(f"kernels {kernels}."),
                 None),
}  # fmt: skip


def _metric(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def _session(context, url: str, name: str) -> tuple[float, float]:
    path, headline, shows, text = PAGES[name]
    page = context.new_page()  # a new tab: a new Streamlit session (the browser's cache is shared)
    started = time.perf_counter()
    page.goto(f"{url}/{path}")
    expect(_metric(page, headline)).not_to_be_empty(timeout=120_000)
    first_render = time.perf_counter() - started
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=60_000)
    box = page.get_by_role("spinbutton", name="Metasurface width (mm)", exact=True)
    box.fill("8")
    started = time.perf_counter()
    box.press("Enter")
    target = shows(page, 16)
    if text:
        expect(target).to_have_text(text(16), timeout=60_000)
    else:
        expect(target).to_be_visible(timeout=60_000)
    edit_redraw = time.perf_counter() - started
    page.close()
    return first_render, edit_redraw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        process, url = start_app_server({"ONN_STUDIO_HOME": home})
        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                # The first visit: server imports, surrogate fit, and an empty browser cache.
                cold = {name: _session(context, url, name) for name in PAGES}
                timings = {name: [_session(context, url, name) for _ in range(args.repeats)] for name in PAGES}
                browser.close()
        finally:
            stop_app_server(process)
    rows = [
        {"page": name, "first_render_s": statistics.median(t[0] for t in runs),
         "edit_redraw_s": statistics.median(t[1] for t in runs), "first_render_max_s": max(t[0] for t in runs),
         "edit_redraw_max_s": max(t[1] for t in runs), "cold_first_render_s": cold[name][0]}
        for name, runs in timings.items()
    ]  # fmt: skip
    payload = {
        "command": "python bench/app_latency.py" + (f" --repeats {args.repeats}" if args.repeats != 5 else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": "CPU, 2 cores; server and Chromium on the same machine",
        "repeats": args.repeats,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
