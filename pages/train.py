"""Train page: a student for the sidebar design, as background jobs, with a live panel and the job list."""


import pandas as pd
import streamlit as st

from onn_core import jobs
from onn_core.data import SPECS, dataset_status
from onn_core.errors import ClusterError, TrainingError
from onn_core.training.config import METHODS, TRANSFER_DEFAULTS
from onn_core.training.duration import expected_duration
from onn_core.training.evidence import FALLBACK_METHOD, METHOD_TEXT, REGIME_TEXT, design_regime, measured
from onn_core.training.metrics import headline
from onn_core.training.run import load_history
from studio.run_plots import history_figure
from studio.widgets import (
    PAGES,
    dataset_picker,
    default_unless_kept,
    job_panel,
    keep,
    runs_on,
    sidebar_design,
    teacher_picker,
    through_the_router,
    where_it_runs,
)

SETTING_KEYS = {"alpha": "train.alpha", "beta": "train.beta", "temperature": "train.temperature",
                "kd_alpha": "train.kd_alpha"}  # fmt: skip


through_the_router(__file__)
st.title("Train a student")
# The form survives page switches (and the dataset reloads too: it is in the link).
keep("train.method", "train.epochs", "train.seeds", "train.lr", "train.limit", "train.noise", *SETTING_KEYS.values())
design = sidebar_design()

available = [name for name in SPECS if dataset_status(name)["available"]]
columns = st.columns(3)
dataset = dataset_picker(available, key="train.dataset", where=columns[0])
# What the regimes benchmark measured for this data and the design's kernels preselects the method
# and its settings, each time the dataset or the regime changes (the designer may still change them).
regime = design_regime(design, sensor_noise=st.session_state.get("train.noise", False))
evidence = measured(dataset, regime)
preselected_for = st.session_state.get("train.evidence_for")
if evidence and preselected_for != (dataset, regime):
    st.session_state["train.evidence_for"] = (dataset, regime)
    st.session_state["train.method"] = evidence.best
    for name, value in evidence.settings.items():
        if name in SETTING_KEYS:
            st.session_state[SETTING_KEYS[name]] = float(value)
elif not evidence and preselected_for is not None:  # what was measured on other data does not carry over
    st.session_state["train.evidence_for"] = None
    st.session_state["train.method"] = FALLBACK_METHOD
method = columns[1].radio(
    "Method", METHODS, horizontal=True, key="train.method",
    help="e2e: task loss only; kd: Hinton distillation; ntkd: the NTK of the teacher matched.",
)  # fmt: skip
epochs = columns[2].number_input("Epochs", 1, 500, key="train.epochs", **default_unless_kept("train.epochs", 10))
if SPECS[dataset].channels != design.input_channels:
    seen_as = "grey (BT.601 luma)" if design.input_channels == 1 else "RGB (grey repeated)"
    st.caption(f"{dataset} images have {SPECS[dataset].channels} channel(s); this design reads them as {seen_as}.")

if evidence:
    st.info(f"Knowledge transfer {evidence.line()}: {METHOD_TEXT[evidence.best]} is the best measured, and is "
            "preselected with its settings.", icon=":material/science:")  # fmt: skip
else:
    st.caption(f"No measurements of knowledge transfer for {dataset} with {REGIME_TEXT[regime]} yet "
               "(bench/ntkd_regimes.py); e2e needs no teacher.")  # fmt: skip
measured_settings = evidence.settings if evidence and evidence.best == method else {}


def setting(column, label: str, low: float, high: float, name: str) -> float:
    """A transfer setting's input; its first value is the default (or what preselection put in its state)."""
    key = SETTING_KEYS[name]
    return column.number_input(label, low, high, key=key, **default_unless_kept(key, float(TRANSFER_DEFAULTS[name])))


columns = st.columns(4)
seeds = columns[0].number_input("Seeds", 1, 10, key="train.seeds", help="One job per seed (mean ± std).",
                                **default_unless_kept("train.seeds", 1))  # fmt: skip
learning_rate = columns[1].number_input("Learning rate", 1e-5, 1.0, format="%g", key="train.lr",
                                        **default_unless_kept("train.lr", 2e-3))  # fmt: skip
limit = columns[2].number_input("Training images (0: all)", 0, 100_000, step=500, key="train.limit",
                                help="A quick look: train on the first N images only.",
                                **default_unless_kept("train.limit", 0))  # fmt: skip
