"""The app, headless through Streamlit's AppTest: the Design page and the sidebar design."""

import base64
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent / "app_entry.py")  # see its docstring


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def figure(chart) -> dict:
    return json.loads(chart.proto.spec)


def test_design_page_shows_layout_diagnostics_and_preview(app):
    assert [t.value for t in app.title] == ["Frontend design"]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Kernels"] == "8" and metrics["Sub-optics"] == "4 × 4" and metrics["Kernel on sensor"] == "14 px"
    charts = app.get("plotly_chart")
    assert len(charts) == 3
    layout, psf, mtf = (figure(c) for c in charts)
    # The metasurface outline plus one rectangle per sub-optic, in mm, equal aspect.
    assert len(layout["layout"]["shapes"]) == 1 + 16
    assert layout["layout"]["xaxis"]["title"]["text"] == "x (mm)"
    assert layout["layout"]["yaxis"]["scaleanchor"] == "x"
    labels = layout["data"][-1]["text"]
    assert labels[:2] == ["K0⁺", "K0⁻"]
    # Physical axes and the diffraction-limit references on the preview.
    assert psf["layout"]["xaxis"]["title"]["text"] == "x on the sensor (µm)"
    assert any("sinc²" in trace["name"] for trace in psf["data"])
    assert mtf["layout"]["xaxis"]["title"]["text"] == "spatial frequency (cycles/mm)"
    assert any("diffraction limit" in trace["name"] for trace in mtf["data"])
    # The Q < 2 diagnostic is shown with its fix, and derived quantities are tabulated.
    assert any("psf undersampled" in message.value for message in app.info)
    table = app.table[0].value  # a static table: no data-grid bundle for the browser to load
    assert "Nyquist factor Q @ 532 nm" in list(table["quantity"])


def test_design_page_realises_a_chosen_kernel_and_compares_two_designs(app):
    assert len(app.get("plotly_chart")) == 3  # nothing is simulated until a kernel is chosen
    app.selectbox(key="design.kernel").set_value("diagonal line").run()
    assert not app.exception, app.exception
    charts = [figure(c) for c in app.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts[3:6]]
    assert titles[0].startswith("target vs realised at 532 nm: correlation 0.9")
    assert titles[1] == "phase map (central 160² of 802² pixels of 1172 nm)"
    assert titles[2].startswith("diameter map") and charts[5]["layout"]["xaxis"]["title"]["text"] == "x (µm)"
    # Pin A, edit the sidebar (B): the table marks what changed, the two layouts sit side by side.
    next(b for b in app.button if b.label == "Pin this design as A").click().run()
    app.number_input(key="form.metasurface_width").set_value(8.0).run()
    rows = {row["quantity"]: row for row in app.table[-1].value.to_dict("records")}
    assert rows["Sub-optic grid"]["A"].startswith("4 × 4") and rows["Sub-optic grid"]["B"].startswith("4 × 8")
    assert rows["Sub-optic grid"]["differs"] == "●" and rows["Meta-atoms per sub-optic"]["differs"] == ""
    assert sum(1 for c in app.get("plotly_chart") if "sub-optics of" in figure(c)["layout"]["title"]["text"]) == 3
    app.file_uploader(key="design.compare_upload").set_value(("other.json", b'{"kernel_size": -1}', "application/json"))
    app.run()
    assert any("other.json was not loaded as design A" in e.value for e in app.error)


def test_sidebar_units_reach_the_design_in_metres(app):
    app.number_input(key="form.sensor_distance").set_value(4.8).run()
    app.number_input(key="form.meta_atom_pitch").set_value(250.0).run()
    design = app.session_state["design"]
    assert design.sensor_distance == pytest.approx(4.8e-3)
    assert design.meta_atom_pitch == pytest.approx(250e-9)
    assert {m.label: m.value for m in app.metric}["F-number"] == f"{4.8 / 0.94:.2f}"


def test_invalid_design_is_explained_not_a_traceback(app):
    app.number_input(key="form.kernel_size").set_value(9.0).run()
    assert not app.exception
    assert app.session_state["design"] is None
    messages = [e.value for e in app.error]
    assert any("does not fit a metasurface height of 4 mm" in m for m in messages)
    assert any("make the kernel at most 4 mm" in m for m in messages)
    # Fixing it brings the page back.
    app.number_input(key="form.kernel_size").set_value(0.94).run()
    assert not app.error and len(app.get("plotly_chart")) == 3


