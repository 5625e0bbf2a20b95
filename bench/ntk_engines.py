"""Student NTK engines against the exact kernel: how close, how faithful their gradient, what a step costs.

Usage: python bench/ntk_engines.py [--threads 2] [--steps 6] [--students random-readout ...]

For every student the zoo builds (compressed-meta, polychromatic-meta, segmentation-meta,
random-readout), at initialisation and after a short e2e training, each student engine —
the paper's finite-difference estimator with R = 2 and R = 8 draws, the structured engine, the
torch.func exact engine — in float32 and float64, is compared with the exact kernel computed in
float64 (``ntk_exact``):

* ``max_rel_error_vs_exact`` = max |Θ − Θ_ref| / max |Θ_ref| on one batch (32 images; 8 for
  segmentation), the student's kernel over all its trainable parameters;
* ``grad_cosine_vs_exact`` / ``grad_norm_ratio``: the gradient of the CKA kernel distance to the
  teacher's exact kernel, w.r.t. the student's parameters, against the same gradient through the
  float64 exact kernel; for the estimator, averages over 10 independent draws of one draw's cosine
  and norm ratio (``grad_cosine_of_mean`` is the cosine of their mean gradient);
* ``step_s``: one NTKD training step (task + kernel distance, backward, AdamW) at the training
  batch (128; 8 for segmentation, logits pooled to 8 × 8) with the teacher's kernel from its
  cached sketch, and
  ``kd_step_s``: one Hinton KD step, in the same process, interleaved rounds, medians. The
  structured engine is timed with the default kernel batch (``ntk_batch`` = 32 images of the
  128) and on the whole minibatch (engine ``structured (all 128)``).
* ``default``: true on the engine the trainer uses when none is named.

The teacher sketch (m = 16, 64 random directions) is scored the same way against the teacher's
exact kernel (rows with ``student`` = the teacher). Data: MNIST-5k for the monochrome students;
polychromatic-meta (RGB) on MNIST-5k digits tinted by a random colour per image and padded to
32 × 32 (no CIFAR-10 ships here); shapes-seg for segmentation. Teachers, trained 2 epochs: the
wide LeNet (the studio's MNIST-class teacher; the KD step's cost depends on it), the AlexNet-style
net for RGB, the U-Net for segmentation. Writes bench/results/ntk_engines.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.data import load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.models import build_student, build_teacher  # noqa: E402
from onn_core.training import TrainConfig  # noqa: E402
from onn_core.training.losses import TransferLoss  # noqa: E402
from onn_core.training.metrics import task_loss  # noqa: E402
from onn_core.training.ntk import (  # noqa: E402
    TeacherSketch,
    kernel_distance,
    ntk_estimate,
    ntk_exact,
    ntk_structured,
)

RESULTS = ROOT / "bench" / "results" / "ntk_engines.json"
COMPARE_BATCH = {"classification": 32, "segmentation": 8}
TRAIN_BATCH = {"classification": 128, "segmentation": 8}
GRADIENT_DRAWS = 10
REFERENCE = "ntk_exact in float64 on the same images; gradients of the CKA distance to the teacher's exact kernel"
ENGINES = ("estimator R=2", "estimator R=8", "structured", "exact")
RGB_DESIGN = Design(input_channels=3, wavelengths=(635e-9, 532e-9, 450e-9), input_height=32, input_width=32,
                    metasurface_height=8e-3, metasurface_width=8e-3)  # fmt: skip
SEGMENTATION_DESIGN = Design(metasurface_height=11e-3, metasurface_width=11e-3, kernel_taps=3, input_height=64,
                             input_width=64)  # fmt: skip


@dataclass
class Case:
    student: str
    task: str
    design: Design
    teacher: str
    images: torch.Tensor  # training pool
    targets: torch.Tensor


def tinted(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Monochrome digits as RGB: a random colour per image, padded to 32 × 32."""
    colours = torch.rand(len(images), 3, 1, 1, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.2
    return F.pad(images * colours, (2, 2, 2, 2))


def cases() -> list[Case]:
    mnist = load_dataset("mnist", seed=0)
    shapes = load_dataset("shapes-seg", seed=0)
    digits, labels = mnist.train.images, mnist.train.targets
    return [
        Case("compressed-meta", "classification", Design(), "lenet-wide", digits, labels),
        Case("polychromatic-meta", "classification", RGB_DESIGN, "alexnet", tinted(digits), labels),
        Case("segmentation-meta", "segmentation", SEGMENTATION_DESIGN, "unet", shapes.train.images,
             shapes.train.targets),
        Case("random-readout", "classification", Design(), "lenet-wide", digits, labels),
    ]  # fmt: skip


def train_briefly(model: nn.Module, case: Case, epochs: int, seed: int = 0) -> nn.Module:
    """A few epochs of the task loss (AdamW): enough to leave initialisation behind."""
    torch.manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=2e-3)
    batch = TRAIN_BATCH[case.task]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(case.images))
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = task_loss(case.task, model(case.images[index]), case.targets[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return model.eval()


def frozen(model: nn.Module) -> nn.Module:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def distance_gradient(model: nn.Module, kernel_of, teacher_kernel: torch.Tensor) -> torch.Tensor:
    """The kernel distance's gradient (zeros where the kernel does not depend on the parameters:
    a linear readout on fixed features has a constant NTK)."""
    model.zero_grad(set_to_none=True)
    distance = kernel_distance(teacher_kernel, kernel_of(model), "cka")
    if distance.requires_grad:
        distance.backward()
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().double()
                      for p in model.parameters() if p.requires_grad])  # fmt: skip


