"""Search page: the Pareto front of accuracy against metasurface area, found for the designer as a job."""

import csv
import io
import json
from pathlib import Path

import streamlit as st

from estimators.search import FREE_FIELDS, MAX_EXACT_BUDGET, describe, search_space
from estimators.surrogate import surrogate_for
from onn_core import jobs
from onn_core.data.registry import SPECS
from onn_core.design import Design
from onn_core.errors import DesignError, SearchError, SurrogateUnavailable, SweepError
from onn_core.models.energy import DEFAULT_ENERGY_MODEL
from onn_core.training.metrics import headline_label
from onn_core.units import MM, UM
from studio.plots import search_front_figure
from studio.widgets import dataset_picker, job_panel, sidebar_design, through_the_router, use_design

PJ = 1e-12  # joules per picojoule, for the energy model's inputs

SWEPT = ("mnist", "fashion-mnist", "shapes-seg")
# Free field → (label, display unit name, metres per display unit).
SLIDERS = {
    "metasurface_height": ("Metasurface height", "mm", MM),
    "metasurface_width": ("Metasurface width", "mm", MM),
    "kernel_size": ("Kernel aperture k", "µm", UM),
    "kernel_spacing": ("Kernel spacing d", "µm", UM),
    "sensor_distance": ("Sensor distance z", "mm", MM),
}


def latest_search_job(config: dict):
    for job in jobs.list_jobs():
        if job.kind == "search" and job.config == config:
            return job
    return None


