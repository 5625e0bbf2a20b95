"""ONN Design Studio — Streamlit entry point and router.

The design lives in the sidebar (units a designer types: mm, µm, nm), is validated by the design
object on every change, and is shared with the pages through ``st.session_state``:
``design`` (a valid :class:`onn_core.design.Design`, or None) and ``design_error`` (why not, in the
form's terms).
Run with ``make run``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from onn_core.design import Design
from onn_core.design_link import from_link, to_link
from onn_core.errors import DesignError
from onn_core.user_input import MAX_JSON_BYTES
from studio.design_form import FORM_FIELDS, design_from_form, form_message, form_values
from studio.widgets import DESIGN_TO_LOAD, ROUTER_STATE, follow_deep_link, running_jobs_indicator

PAGES = Path(__file__).resolve().parent / "pages"
BAD_LINK = "bad_design_link"  # the link that failed to load: kept in the URL until the design is edited
LINK_MESSAGE = "bad_design_link_message"
FORM_PREFIX = "form."

# An emoji icon is drawn by the browser; a :material/…: one is fetched from a font CDN (fails offline).
st.set_page_config(page_title="ONN Design Studio", page_icon="🔬", layout="wide")


# The form's values live here, outside the widgets; every widget is created with its value from
# it (value=…), never through its key. Loading a design (upload, reset) starts a new generation
# of widget keys, so the new values appear as the new widgets' defaults. Seeding widgets through
# session state instead loses them in a real browser: an edit made while a session's first run
# is still going came back with every field at its minimum.
FORM_VALUES = ROUTER_STATE  # studio.widgets.through_the_router reads it to tell a page ran inside this router
FORM_GENERATION = "form_generation"


def _form_key(name: str) -> str:
    generation = st.session_state.get(FORM_GENERATION, 0)
    return FORM_PREFIX + name if generation == 0 else f"form{generation}.{name}"


def _load_into_form(design: Design) -> None:
    values = form_values(design)
    values["wavelengths"] = ", ".join(f"{w:g}" for w in values["wavelengths"])  # a text input
    if FORM_VALUES in st.session_state:  # replacing a design the widgets show: new widgets
        st.session_state[FORM_GENERATION] = st.session_state.get(FORM_GENERATION, 0) + 1
    st.session_state[FORM_VALUES] = values


def _on_upload() -> None:
    upload = st.session_state.get("design_upload")
    if upload is None:
        return
    try:
        design = Design.from_json(upload.getvalue())  # size, encoding and structure checked there
    except DesignError as error:
        st.session_state["upload_message"] = f"{upload.name} was not loaded: {error}"
        return
    _load_into_form(design)
    st.session_state["upload_message"] = None


def _design_from_link() -> Design:
    """The design a shared link carries (``?design=…``), else the default; a bad link is said so."""
    code = st.query_params.get("design", "")
    try:
        return from_link(code)
    except DesignError as error:
        st.session_state[LINK_MESSAGE] = f"The design in the link was not loaded: {error} The default design is shown."
        st.session_state[BAD_LINK] = (code, None)  # None: the design the form first shows for it
        return Design()


def design_sidebar() -> None:
    """Draw the design inputs; store the validated design (or the error) in session state."""
    if FORM_VALUES not in st.session_state:
        _load_into_form(_design_from_link())
    chosen = st.session_state.pop(DESIGN_TO_LOAD, None)  # a page's "use this design" (studio.widgets.use_design)
    if chosen is not None:
        _load_into_form(chosen)
    current = st.session_state[FORM_VALUES]
    sidebar = st.sidebar
    sidebar.header("Frontend design")
    link_notice = sidebar.empty()  # filled below while the link that failed to load is still in the URL
    values = {}
    for group in ("Metasurface", "Sensor", "Network"):
        with sidebar.expander(group, expanded=group == "Metasurface"):
            for spec in (f for f in FORM_FIELDS if f.group == group):
                key = _form_key(spec.name)
                if spec.integer:
                    values[spec.name] = st.number_input(
                        f"{spec.label} ({spec.unit})",
                        min_value=int(spec.minimum),
                        max_value=int(spec.maximum),
                        value=int(current[spec.name]),
                        step=int(spec.step),
                        key=key,
                        help=spec.help,
                    )
                else:
                    values[spec.name] = st.number_input(
                        f"{spec.label} ({spec.unit})",
                        min_value=0.0,
                        value=float(current[spec.name]),
                        step=float(spec.step),
                        format="%g",
                        key=key,
                        help=spec.help,
                    )
            if group == "Metasurface":
                values["wavelengths"] = st.text_input(
                    "Wavelengths (nm)",
                    value=current["wavelengths"],
                    key=_form_key("wavelengths"),
                    help="One per colour channel, comma-separated, e.g. 635, 532, 450.",
                )
                values["signed_kernels"] = st.toggle(
                    "Signed kernels (K⁺/K⁻ pairs)",
                    value=bool(current["signed_kernels"]),
                    key=_form_key("signed_kernels"),
                    help="Realise each signed kernel with two sub-optics whose captures are subtracted.",
                )
    st.session_state[FORM_VALUES] = dict(values)
    try:
        design = design_from_form(values)
        st.session_state["design"], st.session_state["design_error"] = design, None
        # The design travels in the URL, so a link reproduces the view (page switches clear it).
        link = to_link(design)
        bad_link, shown = st.session_state.get(BAD_LINK) or (None, None)
        if bad_link is not None and shown is None:
            st.session_state[BAD_LINK] = bad_link, shown = bad_link, design
        if bad_link is not None and design == shown:
            link = bad_link  # the designer keeps the link they opened (to fix or report) until they edit
        else:
            st.session_state.pop(BAD_LINK, None)
        if st.session_state.get(BAD_LINK):
            link_notice.error(st.session_state[LINK_MESSAGE])
        if st.query_params.get("design", "") != link:
            if link:
                st.query_params["design"] = link
            else:
                del st.query_params["design"]
    except DesignError as error:
        st.session_state["design"], st.session_state["design_error"] = None, form_message(error)
        sidebar.error(st.session_state["design_error"])

    with sidebar.expander("Save / load"):
        design = st.session_state["design"]
        if design is not None:
            st.download_button(
                "Download design JSON",
                design.to_json(),
                file_name=f"design-{design.design_id}.json",
                mime="application/json",
            )
        st.file_uploader(
            "Load design JSON",
            type=["json"],
            key="design_upload",
            on_change=_on_upload,
            max_upload_size=MAX_JSON_BYTES // 2**20,
            help="A design saved from this app or by `python -m onn_core design default --json`.",
        )
        if st.session_state.get("upload_message"):
            st.error(st.session_state["upload_message"])
        st.button("Reset to default", on_click=_load_into_form, args=(Design(),))


# Navigation is resolved before the sidebar's widgets exist, so they belong to the page being
# shown from a session's first run on. Created after it, a session's first edit was dropped: its
# rerun counted as a page change (main script → default page) and reset the widgets' state.
navigation = st.navigation(
    [
        st.Page(PAGES / "design.py", title="Design", icon=":material/grid_view:", default=True),
        st.Page(PAGES / "data.py", title="Data", icon=":material/dataset:"),
        st.Page(PAGES / "estimate.py", title="Estimate", icon=":material/query_stats:"),
        st.Page(PAGES / "search.py", title="Search", icon=":material/travel_explore:"),
        st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
        st.Page(PAGES / "inspect.py", title="Inspect", icon=":material/visibility:"),
        st.Page(PAGES / "fabricate.py", title="Fabricate", icon=":material/precision_manufacturing:"),
        st.Page(PAGES / "export.py", title="Export", icon=":material/download:"),
    ]
)
design_sidebar()
with st.sidebar:
    running_jobs_indicator()  # every page: what runs in the background, and a notice when it ends
follow_deep_link()
navigation.run()
