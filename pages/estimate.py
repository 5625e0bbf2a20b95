"""Estimate page: accuracy before training — the instant surrogate, curves, and the exact estimate as a job."""

import streamlit as st

from estimators.calibration import shipped as shipped_calibration
from estimators.surrogate import CURVES, check_design_for, surrogate_curve, surrogate_for
from onn_core import jobs
from onn_core.data.registry import SPECS, dataset_status
from onn_core.errors import ClusterError, DesignError, SurrogateUnavailable, SweepError
from onn_core.training.metrics import headline_label
from studio.plots import estimate_curve_figure
from studio.widgets import dataset_picker, job_panel, sidebar_design, through_the_router, where_it_runs

SWEPT = ("mnist", "fashion-mnist", "shapes-seg")


def latest_estimate_job(design_json: dict, dataset: str):
    """The newest exact-estimate job for this design and dataset (reattaches after a reload)."""
    for job in jobs.list_jobs():
        if job.kind == "estimate" and job.config.get("dataset") == dataset and job.config.get("design") == design_json:
            return job
    return None


def interval_label(calibrated: bool) -> str:
    """A calibrated answer's range is a conformal interval at the calibration's level."""
    calibration = shipped_calibration()
    return f"{round(100 * calibration.level)} % interval" if calibrated and calibration else "Range"


through_the_router(__file__)
st.title("Accuracy before training")
design = sidebar_design()

dataset = dataset_picker(SWEPT + tuple(d for d in SPECS if d not in SWEPT), key="estimate.dataset")
metric = headline_label(SPECS[dataset].task)
try:
    check_design_for(design, dataset)
except DesignError as error:
    st.error(str(error))
    st.stop()

try:
    with st.spinner("Fitting the surrogate to the swept designs (once per session of the server)…"):
        surrogate = surrogate_for(dataset, design)  # cached per process, refitted when the sweep files change
except (SurrogateUnavailable, SweepError, DesignError) as reason:
    surrogate = None
    # No surrogate covers this data: the exact estimate is the answer, so it starts by itself
    # (once per design and dataset; a finished or running job is reattached below).
    design_json = design.to_dict()
    status = dataset_status(dataset)
    started = status["available"] and latest_estimate_job(design_json, dataset) is None
    if not status["available"]:
        st.error(f"{dataset} is not available here: {status['reason']}")
    if started:
        try:
            jobs.submit("estimate", {"design": design_json, "dataset": dataset})
        except jobs.JobError as error:
            started = False
            st.error(str(error))
    st.info(f"No instant estimate: {reason}"
            + (" The exact estimate has been started for this design as a background job (below)." if started
               else ""))  # fmt: skip

if surrogate is not None:
    answer = surrogate.predict(design)
    columns = st.columns(4)
    label = f"Estimated {metric} after training" if answer.calibrated else f"Estimated {metric}"
    columns[0].metric(label, f"{100 * answer.accuracy:.1f} %")
    columns[1].metric(interval_label(answer.calibrated), f"{100 * answer.low:.1f} – {100 * answer.high:.1f} %")
    columns[2].metric("Surrogate CV error", f"± {100 * surrogate.cv_mae[surrogate.kind]:.1f} points")
    columns[3].metric("Query time", f"{1e3 * answer.seconds:.1f} ms")
    if answer.extrapolation:
        st.warning(
            f"This design lies outside the swept designs ({', '.join(answer.outside)}): the surrogate is "
            "extrapolating. Run the exact estimate below for a number you can rely on."
        )
    st.caption(
        f"Surrogate ({surrogate.kind}) fitted on {surrogate.n_points} designs swept by NTK regression; "
        f"kernels {design.kernel_count}. NTK regression is the student linearised at initialisation"
        + (f", calibrated to trained students: {answer.calibration}. The raw NTK figure is in the exact "
           "estimate below." if answer.calibrated else ".")
    )
    if SPECS[dataset].task == "segmentation":
        st.warning(
            "On segmentation the NTK regression at initialisation barely tells designs apart (about 50 % mIoU "
            "for every swept design, where trained students reach about 63 % on shapes-seg): read it as a floor, "
            "not a ranking. Classification estimates are validated against training (see docs/BENCHMARKS.md)."
        )
    # One curve at a time: each Plotly chart costs the browser about a third of a second to draw.
    curve = st.radio("Vary", list(CURVES), format_func=lambda name: CURVES[name][0], horizontal=True,
                     key="estimate.curve")  # fmt: skip
    rows = surrogate_curve(surrogate, design, curve)
    current = float(design.kernel_count) if curve == "kernel_count" else float(getattr(design, curve))
    st.plotly_chart(estimate_curve_figure(rows, curve, current, metric), width="stretch")
    st.caption(f"Varying {CURVES[curve][1]}; everything else as in the sidebar.")
    if curve == "meta_atom_pitch":
        st.caption(
            "The pitch does not change what the kernels can express; it limits how far the metasurface "
            "can steer light (see the phase-aliasing diagnostic on the Design page)."
        )

st.subheader("Exact estimate")
st.write(
    "NTK regression of this design's student on the real data (3 initialisations; about half a minute "
    "on a laptop CPU), as a background job: you can leave the page and come back."
)
config = {"design": design.to_dict(), "dataset": dataset}
active = latest_estimate_job(config["design"], dataset)
busy = active is not None and active.state in jobs.ACTIVE_STATES
scheduler = where_it_runs("estimate.runs_on")
if st.button("Run exact estimate", icon=":material/play_arrow:", disabled=busy,
             help="Already running for this design and dataset." if busy else None):  # fmt: skip
    try:
        jobs.submit("estimate", config, scheduler=scheduler)
    except (jobs.JobError, ClusterError) as error:
        st.error(str(error))


@st.fragment(run_every=2)
def exact_panel() -> None:
    job = latest_estimate_job(config["design"], dataset)
    if job is None:
        st.caption("No exact estimate of this design on this dataset yet.")
        return
    if job_panel(job, "Exact estimate") == "succeeded":
        result = job.metrics
        columns = st.columns(3)
        calibrated = bool(result.get("calibrated"))
        columns = st.columns(3)
        columns[0].metric(f"Exact estimate ({metric}{' after training' if calibrated else ''})",
                          f"{100 * result['accuracy']:.1f} %")  # fmt: skip
        columns[1].metric(interval_label(calibrated), f"{100 * result['low']:.1f} – {100 * result['high']:.1f} %")
        columns[2].metric("Time", f"{result['seconds']:.0f} s")
        if result.get("calibration"):
            st.caption(("Calibrated to trained students: " if calibrated else "") + result["calibration"] + ".")
        with st.expander("Raw NTK-regression figure"):
            raw = result.get("raw_accuracy", result["accuracy"])
            low, high = result.get("raw_low", result["low"]), result.get("raw_high", result["high"])
            st.write(f"**{100 * raw:.1f} %** [{100 * low:.1f} – {100 * high:.1f}]: kernel regression of the "
                     "student linearised at initialisation, before calibration.")  # fmt: skip
            st.caption(f"Subset score {100 * result['subset_accuracy']:.1f} % on {result['sizes']['train']} "
                       f"training images, extrapolated to {result['full_train_size']}. Job {job.id}.")  # fmt: skip


exact_panel()
