"""Sweeps on loky and on a real Dask LocalCluster; resuming; the surrogate and the estimate CLI."""

import json
import time

import numpy as np
import pytest

from estimators.calibration import calibrate_result
from estimators.surrogate import FEATURES, design_features, fit_surrogate, surrogate_for
from estimators.sweep import expand_spec, finished, read_results, run_point, run_sweep
from onn_core.cli import main
from onn_core.design import Design
from onn_core.errors import SurrogateUnavailable, SweepError

# 8 × 8 digits through 3 × 3 kernels on sub-millimetre metasurfaces: a few seconds per point.
BASE = {"kernel_size": 4e-5, "kernel_spacing": 1e-5, "input_height": 8, "input_width": 8, "kernel_taps": 3}
SPEC = {
    "datasets": ["digits"],
    "base": BASE,
    "grid": {"metasurface_width": [1e-4, 1.5e-4], "metasurface_height": [1e-4, 1.5e-4]},
    "settings": {"train_size": 150, "val_size": 60, "test_size": 100, "inits": 1},
    "seeds": [0],
}


def _accuracies(path):
    return {row["point_id"]: row["result"]["accuracy"] for row in read_results(path) if "result" in row}


def test_grid_expands_every_combination_and_keeps_unbuildable_designs_with_the_reason():
    points = expand_spec(SPEC)
    assert len(points) == 4 and len({p["point_id"] for p in points}) == 4
    # 100 µm × 100 µm fits 2 × 2 sub-optics of 40 µm; every point is buildable here.
    row = run_point({**points[0], "design": {**points[0]["design"], "kernel_size": 2e-3}})
    assert "error" in row and "kernel_size" in row["error"] and "result" not in row


def test_loky_sweep_appends_provenance_and_resumes_without_redoing_points(tmp_path):
    out = tmp_path / "results.jsonl"
    first = run_sweep(SPEC, out, backend="loky", jobs=2)
    assert first["ran"] == 4 and first["already_done"] == 0
    rows = read_results(out)
    assert {"design", "dataset", "seed", "settings", "estimator_version", "seconds", "host", "result"} <= set(rows[0])
    assert Design.from_dict(rows[0]["design"]).design_id == rows[0]["design_id"]
    again = run_sweep(SPEC, out, backend="loky", jobs=2)
    assert again["ran"] == 0 and again["already_done"] == 4


def test_a_sweep_killed_mid_write_resumes_and_keeps_its_file_readable(tmp_path):
    out = tmp_path / "results.jsonl"
    half = {**SPEC, "grid": {**SPEC["grid"], "metasurface_height": [1e-4]}}
    assert run_sweep(half, out, backend="loky", jobs=1)["ran"] == 2
    with out.open("a") as handle:  # a crash mid-write leaves a torn last line
        handle.write('{"point_id": "torn')
    resumed = run_sweep(SPEC, out, backend="loky", jobs=1)
    assert resumed["ran"] == 2 and resumed["already_done"] == 2
    rows = read_results(out)  # every line parses: the torn tail was cut before appending
    assert len(rows) == 4 and len({r["point_id"] for r in rows}) == 4
    assert out.read_text().count("\n") == 4


