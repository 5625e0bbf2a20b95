"""What an estimate costs, and how its answer depends on the regression's subset size.

* Surrogate: median time of one query (after the one-time fit), per embedded dataset.
* Exact NTK regression of the default design on MNIST-5k and Fashion-MNIST (2 threads): wall
  time of the query (data already loaded), and, for training subsets of 500 … 6 000 images, the
  subset score and the extrapolated estimate, against the largest subset as the reference.

    python bench/estimator_cost.py [--threads 2]

Writes bench/results/estimator_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from estimators.ntk_regression import EstimateSettings, estimate  # noqa: E402
from estimators.surrogate import load_surrogate  # noqa: E402
from onn_core.data.registry import load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "estimator_cost.json"
SIZES = {"mnist": (500, 1000, 2000, 3000, 3600), "fashion-mnist": (500, 1000, 2000, 3000, 6000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    surrogate_rows = []
    for dataset, design in (("mnist", Design()), ("fashion-mnist", Design()),
                            ("shapes-seg", Design(input_height=64, input_width=64, kernel_taps=3))):  # fmt: skip
        started = time.perf_counter()
        surrogate = load_surrogate(dataset)
        fit_s = time.perf_counter() - started
        times = [surrogate.predict(design).seconds for _ in range(200)]
        answer = surrogate.predict(design)
        surrogate_rows.append({
            "dataset": dataset, "kind": surrogate.kind, "n_points": surrogate.n_points, "cv_mae": surrogate.cv_mae,
            "first_fit_s": round(fit_s, 3), "query_ms_median": 1e3 * statistics.median(times),
            "query_ms_max": 1e3 * max(times), "default_design": answer.to_dict(),
        })  # fmt: skip
        print(surrogate_rows[-1], flush=True)
    exact_rows = []
    for dataset, sizes in SIZES.items():
        data = load_dataset(dataset, image_size=(28, 28))
        for size in sizes:
            result = estimate(Design(), dataset, EstimateSettings(train_size=size), data=data, threads=args.threads)
            exact_rows.append({
                "dataset": dataset, "train_size": result.sizes["train"], "seconds": round(result.seconds, 2),
                "estimate": result.accuracy, "subset_score": result.subset_accuracy, "low": result.low,
                "high": result.high, "default": size == EstimateSettings().train_size,
            })  # fmt: skip
            print(exact_rows[-1], flush=True)
        reference = exact_rows[-1]
        for row in exact_rows:
            if row["dataset"] == dataset:
                row["subset_score_minus_reference_points"] = 100 * (row["subset_score"] - reference["subset_score"])
                row["estimate_minus_reference_points"] = 100 * (row["estimate"] - reference["estimate"])
    payload = {
        "command": "python bench/estimator_cost.py" + (f" --threads {args.threads}" if args.threads != 2 else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": f"CPU, {args.threads} thread(s), torch {torch.__version__}",
        "surrogate": surrogate_rows,
        "exact": exact_rows,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
