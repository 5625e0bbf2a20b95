"""Does the pre-training estimate rank designs like training does?

For 13 designs spanning 1–64 kernels and 3/5/7-tap kernels, on MNIST-5k and Fashion-MNIST
(a 10 000-image training subset, so 64-kernel NTKD runs stay affordable on a CPU), this
compares the NTK-regression estimate with the test accuracy the design's student actually
reaches with plain (e2e) and NTKD training (the settings and teachers of
bench/reproduce_table3.py). It reports Spearman's rank correlation and the mean absolute error,
pooled and per dataset, for the headline estimate (learning curve extrapolated to the full
training set) and for the raw subset score, and the infinite-kernel bound per dataset.

    python bench/estimator_validation.py [--seeds 1] [--threads 1]

Writes bench/results/estimator_validation.json (`spearman`, `mae_points`, `rows` of
{design, dataset, estimate, low, high, trained_e2e, trained_ntkd}); runs live in
var/estimator_validation/ and are resumed, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from reproduce_table3 import student_config, teacher_run  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from estimators.ntk_regression import BOUND_KERNELS, EstimateSettings, estimate  # noqa: E402
from onn_core.data.registry import load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.training import train  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "estimator_validation.json"
RUNS = ROOT / "var" / "estimator_validation"
TRAIN_LIMIT = {"mnist": None, "fashion-mnist": 10_000}
EPOCHS = {"mnist": 30, "fashion-mnist": 15}


def layout(kernels: int, **fields) -> Design:
    """The default optics on a metasurface sized to fit ``kernels`` signed kernels (0.94 mm apertures)."""
    rows, cols = {1: (1, 2), 2: (2, 2), 4: (2, 4), 8: (4, 4), 16: (4, 8), 32: (8, 8), 64: (8, 16)}[kernels]
    design = Design(metasurface_height=rows * 1e-3, metasurface_width=cols * 1e-3, **fields)
    assert design.kernel_count == kernels, (kernels, design.kernel_count)
    return design


DESIGNS = [
    ("mnist", "1 kernel", layout(1)),
    ("mnist", "2 kernels", layout(2)),
    ("mnist", "4 kernels", layout(4)),
    ("mnist", "8 kernels 3×3", layout(8, kernel_taps=3)),
    ("mnist", "8 kernels 7×7 (default)", layout(8)),
    ("mnist", "16 kernels", layout(16)),
    ("mnist", "64 kernels", layout(64)),
    ("fashion-mnist", "1 kernel", layout(1)),
    ("fashion-mnist", "4 kernels", layout(4)),
    ("fashion-mnist", "8 kernels 5×5", layout(8, kernel_taps=5)),
    ("fashion-mnist", "8 kernels 7×7 (default)", layout(8)),
    ("fashion-mnist", "32 kernels", layout(32)),
    ("fashion-mnist", "64 kernels", layout(64)),
]


def _write(path: Path, payload: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(temporary, path)


def trained(dataset: str, label: str, design: Design, method: str, seed: int, teacher: Path, threads: int) -> float:
    config = student_config(dataset, method, seed, teacher, threads).replace(
        train_limit=TRAIN_LIMIT[dataset], epochs=EPOCHS[dataset]
    )
    folder = RUNS / dataset / label.replace(" ", "_").replace("×", "x") / f"{method}-seed{seed}"
    return train(config, folder, design=design)["accuracy"]


def spearman(a: list[float], b: list[float]) -> float:
    return float(spearmanr(a, b).statistic)


def mae_points(a: list[float], b: list[float]) -> float:
    return 100 * statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))


def summary(rows: list[dict], key: str) -> dict:
    out = {}
    for name, subset in [("pooled", rows)] + [
        (dataset, [r for r in rows if r["dataset"] == dataset]) for dataset in TRAIN_LIMIT
    ]:
        estimates = [r[key] for r in subset]
        out[name] = {
            "spearman_vs_e2e": spearman(estimates, [r["trained_e2e"] for r in subset]),
            "spearman_vs_ntkd": spearman(estimates, [r["trained_ntkd"] for r in subset]),
            "mae_points_vs_e2e": mae_points(estimates, [r["trained_e2e"] for r in subset]),
            "mae_points_vs_ntkd": mae_points(estimates, [r["trained_ntkd"] for r in subset]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per design and method")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    done = {(r["dataset"], r["label"]): r for r in previous.get("rows", []) if r.get("n_seeds") == args.seeds}
    rows, bounds = [], previous.get("bounds", {})
    for dataset in TRAIN_LIMIT:
        data = load_dataset(dataset, image_size=(28, 28), train_limit=TRAIN_LIMIT[dataset])
        teacher = teacher_run(dataset, args.threads)
        for label, design in [(lab, d) for ds, lab, d in DESIGNS if ds == dataset]:
            if (dataset, label) in done:
                rows.append(done[(dataset, label)])
                continue
            result = estimate(design, dataset, data=data, threads=args.threads, calibrate=False)  # the raw figure
            runs = {
                method: [trained(dataset, label, design, method, seed, teacher, args.threads)
                         for seed in range(args.seeds)]
                for method in ("e2e", "ntkd")
            }  # fmt: skip
            rows.append({
                "design": design.to_dict(), "label": label, "dataset": dataset, "kernels": design.kernel_count,
                "taps": design.kernel_taps, "estimate": result.accuracy, "low": result.low, "high": result.high,
                "subset_estimate": result.subset_accuracy, "estimate_seconds": round(result.seconds, 1),
                "trained_e2e": statistics.fmean(runs["e2e"]), "trained_ntkd": statistics.fmean(runs["ntkd"]),
                "runs": runs, "n_seeds": args.seeds,
            })  # fmt: skip
            print(f"{dataset} {label}: estimate {result.accuracy:.4f} (subset {result.subset_accuracy:.4f}) "
                  f"e2e {rows[-1]['trained_e2e']:.4f} ntkd {rows[-1]['trained_ntkd']:.4f}", flush=True)  # fmt: skip
            _write(RESULTS, {**previous, "rows": rows})
        if dataset not in bounds:
            started = time.perf_counter()
            bound = {}
            for kernels in (BOUND_KERNELS // 2, BOUND_KERNELS, 2 * BOUND_KERNELS):
                settings = EstimateSettings(kernels=kernels, inits=1)
                bound[str(kernels)] = estimate(layout(8), dataset, settings, data=data, threads=args.threads,
                                             calibrate=False).accuracy
            bounds[dataset] = {"kernels": bound, "seconds": round(time.perf_counter() - started, 1)}
    stats = summary(rows, "estimate")
    payload = {
        "script": "python bench/estimator_validation.py" + (f" --seeds {args.seeds}" if args.seeds != 1 else ""),
        "hardware": f"CPU, {args.threads} thread(s), torch {torch.__version__}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "spearman": stats["pooled"]["spearman_vs_ntkd"],
        "mae_points": stats["pooled"]["mae_points_vs_ntkd"],
        "summary": stats,
        "summary_subset_estimate": summary(rows, "subset_estimate"),
        "bounds": bounds,
        "training": {d: {"epochs": EPOCHS[d], "train_limit": TRAIN_LIMIT[d]} for d in TRAIN_LIMIT},
        "rows": rows,
    }
    _write(RESULTS, payload)
    print(json.dumps({k: payload[k] for k in ("spearman", "mae_points", "summary", "bounds")}, indent=2))


if __name__ == "__main__":
    main()
