"""Streamlit pieces the pages share: the run picker (its choice lives in the URL) and cached loads.

Pages stay thin: they call these, the library, and draw. Nothing here computes physics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from onn_core import jobs
from onn_core.data import SPECS
from onn_core.errors import DataFormatError, OpticsInputError, TrainingError
from onn_core.models import default_teacher
from onn_core.paths import studio_home
from onn_core.training.catalog import RunEntry, finished_runs
from onn_core.training.duration import expected_duration
from onn_core.training.run import FinishedRun, load_run
from onn_core.training.store import find_teacher
from studio.design_form import design_headline, field_differences

PAGES = Path(__file__).resolve().parents[1] / "pages"
ROUTER = Path(__file__).resolve().parents[1] / "app.py"
Checked = TypeVar("Checked")
ROUTER_STATE = "form_values"  # app.py's design sidebar keeps its form here (app.FORM_VALUES) before any page runs
DEEP_LINK = "deep_link"
DESIGN_TO_LOAD = "design_to_load"  # a page's "use this design": app.py's sidebar loads it on the next run


def use_design(design) -> None:
    """Put ``design`` into the sidebar (and so the URL): the sidebar loads it as the app reruns."""
    st.session_state[DESIGN_TO_LOAD] = design
    st.rerun()


def through_the_router(page_file: str) -> None:
    """Make sure the page ``page_file`` runs inside app.py's router, even as a server's first request.

    Until some session has run app.py (and so ``st.navigation``), Streamlit treats ``pages/`` as a
    legacy multipage folder: a link to ``/inspect`` on a freshly started server runs that page on
    its own, without the sidebar design, and so does every later session. Inside the router the
    sidebar always runs before a page, so a session without its form state came in that way: the
    page hands over to app.py, which reopens it, with the link's query, once the router is up.
    """
    if ROUTER_STATE in st.session_state:
        return
    query = st.query_params.to_dict()  # the design and run the link carries: app.py's sidebar reads them too
    st.session_state[DEEP_LINK] = (Path(page_file).name, query)
    st.switch_page(ROUTER, query_params=query)


def follow_deep_link() -> None:
    """In app.py, after ``st.navigation``: reopen the page a legacy-mode request asked for (see above)."""
    deep_link = st.session_state.pop(DEEP_LINK, None)
    if deep_link is not None:
        name, query = deep_link
        st.switch_page(PAGES / name, query_params=query)


@st.cache_resource(max_entries=8, show_spinner="Loading the run…")
def cached_run(folder: str, stamp: float) -> FinishedRun:
    """A finished run, loaded once per server (``stamp`` = model.pt's mtime, so a rerun reloads)."""
    return load_run(folder)


def open_run(entry: RunEntry) -> FinishedRun | None:
    try:
        return cached_run(str(entry.folder), (entry.folder / "model.pt").stat().st_mtime)
    except (TrainingError, OSError) as error:
        st.error(f"This run cannot be opened: {error}")
        return None


def chosen_run() -> tuple[RunEntry, FinishedRun]:
    """The run picker, then the chosen run loaded and its design announced (see :func:`run_design_banner`);
    the page stops (with the reason shown) if there is none."""
    entry = run_picker()
    run = open_run(entry) if entry is not None else None
    if run is None:
        st.stop()
    run_design_banner(entry, run)
    return entry, run


def run_design_banner(entry: RunEntry, run: FinishedRun) -> None:
    """Say which design this page shows: the run's, never the sidebar's (a layout sent to a fab must
    be the one the designer believes it is), how it differs from the sidebar's, and offer to load it."""
    sidebar_design = st.session_state.get("design")
    differences = field_differences(run.design, sidebar_design) if sidebar_design is not None else []
    with st.container(border=True):
        st.markdown(f"**This page shows run {entry.run_id}'s design:** {design_headline(run.design)}.")
        if sidebar_design is None:
            st.caption("The sidebar's design cannot be built; it does not apply on this page.")
        elif differences:
            changes = "; ".join(f"{label} {mine} (sidebar: {theirs})" for label, mine, theirs in differences)
            st.caption(f"The sidebar's design differs and does not apply here — {changes}.")
        else:
            st.caption("The sidebar shows the same design.")
        if differences or sidebar_design is None:
            st.button("Load into sidebar", key="run_design.load", on_click=st.session_state.__setitem__,
                      args=(DESIGN_TO_LOAD, run.design),
                      help="Edit this run's design in the sidebar (the URL follows).")  # fmt: skip
    st.sidebar.caption(f"On this page the run's design applies (run {entry.run_id}); edits here apply to "
                       "Design, Data, Estimate, Search and Train.")  # fmt: skip


def sidebar_design():
    """The sidebar's validated design; the page stops, saying why, when it cannot be built."""
    design = st.session_state.get("design")
    if design is None:
        st.error(f"This design cannot be built. {st.session_state.get('design_error')}")
        st.stop()
    return design


def run_picker(label: str = "Run", *, key: str = "run", query: str = "run") -> RunEntry | None:
    """A picker over finished runs; the choice is kept in the URL (``?run=…``) so links reproduce it."""
    entries = finished_runs()
    if not entries:
        st.info("No finished runs yet: train one on the Train page.")
        return None
    ids = [entry.run_id for entry in entries]
    wanted = st.query_params.get(query)
    if wanted and wanted not in ids:
        st.warning(f"The run {wanted!r} in the link is not here (deleted, or from another machine); showing another.")
    # The link wins; else the run last chosen in this session (page switches clear the URL's query).
    remembered = st.session_state.get("selected_run")
    preferred = wanted if wanted in ids else remembered if remembered in ids else ids[0]
    chosen = st.selectbox(label, entries, index=ids.index(preferred), format_func=lambda entry: entry.label,
                          key=f"{key}.picker")  # fmt: skip
    st.session_state["selected_run"] = chosen.run_id
    if st.query_params.get(query) != chosen.run_id:
        st.query_params[query] = chosen.run_id
    return chosen


DATASET = "dataset"  # the dataset chosen on any page: Estimate, Search and Train share it (and ?dataset=…)
KEPT = "kept."


def dataset_picker(options, *, key: str, label: str = "Dataset", where=None) -> str:
    """A dataset choice shared by the pages and kept in the URL, so it survives page switches and reloads.

    ``key`` is the page's own widget key; the shared value (session, else the link's ``?dataset=``)
    is put into it before it is drawn, and a change made here becomes the shared value.
    """
    options = list(options)
    shared = st.session_state.get(DATASET) or st.query_params.get("dataset")
    if shared in options:
        st.session_state[key] = shared
    elif shared and DATASET not in st.session_state:
        st.warning(f"The dataset {shared!r} in the link is not here (removed, or from another machine).")

    def share() -> None:  # runs before the rerun, so the choice made here wins over the shared one
        st.session_state[DATASET] = st.session_state[key]

    chosen = (where or st).selectbox(label, options, key=key, on_change=share)
    st.session_state[DATASET] = chosen
    if st.query_params.get("dataset") != chosen:
        st.query_params["dataset"] = chosen
    return chosen


def keep(*keys: str) -> None:
    """Keep these widgets' values across page switches. Streamlit forgets the state of a widget that
    a run does not draw (every widget of the page left), so each value is mirrored outside the
    widgets and put back before the page draws them again. Call before the widgets are drawn, and
    draw them without a default while their key is set (see :func:`default_unless_kept`)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[KEPT + key] = st.session_state[key]
        elif KEPT + key in st.session_state:
            st.session_state[key] = st.session_state[KEPT + key]


def default_unless_kept(key: str, value) -> dict:
    """``{"value": value}`` for a widget's first draw; nothing once a value is kept (Streamlit
    warns when a widget gets both a default and a value set through its key)."""
    return {} if key in st.session_state else {"value": value}


SCHEDULER = "studio.scheduler"  # the Dask scheduler address the designer last used, for every page


def where_it_runs(key: str) -> str | None:
    """Where a job will run: this machine (None), or the Dask scheduler address the designer gives.
    The address is checked when the job is submitted (a cluster that cannot run it says why)."""
    keep(key, SCHEDULER)
    choice = st.radio("Runs on", ("This machine", "A Dask cluster"), horizontal=True, key=key,
                      help="On a cluster, the job runs on a Dask worker; its progress, log and files come back "
                      "here. Every node needs the studio installed (README: On a cluster).")  # fmt: skip
    if choice == "This machine":
        return None
    # Empty stays empty (not None): submitting then says an address is needed, rather than running here.
    return st.text_input("Scheduler address", key=SCHEDULER, placeholder="tcp://HOST:8786").strip()


def runs_on(job: jobs.Job) -> str:
    """Where a job runs, for job tables: "this machine" or its scheduler's address."""
    return job.scheduler or "this machine"


