"""Calibrate the pre-training estimate to trained accuracy, and test it on data it never saw.

Step 1 (``--collect``, hours on one core, resumable): for every dataset variant of
``bench/calibration_data.py`` (5 datasets, 17 variants) and four designs (1, 4 and 16 signed
kernels, 8 non-negative kernels), the raw NTK-regression estimate and the test accuracy of
students trained to convergence (``train --method e2e --epochs 100 --patience 15``, the best
validation weights kept, ideal frontend, no camera noise). Pairs land in
``bench/results/estimator_calibration_pairs/<dataset>.json`` (one collector per dataset family
may run at once: ``--only digits shapes``).

Step 2 (default, seconds): leave one dataset out — for each of the five datasets, the calibration
(``estimators.calibration``) is fitted on the other four, its conformal interval from their own
leave-one-dataset-out residuals, and it predicts every row of the dataset left out. Writes
``bench/results/estimator_calibration.json`` (rows {dataset, variant, design, n_train, classes,
raw, calibrated, low, high, trained_mean, trained_std, seeds} and summary {datasets,
loo_mae_points, coverage, spearman}) and fits the calibration the studio ships on every pair
(``assets/estimator_calibration.json``).

    python bench/estimator_calibration.py --collect [--seeds 2] [--threads 1]
    python bench/estimator_calibration.py
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
WORK = ROOT / "var" / "estimator_calibration"
# The variants are stored as a designer's own datasets, in a studio home of the benchmark's own.
os.environ["ONN_STUDIO_HOME"] = str(WORK / "home")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from calibration_data import VARIANTS, Variant, build  # noqa: E402

from estimators.ntk_regression import estimate  # noqa: E402
from onn_core.data import user  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.training import TrainConfig, train  # noqa: E402

# One file per dataset family, so collectors of different families can run side by side.
PAIRS = ROOT / "bench" / "results" / "estimator_calibration_pairs"
RESULTS = ROOT / "bench" / "results" / "estimator_calibration.json"
# Trained to convergence: a first protocol (30 epochs, patience 5) stopped some small, hard sets
# at chance with the training loss still falling (glyphs-n500 at epoch 7, loss 2.0), which is an
# optimiser's early exit, not what the design can reach; pairs trained under another protocol
# are retrained.
EPOCHS, PATIENCE = 100, 15
PROTOCOL = {"method": "e2e", "epochs": EPOCHS, "early_stopping_patience": PATIENCE, "frontend": "ideal"}


def _signed(kernels: int) -> Design:
    rows, cols = {1: (1, 2), 4: (2, 4), 16: (4, 8)}[kernels]
    return Design(metasurface_height=rows * 1e-3, metasurface_width=cols * 1e-3)


DESIGNS = {
    "1 kernel": _signed(1),
    "4 kernels": _signed(4),
    "16 kernels": _signed(16),
    "8 non-negative kernels": Design(metasurface_height=2e-3, metasurface_width=4e-3, signed_kernels=False),
}


def _write(path: Path, payload) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def _dataset(variant: Variant) -> str:
    if user.stored_summary(variant.name) is None:
        build(variant)
    return variant.name


def _read_pairs(parent: str | None = None) -> list[dict]:
    files = [PAIRS / f"{parent}.json"] if parent else sorted(PAIRS.glob("*.json"))
    return [pair for path in files if path.exists() for pair in json.loads(path.read_text())]


def collect(seeds: int, threads: int, only: list[str] | None) -> None:
    torch.set_num_threads(threads)
    PAIRS.mkdir(parents=True, exist_ok=True)
    parents = [p for p in dict.fromkeys(v.parent for v in VARIANTS) if not only or p in only]
    pairs = {parent: _read_pairs(parent) for parent in parents}
    index = {(p["variant"], p["design_label"]): p for mine in pairs.values() for p in mine}
    for seed in range(seeds):  # breadth first: every pair gets one seed before any gets two
        for variant in VARIANTS:
            if only and variant.parent not in only:
                continue
            for label, design in DESIGNS.items():
                pair = index.get((variant.name, label))
                if pair and pair.get("protocol") != PROTOCOL:
                    pair.update(protocol=PROTOCOL, trained=[], train_seconds=[], final_train_loss=[], epochs_run=[])
                if pair and len(pair["trained"]) > seed:
                    continue
                name = _dataset(variant)
                if pair is None:
                    raw = estimate(design, name, threads=threads, calibrate=False)
                    summary = user.stored_summary(name)
                    pair = {"dataset": variant.parent, "variant": name, "design_label": label,
                            "design": design.to_dict(), "task": "classification",
                            "classes": len(summary["classes"]), "n_train": raw.full_train_size,
                            "estimate": raw.to_dict(), "protocol": PROTOCOL, "trained": [], "train_seconds": [],
                            "final_train_loss": [], "epochs_run": []}  # fmt: skip
                    pairs[variant.parent].append(pair)
                    index[(name, label)] = pair
                started = time.perf_counter()
                config = TrainConfig(dataset=name, method="e2e", epochs=EPOCHS, early_stopping_patience=PATIENCE,
                                     seed=seed, threads=threads)  # fmt: skip
                folder = WORK / f"runs-e{EPOCHS}-p{PATIENCE}" / name / label.replace(" ", "_") / f"seed{seed}"
                metrics = train(config, folder, design=design)
                history = json.loads((folder / "history.json").read_text())
                pair["trained"].append(float(metrics["accuracy"]))
                pair["final_train_loss"].append(round(float(history[-1]["train_loss"]), 4))
                pair["epochs_run"].append(len(history))
                pair["train_seconds"].append(round(time.perf_counter() - started, 1))
                print(f"{name} {label} seed {seed}: raw {pair['estimate']['accuracy']:.4f} trained "
                      f"{metrics['accuracy']:.4f} ({pair['train_seconds'][-1]} s)", flush=True)  # fmt: skip
                _write(PAIRS / f"{variant.parent}.json", pairs[variant.parent])


def validate() -> dict:
    from estimators import calibration  # collection runs without it

    pairs = _read_pairs()
    pairs = [p for p in pairs if p["trained"] and p.get("protocol") == PROTOCOL]
    records = [calibration.Pair.from_benchmark(p) for p in pairs]
    rows = []
    for held_out in sorted({r.dataset for r in records}):
        fitted = calibration.fit([r for r in records if r.dataset != held_out])
        for record, pair in zip(records, pairs, strict=True):
            if record.dataset != held_out:
                continue
            answer = fitted.predict(record.features)
            rows.append({"dataset": record.dataset, "variant": pair["variant"], "design": pair["design_label"],
                         "n_train": record.features.n_train, "classes": record.features.classes,
                         "raw": record.features.raw, "calibrated": answer.accuracy, "low": answer.low,
                         "high": answer.high, "raw_low": pair["estimate"]["low"], "raw_high": pair["estimate"]["high"],
                         "trained_mean": record.trained,
                         "trained_std": statistics.stdev(pair["trained"]) if len(pair["trained"]) > 1 else None,
                         "seeds": len(pair["trained"])})  # fmt: skip
    summary = calibration.loo_summary(rows)
    shipped = calibration.fit(records)
    shipped.validation = {key: summary[key] for key in ("datasets", "loo_mae_points", "coverage", "spearman")}
    shipped.save(calibration.SHIPPED)
    payload = {
        "script": "python bench/estimator_calibration.py --collect && python bench/estimator_calibration.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "training": PROTOCOL,
        "level": shipped.level,
        "summary": summary,
        # The raw figure with its own range (subset score − 1 sd … extrapolation + 1 sd), for comparison.
        "raw_summary": calibration.loo_summary(
            [{**r, "calibrated": r["raw"], "low": r["raw_low"], "high": r["raw_high"]} for r in rows]
        ),
        "mean_interval_points": {"calibrated": 100 * statistics.fmean(r["high"] - r["low"] for r in rows),
                                 "raw": 100 * statistics.fmean(r["raw_high"] - r["raw_low"] for r in rows)},
        "rows": rows,
    }
    _write(RESULTS, payload)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", action="store_true", help="estimate and train the pairs (hours; resumable)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per pair")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="collect only these parent datasets")
    args = parser.parse_args()
    if args.collect:
        collect(args.seeds, args.threads, args.only)
    payload = validate()
    print(json.dumps(payload["summary"], indent=2))


if __name__ == "__main__":
    main()
