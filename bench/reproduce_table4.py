"""Reproduce the method's Table 4: fabrication errors, then no / e2e / NTKD compensation.

Usage:
    python bench/reproduce_table4.py [--tasks fashion-mnist shapes-seg] [--seeds 5] [--threads 2]
    python bench/reproduce_table4.py --regime non-negative [--tasks ...]   # the regimes benchmark's students

``--regime non-negative`` fabricates the NTKD students of ``bench/ntkd_regimes.py`` in its
``non-negative`` regime (var/regimes/<task>/non-negative/ntkd/seedN: exact structured kernels,
settings chosen on validation) instead of Table 3's signed ones, and writes
bench/results/reproduce_table4_non_negative.json; the signed results stay in
reproduce_table4.json. Compensation uses the default (structured) student kernel either way.
The non-negative students go through **the signed table's calibrated process** (its error model,
read from reproduce_table4.json), not a calibration of their own: the same fab and camera, other
students. Amended 2026-12-05, before any non-negative test score: calibrating the segmentation
students to the 15-point target is impossible with a plausible process — their validation drop
was 0.0, 0.3, 3.5, 14.8 and 16.3 points at × 1, 2, 4, 8 and 16 of the base model (target 16.5),
and × 32 asks for a gain spread above 100 % — so the comparison is made at equal process, where
it is physical. A calibration that leaves the plausible range now stops with that explanation.

Students: the NTKD-trained students of ``bench/reproduce_table3.py`` (var/table3/<task>/ntkd/seedN,
5 seeds; run that first), as the method fabricates its NTKD-trained model. Each seed's student is
"fabricated" with one draw of the task's error model (draw seed = student seed), then its backend
is fine-tuned on 10 % of the training images as the fabricated optics capture them, with the
task loss alone (e2e) or with NTKD (the run's own α, β and NTK normalisation; teacher on the raw
images, student NTK over the backend only). Scores are on the full test split through the same
fabricated optics.

The error model (SI units, onn_core/fabrication/error_model.py) has the terms that matter for
these coarse kernels: per-capture misalignment, PSF blur, tap-level kernel error, per-capture
gain, and a noisy 8-bit camera. Its magnitude is **calibrated on the validation split**: the
smallest scale of a base model whose mean drop, over the table's own students and draws
(student s, draw seed s), reaches 1.1 × the issue's target (≥ 8 accuracy points on Fashion-MNIST,
≥ 15 mIoU points on shapes-seg). Single draws scatter by several points (a per-capture
misalignment that hits a K⁺/K⁻ pair costs more), so calibrating on other draws misses the table's
mean; the test split is never read by the calibration. Meta-atom terms (radius error, phase
noise) are left out: on these 11.7 µm taps their effect is small (see bench/inverse_design.py's
sensitivity), and simulating them needs each seed's inverse design (minutes per seed on the
default design).

Output: bench/results/reproduce_table4.json with ``rows`` of {task, dataset, method, metric,
mean, std, n_seeds, simulated_reference} (method ∈ none, e2e, ntkd), per-seed scores, the
calibrated error model and timings. Rewritten after every seed, so an interrupted run keeps what
it measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.errors import DesignError  # noqa: E402
from onn_core.fabrication.compensate import CompensationSettings, compensate  # noqa: E402
from onn_core.fabrication.error_model import ErrorModel  # noqa: E402
from onn_core.fabrication.evaluate import monte_carlo  # noqa: E402
from onn_core.training.run import load_run  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reproduce_table4.json"
RUNS = ROOT / "var" / "table3"
REGIME_RUNS = ROOT / "var" / "regimes"
PAPER = {  # the method's Table 4 (fabricated; no spread published)
    "MNIST": {"none": 89.2, "e2e": 93.2, "ntkd": 95.1},
    "CIFAR-10": {"none": 47.3, "e2e": 70.4, "ntkd": 74.9},
    "Carvana (mIoU)": {"none": 49.7, "e2e": 62.7, "ntkd": 81.2},
}
# Base error models per task (scaled by the calibration). Metres, radians, electrons.
BASE = {
    "fashion-mnist": ErrorModel(shift_sigma=2e-6, psf_blur=2e-6, kernel_sigma=0.03, gain_sigma=0.05, read_noise=5.0,
                                shot_noise=True, bit_depth=8),
    "shapes-seg": ErrorModel(shift_sigma=2e-6, psf_blur=2e-6, kernel_sigma=0.03, gain_sigma=0.05, read_noise=5.0,
                             shot_noise=True, bit_depth=8),
}  # fmt: skip
TARGET_DROP = {"fashion-mnist": 0.08, "shapes-seg": 0.15}
MARGIN = 1.1  # validation and test drops differ a little
COMPENSATION = {"fraction": 0.1, "epochs": 15, "learning_rate": 1e-3}


def calibrate(runs, base: ErrorModel, target: float, log) -> tuple[ErrorModel, list[dict]]:
    """Smallest scale (bisection, 6 steps) of ``base`` whose mean drop reaches ``target``.

    The drop is measured on the *validation* split, over the very students and draws the table
    uses (student s fabricated with draw seed s): single draws scatter by several points, so a
    calibration on other draws misses the table's mean. The test split is never read here.
    """
    trials = []

    def drop(factor: float) -> float:
        drops = []
        for seed, run in enumerate(runs):
            result = monte_carlo(run, base.scaled(factor).with_seed(seed), draws=1, split="val")
            drops.append(result.trained - result.mean)
        value = statistics.mean(drops)
        trials.append({"factor": factor, "drop": value, "drops": drops})
        log(f"  calibration × {factor:.3g}: validation drop {100 * value:.1f} points")
        return value

    low, high = 0.0, 1.0
    while drop(high) < target:
        low, high = high, high * 2
        try:
            base.scaled(high)
        except DesignError as error:
            raise SystemExit(f"the base error model cannot reach a {100 * target:.1f}-point drop within a plausible "
                             f"process: × {low:g} reaches {100 * trials[-1]['drop']:.1f} points, and × {high:g} "
                             f"is refused ({error})") from None  # fmt: skip
    for _ in range(6):
        middle = (low + high) / 2
        if drop(middle) >= target:
            high = middle
        else:
            low = middle
    return base.scaled(high), trials


def signed_process(task: str) -> ErrorModel:
    """The error model the signed table calibrated for ``task`` (the same fab and camera)."""
    signed = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if task not in signed.get("tasks", {}):
        raise SystemExit(
            f"no calibrated process for {task}: run `python bench/reproduce_table4.py --tasks {task}` first"
        )
    return ErrorModel.from_dict(signed["tasks"][task]["error_model"])


def summarise(task: str, per_seed: dict[str, list[float]], reference: list[float], metric: str) -> list[dict]:
    rows = []
    for method in ("none", "e2e", "ntkd"):
        scores = per_seed.get(method, [])
        if not scores:
            continue
        rows.append({
            "task": "segmentation" if task == "shapes-seg" else "classification", "dataset": task, "method": method,
            "metric": metric, "mean": statistics.mean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "n_seeds": len(scores), "simulated_reference": statistics.mean(reference) if reference else None,
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["fashion-mnist", "shapes-seg"], choices=sorted(BASE))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", action="append", default=[], metavar="TASK=FACTOR",
                        help="reuse a calibrated scale of the base error model (skips the calibration)")  # fmt: skip
    parser.add_argument("--regime", choices=("signed", "non-negative"), default="signed",
                        help="signed: Table 3's students; non-negative: the regimes benchmark's")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = RESULTS if args.regime == "signed" else RESULTS.with_name("reproduce_table4_non_negative.json")
    table4_runs = "table4" if args.regime == "signed" else f"table4-{args.regime}"
    existing = json.loads(results.read_text()) if results.exists() else {}
    report = {"generated": datetime.now(UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
              "paper": PAPER, "compensation": COMPENSATION, "threads": args.threads, "tasks": existing.get("tasks", {}),
              "rows": [row for row in existing.get("rows", []) if row["dataset"] not in args.tasks]}  # fmt: skip

    def log(text: str) -> None:
        print(text, flush=True)

    for task in args.tasks:
        students = RUNS / task / "ntkd" if args.regime == "signed" else REGIME_RUNS / task / args.regime / "ntkd"
        folders = [students / f"seed{seed}" for seed in range(args.seeds)]
        missing = [str(f) for f in folders if not (f / "metrics.json").exists()]
        if missing:
            producer = (f"python bench/reproduce_table3.py --tasks {task}" if args.regime == "signed"
                        else f"python bench/ntkd_regimes.py --datasets {task} --regimes {args.regime}")  # fmt: skip
            raise SystemExit(f"missing trained students {missing}: run `{producer}` first")
        runs = [load_run(folder) for folder in folders]
        first = runs[0]
        log(f"{task}: {len(runs)} students of the {args.regime} regime")
        given = dict(item.split("=", 1) for item in args.scale)
        if task in given:
            errors, trials = BASE[task].scaled(float(given[task])), [{"factor": float(given[task]), "reused": True}]
            log(f"  reusing the calibrated scale × {given[task]}")
        elif args.regime != "signed":
            errors, trials = signed_process(task), [{"reused": "the signed table's calibrated error model"}]
            log(f"  the signed table's process: {', '.join(errors.describe())}")
        else:
            log(f"  calibrating the error model on validation (target drop {100 * TARGET_DROP[task]:.0f} points)")
            errors, trials = calibrate(runs, BASE[task], MARGIN * TARGET_DROP[task], log)
        entry = {"error_model": errors.to_dict(), "terms": errors.describe(), "calibration": trials, "seeds": [],
                 "command": " ".join(sys.argv)}  # fmt: skip
        report["tasks"][task] = entry
        per_seed: dict[str, list[float]] = {"none": [], "e2e": [], "ntkd": []}
        reference = []
        for seed, (folder, run) in enumerate(zip(folders, runs, strict=True)):
            draw = errors.with_seed(seed)
            record = {"seed": seed, "run": str(folder), "trained": float(run.metrics[run.score_name])}
            for method in ("e2e", "ntkd"):
                settings = CompensationSettings(method=method, seed=seed, **COMPENSATION)
                result = compensate(run, settings, errors=draw, out_dir=ROOT / "var" / table4_runs / task /
                                    method / f"seed{seed}")  # fmt: skip
                record["none"] = result.before
                record[method] = result.after
                record[f"{method}_seconds"] = result.seconds
                record[f"{method}_best_epoch"] = result.best_epoch
                log(f"  seed {seed} {method}: {100 * result.trained:.1f} → fabricated {100 * result.before:.1f} → "
                    f"{100 * result.after:.1f} ({result.seconds:.0f} s)")  # fmt: skip
            entry["seeds"].append(record)
            reference.append(record["trained"])
            for method in per_seed:
                per_seed[method].append(record[method])
            report["rows"] = [r for r in report["rows"] if r["dataset"] != task] + summarise(
                task, per_seed, reference, first.score_name)  # fmt: skip
            report["seconds"] = time.perf_counter() - started
            results.write_text(json.dumps(report, indent=2))
    for row in report["rows"]:
        log(f"{row['dataset']:14s} {row['method']:5s} {100 * row['mean']:.1f} ± {100 * row['std']:.1f} "
            f"(simulated {100 * row['simulated_reference']:.1f}, {row['n_seeds']} seeds)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