def front_csv(front: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = list(FREE_FIELDS)
    writer.writerow(["design_id", "accuracy", "low", "high", "area_mm2", "kernels", "macs", "energy_j",
                     "exact_accuracy", "warnings", *names, "sensor_bit_depth"])  # fmt: skip
    for row in front:
        writer.writerow([row["design_id"], row["accuracy"], row["low"], row["high"], row["area_mm2"], row["kernels"],
                         row["macs"], row.get("energy_j", ""), row.get("exact_accuracy", ""),
                         ";".join(row.get("warnings", [])), *(row["design"][n] for n in names),
                         row["design"]["sensor_bit_depth"]])  # fmt: skip
    return buffer.getvalue()


through_the_router(__file__)
st.title("Design search")
st.write(
    "The smallest metasurface that reaches your accuracy: the search asks the calibrated surrogate for many "
    "designs (a seeded NSGA-II study) and keeps those no other design beats on both accuracy and area. The "
    "fab's fields (meta-atom pitch, wavelengths, sensor) stay as in the sidebar."
)
design = sidebar_design()
dataset = dataset_picker(SWEPT + tuple(d for d in SPECS if d not in SWEPT), key="search.dataset")
metric = headline_label(SPECS[dataset].task)
try:
    space = search_space(dataset)
except (SearchError, DesignError) as reason:
    st.info(f"No search on {dataset}: {reason}")
    st.stop()
try:  # the bit depths the sweeps measured, if any
    bit_depths = search_space(dataset, bounds="sensor_bit_depth=1:16").choices["sensor_bit_depth"]
except SearchError:
    bit_depths = ()
try:
    surrogate = surrogate_for(dataset, design)
except (SurrogateUnavailable, SweepError, DesignError):
    surrogate = None  # data no sweep covers: an exact estimate a trial
    st.info(f"No sweep covers {dataset}, so each trial runs an exact NTK regression (seconds each, at most "
            f"{MAX_EXACT_BUDGET} trials). Sweep it once (`python -m onn_core sweep --dataset {dataset}`) and the "
            "search asks an instant surrogate instead.")  # fmt: skip

with st.form("search.form"):
    columns = st.columns(3)
    bounds = []
    for index, (name, (label, unit, scale)) in enumerate(SLIDERS.items()):
        low, high = space.bounds[name]
        chosen = columns[index % 3].slider(f"{label} ({unit})", float(low / scale), float(high / scale),
                                           (float(low / scale), float(high / scale)), key=f"search.{name}")  # fmt: skip
        if chosen != (low / scale, high / scale):
            bounds.append(f"{name}={chosen[0] * scale:.6g}:{chosen[1] * scale:.6g}")
    taps = columns[2].multiselect("Taps per kernel", list(space.taps), default=list(space.taps), key="search.taps")
    extra = st.multiselect("Also minimise", ["kernels", "macs", "energy"], key="search.objectives",
                           help="Accuracy (maximised) and area (minimised) are always objectives. Energy per "
                                "image: digital MACs and the sensor's read-out (docs/ENERGY.md).")  # fmt: skip
    search_bits = bool(bit_depths) and st.checkbox(
        f"Let the search choose the sensor's bit depth (among {', '.join(map(str, bit_depths))})",
        key="search.bits", help="Fewer bits read out for less energy, at some accuracy; otherwise the "
                                "sidebar's bit depth is held.")  # fmt: skip
    with st.expander("Energy model"):
        columns = st.columns(2)
        mac_pj = columns[0].number_input("Energy per digital MAC (pJ)", 0.001, 1000.0,
                                         DEFAULT_ENERGY_MODEL.mac_energy / PJ, key="search.mac_energy",
                                         help="Default: a 32-bit float multiply-add in 45 nm CMOS.")  # fmt: skip
        step_pj = columns[1].number_input("ADC energy per conversion step (pJ)", 0.001, 1000.0,
                                          DEFAULT_ENERGY_MODEL.conversion_step_energy / PJ, key="search.step_energy",
                                          help="One b-bit conversion costs this × 2^b; set your sensor's.")  # fmt: skip
    columns = st.columns(3)
    if surrogate is None:
        budget = columns[0].number_input("Trials", 2, MAX_EXACT_BUDGET, 30, step=10, key="search.budget_exact",
                                         help="Each trial runs an exact NTK regression (seconds).")  # fmt: skip
    else:
        budget = columns[0].number_input("Trials", 20, 5000, 300, step=50, key="search.budget",
                                         help="Each trial asks the surrogate (milliseconds).")  # fmt: skip
    seed = columns[1].number_input("Seed", 0, 10_000, 0, key="search.seed")
    exact_top = columns[2].number_input("Confirm exactly", 0, 8, 0, key="search.exact",
                                        help="Front designs (spread along the area) checked by the exact NTK "
                                             "regression, about half a minute each.")  # fmt: skip
    submitted = st.form_submit_button("Search (background job)", icon=":material/travel_explore:")

HELD = ("meta_atom_pitch", "sensor_pixel_pitch", "sensor_pixels_per_tap", "input_channels")
fixed = ",".join(f"{name}={getattr(design, name):.6g}" for name in HELD)
if search_bits:
    bounds.append(f"sensor_bit_depth={min(bit_depths)}:{max(bit_depths)}")
else:
    fixed += f",sensor_bit_depth={design.sensor_bit_depth}"
fixed += f",signed_kernels={design.signed_kernels},wavelengths=" + ";".join(f"{w:.6g}" for w in design.wavelengths)
if taps and len(taps) < len(space.taps):
    bounds.append(f"kernel_taps={min(taps)}:{max(taps)}")
config = {"dataset": dataset, "objectives": ["accuracy", "area", *extra], "budget": int(budget), "seed": int(seed),
          "fixed": fixed, "bounds": ",".join(bounds) or None, "exact_top": int(exact_top),
          "exact": surrogate is None}  # fmt: skip
if "energy" in extra:  # the model is part of the question only when energy is an objective
    config["energy_model"] = {"mac_energy": float(f"{mac_pj * PJ:.6g}"),
                              "conversion_step_energy": float(f"{step_pj * PJ:.6g}")}  # fmt: skip
if submitted:
    if not taps:
        st.error("Choose at least one tap count.")
    else:
        try:
            jobs.submit("search", config)
        except (jobs.JobError, SearchError, DesignError) as error:
            st.error(str(error))


@st.fragment(run_every=2)
def search_panel() -> None:
    job = latest_search_job(config)
    if job is None:
        st.caption("No search with these settings yet.")
        return
    state = job_panel(job, "Design search")
    path = Path(job.artifact_dir) / "front.json"
    front = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    if not front:
        return
    try:
        current = describe(design, dataset, surrogate.predict(design)) if surrogate is not None else None
    except DesignError:
        current = None
    st.plotly_chart(search_front_figure(front, metric, current), width="stretch")
    if state != "succeeded":
        st.caption(f"The front so far ({len(front)} designs); it grows as the trials run.")
        return
    st.caption(f"{len(front)} designs on the front after {job.metrics.get('trials')} trials "
               f"({job.metrics.get('seconds')} s). Error bars: the calibrated surrogate's 80 % interval.")  # fmt: skip
    labels = {row["design_id"]: f"{row['area_mm2']:.3f} mm², {row['kernels']} kernels, "
              f"{100 * row['accuracy']:.1f} %" for row in front}  # fmt: skip
    chosen = st.selectbox("Front design", list(labels), format_func=labels.get, key="search.chosen")
    columns = st.columns(3)
    if columns[0].button("Use this design", icon=":material/input:"):
        use_design(Design.from_dict(next(row for row in front if row["design_id"] == chosen)["design"]))
    columns[1].download_button("Front as CSV", front_csv(front), file_name=f"front-{dataset}.csv", mime="text/csv")
    columns[2].download_button("Front as JSON", json.dumps(front, indent=2), file_name=f"front-{dataset}.json",
                               mime="application/json")  # fmt: skip


search_panel()
