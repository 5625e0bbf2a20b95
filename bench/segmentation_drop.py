"""Why NTKD cost the segmentation student 5 points in Table 3: its kernel term's gradient, measured.

Usage: python bench/segmentation_drop.py [--threads 2] [--batches 5]

Table 3's shapes-seg NTKD (mIoU 57.9 against 63.0 for e2e) used β = 0.3, the finite-difference
estimator (R = 2, ε = 1e-3) for the student and a per-batch estimate (R = 2) of the U-Net
teacher's kernel, logits pooled to 8 × 8. On the segmentation student (56 kernels 3 × 3, the
11 × 11 mm design) this script compares, on shapes-seg training batches of 8, at initialisation
and after 3 epochs of e2e training:

* the task loss's gradient ∇L_task (BCE + Dice) w.r.t. the student's parameters;
* β∇D as Table 3 trained it (both kernels estimated, one draw per batch);
* β∇D with both kernels exact (``ntk_structured``), the gradient NTKD means;
and reports the norm ratios ‖β∇D‖ / ‖∇L_task‖, the cosine of the estimated gradient to the exact
one, and each one's cosine to the task gradient (means over the batches). The teacher is a U-Net
trained 2 epochs. Writes bench/results/segmentation_drop.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ntk_engines import Case, frozen, train_briefly  # noqa: E402

from onn_core.data import load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.models import build_student, build_teacher  # noqa: E402
from onn_core.training.metrics import task_loss  # noqa: E402
from onn_core.training.ntk import kernel_distance, ntk_estimate, ntk_structured  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "segmentation_drop.json"
DESIGN = Design(metasurface_height=11e-3, metasurface_width=11e-3, kernel_taps=3, input_height=64, input_width=64)
BETA, DRAWS, EPSILON, POOL, BATCH = 0.3, 2, 1e-3, 8, 8


def gradient(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters, strict=True)]
    )


def measure(student: nn.Module, teacher: nn.Module, images: torch.Tensor, targets: torch.Tensor, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    student.eval()  # the mean function, as the kernels see it (no noise, no dropout here)
    task = gradient(student, task_loss("segmentation", student(images), targets))
    with torch.no_grad():
        teacher_estimate = ntk_estimate(
            teacher, images, draws=DRAWS, epsilon=EPSILON, output_pool=POOL, generator=generator
        )
        teacher_exact = ntk_structured(teacher, images, output_pool=POOL)
    student_estimate = ntk_estimate(
        student, images, draws=DRAWS, epsilon=EPSILON, output_pool=POOL, generator=generator
    )
    estimated = BETA * gradient(student, kernel_distance(teacher_estimate, student_estimate, "cka"))
    exact = BETA * gradient(
        student, kernel_distance(teacher_exact, ntk_structured(student, images, output_pool=POOL), "cka")
    )

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(F.cosine_similarity(a, b, dim=0))

    return {
        "estimated_over_task_norm": float(estimated.norm() / task.norm()),
        "exact_over_task_norm": float(exact.norm() / task.norm()),
        "estimated_cosine_to_exact": cosine(estimated, exact),
        "estimated_cosine_to_task": cosine(estimated, task),
        "exact_cosine_to_task": cosine(exact, task),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("shapes-seg", seed=0)
    case = Case("segmentation-meta", "segmentation", DESIGN, "unet", data.train.images, data.train.targets)
    torch.manual_seed(0)
    teacher = frozen(train_briefly(build_teacher("unet", 1, (64, 64), 1), case, epochs=2))
    torch.manual_seed(0)
    student = build_student("segmentation-meta", DESIGN, 1)
    states = {"initialisation": student, "after 3 e2e epochs": train_briefly(copy.deepcopy(student), case, epochs=3)}
    rows = []
    for state, model in states.items():
        per_batch = [
            measure(
                model,
                teacher,
                data.train.images[b * BATCH : (b + 1) * BATCH],
                data.train.targets[b * BATCH : (b + 1) * BATCH],
                seed=b,
            )
            for b in range(args.batches)
        ]
        row = {
            "state": state,
            **{key: statistics.fmean(m[key] for m in per_batch) for key in per_batch[0]},
            "batches": args.batches,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "script": f"python bench/segmentation_drop.py --threads {args.threads} --batches {args.batches}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "table3_setting": {
            "beta": BETA,
            "ntk_draws": DRAWS,
            "ntk_epsilon": EPSILON,
            "ntk_output_pool": POOL,
            "batch": BATCH,
            "normalisation": "cka",
            "teacher_ntk": "estimator",
        },
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
