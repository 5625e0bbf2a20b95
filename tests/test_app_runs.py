"""The Inspect, Fabricate and Export pages, headless through AppTest, on the shipped example run."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from onn_core.training.catalog import EXAMPLE_RUN

APP = str(Path(__file__).resolve().parent / "app_entry.py")


def open_page(page: str, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(autouse=True)
def studio(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ONN_JOB_IDLE_EXIT_S", "3")
    return tmp_path


def test_a_fresh_install_inspects_the_shipped_example():
    at = open_page("inspect")
    assert [t.value for t in at.title] == ["Inspect a run"]
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Test accuracy"].rstrip(" %")) > 90 and metrics["Kernels"] == "8"
    specs = [json.loads(c.proto.spec) for c in at.main.get("plotly_chart")[:2]]
    titles = [spec["layout"]["title"]["text"] for spec in specs]
    assert titles[0].startswith("signed kernels (7×7 taps of 11.72 µm)")
    assert titles[1].startswith("realised K⁺ (top) and K⁻ PSFs")  # the example is inverse-designed
    tiles = [a["text"] for a in specs[1]["layout"]["annotations"]]
    assert tiles[:2] == ["K0⁺", "K1⁺"] and "K7⁻" in tiles and "50 µm" in tiles  # 8 + 8 PSFs, a scale bar
    assert any("Predicted" in m.value for m in at.markdown)
    at.number_input(key="inspect.image").set_value(7).run()
    assert not at.exception
    assert at.query_params["run"] == "example"


def test_a_stale_run_link_says_so_and_shows_a_run():
    at = open_page("inspect", run="no-such-run")
    assert any("not here" in w.value for w in at.warning)
    assert not at.exception


@pytest.mark.parametrize("page", ["inspect", "export"])
def test_run_pages_show_the_runs_design_not_the_sidebars_and_load_it_on_request(page):
    from onn_core.design_link import to_link
    from onn_core.training.run import load_run

    example = load_run(EXAMPLE_RUN).design  # a 0.7 mm design; the sidebar shows another
    at = open_page(page, design=to_link(example.replace(metasurface_width=2e-3, sensor_bit_depth=10)))
    banner = next(m.value for m in at.markdown if "This page shows run example's design" in m.value)
    assert "0.7 × 0.7 mm metasurface, 8 signed kernels of 7 × 7 taps (aperture 0.12 mm)" in banner
    [note] = [c.value for c in at.caption if "sidebar's design differs" in c.value]
    assert "Metasurface width 0.7 mm (sidebar: 2 mm)" in note and "Bit depth 8 bits (sidebar: 10 bits)" in note
    assert any("the run's design applies" in c.value for c in at.sidebar.caption)
    next(b for b in at.button if b.label == "Load into sidebar").click().run()
    assert not at.exception and at.session_state["design"] == example
    assert at.query_params["design"] == to_link(example)
    assert any(c.value == "The sidebar shows the same design." for c in at.caption)
    assert not [b for b in at.button if b.label == "Load into sidebar"]


def test_fabricate_page_draws_once_and_refuses_a_bad_error_model():
    at = open_page("fabricate")
    assert [t.value for t in at.title] == ["Fabrication"]
    next(b for b in at.button if b.label == "One draw now").click().run()
    labels = [m.label for m in at.metric]
    assert "Fabricated (one draw)" in labels and not at.exception
    at.number_input(key="fabricate.gain").set_value(0.0).run()
    assert any("not valid" in e.value and "gain" in e.value for e in at.error)


def test_compensation_runs_as_a_job_and_the_page_shows_before_and_after():
    from onn_core import jobs

    at = open_page("fabricate")
    at.radio(key="fabricate.method").set_value("e2e").run()
    at.number_input(key="fabricate.epochs").set_value(1).run()
    compensate = next(b for b in at.button if "Compensate" in b.label)
    compensate.click().run()
    [job] = [j for j in jobs.list_jobs() if j.kind == "compensate"]
    assert job.config["run"] == str(EXAMPLE_RUN) and job.config["settings"]["method"] == "e2e"
    deadline = time.monotonic() + 240
    while jobs.status(job.id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(job.id).state == "succeeded", jobs.status(job.id).error
    again = open_page("fabricate")
    labels = [m.label for m in again.metric]
    assert "After e2e" in labels and "Drop recovered" in labels


@pytest.mark.parametrize(("page", "button"), [("fabricate", "Compensate"), ("estimate", "Run exact estimate")])
def test_a_cluster_that_is_not_there_is_said_and_nothing_is_queued(page, button):
    """Compensation and the exact estimate run on a Dask cluster too; an address nobody answers
    at is refused in the page's words, and the job is not queued."""
    from onn_core import jobs

    at = open_page(page)
    if page == "fabricate":
        at.radio(key="fabricate.method").set_value("e2e").run()  # needs no teacher: the button is live
    at.radio(key=f"{page}.runs_on").set_value("A Dask cluster").run()
    next(b for b in at.button if button in b.label).click().run()  # no address yet
    assert any("not of the form tcp://HOST:PORT" in e.value for e in at.error), at.error
    at.text_input(key="studio.scheduler").set_value("tcp://127.0.0.1:1").run()
    next(b for b in at.button if button in b.label).click().run()
    assert any("cannot reach the Dask scheduler at tcp://127.0.0.1:1" in e.value for e in at.error), at.error
    assert not at.exception and jobs.list_jobs() == []


