"""Build the finished example run shipped in assets/example_run/ (what a fresh install shows).

Usage:
    python bench/example_run.py [--out assets/example_run]

A Compressed Meta student (8 signed 7×7 kernels, 2 FC layers) trained end to end on the
embedded MNIST-5k subset, then inverse-designed into a metasurface. The design is a small
one — 120 µm sub-optics 0.3 mm from the sensor (NA ≈ 0.2, like the default design), 16 sub-optics
on a 0.7 mm metasurface — so its radius maps (16 × 102² phase pixels) ship in a few hundred kB;
the default design's would be ~80 MB. Everything the Inspect, Fabricate and Export pages need
is in the folder: config, design, metrics, history, weights, kernels and the metasurface.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.design import Design  # noqa: E402
from onn_core.fabrication.inverse_design import InverseDesignSettings, inverse_design  # noqa: E402
from onn_core.training import TrainConfig, train  # noqa: E402
from onn_core.training.run import load_run  # noqa: E402

EXAMPLE_DESIGN = Design(metasurface_height=0.7e-3, metasurface_width=0.7e-3, kernel_size=120e-6, kernel_spacing=60e-6,
                        sensor_distance=0.3e-3)  # fmt: skip
CONFIG = TrainConfig(dataset="mnist", method="e2e", epochs=15, seed=0, threads=2)
SHIPPED = ("config.json", "design.json", "metrics.json", "history.json", "model.pt", "kernels.npz", "train.log",
           "metasurface.npz", "metasurface.json")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "assets" / "example_run"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "run"
        metrics = train(CONFIG, folder, design=EXAMPLE_DESIGN)
        run = load_run(folder)
        metasurface = inverse_design(run.model, run.design, InverseDesignSettings(iterations=200))
        metasurface.save(folder)
        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in SHIPPED:
            shutil.copy2(folder / name, out / name)
    summary = {"accuracy": metrics["accuracy"], **metasurface.summary()}
    (out / "README.md").write_text(
        "# Example run\n\nBuilt by `python bench/example_run.py`: Compressed Meta (8 signed 7×7 kernels) trained "
        f"end to end on MNIST-5k ({CONFIG.epochs} epochs, seed 0) for a small design (0.7 mm metasurface, 120 µm "
        f"sub-optics 0.3 mm from the sensor), then inverse-designed.\n\n"
        f"```json\n{json.dumps(summary, indent=2)}\n```\n",
        encoding="utf-8",
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
