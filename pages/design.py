"""Design page: kernel layout, diagnostics with warnings, lens PSF and MTF preview."""

import streamlit as st

from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.units import format_length
from onn_core.user_input import MAX_JSON_BYTES
from studio.design_form import compare_rows, diagnostic_rows
from studio.plots import kernel_realisation_figure, layout_figure, metasurface_map_figure, mtf_figure, psf_figure
from studio.preview import PREVIEW_KERNELS, kernel_preview, lens_preview, preview_kernel
from studio.widgets import sidebar_design, through_the_router

PINNED = "design.pinned"  # design A of a comparison, as JSON


@st.cache_data(show_spinner="Simulating the sub-optic…", max_entries=64)
def cached_preview(design_json: str, wavelength: float):
    return lens_preview(Design.from_json(design_json), wavelength)


@st.cache_data(show_spinner="Realising the kernel on the metasurface…", max_entries=32)
def cached_kernel_preview(design_json: str, kernel: str, wavelength: float):
    design = Design.from_json(design_json)
    return kernel_preview(design, preview_kernel(kernel, design.kernel_taps), wavelength)


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
layout = layout_figure(design)
left.plotly_chart(layout, width="stretch")
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

st.subheader("A kernel on this metasurface")
columns = st.columns(2)
choice = columns[0].selectbox("Kernel", list(PREVIEW_KERNELS), index=None, placeholder="Choose a kernel to realise…",
                              key="design.kernel")  # fmt: skip
kernel_wavelength = columns[1].selectbox("Wavelength", design.wavelengths, format_func=format_length,
                                         key="design.kernel_wavelength")  # fmt: skip
if choice is None:
    st.caption("Pick a kernel to see one sub-optic realise it: the target and realised PSF on the tap grid, and "
               "the phase and meta-atom maps that do it.")  # fmt: skip
else:
    try:
        realised = cached_kernel_preview(design.to_json(), PREVIEW_KERNELS[choice], kernel_wavelength)
    except DesignError as error:
        st.error(str(error))
    else:
        st.plotly_chart(kernel_realisation_figure(realised), width="stretch")
        phase_column, radius_column = st.columns(2)
        phase_column.plotly_chart(metasurface_map_figure(realised, "phase"), width="stretch")
        radius_column.plotly_chart(metasurface_map_figure(realised, "radius"), width="stretch")
        st.caption("Inverse design's starting point: a multi-focus hologram (a lens per tap, weighted by √target) "
                   "turned into meta-atoms through the SiN table and simulated (band-limited ASM, taps integrated). "
                   "Inverse design on a trained run (Fabricate page) optimises from here.")  # fmt: skip

st.subheader("Compare with another design")
left, right = st.columns(2)
if left.button("Pin this design as A", help="Then edit the sidebar: the table compares A with what you edit (B)."):
    st.session_state[PINNED] = design.to_json()
other = right.file_uploader("…or load A from a design JSON", type=["json"], key="design.compare_upload",
                            max_upload_size=MAX_JSON_BYTES // 2**20)  # fmt: skip
# A file loads once (when it changes), so pinning afterwards still works while it stays in the uploader.
if other is not None and st.session_state.get("design.compare_file") != other.file_id:
    st.session_state["design.compare_file"] = other.file_id
    try:
        st.session_state[PINNED] = Design.from_json(other.getvalue()).to_json()
    except DesignError as error:
        st.error(f"{other.name} was not loaded as design A: {error}")
if PINNED in st.session_state:
    pinned = Design.from_json(st.session_state[PINNED])
    a_column, b_column = st.columns(2)
    a_column.plotly_chart(layout_figure(pinned), width="stretch", key="design.layout_a")
    b_column.plotly_chart(layout, width="stretch", key="design.layout_b")
    st.table(compare_rows(pinned, design), hide_index=True, border="horizontal")
    st.caption("A: pinned or loaded; B: the sidebar's design. ● marks what differs.")