def _captures(split: str, count: int, **errors) -> bytes:
    """The example run's feature maps of the first ``count`` ``split`` images through a fabricated draw (.npz)."""
    import io

    import numpy as np
    import torch

    from onn_core.fabrication.error_model import ErrorModel
    from onn_core.fabrication.fabricated import fabricate
    from onn_core.training.run import load_run

    run = load_run(EXAMPLE_RUN)
    indices = np.arange(count)
    with torch.no_grad():
        fabricated = fabricate(run.model, run.design, ErrorModel(seed=3, **errors))
        features = fabricated.frontend(getattr(run.data(), split).images[indices]).numpy()
    buffer = io.BytesIO()
    np.savez(buffer, features=features, split=np.array(split), indices=indices)
    return buffer.getvalue()


def test_fabricate_page_scores_captured_maps_and_compensates_from_them():
    from onn_core import jobs

    at = open_page("fabricate")
    maps = [("bench-train.npz", _captures("train", 400, kernel_sigma=0.3), "application/octet-stream"),
            ("bench-test.npz", _captures("test", 300, kernel_sigma=0.3), "application/octet-stream"),
            ("broken.npz", b"not a zip", "application/octet-stream")]  # fmt: skip
    at.file_uploader(key="fabricate.captured").set_value(maps).run()
    assert not at.exception, at.exception
    scored = [m.value for m in at.success if "images, accuracy" in m.value]
    assert any(m.startswith("bench-train.npz: 400 train images") for m in scored)
    assert any(m.startswith("bench-test.npz: 300 test images") for m in scored)
    refused = [e.value for e in at.error if "broken.npz" in e.value]
    assert refused and "uploads" not in refused[0]  # the user's file name, not where it was stored
    assert any("fine-tunes on the uploaded captures" in i.value for i in at.info)
    at.radio(key="fabricate.method").set_value("e2e").run()
    at.number_input(key="fabricate.epochs").set_value(1).run()
    next(b for b in at.button if "Compensate" in b.label).click().run()
    [job] = [j for j in jobs.list_jobs() if j.kind == "compensate"]
    assert "error_model" not in job.config and Path(job.config["captured_test_maps"]).exists()
    deadline = time.monotonic() + 240
    while jobs.status(job.id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(job.id).state == "succeeded", jobs.status(job.id).error
    assert jobs.status(job.id).metrics["source"] == "captured maps (300 test images scored)"


def test_export_page_prepares_downloads(studio):
    at = open_page("export")
    assert [t.value for t in at.title] == ["Export"]
    for name in ("json", "gds", "oas", "html"):
        next(b for b in at.button if b.label == f"Prepare {name.upper()}").click().run()
        assert not at.exception, at.exception
    assert len(at.get("download_button")) >= 3
    out = studio / "exports" / "example"
    assert (out / "metasurface.gds").stat().st_size > 10_000
    assert (out / "design.json").exists() and (out / "report.html").exists()
    from onn_core.fabrication.gds import read_gds_summary

    assert len(read_gds_summary(out / "metasurface.gds")["sub_optic_cells"]) == 16
    assert read_gds_summary(out / "metasurface.oas")["discs"] == read_gds_summary(out / "metasurface.gds")["discs"]
    next(b for b in at.button if b.label == "Prepare all").click().run()  # one click, one zip of every export
    assert not at.exception, at.exception
    assert [b for b in at.get("download_button") if b.proto.label == "Download example-all.zip"]
    names = {Path(path).name for path in at.session_state["export.example.all"]}
    assert {"metasurface.gds", "design.json", "report.html"} <= names
    assert {Path(name).suffix for name in names} >= {".gds", ".oas", ".npz", ".png", ".csv", ".json", ".safetensors",
                                                     ".html"}  # fmt: skip


def test_train_page_submits_a_job_shows_it_live_and_links_the_finished_run():
    from onn_core import jobs

    at = open_page("train")
    assert [t.value for t in at.title] == ["Train a student"]
    at.radio(key="train.method").set_value("kd").run()
    assert any("needs a trained teacher" in w.value for w in at.warning)  # and Train is disabled
    assert next(b for b in at.button if "Train (background job)" in b.label).disabled
    at.radio(key="train.method").set_value("e2e").run()
    at.selectbox(key="train.dataset").set_value("digits").run()
    at.number_input(key="train.epochs").set_value(1).run()
    at.number_input(key="train.limit").set_value(300).run()
    assert any("No earlier job like this one" in c.value for c in at.caption)  # no basis for a duration yet
    at.radio(key="train.runs_on").set_value("A Dask cluster").run()  # a cluster that is not there: said, not queued
    at.text_input(key="studio.scheduler").set_value("tcp://127.0.0.1:1").run()
    next(b for b in at.button if "Train (background job)" in b.label).click().run()
    assert any("cannot reach the Dask scheduler at tcp://127.0.0.1:1" in e.value for e in at.error), at.error
    assert jobs.list_jobs() == []
    at.radio(key="train.runs_on").set_value("This machine").run()
    next(b for b in at.button if "Train (background job)" in b.label).click().run()
    [job] = jobs.list_jobs()
    assert job.scheduler is None
    assert job.kind == "train" and job.config["dataset"] == "digits" and job.config["design"]["kernel_size"] > 0
    deadline = time.monotonic() + 240
    while jobs.status(job.id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(1)
    assert jobs.status(job.id).state == "succeeded", jobs.status(job.id).error
    again = open_page("train", dataset="digits")  # a reload reattaches: the job list comes from the job store
    assert not at.exception and len(again.dataframe) == 1
    assert again.dataframe[0].value["runs on"].tolist() == ["this machine"]
    again.number_input(key="train.limit").set_value(300).run()  # the same job again: timed from the first
    [said] = [c.value for c in again.caption if c.value.startswith("Each seed takes about")]
    assert said.endswith("(from 1 earlier e2e train job here, this design on this data).")
    inspect = open_page("inspect", run=job.id)
    assert inspect.selectbox(key="run.picker").value.run_id == job.id
    # The comparison with the shipped example: runs as columns, numbers and text mixed in each.
    assert not inspect.exception, inspect.exception
    compared = inspect.dataframe[-1].value
    assert "example_run" in compared.columns
    assert compared.loc["kernels", "example_run"] == "8" and "energy / image (µJ)" in compared.index


def test_train_page_shows_what_was_measured_and_preselects_the_best_method(tmp_path, monkeypatch):
    from onn_core.training import evidence

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"measured": {"digits": {"signed": {
        "seeds": 5, "gain_over_e2e_points": {"kd": 1.7, "ntkd": 1.1}, "best": "ntkd",
        "chosen": {"beta": 0.3, "ntk_normalisation": "trace"}}}}}))  # fmt: skip
    monkeypatch.setattr(evidence, "SUMMARY", summary)
    at = open_page("train")
    dataset = at.selectbox(key="train.dataset").value
    assert dataset != "digits" and at.radio(key="train.method").value == "e2e"
    unmeasured = f"No measurements of knowledge transfer for {dataset} with signed kernels"
    assert any(unmeasured in caption.value for caption in at.caption)
    at.selectbox(key="train.dataset").set_value("digits").run()
    assert not at.exception, at.exception
    [line] = [i.value for i in at.info if "Knowledge transfer" in i.value]
    assert "measured on digits, signed kernels, 5 seeds: KD +1.7, NTKD +1.1 over e2e" in line
    assert "NTKD is the best" in line
    assert at.radio(key="train.method").value == "ntkd"
    # The designer's own choice stands until the dataset or regime changes again.
    at.radio(key="train.method").set_value("kd").run()
    assert at.radio(key="train.method").value == "kd"
    # Back on unmeasured data the preselection does not carry over.
    at.selectbox(key="train.dataset").set_value(dataset).run()
    assert at.radio(key="train.method").value == "e2e"


