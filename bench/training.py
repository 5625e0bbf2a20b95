"""Training throughput: the ideal optical frontend against a plain nn.Conv2d student (the floor).

Usage: python bench/training.py [--repeats 3] [--images N] [--physical-batches 4]

Three students identical but for the frontend: Compressed Meta with the ideal frontend, the same
network with a plain ``nn.Conv2d`` (8 kernels 7×7, no bias) in its place (the floor), and the
physical frontend (PSFs simulated through the optics core every step). Each is timed on one
training epoch over the same Fashion-MNIST training split (54,000 images; MNIST-5k, with a
warning, if Fashion-MNIST is not installed; ``--images N`` times only the first N),
round-robin over the repeats in one process; best time kept. The physical frontend is timed on
``--physical-batches`` batches and reported per image. Writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.data import dataset_status, load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.models import FrontendOptions, build_student  # noqa: E402
from onn_core.training import TrainConfig  # noqa: E402
from onn_core.training.metrics import task_loss  # noqa: E402
from onn_core.training.trainer import build_optimiser  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "training.json"


class Conv2dFrontend(nn.Conv2d):
    """A plain convolution with the frontend attributes the classifier reads."""

    def __init__(self, kernels: int, taps: int) -> None:
        super().__init__(1, kernels, taps, padding=taps // 2, bias=False)
        self.kernels, self.scale = kernels, 1


def epoch_seconds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    optimiser = build_optimiser(model, TrainConfig(learning_rate=1e-3, weight_decay=0.0))  # as the trainer builds it
    started = time.perf_counter()
    for start in range(0, len(images), batch):
        loss = task_loss("classification", model(images[start : start + batch]), labels[start : start + batch])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=None, help="images per timed epoch (default: all)")
    parser.add_argument("--physical-batches", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dataset = "fashion-mnist" if dataset_status("fashion-mnist")["available"] else "mnist"
    if dataset != "fashion-mnist":
        print("warning: Fashion-MNIST is not installed; timing on MNIST-5k instead", file=sys.stderr)
    data = load_dataset(dataset, seed=0)
    images, labels = data.train.images[: args.images], data.train.targets[: args.images]
    design = Design()
    ideal = build_student("compressed-meta", design, 10)
    floor = build_student("compressed-meta", design, 10)
    floor.frontend = Conv2dFrontend(design.kernel_count, design.kernel_taps)
    physical = build_student("compressed-meta", design, 10, FrontendOptions(kind="physical"))
    physical_count = args.physical_batches * args.batch
    candidates = {
        "conv2d": (floor, images, labels),
        "ideal": (ideal, images, labels),
        "physical": (physical, images[:physical_count], labels[:physical_count]),
    }
    for model, subset, targets in candidates.values():  # warm-up (allocations, transfer-function cache)
        epoch_seconds(model, subset[: args.batch], targets[: args.batch], args.batch)
    best = {name: float("inf") for name in candidates}
    for _ in range(args.repeats):
        for name, (model, subset, targets) in candidates.items():
            best[name] = min(best[name], epoch_seconds(model, subset, targets, args.batch) / len(subset))
    floor_rate = 1 / best["conv2d"]
    rows = [
        {
            "frontend": name,
            "images_per_s": 1 / seconds,
            "ratio_to_conv2d": seconds / best["conv2d"],
            "images_timed": len(candidates[name][1]),
        }
        for name, seconds in best.items()
    ]
    result = {
        "script": "bench/training.py",
        "command": "python " + " ".join(["bench/training.py", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "workload": {
            "dataset": dataset,
            "student": "compressed-meta (8 kernels 7×7, 2 FC)",
            "batch": args.batch,
            "optimiser": "AdamW",
            "timing": "best of repeats, round-robin, same process; ratio_to_conv2d = time per image / floor's",
            "physical_phase_pixel_m": physical.frontend.phase_pixel,
            "physical_grid_samples": physical.frontend.samples,
        },
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2))
    for row in rows:
        print(f"{row['frontend']:9s} {row['images_per_s']:10.0f} images/s  {row['ratio_to_conv2d']:.2f}× conv2d")
    print(f"floor {floor_rate:.0f} images/s; wrote {RESULTS}")


if __name__ == "__main__":
    main()