def engine_function(engine: str, pool: int, generator: torch.Generator):
    if engine == "structured":
        return lambda model, images: ntk_structured(model, images, output_pool=pool)
    if engine == "exact":
        return lambda model, images: ntk_exact(model, images, output_pool=pool)
    draws = int(engine.split("=")[1])
    return lambda model, images: ntk_estimate(model, images, draws=draws, output_pool=pool, generator=generator)


def accuracy_rows(case: Case, student: nn.Module, teacher: nn.Module, state: str) -> list[dict]:
    pool = 8
    images = case.images[: COMPARE_BATCH[case.task]]
    wide, wide_images = copy.deepcopy(student).double(), images.double()
    with torch.no_grad():
        teacher_kernel = ntk_structured(copy.deepcopy(teacher).double(), wide_images, output_pool=pool)
    reference = ntk_exact(wide, wide_images, output_pool=pool).detach()
    reference_gradient = distance_gradient(wide, lambda m: ntk_exact(m, wide_images, output_pool=pool), teacher_kernel)
    rows = []
    for engine in ENGINES:
        for dtype in (torch.float32, torch.float64):
            model = copy.deepcopy(student).to(dtype)
            batch = images.to(dtype)
            generator = torch.Generator().manual_seed(0)
            kernel_of = engine_function(engine, pool, generator)
            kernel = kernel_of(model, batch).detach().double()
            error = float((kernel - reference).abs().max() / reference.abs().max())
            draws = GRADIENT_DRAWS if engine.startswith("estimator") else 1
            gradients = [distance_gradient(model, lambda m, b=batch, k=kernel_of: k(m, b), teacher_kernel.to(dtype))
                         for _ in range(draws)]  # fmt: skip
            mean_gradient = torch.stack(gradients).mean(0)
            if reference_gradient.norm() == 0:  # a constant kernel: no gradient to compare with
                gradients, mean_gradient = [], None
            cosines = [float(F.cosine_similarity(g, reference_gradient, dim=0)) for g in gradients]
            ratios = [float(g.norm() / reference_gradient.norm()) for g in gradients]
            rows.append({
                "student": case.student, "state": state, "engine": engine, "dtype": str(dtype).removeprefix("torch."),
                "max_rel_error_vs_exact": error,
                "grad_cosine_vs_exact": statistics.fmean(cosines) if cosines else None,
                "grad_norm_ratio": statistics.fmean(ratios) if ratios else None,
                "grad_cosine_of_mean": None if mean_gradient is None
                else float(F.cosine_similarity(mean_gradient, reference_gradient, dim=0)),
                "gradient_draws": draws, "kernel_images": len(images),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def sketch_rows(case: Case, teacher: nn.Module, state: str) -> list[dict]:
    images = case.images[: COMPARE_BATCH[case.task]]
    with torch.no_grad():
        reference = ntk_structured(copy.deepcopy(teacher).double(), images.double())
    rows = []
    for directions in (16, 64):
        sketch = TeacherSketch(teacher, images, directions=directions, seed=0)
        kernel = sketch.kernel(torch.arange(len(images))).double()
        rows.append({
            "student": f"{case.teacher} (teacher, for {case.student})", "state": state,
            "engine": f"teacher sketch m={directions}", "dtype": "float32",
            "max_rel_error_vs_exact": float((kernel - reference).abs().max() / reference.abs().max()),
            "grad_cosine_vs_exact": None, "grad_norm_ratio": None, "kernel_images": len(images),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


class Stepper:
    """One training step of a method on a copy of the student, ready to be timed."""

    def __init__(self, case: Case, student: nn.Module, teacher: nn.Module, sketch: TeacherSketch | None,
                 **settings) -> None:  # fmt: skip
        self.student = copy.deepcopy(student).train()
        config = TrainConfig(dataset="mnist" if case.task == "classification" else "shapes-seg", **settings)
        self.loss = TransferLoss(config, case.task, teacher, sketch)
        self.optimiser = torch.optim.AdamW([p for p in self.student.parameters() if p.requires_grad], lr=1e-3)
        self.case, self.generator = case, torch.Generator().manual_seed(1)

    def step(self) -> None:
        pool = SEGMENTATION_POOL if self.case.task == "segmentation" else SKETCH_POOL
        index = torch.randint(0, pool, (TRAIN_BATCH[self.case.task],), generator=self.generator)
        _, parts = self.loss(self.student, self.case.images[index], self.case.targets[index], index)
        self.optimiser.zero_grad(set_to_none=True)
        parts.total.backward()
        self.optimiser.step()


SKETCH_POOL = 512  # images the timed batches are drawn from (the teacher sketch covers them)
SEGMENTATION_POOL = 64
TIMED = {
    "kd": {"method": "kd"},
    "estimator R=2": {"method": "ntkd", "ntk_engine": "estimator", "ntk_draws": 2, "ntk_batch": None},
    "estimator R=8": {"method": "ntkd", "ntk_engine": "estimator", "ntk_draws": 8, "ntk_batch": None},
    "structured": {"method": "ntkd", "ntk_engine": "structured"},
    "structured (all 128)": {"method": "ntkd", "ntk_engine": "structured", "ntk_batch": None},
    "exact": {"method": "ntkd", "ntk_engine": "exact", "ntk_batch": None},
}


def step_times(case: Case, student: nn.Module, teacher: nn.Module, steps: int, rounds: int = 3) -> dict[str, float]:
    # The teacher's side is the same for every engine and is not what is timed: for the U-Net a
    # smaller sketch over the first SEGMENTATION_POOL images keeps the set-up short.
    segmentation = case.task == "segmentation"
    pool = SEGMENTATION_POOL if segmentation else SKETCH_POOL
    sketch = TeacherSketch(teacher, case.images[:pool], directions=16 if segmentation else 64, seed=0,
                           output_pool=8, batch_size=8 if segmentation else 256)  # fmt: skip
    steppers = {name: Stepper(case, student, teacher, sketch if name != "kd" else None, **settings)
                for name, settings in TIMED.items()}  # fmt: skip
    if case.task == "segmentation":
        steppers.pop("structured (all 128)")  # the minibatch is 8: the default kernel batch is all of it
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for stepper in steppers.values():
        stepper.step()  # warm-up: optimiser state, first allocations
    for _ in range(rounds):
        for name, stepper in steppers.items():
            count = max(1, steps // 4) if name == "exact" or segmentation else steps
            started = time.perf_counter()
            for _ in range(count):
                stepper.step()
            times[name].append((time.perf_counter() - started) / count)
        print({name: round(statistics.median(t), 4) for name, t in times.items()}, flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per engine and round")
    parser.add_argument("--students", nargs="+", default=None, help="only these (their rows are replaced)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    default_engine = TrainConfig().ntk_engine
    rows: list[dict] = []
    if args.students and RESULTS.exists():  # keep the other students' rows
        rows = [r for r in json.loads(RESULTS.read_text())["rows"]
                if not any(r["student"] == s or r["student"].endswith(f"for {s})") for s in args.students)]  # fmt: skip
    for case in cases():
        if args.students and case.student not in args.students:
            continue
        channels = case.design.input_channels
        size = (case.design.input_height, case.design.input_width)
        classes = 10 if case.task == "classification" else 1
        torch.manual_seed(0)
        teacher = frozen(train_briefly(build_teacher(case.teacher, channels, size, classes), case, epochs=2))
        torch.manual_seed(0)
        student = build_student(case.student, case.design, classes)
        states = {"initialisation": student, "after e2e training": None}
        for state in states:
            if state == "after e2e training":
                states[state] = train_briefly(copy.deepcopy(student), case, epochs=3)
            model = states[state]
            case_rows = accuracy_rows(case, model, teacher, state)
            timing = step_times(case, model, teacher, args.steps)
            for row in case_rows:
                engine = row["engine"]
                row["step_s"] = timing.get(engine) if row["dtype"] == "float32" else None
                row["kd_step_s"] = timing["kd"] if row["step_s"] is not None else None
                row["default"] = engine == default_engine
            if "structured (all 128)" in timing:
                case_rows.append({
                    "student": case.student, "state": state, "engine": "structured (all 128)", "dtype": "float32",
                    "max_rel_error_vs_exact": None, "grad_cosine_vs_exact": None, "grad_norm_ratio": None,
                    "step_s": timing["structured (all 128)"], "kd_step_s": timing["kd"], "default": False,
                })  # fmt: skip
            rows += case_rows + sketch_rows(case, teacher, state)
            write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    reruns = json.loads(RESULTS.read_text()).get("reruns", []) if args.students and RESULTS.exists() else []
    if args.students:
        command = f"python bench/ntk_engines.py --threads {args.threads} --steps {args.steps} --students " + " ".join(
            args.students
        )
        reruns = [r for r in reruns if r["command"] != command] + [
            {"command": command, "date": datetime.now(UTC).isoformat(timespec="seconds")}
        ]
    results = {
        "reruns": reruns,
        "script": f"python bench/ntk_engines.py --threads {args.threads} --steps {args.steps}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "reference": REFERENCE,
        "train_batch": TRAIN_BATCH,
        "compare_batch": COMPARE_BATCH,
        "ntk_batch_default": TrainConfig().ntk_batch,
        "rows": rows,
    }
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2), encoding="utf-8")
    temporary.replace(RESULTS)


if __name__ == "__main__":
    main()