def test_a_failed_job_shows_its_reason_where_its_log_is_and_the_logs_last_lines():
    from onn_core import jobs

    # Valid to queue, fails when run: KD with no teacher anywhere in the store.
    job_id = jobs.submit("train", {"dataset": "digits", "method": "kd", "epochs": 1, "design": None},
                         start_worker=False)  # fmt: skip
    jobs.work(idle_exit=None, once=True)
    failed = jobs.status(job_id)
    assert failed.state == "failed" and "needs a trained teacher" in failed.error
    at = open_page("train")
    assert any(f"(job {job_id}) failed" in e.value and "needs a trained teacher" in e.value for e in at.error)
    assert any(failed.artifact_dir in c.value and f"jobs resume {job_id}" in c.value for c in at.caption)
    [log] = [e for e in at.expander if "Last lines of error.txt" in e.label]
    assert "TrainingError" in log.code[0].value


def test_export_page_shows_a_background_layout_job_and_cancels_it(studio):
    from onn_core import jobs

    job_id = jobs.submit("export", {"run": str(EXAMPLE_RUN), "formats": ["gds"], "out": str(studio / "out")},
                         start_worker=False)  # fmt: skip
    at = open_page("export")
    [bar] = [p for p in at.get("progress") if f"GDS export (job {job_id})" in p.proto.text]
    assert "queued" in bar.proto.text
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert jobs.status(job_id).state == "cancelled"