def test_failures_that_may_pass_later_are_retried_and_design_errors_are_not(tmp_path, monkeypatch):
    out = tmp_path / "results.jsonl"
    spec = {**SPEC, "grid": {"metasurface_width": [1e-4], "metasurface_height": [1e-4]}}
    [point] = expand_spec(spec)

    def out_of_memory(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr("estimators.sweep.estimate", out_of_memory)
    row = run_point(point)
    assert row["retryable"] is True and "MemoryError" in row["error"] and not finished(row)
    out.write_text(json.dumps(row) + "\n")
    monkeypatch.undo()
    assert run_sweep(spec, out, backend="loky", jobs=1)["ran"] == 1  # tried again
    bad = run_point({**point, "design": {**point["design"], "kernel_size": 2e-3}})
    assert bad["retryable"] is False and finished(bad)


def test_two_sweeps_on_one_file_are_refused(tmp_path):
    import fcntl

    out = tmp_path / "results.jsonl"
    with out.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(SweepError, match="another sweep"):
            run_sweep(SPEC, out, backend="loky", jobs=1)


def test_dask_on_a_local_cluster_gives_the_same_numbers_as_loky(tmp_path):
    run_sweep(SPEC, tmp_path / "loky.jsonl", backend="loky", jobs=2)
    started = time.perf_counter()
    summary = run_sweep(SPEC, tmp_path / "dask.jsonl", backend="dask", jobs=2)
    assert summary["ran"] == 4, summary
    assert time.perf_counter() - started < 120
    loky, dask = _accuracies(tmp_path / "loky.jsonl"), _accuracies(tmp_path / "dask.jsonl")
    assert loky == dask and len(loky) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": ["imagenet"]}, "unknown dataset"),
        ({"grid": {"kernel_colour": [1]}}, "not a design field"),
        ({"random": {"samples": 3, "ranges": {"kernel_taps": [3, 5]}}}, "exactly one"),
        ({"settings": {"epochs": 3}}, "unknown estimator setting"),
        ({"seeds": [-1]}, "seeds"),
    ],
)
def test_bad_sweep_specs_are_refused_with_the_reason(change, message):
    with pytest.raises(SweepError, match=message):
        expand_spec({**SPEC, **change})


def test_random_sample_is_seeded_and_respects_the_kernel_filter():
    spec = {
        "datasets": ["digits"], "base": {**BASE, "metasurface_height": 1e-4},
        "filters": {"min_kernels": 2, "max_kernels": 10},
        "random": {"samples": 6, "seed": 3, "ranges": {"metasurface_width": [1e-4, 5e-4], "kernel_taps": [3, 5]}},
    }  # fmt: skip
    first, second = expand_spec(spec), expand_spec(spec)
    assert [p["point_id"] for p in first] == [p["point_id"] for p in second] and len(first) == 6
    assert all(2 <= Design.from_dict(p["design"]).kernel_count <= 10 for p in first)


def _synthetic_results(path, dataset="mnist", count=30):
    """Sweep rows whose accuracy follows a known smooth law of the kernel count."""
    rng = np.random.default_rng(0)
    with path.open("w") as handle:
        for _ in range(count):
            width = float(np.exp(rng.uniform(np.log(1.0e-3), np.log(12e-3))))
            design = Design(metasurface_width=width, kernel_taps=int(rng.choice([3, 5, 7])))
            accuracy = 0.99 - 0.06 / (1 + design.kernel_count)
            row = {"point_id": design.design_id, "dataset": dataset, "design": design.to_dict(),
                   "estimator_version": "ntk-regression/1", "result": {"accuracy": accuracy}}  # fmt: skip
            handle.write(json.dumps(row) + "\n")


