"""Fabricate page: error models or measured PSFs, yield, accuracy vs error, and compensation."""

import json
from pathlib import Path

import streamlit as st

from onn_core import jobs
from onn_core.errors import ClusterError, DesignError
from onn_core.fabrication.error_form import ERROR_FIELDS, error_model_from_form, form_from_error_model
from onn_core.fabrication.error_model import TYPICAL_PROCESS
from onn_core.fabrication.evaluate import captured_score, load_captured_maps, monte_carlo
from onn_core.fabrication.export import run_metasurface
from onn_core.fabrication.measured import MAX_MEASURED_BYTES, read_measured_psfs
from studio.run_plots import error_curve_figure, yield_figure
from studio.widgets import (
    accepted_upload,
    cached_run,
    chosen_run,
    job_panel,
    teacher_picker,
    through_the_router,
    where_it_runs,
)

QUICK_IMAGES = 1000


@st.cache_data(max_entries=32, show_spinner="Scoring the captured maps…")
def cached_captured_score(folder: str, stamp: float, path: str) -> dict:
    """The run's backend on an uploaded capture file (content-addressed, so the path is a fair key)."""
    run = cached_run(folder, stamp)
    return captured_score(run, load_captured_maps(run, path))


def latest_job(kind: str, folder: Path):
    for job in jobs.list_jobs():
        if job.kind == kind and job.config.get("run") == str(folder):
            return job
    return None


through_the_router(__file__)
st.title("Fabrication")
entry, run = chosen_run()
metasurface = run_metasurface(run, required=False)
metric = run.score_name

# ---------------------------------------------------------------- the metasurface
if metasurface is None:
    st.info("This run's kernels were trained free and have no metasurface yet. Kernel, capture and camera errors "
            "work now; pillar radius and phase errors need the radius maps of an inverse design.")  # fmt: skip
    design_job = latest_job("inverse-design", run.folder)
    designing = design_job is not None and design_job.state in jobs.ACTIVE_STATES  # its live panel: results_panel
    if not designing and st.button("Run inverse design (background job)", icon=":material/auto_fix_high:"):
        try:
            jobs.submit("inverse-design", {"run": str(run.folder)})
            st.rerun()
        except jobs.JobError as error:
            st.error(str(error))
else:
    summary = metasurface.summary()
    st.caption(f"Metasurface: {summary['sub_optics']} sub-optics of {summary['samples_per_side']}² phase pixels; "
               f"realised kernels correlate ≥ {summary['min_correlation']:.4f} with the trained ones.")  # fmt: skip

# ---------------------------------------------------------------- what fabrication does
st.subheader("Error model")
if "fabricate.form" not in st.session_state:
    st.session_state["fabricate.form"] = form_from_error_model(TYPICAL_PROCESS)
current = st.session_state["fabricate.form"]
values = {}
groups = ("Meta-atoms", "Kernels", "Capture", "Camera")
tabs = st.tabs(groups)
for group, tab in zip(groups, tabs, strict=True):
    with tab:
        columns = st.columns(3)
        for position, field in enumerate(f for f in ERROR_FIELDS if f.group == group):
            disabled = group == "Meta-atoms" and metasurface is None
            values[field.name] = columns[position % 3].number_input(
                f"{field.label} ({field.unit})", value=float(current[field.name]), step=field.step, format="%g",
                help=field.help, disabled=disabled, key=f"fabricate.{field.name}",
            )  # fmt: skip
        if group == "Camera":
            values["shot_noise"] = columns[0].toggle("Shot noise", value=bool(current["shot_noise"]),
                                                     key="fabricate.shot_noise")  # fmt: skip
            values["bit_depth"] = columns[1].number_input(
                "ADC bits (0: none)", min_value=0, max_value=16, value=int(current["bit_depth"]), key="fabricate.bits"
            )
values["seed"] = st.number_input("Draw seed", min_value=0, value=int(current["seed"]), key="fabricate.seed")
st.session_state["fabricate.form"] = values
try:
    errors = error_model_from_form(values)