sensor_noise = columns[3].toggle("Camera noise", key="train.noise", help="Shot/read noise and the ADC in training.")

settings = {"dataset": dataset, "method": method, "epochs": int(epochs), "learning_rate": float(learning_rate),
            "train_limit": int(limit) or None, "sensor_noise": sensor_noise}  # fmt: skip
if method != "e2e":
    teacher = teacher_picker(dataset, design, method, key="train.teacher", train_limit=int(limit) or None)
    if teacher is not None:
        settings["teacher"] = teacher
        columns = st.columns(4)
        if method in ("ntkd", "kd+ntkd"):
            settings["alpha"] = setting(columns[0], "α (task)", 0.0, 100.0, "alpha")
            settings["beta"] = setting(columns[1], "β (NTK)", 0.0, 100.0, "beta")
            settings["ntk_normalisation"] = measured_settings.get("ntk_normalisation",
                                                                  TRANSFER_DEFAULTS["ntk_normalisation"])  # fmt: skip
        if method in ("kd", "kd+ntkd"):
            settings["temperature"] = setting(columns[2], "T", 0.1, 100.0, "temperature")
            settings["kd_alpha"] = setting(columns[3], "KD weight", 0.0, 1.0, "kd_alpha")

ready = method == "e2e" or "teacher" in settings
expected = expected_duration("train", {**settings, "design": design.to_dict()}, jobs.list_jobs(state="succeeded"))
st.caption(f"Each seed takes {expected.text()}." if expected else
           "No earlier job like this one here to time it from; its ETA shows once it runs.")  # fmt: skip
scheduler = where_it_runs("train.runs_on")
if st.button("Train (background job)", icon=":material/play_arrow:", disabled=not ready, type="primary"):
    submitted = []
    try:
        for seed in range(int(seeds)):
            submitted.append(jobs.submit("train", {**settings, "seed": seed, "design": design.to_dict()},
                                         scheduler=scheduler))  # fmt: skip
        where = f" on the Dask cluster at {scheduler}" if scheduler else ""
        st.success(f"Queued {', '.join(submitted)}{where}. They keep running if you leave or reload this page.")
    except (jobs.JobError, ClusterError) as error:
        st.error(str(error))


def job_row(job) -> dict:
    score = job.metrics.get("accuracy", job.metrics.get("miou"))
    return {"job": job.id, "kind": job.kind, "dataset": job.config.get("dataset"), "method": job.config.get("method",
            "e2e"), "seed": job.config.get("seed", 0), "state": job.state, "progress": round(100 * job.progress),
            "test score (%)": None if score is None else round(100 * score, 2), "runs on": runs_on(job),
            "message": job.message}  # fmt: skip


def live_curve(job) -> None:
    """A running training job's curve so far, and its loss terms in the last epoch."""
    try:
        history = load_history(job.artifact_dir)
    except TrainingError:
        history = []  # being written or damaged: the job's own panel says what went wrong
    if history:
        metric = headline(SPECS[job.config["dataset"]].task)
        components = {k: v for k, v in history[-1].items() if k.startswith("train_") and k != "train_loss"}
        st.plotly_chart(history_figure(history, metric), width="stretch", key=f"curve-{job.id}")
        if components:
            terms = ", ".join(f"{name[6:]} {value:.4f}" for name, value in components.items())
            st.caption(f"Loss components (last epoch): {terms}")


@st.fragment(run_every=1)
def live_panel() -> None:
    training = [job for job in jobs.list_jobs() if job.kind in ("train", "teacher")]
    active = [job for job in training if job.state in jobs.ACTIVE_STATES]
    for job in active:
        with st.container(border=True):
            job_panel(job, f"{job.kind} {job.id} ({job.config.get('dataset')}, {job.config.get('method', 'e2e')}, "
                      f"seed {job.config.get('seed', 0)})", details=live_curve)  # fmt: skip
    if training:
        st.subheader("Jobs")
        st.dataframe(pd.DataFrame([job_row(job) for job in training]), hide_index=True, width="stretch")
        finished = [job for job in training if job.kind == "train" and job.state == "succeeded"]
        for job in finished[:5]:
            st.page_link(PAGES / "inspect.py", label=f"Inspect run {job.id}", icon=":material/visibility:",
                         query_params={"run": job.id})  # fmt: skip
        for job in training:
            if job.state == "failed":
                job_panel(job, f"{job.kind} {job.id}")
    else:
        st.caption("No training jobs yet.")


live_panel()