def test_sidebar_messages_speak_the_forms_labels_and_units(app):
    app.number_input(key="form.kernel_size").set_value(0.0).run()
    assert [e.value for e in app.sidebar.error] == ["Kernel aperture k must be more than 0 mm."]
    app.number_input(key="form.kernel_size").set_value(0.94).run()
    app.number_input(key="form.meta_atom_pitch").set_value(200000.0).run()
    [message] = [e.value for e in app.sidebar.error]
    assert message == "Meta-atom pitch of 200000 nm is outside what the studio builds: 10 nm to 100000 nm."
    app.number_input(key="form.meta_atom_pitch").set_value(350.0).run()
    app.text_input(key="form.wavelengths").input("53200").run()
    assert [e.value for e in app.sidebar.error] == [
        "Each wavelength must be 100 nm to 20000 nm (e.g. 532 or 0.532 µm)."]
    app.text_input(key="form.wavelengths").input("532nm").run()  # units may be typed, spaced or not
    assert not app.sidebar.error and app.session_state["design"].wavelengths == pytest.approx((532e-9,))
    for message in [e.value for e in app.error]:  # the pages' own copies of it too
        assert "metres" not in message and "_" not in message


def test_rgb_design_previews_each_wavelength(app):
    app.number_input(key="form.input_channels").set_value(3).run()
    assert any("3 channels but 1 wavelength" in e.value for e in app.error)
    app.text_input(key="form.wavelengths").input("635, 532, 450").run()
    assert not app.error
    assert app.session_state["design"].wavelengths == pytest.approx((635e-9, 532e-9, 450e-9))
    app.selectbox[0].select(450e-9).run()
    psf = figure(app.get("plotly_chart")[1])
    assert "450 nm" in psf["layout"]["title"]["text"]
    app.text_input(key="form.wavelengths").input("green").run()
    assert any("numbers in nm" in e.value for e in app.error)


# ---------------------------------------------------------------------------- the Estimate page
def _page_with_jobs(page: str, home, monkeypatch) -> AppTest:
    """``page`` opened through the router, with a studio home of its own whose workers exit soon."""
    monkeypatch.setenv("ONN_STUDIO_HOME", str(home))
    monkeypatch.setenv("ONN_JOB_IDLE_EXIT_S", "3")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def estimate_page(tmp_path, monkeypatch):
    return _page_with_jobs("estimate.py", tmp_path, monkeypatch)


def test_estimate_page_answers_instantly_with_curves(estimate_page):
    at = estimate_page
    assert [t.value for t in at.title] == ["Accuracy before training"]
    metrics = {m.label: m.value for m in at.metric}
    value = float(metrics["Estimated accuracy after training"].rstrip(" %"))  # calibrated
    assert 85 < value < 100  # MNIST-5k, the default 8-kernel design
    low, high = (float(v) for v in metrics["80 % interval"].rstrip(" %").split(" – "))
    assert low <= value <= high
    assert any("datasets it was not fitted on" in c.value for c in at.caption)
    assert float(metrics["Query time"].rstrip(" ms")) < 50
    titles = []
    for curve in ("kernel_count", "kernel_size", "meta_atom_pitch"):
        at.radio(key="estimate.curve").set_value(curve).run()
        [chart] = [figure(c) for c in at.get("plotly_chart")]
        titles.append(chart["layout"]["xaxis"]["title"]["text"])
        assert chart["layout"]["yaxis"]["title"]["text"] == "estimated accuracy (%)"
    assert titles == ["kernels that fit", "kernel aperture k (µm)", "meta-atom pitch (nm)"]


def test_estimate_page_flags_extrapolation_and_explains_what_it_cannot_do(estimate_page):
    at = estimate_page
    at.sidebar.number_input(key="form.kernel_taps").set_value(15).run()
    assert any("extrapolating" in w.value for w in at.warning)
    at.selectbox(key="estimate.dataset").set_value("digits").run()
    assert any("No instant estimate" in i.value and "--exact" in i.value for i in at.info)
    at.selectbox(key="estimate.dataset").set_value("cifar10").run()  # no copy here: said, and no job started
    assert any("cifar10 is not available here" in e.value for e in at.error)
    assert not any("has been started" in i.value for i in at.info)
    assert not at.exception


