"""Data page: add a dataset of your own (upload or a server folder), preview it as the design sees it, remove it."""

import pandas as pd
import streamlit as st

from onn_core.data.preview import design_view_samples
from onn_core.data.registry import SHIPPED_SPECS, data_home
from onn_core.data.user import (
    MAX_ARCHIVE_BYTES,
    add_dataset,
    add_upload,
    confined_folder,
    remove_dataset,
    user_datasets,
)
from onn_core.errors import DataFormatError, DesignError
from studio.widgets import sidebar_design, through_the_router

COLOURS = {"as the images are": None, "grey (1 channel)": 1, "RGB (3 channels)": 3}
TASKS = {"from the layout": None, "classification": "classification", "segmentation": "segmentation"}


def parse_size(text: str) -> tuple[int, int] | None:
    """'64 x 48', '64×48' or '64, 48' → (64, 48); blank → None (the most common size)."""
    cleaned = text.strip().lower().replace("×", " ").replace("x", " ").replace(",", " ")
    if not cleaned:
        return None
    parts = cleaned.split()
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise DataFormatError(text, "is not a size: give height and width in pixels, e.g. 28 × 28.")
    return int(parts[0]), int(parts[1])


@st.cache_data(max_entries=16, show_spinner="Reading samples as the design sees them…")
def samples(name: str, design_json: str, stored_at: str) -> dict:
    """Cached per dataset copy (``stored_at``) and design."""
    from onn_core.design import Design

    return design_view_samples(name, Design.from_json(design_json))


through_the_router(__file__)
st.title("Your data")
st.caption("Bring a dataset of your own; it is then a choice on every page and `--dataset NAME` in the command "
           "line. Layouts: a folder per class (`cat/*.png`, optionally under `train/` and `test/`); an `.npz` with "
           "`x`, `y` (and `class_names`, `x_test`, `y_test`); `images/` + `masks/` for segmentation; or a zip of "
           "any of these.")  # fmt: skip
design = sidebar_design()

with st.form("data.add", clear_on_submit=False):
    name = st.text_input("Name", placeholder="e.g. my-parts", help="lower-case letters, digits, - and _",
                         key="data.name")
    upload = st.file_uploader("Upload a .zip or .npz", type=["zip", "npz"], max_upload_size=MAX_ARCHIVE_BYTES // 2**20)
    folder = st.text_input(f"…or a folder on this server, under {data_home()}", placeholder="parts/",
                           key="data.folder")
    columns = st.columns(3)
    task = columns[0].selectbox("Task", list(TASKS))
    colours = columns[1].selectbox("Colours", list(COLOURS))
    size_text = columns[2].text_input("Stored size (pixels, H × W)", placeholder="blank: the most common",
                                       key="data.size")
    submitted = st.form_submit_button("Add the dataset", type="primary")
if submitted:
    try:
        options = {"task": TASKS[task], "size": parse_size(size_text), "channels": COLOURS[colours],
                   "shipped": tuple(SHIPPED_SPECS)}  # fmt: skip
        if upload is not None:
            with st.spinner(f"Reading {upload.name}…"):
                added = add_upload(name.strip(), upload.name, upload.getvalue(), **options)
        elif folder.strip():
            with st.spinner(f"Reading {folder}…"):
                added = add_dataset(name.strip(), confined_folder(folder.strip(), data_home()), **options)
        else:
            raise DataFormatError(name or "dataset", "nothing to add: upload a file or name a folder.")
        st.session_state["data.selected"] = added["name"]
        st.success(f"Added {added['name']}: {len(added['classes'])} classes, train {added['splits']['train']} / "
                   f"val {added['splits']['val']} / test {added['splits']['test']} images.")  # fmt: skip
    except DataFormatError as error:
        st.error(f"Not added: {error}")

stored = user_datasets()
if not stored:
    st.info("No datasets of your own yet. The shipped ones (MNIST-5k, Fashion-MNIST, digits, shapes-seg …) are "
            "always there.")  # fmt: skip
    st.stop()

names = [entry["name"] for entry in stored]
if st.session_state.get("data.selected") not in names:
    st.session_state["data.selected"] = names[0]
chosen = st.selectbox("Your datasets", names, key="data.selected")
described = next(entry for entry in stored if entry["name"] == chosen)
height, width = described["image_size"]
columns = st.columns(4)
columns[0].metric("Task", described["task"])
columns[1].metric("Classes", len(described["classes"]) if described["task"] == "classification" else "mask")
columns[2].metric("Stored size", f"{height} × {width} × {described['channels']}")
splits = described["splits"]
columns[3].metric("Train / val / test", f"{splits['train']} / {splits['val']} / {splits['test']}")
reads = described["student_input"]
st.caption(f"From {described.get('read_from', 'your files')}. {reads[0].upper() + reads[1:]}.")
for warning in described["warnings"]:
    st.warning(warning)
if described["task"] == "classification":
    st.bar_chart(pd.DataFrame({"images": list(described["counts"].values())}, index=list(described["counts"])),
                 height=220)  # fmt: skip

st.subheader(f"As this design reads them ({design.input_height} × {design.input_width}, "
             f"{'grey' if design.input_channels == 1 else 'RGB'})")  # fmt: skip
try:
    shown = samples(chosen, design.to_json(), described.get("stored", ""))
except (DataFormatError, DesignError) as error:
    st.error(str(error))
else:
    for label, pictures in shown.items():
        st.image(pictures, caption=[label] * len(pictures), width=72, clamp=True)

with st.expander("Remove this dataset"):
    st.caption("Removes the stored copy and its sweep. Runs trained on it keep their folders; inspecting them "
               "needs the dataset added again under the same name.")
    if st.button(f"Remove {chosen}", key="data.remove"):
        try:
            remove_dataset(chosen)
            st.session_state.pop("data.selected", None)
            st.rerun()
        except DataFormatError as error:
            st.error(str(error))
