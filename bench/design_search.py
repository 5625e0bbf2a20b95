"""Does the design search find what the shipped sweeps found, and cheaper?

For MNIST-5k and Fashion-MNIST it runs ``python -m onn_core search --bounds
sensor_bit_depth=4:12`` (accuracy against area, the default free fields and ranges, the bit depths
the sweeps used, seed 0) and compares the front with every design of the shipped sweeps
(``assets/sweeps/classification*.jsonl``, their estimates calibrated as the surrogate sees them):
a sweep design is *matched* when some front design reaches its accuracy − 0.5 points on
no more area. The front designs best spread along the area are confirmed by the exact NTK
regression; *within band* counts those whose exact (calibrated) figure falls inside the band the
surrogate reported for them.

    python bench/design_search.py [--budget 300] [--exact-top 4]

Writes bench/results/design_search.json {grid_points, grid_points_matched, exact_checked,
exact_within_band, trials, seconds, per_dataset, fronts}; studies live in var/design_search/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from estimators.calibration import calibrate_result  # noqa: E402
from estimators.search import run_search  # noqa: E402
from estimators.sweep import read_results  # noqa: E402
from onn_core.data.registry import SPECS  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.errors import DesignError  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "design_search.json"
FIGURE = "docs/design_search_front.png"
WORK = ROOT / "var" / "design_search"
DATASETS = ("mnist", "fashion-mnist")
TOLERANCE = 0.005  # half a point
# The sweeps varied the camera's bit depth too; the search may choose among the same depths, so a
# sweep design is never beaten merely by holding a better camera.
BOUNDS = "sensor_bit_depth=4:12"


def sweep_points(dataset: str) -> list[dict]:
    """The shipped sweeps' designs of ``dataset``: area and calibrated accuracy (seeds averaged)."""
    by_design: dict[str, dict] = {}
    for path in sorted((ROOT / "assets" / "sweeps").glob("classification*.jsonl")):
        for row in read_results(path):
            if row.get("dataset") != dataset or "result" not in row or row["settings"].get("kernels") is not None:
                continue
            try:
                design = Design.from_dict(row["design"])
            except DesignError:
                continue
            calibrated = calibrate_result(row["result"], "classification", design.signed_kernels,
                                          len(SPECS[dataset].classes))["accuracy"]  # fmt: skip
            point = by_design.setdefault(design.design_id, {"design_id": design.design_id, "values": [],
                                         "area_mm2": design.metasurface_height * design.metasurface_width * 1e6,
                                         "kernels": design.kernel_count})  # fmt: skip
            point["values"].append(calibrated)
    points = []
    for point in by_design.values():
        values = point.pop("values")
        points.append({**point, "accuracy": sum(values) / len(values)})
    return points


def covers(front_row: dict, point: dict) -> bool:
    """The front design reaches the sweep design's accuracy (less the tolerance) on no more area."""
    return front_row["accuracy"] >= point["accuracy"] - TOLERANCE and front_row["area_mm2"] <= point["area_mm2"]


def draw(fronts: dict, points: dict, path: Path) -> None:
    """The fronts (surrogate band, exact checks) against the shipped sweeps' designs, one panel a dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(fronts), figsize=(5.5 * len(fronts), 4), squeeze=False)
    for axis, (dataset, front) in zip(axes[0], fronts.items(), strict=True):
        axis.scatter([p["area_mm2"] for p in points[dataset]], [100 * p["accuracy"] for p in points[dataset]],
                     s=14, color="0.6", label="shipped sweep designs")  # fmt: skip
        area = [r["area_mm2"] for r in front]
        accuracy = [100 * r["accuracy"] for r in front]
        band = [[100 * (r["accuracy"] - r["low"]) for r in front], [100 * (r["high"] - r["accuracy"]) for r in front]]
        axis.errorbar(area, accuracy, yerr=band, fmt="o-", drawstyle="steps-post", color="#2b6cb0", ms=4,
                      elinewidth=0.6, capsize=2, label="search front (80 % band)")  # fmt: skip
        checked = [r for r in front if "exact_accuracy" in r]
        axis.scatter([r["area_mm2"] for r in checked], [100 * r["exact_accuracy"] for r in checked], marker="D",
                     color="#c53030", zorder=3, label="exact NTK regression")  # fmt: skip
        axis.set_xscale("log")
        axis.set_xlabel("metasurface area (mm²)")
        axis.set_ylabel("estimated accuracy after training (%)")
        axis.set_title(dataset)
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--exact-top", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args()
    per_dataset, fronts = {}, {}
    totals = {"grid_points": 0, "grid_points_matched": 0, "exact_checked": 0, "exact_within_band": 0, "trials": 0,
              "seconds": 0.0}  # fmt: skip
    for dataset in DATASETS:
        out = WORK / dataset
        shutil.rmtree(out, ignore_errors=True)  # a fresh study: the time to the front is part of the result
        result = run_search(dataset, out, budget=args.budget, seed=0, exact_top=args.exact_top, jobs=args.jobs,
                            bounds=BOUNDS)  # fmt: skip
        front = result["front"]
        points = sweep_points(dataset)
        matched = [p for p in points if any(covers(f, p) for f in front)]
        checked = [f for f in front if "exact_accuracy" in f]
        within = [f for f in checked if f["low"] <= f["exact_accuracy"] <= f["high"]]
        per_dataset[dataset] = {"grid_points": len(points), "grid_points_matched": len(matched),
                                "unmatched": [p for p in points if p not in matched], "exact_checked": len(checked),
                                "exact_within_band": len(within), "trials": result["trials"],
                                "feasible_trials": result["feasible_trials"], "seconds": result["seconds"],
                                "front_size": len(front)}  # fmt: skip
        fronts[dataset] = front
        for key in totals:
            totals[key] += per_dataset[dataset][key]
        print(f"{dataset}: {len(matched)}/{len(points)} sweep designs matched, {len(within)}/{len(checked)} exact "
              f"checks within band, {result['trials']} trials in {result['seconds']} s", flush=True)  # fmt: skip
    payload = {
        "script": "python bench/design_search.py" + (f" --budget {args.budget}" if args.budget != 300 else ""),
        "bounds": BOUNDS,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "tolerance_points": 100 * TOLERANCE,
        **totals,
        "seconds": round(totals["seconds"], 1),
        "per_dataset": per_dataset,
        "fronts": fronts,
    }
    draw(fronts, {dataset: sweep_points(dataset) for dataset in DATASETS}, ROOT / FIGURE)
    payload["figure"] = FIGURE
    RESULTS.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(json.dumps({k: payload[k] for k in ("grid_points", "grid_points_matched", "exact_checked",
                                              "exact_within_band", "trials", "seconds")}))  # fmt: skip


if __name__ == "__main__":
    main()