def test_exact_estimate_runs_as_a_job_and_reattaches(estimate_page):
    from onn_core import jobs

    at = estimate_page
    at.selectbox(key="estimate.dataset").set_value("digits").run()
    # No surrogate covers digits: the exact estimate starts by itself, and says so (once).
    assert any("No instant estimate" in i.value and "has been started" in i.value for i in at.info)
    at.run()
    [job] = jobs.list_jobs()
    assert job.kind == "estimate" and job.config["dataset"] == "digits"
    assert next(b for b in at.button if b.label == "Run exact estimate").disabled  # already running
    deadline = time.monotonic() + 240
    while jobs.status(job.id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(job.id).state == "succeeded", jobs.status(job.id).error
    # A fresh session (a reload) finds the finished job for this design and dataset.
    again = AppTest.from_file(APP, default_timeout=120)
    again.run()
    again.switch_page("../pages/estimate.py").run()
    again.selectbox(key="estimate.dataset").set_value("digits").run()
    metrics = {m.label: m.value for m in again.metric}
    assert 50 < float(metrics["Exact estimate (accuracy after training)"].rstrip(" %")) <= 100
    assert [e.label for e in again.expander if e.label == "Raw NTK-regression figure"]  # one click away


def test_the_design_travels_in_the_url():
    from onn_core.design import Design
    from onn_core.design_link import from_link, to_link

    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["design"] = to_link(Design(metasurface_width=8e-3))
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Kernels"] == "16"  # the link's design, not the default
    at.sidebar.number_input(key="form.metasurface_height").set_value(8.0).run()
    assert from_link(at.query_params["design"]).metasurface_height == pytest.approx(8e-3)


@pytest.mark.parametrize("code", ["garbage!", base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("="),
                                  base64.urlsafe_b64encode(b'{"kernel_size": NaN}').decode().rstrip("=")])
def test_a_bad_link_is_said_so_and_kept_in_the_url_until_the_design_is_edited(code):
    broken = AppTest.from_file(APP, default_timeout=120)
    broken.query_params["design"] = code
    broken.run()
    assert not broken.exception
    assert any("link was not loaded" in e.value for e in broken.sidebar.error)
    assert broken.query_params["design"] in (code, [code])  # the designer keeps what they opened
    broken.sidebar.number_input(key="form.metasurface_height").set_value(8.0).run()
    assert broken.query_params["design"] not in (code, [code])  # an edit writes the new design's link


# ---------------------------------------------------------------------------- the Data page
def zipped_classes(counts: dict[str, int], extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of a class-folder dataset: PNGs of mixed sizes and modes, plus ``extra`` entries."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, count in counts.items():
            for index in range(count):
                side = 16 + 4 * (index % 3)
                mode = "RGB" if index % 4 == 0 else "L"
                pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
                image = io.BytesIO()
                Image.fromarray(pixels, "RGB").convert(mode).save(image, format="PNG")
                archive.writestr(f"parts/{name}/{index}.png", image.getvalue())
        for entry, payload in (extra or {}).items():
            archive.writestr(entry, payload)
    return buffer.getvalue()


@pytest.fixture
def data_page(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ONN_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("../pages/data.py").run()
    assert not at.exception, at.exception
    return at


def test_data_page_adds_an_upload_previews_it_as_the_design_sees_it_and_removes_it(data_page, tmp_path):
    at = data_page
    assert [t.value for t in at.title] == ["Your data"]
    assert any("No datasets of your own yet" in i.value for i in at.info)
    at.text_input(key="data.name").input("parts")
    upload = zipped_classes({"bolt": 12, "nut": 12, "washer": 11})
    at.file_uploader[0].set_value(("parts.zip", upload, "application/zip"))
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    assert any("Added parts: 3 classes" in s.value for s in at.success), [e.value for e in at.error]
    assert at.selectbox(key="data.selected").value == "parts"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "3" and metrics["Stored size"] == "16 × 16 × 3"
    assert any("resized" in w.value for w in at.warning)  # mixed sizes, said
    captions = [caption for images in at.image for caption in images.captions]
    assert {"bolt", "nut", "washer"} <= set(captions)
    assert any("28 × 28, grey" in h.value for h in at.subheader)  # the default design's view
    # The other pages offer it.
    at.switch_page("../pages/train.py").run()
    assert "parts" in at.selectbox(key="train.dataset").options
    at.switch_page("../pages/data.py").run()
    # A zip that reaches outside its folder, and a server folder outside the data folder, are refused.
    at.text_input(key="data.name").input("evil")
    at.file_uploader[0].set_value(("evil.zip", zipped_classes({"a": 12, "b": 12}, {"../escape.png": b"x"}),
                                   "application/zip"))  # fmt: skip
    at.form_submit_button[0].click().run()
    assert any("Not added" in e.value and "outside the archive" in e.value for e in at.error)
    at.file_uploader[0].set_value(None)
    at.text_input(key="data.folder").input(str(tmp_path))
    at.form_submit_button[0].click().run()
    assert any("Not added" in e.value and "is outside" in e.value for e in at.error)
    assert not (tmp_path / "home" / "datasets" / "evil").exists()
    next(b for b in at.button if b.label == "Remove parts").click().run()
    assert any("No datasets of your own yet" in i.value for i in at.info)
    assert not at.exception


# ---------------------------------------------------------------------------- the Search page
def test_search_page_runs_a_job_draws_the_front_and_applies_a_design(tmp_path, monkeypatch):
    from onn_core import jobs

    at = _page_with_jobs("search.py", tmp_path, monkeypatch)
    assert [t.value for t in at.title] == ["Design search"]
    at.number_input(key="search.budget").set_value(30)
    next(b for b in at.button if b.label == "Search (background job)").click().run()
    [job] = jobs.list_jobs()
    assert job.kind == "search" and job.config["budget"] == 30 and job.config["dataset"] == "mnist"
    assert "meta_atom_pitch=" in job.config["fixed"]  # the fab's fields come from the sidebar
    deadline = time.monotonic() + 300
    while jobs.status(job.id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(job.id).state == "succeeded", jobs.status(job.id).error
    at.run()
    assert not at.exception, at.exception
    chart = figure(at.get("plotly_chart")[0])
    names = [trace.get("name") for trace in chart["data"]]
    assert "front (surrogate)" in names and "the sidebar's design" in names
    front = json.loads((Path(jobs.status(job.id).artifact_dir) / "front.json").read_text())
    chosen = front[0]
    at.selectbox(key="search.chosen").set_value(chosen["design_id"]).run()
    next(b for b in at.button if b.label == "Use this design").click().run()
    assert not at.exception, at.exception
    held = at.session_state["design"].to_dict()  # the sidebar now holds it (to the form's precision)
    for name, value in chosen["design"].items():
        assert held[name] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), name


def test_search_page_asks_for_energy_with_the_designers_energy_model_and_bit_depths(tmp_path, monkeypatch):
    from onn_core import jobs

    at = _page_with_jobs("search.py", tmp_path, monkeypatch)
    at.multiselect(key="search.objectives").set_value(["energy"])
    at.checkbox(key="search.bits").check()
    at.number_input(key="search.step_energy").set_value(2.0)  # pJ a conversion step
    next(b for b in at.button if b.label == "Search (background job)").click().run()
    [job] = jobs.list_jobs()
    assert job.config["objectives"] == ["accuracy", "area", "energy"]
    assert job.config["energy_model"] == {"mac_energy": 4.6e-12, "conversion_step_energy": 2e-12}
    assert "sensor_bit_depth=4:12" in job.config["bounds"] and "sensor_bit_depth" not in job.config["fixed"]
    jobs.cancel(job.id)  # the energy objective itself is tested in test_search.py
    assert not at.exception


def test_search_page_on_data_no_sweep_covers_offers_an_exact_search(tmp_path, monkeypatch):
    from onn_core import jobs

    at = _page_with_jobs("search.py", tmp_path, monkeypatch)
    at.selectbox(key="search.dataset").set_value("digits").run()
    assert any("No sweep covers digits" in i.value and "sweep --dataset digits" in i.value for i in at.info)
    assert at.number_input(key="search.budget_exact").max == 200
    at.number_input(key="search.budget_exact").set_value(2)
    next(b for b in at.button if b.label == "Search (background job)").click().run()
    [job] = jobs.list_jobs()
    assert job.kind == "search" and job.config["exact"] is True and job.config["budget"] == 2
    jobs.cancel(job.id)  # the exact trials themselves are tested in test_search.py
    assert not at.exception
