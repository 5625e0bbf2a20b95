"""The app, headless through Streamlit's AppTest: the Design page and the sidebar design."""

import json
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
    table = app.dataframe[0].value
    assert "Nyquist factor Q @ 532 nm" in list(table["quantity"])


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
