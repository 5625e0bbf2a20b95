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
from onn_core.errors import DataFormatError, OpticsInputError, TrainingError
from onn_core.paths import studio_home
from onn_core.training.catalog import RunEntry, finished_runs
from onn_core.training.run import FinishedRun, load_run

PAGES = Path(__file__).resolve().parent / "pages"
ROUTER = Path(__file__).resolve().parent / "app.py"
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
    """The run picker, then the chosen run loaded; the page stops (with the reason shown) if there is none."""
    entry = run_picker()
    run = open_run(entry) if entry is not None else None
    if run is None:
        st.stop()
    return entry, run


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
    if job.state in ("queued", "running"):
        st.progress(job.progress, text=f"{title}: {job.message or job.state}")
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
