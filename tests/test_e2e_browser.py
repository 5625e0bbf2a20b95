"""End to end in a real browser: the Streamlit server, Debian's headless Chromium, Playwright.

The server runs as ``make run`` runs it, with a private studio home. Screenshots land in the
test's output folder (``E2E_SCREENSHOTS`` if set, else pytest's tmp_path). Chromium comes from
Debian (``/usr/bin/chromium``; ``.ci/run`` installs it); Playwright never downloads a browser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from studio.serve import CHROMIUM, CHROMIUM_ARGS, start_app_server, stop_app_server

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.txt")
# A busy 2-core machine can take many seconds per rerun: no expectation below waits less than this.
playwright.expect.set_options(timeout=60_000)
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("studio-home")
    process, url = start_app_server({"ONN_STUDIO_HOME": str(home), "ONN_JOB_IDLE_EXIT_S": "5"})
    yield url
    stop_app_server(process)


@pytest.fixture
def page(server):
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        browser.close()


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ.get("E2E_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _metric(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def _idle(page) -> None:
    """Wait until the script run has finished (Streamlit shows a status widget while running)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-test-script-state="notRunning"]', timeout=90_000)


def _set_number(page, label: str, value: str) -> None:
    _idle(page)
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.fill(value)
    box.press("Enter")


def _expand(page, title: str) -> None:
    """Open a sidebar expander by its title, once the script run that drew it has finished."""
    _idle(page)
    page.get_by_test_id("stSidebar").locator("summary").filter(has_text=title).click()


def _train_and_wait(page):
    """Submit the Train page's form; returns the link to the run once that job has finished (the
    job list shows links to earlier runs too, newest first)."""
    _idle(page)
    links = page.get_by_role("link", name="Inspect run")
    before = links.count()
    page.get_by_role("button", name="Train (background job)").click()
    playwright.expect(links).to_have_count(before + 1, timeout=240_000)
    return links.first


def _open(page, server) -> None:
    page.goto(server)
    playwright.expect(page.get_by_role("heading", name="Frontend design", level=1)).to_be_visible(timeout=60_000)
    _idle(page)


def test_a_link_to_a_page_works_as_a_fresh_servers_first_request(tmp_path):
    # Regression: before any session had run app.py, Streamlit ran a linked pages/ file on its
    # own (legacy multipage mode): no sidebar design, the raw file list as navigation, and every
    # later session the same.
    from onn_core.design import Design
    from onn_core.design_link import to_link

    process, url = start_app_server({"ONN_STUDIO_HOME": str(tmp_path / "home")})
    try:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
            for _ in range(2):  # the first request, then a later session
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/inspect?run=example&design={to_link(Design(metasurface_width=8e-3))}")
                heading = page.get_by_role("heading", name="Inspect a run", level=1)
                playwright.expect(heading).to_be_visible(timeout=60_000)
                _idle(page)
                navigation = page.get_by_test_id("stSidebarNav")
                playwright.expect(navigation.get_by_role("link", name="Fabricate")).to_be_visible()
                playwright.expect(navigation.get_by_role("link", name="app", exact=True)).to_have_count(0)
                width = page.get_by_role("spinbutton", name="Metasurface width (mm)", exact=True)
                playwright.expect(width).to_have_value("8")
                assert page.url.split("?")[0].endswith("/inspect") and "run=example" in page.url
                page.close()
            browser.close()
    finally:
        stop_app_server(process)