def test_the_dataset_and_the_train_form_are_kept_across_pages_and_the_dataset_across_reloads():
    at = open_page("train")
    at.selectbox(key="train.dataset").select("digits").run()
    at.number_input(key="train.epochs").set_value(7).run()
    at.radio(key="train.method").set_value("kd").run()
    assert at.query_params["dataset"] == "digits"
    at.switch_page("../pages/search.py").run()
    assert at.selectbox(key="search.dataset").value == "digits" and not at.exception
    at.switch_page("../pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key="train.dataset").value == "digits"
    assert at.number_input(key="train.epochs").value == 7 and at.radio(key="train.method").value == "kd"
    reloaded = open_page("train", dataset="digits")  # a reload: a new session, the link's dataset
    assert reloaded.selectbox(key="train.dataset").value == "digits"
    stale = open_page("train", dataset="no-such-data")
    assert any("'no-such-data' in the link is not here" in w.value for w in stale.warning)


def test_a_running_inverse_design_is_shown_once_live_and_not_offered_again(monkeypatch):
    from onn_core import jobs
    from onn_core.fabrication import export

    monkeypatch.setattr(export, "run_metasurface", lambda run, required=True: None)  # free kernels, no metasurface
    job_id = jobs.submit("inverse-design", {"run": str(EXAMPLE_RUN)}, start_worker=False)
    at = open_page("fabricate")
    bars = [p for p in at.get("progress") if p.proto.text.startswith("Inverse design")]
    assert len(bars) == 1 and "queued" in bars[0].proto.text  # drawn by the page's live (2 s) fragment only
    assert not [b for b in at.button if b.label.startswith("Run inverse design")]
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert jobs.status(job_id).state == "cancelled"
    again = open_page("fabricate")
    assert any(b.label.startswith("Run inverse design") for b in again.button)
