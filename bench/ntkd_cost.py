"""Cost of knowledge transfer: one training step of each method at batch 128 on Fashion-MNIST.

Usage: python bench/ntkd_cost.py [--steps 20] [--rounds 3] [--threads 2] [--teacher lenet-wide]

Methods: e2e (task loss), kd (Hinton; one teacher forward), ntkd-structured (the exact structured
student NTK on 32 of the 128 images, teacher NTK from its cached sketch: the project's default),
ntkd-estimator (student NTK by finite differences with R = 2 over the whole batch),
ntkd-estimator-teacher-estimator (both sides by finite differences per batch, the method's
literal form) and ntkd-exact (student NTK exact via torch.func). A step is forward, loss,
backward and the AdamW update of the Compressed Meta student on real Fashion-MNIST batches;
the teacher's sketch is built before timing (it is built once per dataset and cached).

Times are medians over interleaved rounds, as ratios to the e2e step measured in the same
process. Peak memory is measured per method in a fresh subprocess: the resident set's
high-water mark during the steps (reset after set-up and a first step) minus the resident set
before them.
Writes bench/results/ntkd_cost.json with rows {method, step_s, peak_mb, ratio_to_e2e}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onn_core.data import load_dataset  # noqa: E402
from onn_core.design import Design  # noqa: E402
from onn_core.models import build_student, build_teacher  # noqa: E402
from onn_core.training import TrainConfig  # noqa: E402
from onn_core.training.losses import TransferLoss  # noqa: E402
from onn_core.training.ntk import TeacherSketch  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ntkd_cost.json"
BATCH = 128
POOL = 512  # images the batches are drawn from (and the teacher sketch covers: built before timing)
METHODS = {
    "e2e": {"method": "e2e"},
    "kd": {"method": "kd"},
    "ntkd-structured": {"method": "ntkd", "ntk_engine": "structured", "teacher_ntk": "sketch"},
    "ntkd-estimator": {"method": "ntkd", "ntk_engine": "estimator", "teacher_ntk": "sketch", "ntk_batch": None},
    "ntkd-estimator-teacher-estimator": {
        "method": "ntkd",
        "ntk_engine": "estimator",
        "teacher_ntk": "estimator",
        "ntk_batch": None,
    },
    "ntkd-exact": {"method": "ntkd", "ntk_engine": "exact", "teacher_ntk": "sketch", "ntk_batch": None},
}


class Stepper:
    """One method's training step on the student, ready to be timed."""

    def __init__(self, method: str, teacher_name: str, images: torch.Tensor, targets: torch.Tensor) -> None:
        torch.manual_seed(0)
        config = TrainConfig(dataset="fashion-mnist", **METHODS[method])
        self.student = build_student("compressed-meta", Design(), 10)
        teacher = build_teacher(teacher_name, 1, (28, 28), 10).eval()
        uses_sketch = METHODS[method].get("teacher_ntk") == "sketch"
        sketch = TeacherSketch(teacher, images, directions=config.ntk_sketch) if uses_sketch else None
        self.loss = TransferLoss(config, "classification", teacher, sketch)
        self.optimiser = torch.optim.AdamW(self.student.parameters(), lr=1e-3)
        self.images, self.targets = images, targets
        self.generator = torch.Generator().manual_seed(1)

    def step(self) -> None:
        index = torch.randint(0, len(self.images), (BATCH,), generator=self.generator)
        _, parts = self.loss(self.student, self.images[index], self.targets[index], index)
        self.optimiser.zero_grad(set_to_none=True)
        parts.total.backward()
        self.optimiser.step()


def pool() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("fashion-mnist", seed=0)
    return data.train.images[:POOL], data.train.targets[:POOL]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_growth_mb(stepper: Stepper, steps: int) -> float:
    """Growth of the resident set's high-water mark over ``steps`` steps (Linux: the mark is reset
    by writing 5 to /proc/self/clear_refs, so set-up's own peak does not hide the steps')."""
    stepper.step()  # first-step allocations (optimiser state) count as set-up
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_mb("VmRSS")
    for _ in range(steps):
        stepper.step()
    return _status_mb("VmHWM") - baseline


def measure_memory(method: str, teacher: str, steps: int, threads: int) -> float:
    """Peak resident-set growth (MB) of ``steps`` steps, in a fresh process."""
    code = (
        "import sys, torch; sys.path.insert(0, {bench!r}); import ntkd_cost as b; torch.set_num_threads({threads}); "
        "images, targets = b.pool(); s = b.Stepper({method!r}, {teacher!r}, images, targets); "
        "print(b.peak_growth_mb(s, {steps}))"
    ).format(bench=str(ROOT / "bench"), threads=threads, method=method, teacher=teacher, steps=steps)
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teacher", default="lenet-wide")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, targets = pool()
    steppers = {method: Stepper(method, args.teacher, images, targets) for method in METHODS}
    times: dict[str, list[float]] = {method: [] for method in METHODS}
    for stepper in steppers.values():  # warm-up
        stepper.step()
    for _ in range(args.rounds):
        for method, stepper in steppers.items():
            steps = args.steps if method != "ntkd-exact" else max(2, args.steps // 10)
            started = time.perf_counter()
            for _ in range(steps):
                stepper.step()
            times[method].append((time.perf_counter() - started) / steps)
    baseline = statistics.median(times["e2e"])
    rows = []
    for method in METHODS:
        step_s = statistics.median(times[method])
        steps = args.steps if method != "ntkd-exact" else max(2, args.steps // 10)
        rows.append({
            "method": method, "step_s": step_s, "ratio_to_e2e": step_s / baseline,
            "peak_mb": measure_memory(method, args.teacher, steps, args.threads),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    kd = next(r for r in rows if r["method"] == "kd")["step_s"]
    result = {
        "script": "python bench/ntkd_cost.py " + " ".join(sys.argv[1:]),
        "batch": BATCH,
        "teacher": args.teacher,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "ntkd_estimator_over_kd": next(r for r in rows if r["method"] == "ntkd-estimator")["step_s"] / kd,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"ntkd-estimator / kd = {result['ntkd_estimator_over_kd']:.2f}")


if __name__ == "__main__":
    main()
