"""Export page: the files a fab and a collaborator need, for a finished run."""

import io
import zipfile
from pathlib import Path

import streamlit as st

from onn_core import jobs
from onn_core.errors import DesignError, OpticsInputError
from onn_core.fabrication.export import FORMATS, LAYOUT_NAMES, export, layout_file, run_metasurface
from onn_core.paths import studio_home
from studio.widgets import chosen_run, job_panel, through_the_router

DESCRIPTIONS = {
    "gds": "GDSII layout: one disc per meta-atom, one cell per sub-optic (gdstk, µm units, 1 nm grid)",
    "oas": "OASIS layout: the same cells and discs as the GDSII, compressed, a fraction of its size (what mask "
           "shops take for large layouts)",
    "npz": "radius and phase maps (units in the metadata), kernels and PSFs",
    "png": "radius and phase maps of the whole metasurface with mm axes, target vs realised kernels",
    "csv": "one radius matrix per sub-optic (nm) with an index of centres, and the kernels (zipped)",
    "json": "the design and a report (metrics, fidelity, provenance)",
    "safetensors": "the trained weights, without pickle; config and design as metadata",
    "html": "a self-contained report a collaborator can open anywhere",
}
MIME = {".gds": "application/octet-stream", ".oas": "application/octet-stream", ".npz": "application/octet-stream",
        ".png": "image/png",
        ".json": "application/json", ".safetensors": "application/octet-stream", ".html": "text/html",
        ".zip": "application/zip"}  # fmt: skip
# Above this many meta-atoms, writing a layout takes long enough to belong in a background job.
INLINE_ATOMS = 20_000_000
NEEDS_METASURFACE = (*LAYOUT_NAMES, "npz", "png", "csv")

through_the_router(__file__)
st.title("Export")
entry, run = chosen_run()
out = studio_home() / "exports" / entry.run_id
metasurface = run_metasurface(run, required=False)
if metasurface is None:
    st.info(
        "This run has no metasurface yet: its kernels were trained free. GDS, maps and CSV need one: run "
        "inverse design on the Fabricate page (a background job). JSON, weights and the report work now."
    )
else:
    summary = metasurface.summary()
    columns = st.columns(4)
    columns[0].metric("Sub-optics", summary["sub_optics"])
    columns[1].metric("Phase pixels", f"{summary['samples_per_side']}²")
    columns[2].metric("Kernel correlation (min)", f"{summary['min_correlation']:.4f}")
    side = summary["samples_per_side"] * metasurface.atoms_per_phase_pixel
    columns[3].metric("Meta-atoms", f"{summary['sub_optics'] * side**2:,}")


def prepare(names: list[str]) -> None:
    """Write these exports now; each format's files (and, for several, all of them) are remembered for download."""
    try:
        with st.spinner(f"Writing {', '.join(names)}…"):
            written = export(run, names, out)
    except (OpticsInputError, DesignError) as error:
        st.error(str(error))
        return
    for name, paths in written.items():
        st.session_state[f"export.{entry.run_id}.{name}"] = paths
    if len(names) > 1:
        st.session_state[f"export.{entry.run_id}.all"] = [path for paths in written.values() for path in paths]


def prepared(name: str) -> list[str] | None:
    paths = st.session_state.get(f"export.{entry.run_id}.{name}")
    return paths if paths and all(Path(p).exists() for p in paths) else None


def download(paths: list[str], name: str) -> None:
    files = [Path(p) for p in paths]
    if len(files) == 1:
        data, file_name = files[0].read_bytes(), files[0].name
    else:  # several files (CSV matrices, npz pair): one zip
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file, file.relative_to(out) if file.is_relative_to(out) else file.name)
        data, file_name = buffer.getvalue(), f"{entry.run_id}-{name}.zip"
    mime = MIME.get(Path(file_name).suffix, "application/octet-stream")
    st.download_button(f"Download {file_name}", data, file_name=file_name, mime=mime, key=f"download-{name}")


@st.fragment(run_every=2)
def layout_job_panel(name: str) -> None:
    """The background job writing this run's ``name`` layout: progress and Cancel, or why it failed;
    once it is done, the page is redrawn with the file's download."""
    job = next((j for j in jobs.list_jobs() if j.kind == "export" and j.config.get("run") == str(run.folder)
                and j.config.get("formats") == [name]), None)  # fmt: skip
    if job is None:
        return
    seen = f"export.{name}_job"
    if job_panel(job, f"{name.upper()} export (job {job.id})") == "succeeded" and st.session_state.get(seen) != job.id:
        st.session_state[seen] = job.id
        st.rerun(scope="app")


atoms = 0 if metasurface is None else metasurface.disc_radius().size * metasurface.atoms_per_phase_pixel**2
# Everything this run can export now, in one click (a layout too big to write inline stays a job).
ready = [name for name in FORMATS if (metasurface is not None or name not in NEEDS_METASURFACE)
         and not (name in LAYOUT_NAMES and atoms > INLINE_ATOMS)]  # fmt: skip
with st.container(border=True):
    st.markdown(f"**Everything** — {', '.join(name.upper() for name in ready)} in one zip")
    if st.button("Prepare all", key="prepare-all", type="primary"):
        prepare(ready)
    if everything := prepared("all"):
        download(everything, "all")

for name in FORMATS:
    needs_metasurface = name in NEEDS_METASURFACE
    with st.container(border=True):
        st.markdown(f"**{name.upper()}** — {DESCRIPTIONS[name]}")
        if needs_metasurface and metasurface is None:
            st.caption("Needs a metasurface (inverse design) first.")
            continue
        if name in LAYOUT_NAMES:
            layout_job_panel(name)  # a layout job started here or from the CLI
        if name in LAYOUT_NAMES and atoms > INLINE_ATOMS:
            st.caption(f"{atoms:,} meta-atoms: the layout is written by a background job (about a minute per "
                       "10⁸ atoms).")  # fmt: skip
            if st.button(f"Write {name.upper()} in the background", key=f"{name}-job"):
                try:
                    job_id = jobs.submit("export", {"run": str(run.folder), "formats": [name], "out": str(out)})
                    st.success(f"Export job {job_id} queued; the file appears here when it is done.")
                except jobs.JobError as error:
                    st.error(str(error))
            if (out / layout_file(name)).exists():
                download([str(out / layout_file(name))], name)
            continue
        if st.button(f"Prepare {name.upper()}", key=f"prepare-{name}"):
            prepare([name])
        if files := prepared(name):
            # The layout itself (its summary stays beside it on disk).
            download(files[:1] if name in LAYOUT_NAMES else files, name)
