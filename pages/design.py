"""Design page: kernel layout, diagnostics with warnings, lens PSF and MTF preview."""

import streamlit as st

from app_widgets import sidebar_design, through_the_router
from onn_core.design import Design
from onn_core.design_form import diagnostic_rows
from onn_core.plots import layout_figure, mtf_figure, psf_figure
from onn_core.preview import lens_preview
from onn_core.units import format_length


@st.cache_data(show_spinner="Simulating the sub-optic…", max_entries=64)
def cached_preview(design_json: str, wavelength: float):
    return lens_preview(Design.from_json(design_json), wavelength)


through_the_router(__file__)
st.title("Frontend design")
design = sidebar_design()

columns = st.columns(5)
columns[0].metric("Kernels", design.kernel_count)
columns[1].metric("Sub-optics", f"{design.n_rows} × {design.n_cols}")
columns[2].metric("Kernel on sensor", f"{design.kernel_size_pixels} px")
columns[3].metric("NA", f"{design.numerical_aperture:.3f}")
columns[4].metric("F-number", f"{design.f_number:.2f}")

left, right = st.columns([3, 2])
left.plotly_chart(layout_figure(design), width="stretch")
with right:
    st.subheader("Diagnostics")
    for warning in design.warnings:
        show = st.warning if warning.severity == "warning" else st.info
        show(f"**{warning.code.replace('_', ' ')}** — {warning.message}\n\n*Fix:* {warning.hint}")
    if not design.warnings:
        st.success("No warnings: the design samples and steers light as required.")
    st.table(diagnostic_rows(design), hide_index=True, border="horizontal")

st.subheader("Diffraction-limited preview of one sub-optic")
wavelength = st.selectbox("Wavelength", design.wavelengths, format_func=format_length)
preview = cached_preview(design.to_json(), wavelength)
psf_column, mtf_column = st.columns(2)
psf_column.plotly_chart(psf_figure(preview), width="stretch")
mtf_column.plotly_chart(mtf_figure(preview), width="stretch")
st.caption(
    f"Ideal lens over a {format_length(design.kernel_size)} square aperture focused at "
    f"{format_length(design.sensor_distance)}; bars: the PSF integrated over "
    f"{format_length(design.sensor_pixel_pitch)} sensor pixels. "
    "Dotted: closed forms (sinc², triangular MTF of a square pupil)."
)