def accepted_upload(upload, check: Callable[[Path], Checked], limit: int) -> tuple[Path, Checked] | None:
    """Keep an uploaded bench file if ``check(path)`` accepts it; else say why (in the file's own name).

    Files are stored under the studio's home by content hash, never under a name the user chose,
    and at most ``limit`` bytes are accepted; ``check`` (a library reader) refuses the rest with
    DataFormatError or OpticsInputError.
    """
    if upload.size > limit:
        st.error(f"{upload.name} is {upload.size / 2**20:.1f} MiB; the limit is {limit // 2**20} MiB.")
        return None
    data = upload.getvalue()
    target = studio_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:24]}{Path(upload.name).suffix.lower()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    stored_before = target.exists()  # content-addressed: the same bytes, maybe accepted for another run's job
    if not stored_before:
        target.write_bytes(data)
    try:
        return target, check(target)
    except (DataFormatError, OpticsInputError) as error:
        st.error(str(error).replace(str(target), upload.name))
        if not stored_before:
            target.unlink(missing_ok=True)
        return None


# The files a job leaves in its folder that say what happened, most telling first.
JOB_LOGS = ("error.txt", "train.log", "compensate.log")
LOG_TAIL_LINES = 30


def job_panel(job: jobs.Job, title: str, details: Callable[[jobs.Job], Any] | None = None) -> str:
    """One background job, drawn the same on every page; returns its state.

    Queued or running: the progress bar with the job's status line (phase, step, ETA), then
    ``details(job)`` (e.g. a live training curve) and a Cancel button. Failed or cancelled: the
    reason, where its log and last checkpoint are kept, and the log's last lines. Succeeded:
    nothing; the page shows the job's results itself.
    """
    if job.state in jobs.ACTIVE_STATES:
        where = f" (on the Dask cluster at {job.scheduler})" if job.scheduler else ""
        st.progress(job.progress, text=f"{title}{where}: {job.message or job.state}")
        if details is not None:
            details(job)
        if st.button("Cancel", key=f"cancel-{job.id}"):
            jobs.cancel(job.id)
    elif job.state in ("failed", "cancelled"):
        st.error(f"{title} (job {job.id}) {job.state}: {job.error or job.message}")
        folder = Path(job.artifact_dir)
        log = next((folder / name for name in JOB_LOGS if (folder / name).is_file()), None)
        st.caption(f"Its log and last checkpoint are kept in {folder}; `python -m onn_core jobs resume {job.id}` "
                   "continues from there.")  # fmt: skip
        if log is not None:
            with st.expander(f"Last lines of {log.name}"):
                lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
                st.code("\n".join(lines[-LOG_TAIL_LINES:]), language=None)
    return job.state


# ---------------------------------------------------------------- teachers and job completion
TEACHER_EPOCHS = 20


def teachers_for(dataset: str, design, teacher_jobs: list[jobs.Job]) -> dict[str, str]:
    """Label → run folder of every finished teacher for ``dataset`` that reads the images as the
    design's student does (the teacher store's best, then the succeeded ones of ``teacher_jobs``)."""
    shape = list(design.input_shape)
    found = {}
    stored = find_teacher(dataset, input_shape=shape)
    if stored is not None:
        found[f"teacher store: {stored[1].get('model')} ({100 * stored[1].get('best_val', 0):.1f} % val)"] = str(
            stored[0])  # fmt: skip
    for job in teacher_jobs:
        reads = job.metrics.get("data", {}).get("image_shape")
        if job.state == "succeeded" and job.config.get("dataset") == dataset and reads == shape:
            score = job.metrics.get("accuracy", job.metrics.get("miou"))
            label = f"teacher job {job.id}: {job.metrics.get('model')} ({100 * (score or 0):.1f} % test)"
            found[label] = job.artifact_dir
    return found


def teacher_picker(dataset: str, design, method: str, *, key: str, own: str | None = None,
                   train_limit: int | None = None) -> str | None:  # fmt: skip
    """Pick the teacher ``method`` needs (its run folder), or train one inline; None until there is one.

    ``own``: a run's own teacher folder, offered first while it exists. A teacher job started here
    (or anywhere) for this data is watched: when it ends, the whole page reruns and offers it, so
    the designer never has to reload.
    """
    teacher_jobs = [job for job in jobs.list_jobs() if job.kind == "teacher" and job.config.get("dataset") == dataset]
    choices = {f"this run's own teacher ({Path(own).name})": own} if own and Path(own).is_dir() else {}
    choices.update(teachers_for(dataset, design, teacher_jobs))
    running = [job.id for job in teacher_jobs if job.state in jobs.ACTIVE_STATES]
    chosen = None
    if choices:
        chosen = choices[st.selectbox("Teacher", list(choices), key=key)]
    else:
        st.warning(f"{method} needs a trained teacher for {dataset}, and there is none yet"
                   + (": one is training; this page offers it when it finishes." if running else "."))  # fmt: skip
        if teacher_jobs and teacher_jobs[0].state in ("failed", "cancelled"):
            job_panel(teacher_jobs[0], f"The last teacher job for {dataset}")
    if running:
        _watch_teacher_jobs(running)
    elif not choices:
        model = default_teacher(SPECS[dataset].task)
        config = {"dataset": dataset, "model": model, "epochs": TEACHER_EPOCHS, "train_limit": train_limit,
                  "design": design.to_dict()}  # fmt: skip
        expected = expected_duration("teacher", config, [job for job in teacher_jobs if job.state == "succeeded"])
        if st.button(f"Train a {model} teacher (background job)", key=f"{key}.train",
                     help=f"{TEACHER_EPOCHS} epochs on {dataset}, images read as this design reads them."):  # fmt: skip
            try:
                jobs.submit("teacher", config)
                st.rerun()
            except jobs.JobError as error:
                st.error(str(error))
        if expected is not None:
            st.caption(f"A teacher takes {expected.text()}.")
    return chosen


@st.fragment(run_every=2)
def _watch_teacher_jobs(job_ids: list[str]) -> None:
    for job_id in job_ids:
        job = jobs.status(job_id)
        if job.state not in jobs.ACTIVE_STATES:
            st.rerun(scope="app")  # finished (or failed): redraw the page, whose picker now offers it (or says why)
        st.progress(job.progress, text=f"Teacher {job.id}: {job.message or job.state}")  # Cancel: Train's job list


JOBS_SEEN = "jobs.seen_active"


@st.fragment(run_every=3)
def running_jobs_indicator() -> None:
    """The sidebar's line of running jobs, and a notice when one this session saw running finishes."""
    active = {job.id: job for job in jobs.list_jobs() if job.state in jobs.ACTIVE_STATES}
    seen = st.session_state.get(JOBS_SEEN, set())
    for job_id in seen - set(active):
        job = jobs.status(job_id)
        icon = {"succeeded": "✅", "failed": "❌"}.get(job.state, "ℹ️")
        st.toast(f"{job.kind} job {job.id} {job.state}.", icon=icon)
    st.session_state[JOBS_SEEN] = set(active)
    if active:
        text = ", ".join(f"{job.kind} {job.id} ({100 * job.progress:.0f} %)" for job in list(active.values())[:3])
        more = f" and {len(active) - 3} more" if len(active) > 3 else ""
        st.caption(f"⏳ {len(active)} job(s) running: {text}{more}.")
