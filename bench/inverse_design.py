"""Inverse design of the default design, and how sensitive the fabricated optics are to each error.

Usage:
    python bench/inverse_design.py [--run var/table3/fashion-mnist/ntkd/seed0] [--iterations 500]
                                   [--skip-design] [--draws 3] [--images 2000]

1. Copies the trained run (the NTKD-trained Compressed Meta on Fashion-MNIST by default: 8 signed
   7×7 kernels on the default 4 mm design) to var/inverse_design/run and inverse-designs its 16
   sub-optics (802² phase pixels each) with the project's defaults (multi-focus start, Adam,
   ≤ 500 iterations, stop after 25 without a 0.1 % gain). Records per-kernel fidelity, the loss
   history and the wall time.
2. Sensitivity: for each error term alone, at a few magnitudes, the test accuracy through the
   fabricated metasurface (mean over ``--draws`` draws on the first ``--images`` test images),
   next to the as-designed accuracy.

Output: bench/results/inverse_design.json (``design`` and ``sensitivity`` sections).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.fabrication.error_model import ErrorModel  # noqa: E402
from onn_core.fabrication.evaluate import monte_carlo  # noqa: E402
from onn_core.fabrication.inverse_design import InverseDesignSettings, Metasurface, inverse_design  # noqa: E402
from onn_core.training.run import REQUIRED_FILES, load_run  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "inverse_design.json"
WORK = ROOT / "var" / "inverse_design" / "run"
# One term at a time, SI units.
SENSITIVITY = {
    "radius_sigma": (2e-9, 5e-9, 10e-9, 20e-9),
    "radius_bias": (-10e-9, -5e-9, 5e-9, 10e-9),
    "radius_quantisation": (5e-9, 10e-9, 20e-9),
    "phase_sigma": (0.1, 0.3, 0.6),
    "psf_blur": (1e-6, 2e-6, 4e-6),
    "shift_sigma": (1e-6, 2e-6, 4e-6),
    "rotation": (0.005, 0.01, 0.02),
    "kernel_sigma": (0.02, 0.05, 0.1),
    "gain_sigma": (0.05, 0.1, 0.2),
    "read_noise": (5.0, 20.0, 50.0),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(ROOT / "var" / "table3" / "fashion-mnist" / "ntkd" / "seed0"))
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--skip-design", action="store_true", help="reuse the metasurface already in var/")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = Path(args.run)
    if not all((source / name).exists() for name in REQUIRED_FILES):
        raise SystemExit(f"{source} is not a finished run; train it first (bench/reproduce_table3.py).")
    WORK.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        shutil.copy2(source / name, WORK / name)
    run = load_run(WORK)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report.update(generated=datetime.now(UTC).isoformat(timespec="seconds"), command=" ".join(sys.argv),
                  run=str(source))  # fmt: skip
    if not args.skip_design:
        started = time.perf_counter()
        metasurface = inverse_design(run.model, run.design, InverseDesignSettings(iterations=args.iterations),
                                     progress=lambda i, n, loss: i % 25 == 0 and print(f"  {i}/{n} loss {loss:.4f}",
                                                                                        flush=True))  # fmt: skip
        metasurface.save(WORK)
        report["design"] = {**metasurface.summary(), "fidelity": metasurface.fidelity(), "history": metasurface.history,
                            "wall_seconds": time.perf_counter() - started, "threads": args.threads}  # fmt: skip
        RESULTS.write_text(json.dumps(report, indent=2))
        print(json.dumps(metasurface.summary(), indent=2), flush=True)
    metasurface = Metasurface.load(WORK)
    nominal = monte_carlo(run, ErrorModel(), 1, metasurface=metasurface, images=args.images)
    rows = [{"term": "none", "value": 0.0, "mean": nominal.mean, "std": 0.0, "trained": nominal.trained}]
    for term, values in SENSITIVITY.items():
        for value in values:
            result = monte_carlo(run, ErrorModel(**{term: value}), args.draws, metasurface=metasurface,
                                 images=args.images)  # fmt: skip
            rows.append({"term": term, "value": value, "mean": result.mean, "std": result.std})
            print(f"  {term} {value:g}: {100 * result.mean:.1f} ± {100 * result.std:.1f} % "
                  f"(as designed {100 * nominal.mean:.1f})", flush=True)  # fmt: skip
            report["sensitivity"] = {"images": args.images, "draws": args.draws, "rows": rows}
            RESULTS.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