except DesignError as error:
    st.error(f"This error model is not valid: {error}")
    st.stop()
st.download_button("Download error model JSON", errors.to_json(), file_name="error-model.json",
                   mime="application/json")  # fmt: skip

with st.expander("Measured data from the bench (optional)"):
    st.caption("**Measured PSFs**: an .npz with `psfs` (sub-optics × taps × taps, K⁺ of every kernel, then K⁻), at "
               f"most {MAX_MEASURED_BYTES // 2**20} MiB. They replace the simulated optics; the error model's capture "
               "and camera terms still apply.")  # fmt: skip
    upload = st.file_uploader("Measured PSF stack", type=["npz"], key="fabricate.upload",
                              max_upload_size=MAX_MEASURED_BYTES // 2**20)  # fmt: skip
    measured_path = None
    if upload is not None:
        accepted = accepted_upload(upload, lambda path: read_measured_psfs(path, run.frontends(), run.design),
                                   MAX_MEASURED_BYTES)  # fmt: skip
        if accepted is not None:
            measured_path = str(accepted[0])
            st.success(f"{upload.name}: {sum(f.kernels * f.captures_per_kernel for f in run.frontends())} PSFs "
                       "accepted.")  # fmt: skip
    st.caption("**Captured feature maps**: what the real optics and camera gave, as .npz files with `features` "
               "(N × kernels × H × W, before the ReLU), `split` and `indices` (the images' places in that split). "
               "Maps of test images are scored here; with maps of training images too, compensation fine-tunes "
               "on the captures themselves.")  # fmt: skip
    captured: dict[str, str] = {}
    uploads = st.file_uploader("Captured feature maps", type=["npz"], accept_multiple_files=True,
                               key="fabricate.captured", max_upload_size=MAX_MEASURED_BYTES // 2**20)  # fmt: skip
    for upload in uploads or []:
        accepted = accepted_upload(upload, lambda path: load_captured_maps(run, path), MAX_MEASURED_BYTES)
        if accepted is None:
            continue
        path, maps = accepted
        captured[maps.split] = str(path)
        answer = cached_captured_score(str(run.folder), (run.folder / "model.pt").stat().st_mtime, str(path))
        st.success(f"{upload.name}: {answer['images']} {answer['split']} images, accuracy "
                   f"{100 * answer['captured']:.1f} % on the captures against {100 * answer['simulated']:.1f} % "
                   f"simulated; the two agree on {100 * answer['agreement']:.1f} % of the images.")  # fmt: skip
    captured_test = captured.get("test") or captured.get("val")

if errors.needs_metasurface and metasurface is None:
    st.warning("Radius and phase errors need a metasurface; they are ignored until the inverse design is done.")
    errors = errors.without_metasurface_terms()

# ---------------------------------------------------------------- one draw now, many in the background
st.subheader("Accuracy through fabricated optics")
if st.button("One draw now", icon=":material/bolt:", help=f"One draw on the first {QUICK_IMAGES} test images."):
    measured = read_measured_psfs(measured_path, run.frontends(), run.design) if measured_path else None
    with st.spinner("Simulating the fabricated optics…"):
        quick = monte_carlo(run, errors, 1, metasurface=metasurface, measured=measured, images=QUICK_IMAGES)
    columns = st.columns(3)
    columns[0].metric(f"Trained ({metric})", f"{100 * quick.trained:.1f} %")
    columns[1].metric("As designed", f"{100 * quick.designed:.1f} %")
    columns[2].metric("Fabricated (one draw)", f"{100 * quick.mean:.1f} %",
                      delta=f"{100 * (quick.mean - quick.trained):+.1f} points")  # fmt: skip

draws = st.slider("Monte-Carlo draws", 4, 100, 20, key="fabricate.draws")
if st.button("Run yield and error curve (background job)", icon=":material/play_arrow:"):
    config = {"run": str(run.folder), "error_model": errors.to_dict(), "draws": draws,
              "factors": [0, 0.5, 1, 1.5, 2]}  # fmt: skip
    if measured_path:
        config = {**config, "measured_psfs": measured_path, "factors": None}
    try:
        jobs.submit("fabricate", config)
    except jobs.JobError as error:
        st.error(str(error))

st.subheader("Compensation: fine-tune the backend behind the fabricated optics")
columns = st.columns(3)
method = columns[0].radio(
    "Method", ("ntkd", "e2e"), horizontal=True, key="fabricate.method",
    help="NTKD matches the teacher's NTK with the backend's, on the fabricated feature maps.",
)  # fmt: skip
from_captures = "train" in captured and captured_test is not None
fraction = columns[1].slider("Captured training data (%)", 1, 100, 10, key="fabricate.fraction",
                             disabled=from_captures) / 100  # fmt: skip
epochs = columns[2].number_input("Epochs", 1, 100, 15, key="fabricate.epochs")
teacher = None
if method == "ntkd":
    teacher = teacher_picker(run.config.dataset, run.design, method, key="fabricate.teacher", own=run.config.teacher)
if from_captures:
    st.info("Compensation fine-tunes on the uploaded captures of training images and scores on the captured test "
            "maps; the error model and the simulated optics are not used.")  # fmt: skip
elif "train" in captured:
    st.warning("Captured maps of training images need captured maps of test images beside them to be scored; "
               "until then compensation uses the simulated fabrication.")  # fmt: skip
ready = method == "e2e" or teacher is not None
scheduler = where_it_runs("fabricate.runs_on")
if st.button("Compensate (background job)", icon=":material/tune:", disabled=not ready):
    chosen = {"method": method, "epochs": int(epochs), **({"teacher": teacher} if teacher is not None else {})}
    config = {"run": str(run.folder), "error_model": errors.to_dict(), "settings": {**chosen, "fraction": fraction}}
    if from_captures:
        config = {"run": str(run.folder), "settings": chosen,
                  "captured_maps": captured["train"], "captured_test_maps": captured_test}  # fmt: skip
    elif measured_path:
        config["measured_psfs"] = measured_path
    try:
        jobs.submit("compensate", config, scheduler=scheduler)
    except (jobs.JobError, ClusterError) as error:
        st.error(str(error))


@st.fragment(run_every=2)
def results_panel() -> None:
    design_job = latest_job("inverse-design", run.folder)
    if metasurface is None and design_job is not None:
        if design_job.state == "succeeded":
            st.rerun(scope="app")  # the radius maps exist now: redraw the whole page with them
        job_panel(design_job, "Inverse design")  # here, not in the page body: its progress moves every 2 s
    for kind in ("fabricate", "compensate"):
        job = latest_job(kind, run.folder)
        if job is None:
            continue
        title = "Yield" if kind == "fabricate" else "Compensation"
        if job_panel(job, title) != "succeeded":
            continue
        if kind == "fabricate":
            result = json.loads((Path(job.artifact_dir) / "fabricate.json").read_text())
            spread = result["yield"]
            st.markdown(f"**Yield** (job {job.id}): {100 * spread['mean']:.1f} ± {100 * spread['std']:.1f} % over "
                        f"{len(spread['scores'])} draws; 5th percentile {100 * spread['p05']:.1f} %.")  # fmt: skip
            left, right = st.columns(2)
            left.plotly_chart(yield_figure(spread["scores"], spread["trained"], spread["designed"], metric),
                              width="stretch")  # fmt: skip
            if result.get("curve"):
                right.plotly_chart(error_curve_figure(result["curve"], metric), width="stretch")
        else:
            result = job.metrics
            columns = st.columns(4)
            columns[0].metric("Trained", f"{100 * result['trained']:.1f} %")
            columns[1].metric("Fabricated", f"{100 * result['before']:.1f} %")
            columns[2].metric(f"After {result['method']}", f"{100 * result['after']:.1f} %",
                              delta=f"{100 * (result['after'] - result['before']):+.1f} points")  # fmt: skip
            recovered = result.get("recovered")
            columns[3].metric("Drop recovered", "–" if recovered is None else f"{100 * recovered:.0f} %")


results_panel()
