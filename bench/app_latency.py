"""How fast the app answers in a real browser (Debian Chromium driven by Playwright).

Every page, on a fresh install (the shipped example run), with the default design; the server
and Chromium share this machine. A page counts as rendered when its title is shown, its script
has finished, nothing on it is stale or a loading skeleton, and every chart on it has drawn
(Plotly's SVG, Vega's canvas): the whole first screen, not only a headline number.

* first_render_s — a page's first render in a session: from clicking it in the sidebar's
  navigation (the app already open in the tab) to the page rendered.
* new_tab_render_s — from opening the page's URL in a new tab (a new Streamlit session; the
  browser's cache is warm, as for a returning user) to the page rendered.
* edit_redraw_s — from committing a sidebar edit (metasurface width 4 ↔ 8 mm) to the page
  rendered again (Design and Estimate must show the new kernel count; the run pages show the
  run's own design and only rerun).

The baseline, measured in the same process on its own server: the smallest app with the same
shell (wide layout, navigation) and one Plotly chart. In a new tab Chromium evaluates Plotly's
4.7 MB bundle before any chart draws (about 1 s on this machine), so new_tab_render_s is read
against it (``new_tab_over_baseline``).

    python bench/app_latency.py [--repeats 5]

Writes bench/results/app_latency.json (`rows` of {page, first_render_s, edit_redraw_s, …}).
Medians over --repeats sessions, after one first visit (server imports, surrogate fit, empty
browser cache), which is reported on its own.
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

from playwright.sync_api import sync_playwright  # noqa: E402

from studio.serve import CHROMIUM, CHROMIUM_ARGS, start_app_server, stop_app_server  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "app_latency.json"
BASELINE_APP = ROOT / "bench" / "latency_baseline_app.py"
# page → (URL path, title shown, text that shows the edited design (8 mm → 16 kernels), or None)
PAGES = {
    "Design": ("", "Frontend design", "16"),
    "Data": ("data", "Your data", None),
    "Estimate": ("estimate", "Accuracy before training", "kernels 16."),
    "Search": ("search", "Design search", None),
    "Train": ("train", "Train a student", None),
    "Inspect": ("inspect", "Inspect a run", None),
    "Fabricate": ("fabricate", "Fabrication", None),
    "Export": ("export", "Export", None),
}
TIMEOUT_MS = 120_000

# Counts the script runs a tab has started (the state attribute turning to "running"), so a
# wait can ask for a run that began after an action, however quickly it ends.
COUNT_RUNS = """
window.__scriptRuns = 0;
new MutationObserver(() => {
  const marker = document.querySelector('[data-test-script-state]');
  const state = marker && marker.getAttribute('data-test-script-state');
  if (state === 'running' && window.__lastState !== 'running') window.__scriptRuns += 1;
  window.__lastState = state;
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""
RENDERED = """([title, text, runs]) => {
  const marker = document.querySelector('[data-test-script-state]');
  if (!marker || marker.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (window.__scriptRuns < runs) return false;
  const main = document.querySelector('[data-testid="stMain"]');
  const heading = main && main.querySelector('h1');
  if (!heading || !heading.textContent.includes(title)) return false;
  if (main.querySelector('[data-stale="true"], [data-testid="stSkeleton"]')) return false;
  for (const chart of main.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (!chart.querySelector('.main-svg')) return false;
  for (const chart of main.querySelectorAll('[data-testid="stVegaLiteChart"]'))
    if (!chart.querySelector('canvas, svg')) return false;
  return !text || main.innerText.includes(text);
}"""


def _wait_rendered(page, title: str, text: str | None = None, runs: int = 1) -> None:
    page.wait_for_function(RENDERED, arg=[title, text, runs], polling="raf", timeout=TIMEOUT_MS)


def _new_tab(context, url: str, path: str, title: str) -> tuple[object, float]:
    page = context.new_page()  # a new tab: a new Streamlit session (the browser's cache is shared)
    started = time.perf_counter()
    page.goto(f"{url}/{path}")
    _wait_rendered(page, title)
    return page, time.perf_counter() - started


def _switch(page, name: str) -> float:
    """Click ``name`` in the sidebar's navigation; seconds until that page is rendered."""
    runs = page.evaluate("window.__scriptRuns")
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True)
    started = time.perf_counter()
    link.click()
    _wait_rendered(page, PAGES[name][1], runs=runs + 1)
    return time.perf_counter() - started


def _edit(page, name: str, width_mm: str, kernels: str) -> float:
    """Commit a new metasurface width; seconds until the page is rendered again."""
    _, title, shows = PAGES[name]
    box = page.get_by_role("spinbutton", name="Metasurface width (mm)", exact=True)
    box.fill(width_mm)
    runs = page.evaluate("window.__scriptRuns")
    started = time.perf_counter()
    box.press("Enter")
    _wait_rendered(page, title, shows.replace("16", kernels) if shows else None, runs=runs + 1)
    return time.perf_counter() - started


def _session(context, url: str) -> dict[str, dict[str, float]]:
    """One session per page for new-tab renders and edits; one tab that visits every page in turn."""
    timings: dict[str, dict[str, float]] = {}
    for name, (path, title, _) in PAGES.items():
        page, new_tab = _new_tab(context, url, path, title)
        forth = _edit(page, name, "8", "16")
        back = _edit(page, name, "4", "8")
        timings[name] = {"new_tab": new_tab, "edit": (forth + back) / 2}
        page.close()
    page, _ = _new_tab(context, url, "", PAGES["Design"][1])
    for name in [*list(PAGES)[1:], "Design"]:  # Design last: a page's first render in this session
        timings[name]["switch"] = _switch(page, name)
    page.close()
    return timings


def _baseline(context, url: str) -> float:
    page, seconds = _new_tab(context, url, "", "Baseline")
    page.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, sync_playwright() as driver:
        app, url = start_app_server({"ONN_STUDIO_HOME": home})
        baseline_app, baseline_url = start_app_server({"ONN_STUDIO_HOME": home}, script=BASELINE_APP)
        try:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_init_script(COUNT_RUNS)
            # The first visit: server imports, the surrogate's fit, the run's load, an empty browser cache.
            cold_baseline, cold = _baseline(context, baseline_url), _session(context, url)
            runs, baselines = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same load on the machine
                baselines.append(_baseline(context, baseline_url))
                runs.append(_session(context, url))
            browser.close()
        finally:
            stop_app_server(app)
            stop_app_server(baseline_app)
    baseline = statistics.median(baselines)
    rows = []
    for name in PAGES:
        switch, new_tab, edit = ([run[name][key] for run in runs] for key in ("switch", "new_tab", "edit"))
        rows.append({
            "page": name, "first_render_s": statistics.median(switch), "edit_redraw_s": statistics.median(edit),
            "new_tab_render_s": statistics.median(new_tab),
            "new_tab_over_baseline": statistics.median(new_tab) / baseline,
            "first_render_max_s": max(switch), "edit_redraw_max_s": max(edit), "new_tab_render_max_s": max(new_tab),
            "cold_first_render_s": cold[name]["switch"], "cold_new_tab_render_s": cold[name]["new_tab"],
        })  # fmt: skip
    payload = {
        "command": "python bench/app_latency.py" + (f" --repeats {args.repeats}" if args.repeats != 5 else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": "CPU, 2 cores; server and Chromium on the same machine",
        "repeats": args.repeats,
        "baseline_new_tab_render_s": baseline,
        "baseline_new_tab_render_max_s": max(baselines),
        "baseline_cold_new_tab_render_s": cold_baseline,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