def test_surrogate_fits_by_cross_validation_answers_fast_and_flags_extrapolation(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    results = tmp_path / "sweep.jsonl"
    _synthetic_results(results)
    surrogate = fit_surrogate("mnist", [results])
    assert surrogate.kind in ("gp", "gbm") and set(surrogate.cv_mae) == {"gp", "gbm"}
    assert surrogate.cv_mae[surrogate.kind] == min(surrogate.cv_mae.values())
    inside = Design(metasurface_width=6e-3, kernel_taps=5)
    answer = surrogate.predict(inside)
    assert answer.low <= answer.accuracy <= answer.high
    # Fitted on calibrated figures: the law's raw value, calibrated, is what it must reproduce.
    raw = {"accuracy": 0.99 - 0.06 / (1 + inside.kernel_count), "kernels": inside.kernel_count}
    assert answer.accuracy == pytest.approx(calibrate_result(raw, "classification", True, 10)["accuracy"], abs=0.01)
    assert answer.calibrated
    assert not answer.extrapolation
    times = []
    for _ in range(20):
        times.append(surrogate.predict(inside).seconds)
    assert np.median(times) < 0.05
    outside = surrogate.predict(Design(metasurface_width=12e-3, metasurface_height=12e-3, kernel_taps=9))
    assert outside.extrapolation and {"log2_kernels", "kernel_taps"} <= set(outside.outside)
    assert surrogate.predict(inside.replace(input_height=32, input_width=32)).outside == ["input_size"]
    # A second fit reuses the cached hyperparameters and gives the same model.
    again = fit_surrogate("mnist", [results])
    assert again.kind == surrogate.kind and again.predict(inside).accuracy == pytest.approx(answer.accuracy)


def test_surrogate_without_sweep_results_says_what_to_do(tmp_path):
    with pytest.raises(SurrogateUnavailable, match="--exact"):
        fit_surrogate("digits", [tmp_path / "none.jsonl"])


def test_design_features_are_physical():
    features = design_features(Design())
    assert set(features) == set(FEATURES)
    assert features["log2_kernels"] == 3 and features["band_ratio"] == 1.0
    tiny = Design(kernel_size=30e-6, kernel_spacing=10e-6, metasurface_height=0.1e-3, metasurface_width=0.1e-3)
    # cutoff k/(λz) over the taps' Nyquist 1/(2·tap pitch)
    expected = (30e-6 / (532e-9 * 2.4e-3)) * 2 * tiny.tap_pitch
    assert design_features(tiny)["band_ratio"] == pytest.approx(expected)


def test_estimate_cli_surrogate_and_exact_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    results = tmp_path / "sweep.jsonl"
    _synthetic_results(results)
    design = tmp_path / "design.json"
    design.write_text(Design().to_json())
    assert main(["estimate", "--design", str(design), "--dataset", "mnist", "--results", str(results), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {"accuracy", "low", "high", "method", "extrapolation", "seconds"} <= set(answer)
    assert answer["method"] == "surrogate" and answer["seconds"] < 0.05
    small = tmp_path / "small.json"
    small.write_text(Design.from_dict({**BASE, "metasurface_width": 1e-4, "metasurface_height": 1e-4}).to_json())
    assert main(["estimate", "--design", str(small), "--dataset", "digits", "--exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert exact["method"] == "ntk" and 0 < exact["accuracy"] <= 1 and exact["extrapolation"] is False
    # A three-wavelength student reads grey MNIST repeated: another model than the swept ones,
    # so the surrogate does not answer for it (the estimate runs the exact regression instead).
    rgb = Design(wavelengths=(450e-9, 532e-9, 635e-9), input_channels=3)
    with pytest.raises(SurrogateUnavailable, match=r"reading 1 colour channel\(s\) and this design reads 3"):
        surrogate_for("mnist", rgb, [results])
    # Unknown datasets and missing results files are refused with the reason, not a traceback.
    assert main(["estimate", "--dataset", "imagenet", "--json"]) == 2
    assert "unknown dataset" in json.loads(capsys.readouterr().out)["error"]
    assert main(["estimate", "--dataset", "mnist", "--results", str(tmp_path / "typo.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    assert exact["fitted_on"] is None and "why" not in exact
    assert answer["fitted_on"] == "mnist"
    # No sweep of this dataset: the exact estimate answers, and says why.
    assert main(["estimate", "--design", str(small), "--dataset", "digits", "--results", str(results), "--json"]) == 0
    fallback = json.loads(capsys.readouterr().out)
    assert fallback["method"] == "ntk" and "no instant estimate" in fallback["why"] and "digits" in fallback["why"]
    # Another copy of a dataset is not what the surrogate was fitted on: exact, and said so.
    npz = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x_train=rng.integers(0, 255, (600, 28, 28), dtype=np.uint8), y_train=np.arange(600) % 10,
             x_test=rng.integers(0, 255, (100, 28, 28), dtype=np.uint8), y_test=np.arange(100) % 10)  # fmt: skip
    assert main(["estimate", "--design", str(small), "--dataset", "mnist", "--data-root", str(npz)]) == 0
    assert f"not on {npz}" in capsys.readouterr().err