def test_a_broken_link_shows_a_message_keeps_the_url_and_no_traceback(server, page):
    import base64

    code = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=")  # a few thousand '[': once a crash
    page.goto(f"{server}/?design={code}")
    playwright.expect(page.get_by_role("heading", name="Frontend design", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    playwright.expect(page.get_by_text("The design in the link was not loaded")).to_be_visible()
    assert "Traceback" not in page.content() and f"design={code}" in page.url


def test_a_design_edit_in_the_browser_updates_layout_and_diagnostics(server, page, screenshots):
    expect = playwright.expect
    _open(page, server)
    expect(_metric(page, "Kernels")).to_have_text("8", timeout=60_000)
    expect(_metric(page, "F-number")).to_have_text("2.55")
    page.screenshot(path=str(screenshots / "design-default.png"), full_page=True)
    # The session's first edit. Regression: with the sidebar's widgets created before st.navigation,
    # it was dropped (every field came back at its minimum, later at its old value).
    _set_number(page, "Metasurface width (mm)", "8")
    expect(_metric(page, "Kernels")).to_have_text("16", timeout=60_000)
    expect(page.get_by_text("4 × 8 sub-optics of 0.94 mm → 16 signed kernels")).to_be_visible()
    _expand(page, "Sensor")
    _set_number(page, "Metasurface → sensor (mm)", "4.8")
    expect(_metric(page, "F-number")).to_have_text("5.11", timeout=60_000)
    page.screenshot(path=str(screenshots / "design-edited.png"), full_page=True)

    _set_number(page, "Kernel aperture k (mm)", "9")  # does not fit the 4 mm height
    expect(page.get_by_text("This design cannot be built.")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("does not fit a metasurface height").first).to_be_visible()
    page.screenshot(path=str(screenshots / "design-invalid.png"), full_page=True)

    _expand(page, "Save / load")  # reset brings every field back, in new widgets
    _idle(page)
    page.get_by_role("button", name="Reset to default").click()
    expect(_metric(page, "Kernels")).to_have_text("8", timeout=60_000)
    expect(page.get_by_role("spinbutton", name="Metasurface width (mm)", exact=True)).to_have_value("4")


def test_the_estimate_page_answers_in_the_browser(server, page, screenshots):
    expect = playwright.expect
    _open(page, server)
    _set_number(page, "Metasurface width (mm)", "8")
    expect(_metric(page, "Kernels")).to_have_text("16", timeout=60_000)
    page.get_by_role("link", name="Estimate").click()
    expect(page.get_by_role("heading", name="Accuracy before training", level=1)).to_be_visible(timeout=60_000)
    value = _metric(page, "Estimated accuracy")
    expect(value).to_contain_text("%", timeout=60_000)
    assert 85 < float(value.inner_text().rstrip(" %")) < 100
    expect(page.get_by_text("kernels 16.")).to_be_visible()  # the sidebar's design followed the page switch
    page.screenshot(path=str(screenshots / "estimate.png"), full_page=True)
    page.get_by_role("link", name="Design").click()
    expect(_metric(page, "Kernels")).to_have_text("16", timeout=60_000)


@pytest.mark.timeout(1200)  # about 4 minutes on a quiet machine; generous for a busy one
def test_train_fabricate_inspect_and_download_the_gds(server, page, screenshots, tmp_path):
    """The whole loop in the browser: a small design, a short training job on embedded data, its
    inverse design, Inspect, and the GDS downloaded and read back with gdstk."""
    import gdstk

    expect = playwright.expect
    _open(page, server)
    # A small design (8 kernels of 120 µm, 0.3 mm from the sensor): its inverse design takes a minute or
    # two (142 s beside two busy processes), not an hour.
    _set_number(page, "Metasurface height (mm)", "0.7")
    _set_number(page, "Metasurface width (mm)", "0.7")
    _set_number(page, "Kernel aperture k (mm)", "0.12")
    _expand(page, "Sensor")
    _set_number(page, "Metasurface → sensor (mm)", "0.3")
    expect(_metric(page, "Kernels")).to_have_text("8", timeout=60_000)

    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train a student", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Dataset").click()
    page.get_by_role("option", name="digits").click()
    _set_number(page, "Epochs", "1")
    _set_number(page, "Training images (0: all)", "300")
    # Distilling needs a teacher: one trained from this page is offered when it ends, without a reload.
    _idle(page)
    page.get_by_test_id("stRadio").filter(has_text="Method").get_by_text("ntkd", exact=True).click()
    _idle(page)
    expect(page.get_by_text("ntkd needs a trained teacher for digits").first).to_be_visible()
    url = page.url
    page.get_by_role("button", name=re.compile(r"Train a .+ teacher \(background job\)")).click()
    teacher = page.get_by_role("combobox", name="Teacher")
    expect(teacher).to_have_value(re.compile(r"^teacher job "), timeout=240_000)
    expect(page.get_by_role("button", name="Train (background job)")).to_be_enabled()
    assert page.url == url
    page.get_by_test_id("stRadio").filter(has_text="Method").get_by_text("e2e", exact=True).click()
    link = _train_and_wait(page)
    page.screenshot(path=str(screenshots / "train.png"), full_page=True)

    link.click()
    expect(page.get_by_role("heading", name="Inspect a run", level=1)).to_be_visible(timeout=60_000)
    expect(_metric(page, "Test accuracy")).to_contain_text("%", timeout=60_000)
    assert "run=" in page.url
    expect(page.get_by_text("design: 0.7 × 0.7 mm metasurface, 8 signed kernels")).to_be_visible()
    expect(page.get_by_text("The sidebar shows the same design.")).to_be_visible()
    page.screenshot(path=str(screenshots / "inspect.png"), full_page=True)

    page.get_by_role("link", name="Fabricate").click()
    expect(page.get_by_role("heading", name="Fabrication", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    page.get_by_role("button", name="Run inverse design (background job)").click()
    # Its progress is live (not the "queued" it was submitted as), then the page redraws with the metasurface.
    running = page.get_by_test_id("stProgress").filter(has_text=re.compile(r"Inverse design: (?!queued)"))
    expect(running.first).to_be_visible(timeout=120_000)
    expect(page.get_by_text("realised kernels correlate").first).to_be_visible(timeout=480_000)  # busy machines
    _idle(page)  # NTKD compensation (the default) offers the teacher trained on the Train page
    expect(teacher).to_have_value(re.compile(r"^teacher job "))
    expect(page.get_by_role("button", name="Compensate (background job)")).to_be_enabled()
    page.screenshot(path=str(screenshots / "fabricate.png"), full_page=True)

    page.get_by_role("link", name="Export").click()
    expect(page.get_by_role("heading", name="Export", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    page.get_by_role("button", name="Prepare GDS").click()
    button = page.get_by_role("button", name="Download metasurface.gds")
    expect(button).to_be_visible(timeout=120_000)
    with page.expect_download() as download:
        button.click()
    path = tmp_path / "downloaded.gds"
    download.value.save_as(str(path))
    page.screenshot(path=str(screenshots / "export.png"), full_page=True)
    library = gdstk.read_gds(str(path))
    names = {cell.name for cell in library.cells}
    assert sum(name.startswith("SUBOPTIC_K") for name in names) == 16
    assert {"SUBOPTIC_K000_PLUS", "SUBOPTIC_K007_MINUS", "METASURFACE"} <= names


@pytest.mark.timeout(600)
def test_upload_a_dataset_train_on_it_and_see_its_class_names(server, page, screenshots, tmp_path):
    """A designer's own data in the browser: a zip of class folders uploaded on the Data page, one
    epoch trained on it from the Train page, its class names on Inspect."""
    from tests.test_app import zipped_classes

    expect = playwright.expect
    archive = tmp_path / "parts.zip"
    archive.write_bytes(zipped_classes({"bolt": 14, "nut": 14, "washer": 14}))
    _open(page, server)
    page.get_by_role("link", name="Data").click()
    expect(page.get_by_role("heading", name="Your data", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    page.get_by_role("textbox", name="Name").fill("parts")
    page.get_by_test_id("stForm").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(archive))
    _idle(page)
    page.get_by_role("button", name="Add the dataset").click()
    expect(page.get_by_text("Added parts: 3 classes")).to_be_visible(timeout=120_000)
    expect(page.get_by_text("washer").first).to_be_visible()
    page.screenshot(path=str(screenshots / "data.png"), full_page=True)

    page.get_by_role("link", name="Train").click()
    expect(page.get_by_role("heading", name="Train a student", level=1)).to_be_visible(timeout=60_000)
    _idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Dataset").click()
    page.get_by_role("option", name="parts").click()
    _idle(page)
    page.get_by_role("radio", name="e2e").check()  # no teacher for new data: plain training
    _set_number(page, "Epochs", "1")
    _train_and_wait(page).click()
    expect(page.get_by_role("heading", name="Inspect a run", level=1)).to_be_visible(timeout=60_000)
    verdict = page.get_by_text("Predicted")
    expect(verdict.first).to_be_visible(timeout=60_000)
    text = verdict.first.inner_text()
    assert any(name in text for name in ("bolt", "nut", "washer")), text
    page.screenshot(path=str(screenshots / "inspect-own-data.png"), full_page=True)


@pytest.mark.timeout(600)
def test_a_tiny_search_in_the_browser_and_its_design_applied(server, page, screenshots):
    expect = playwright.expect
    _open(page, server)
    page.get_by_role("link", name="Search").click()
    expect(page.get_by_role("heading", name="Design search", level=1)).to_be_visible(timeout=60_000)
    _set_number(page, "Trials", "20")
    _idle(page)
    page.get_by_role("button", name="Search (background job)").click()
    use = page.get_by_role("button", name="Use this design")
    expect(use).to_be_visible(timeout=300_000)  # the job finished: the front is drawn and can be used
    page.screenshot(path=str(screenshots / "search.png"), full_page=True)
    _idle(page)
    use.click()
    _idle(page)
    # The sidebar now holds a front design: a metasurface inside the searched range, not the 4 mm default.
    width = page.get_by_role("spinbutton", name="Metasurface width (mm)", exact=True)
    expect(width).not_to_have_value("4", timeout=60_000)
    assert 0.1 <= float(width.input_value()) <= 10  # the shipped sweeps span 0.1–10 mm
    assert "design=" in page.url
