"""Does NTKD do what its loss says? Exact NTK alignment of trained students with their teacher.

Usage: python bench/ntk_alignment.py [--task mnist] [--methods e2e kd ntkd] [--seeds 0 1]
                                     [--batches 2] [--batch 64] [--threads 1]

For the run folders that bench/reproduce_table3.py wrote (var/table3/<task>/<method>/seed<S>),
computes the *exact* empirical NTK (torch.func) of the student and of the teacher on random
test-split batches and reports their centred kernel alignment (CKA; distance = 2(1 − CKA)). The
training loss only ever saw finite-difference estimates on training batches, so this checks the
estimator-driven loss against the quantity it stands for, on images it never saw.
Writes bench/results/ntk_alignment.json with rows {task, method, seed, cka}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reproduce_table3 import RUNS, TASKS  # noqa: E402

from onn_core.data import load_dataset  # noqa: E402
from onn_core.training import TrainConfig  # noqa: E402
from onn_core.training.ntk import kernel_distance, ntk_exact  # noqa: E402
from onn_core.training.trainer import build_model  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ntk_alignment.json"


def _load(folder: Path, design, data) -> torch.nn.Module:
    config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model, _ = build_model(design, config, data)
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mnist", choices=list(TASKS))
    parser.add_argument("--methods", nargs="*", default=["e2e", "kd", "ntkd"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = TASKS[args.task]
    design = spec["design"]
    size = (design.input_height, design.input_width) if spec["student"].dataset == "shapes-seg" else None
    data = load_dataset(spec["student"].dataset, seed=spec["student"].split_seed, image_size=size)
    teacher = _load(RUNS / args.task / "teacher", None, data)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(data.test), generator=generator)[: args.batch] for _ in range(args.batches)]
    with torch.no_grad():
        teacher_kernels = [ntk_exact(teacher, data.test.images[b], max_elements=2**25) for b in batches]
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            folder = RUNS / args.task / method / f"seed{seed}"
            if not (folder / "model.pt").exists():
                continue
            student = _load(folder, design, data)
            with torch.no_grad():
                distances = [
                    float(kernel_distance(t, ntk_exact(student, data.test.images[b]), "cka"))
                    for t, b in zip(teacher_kernels, batches, strict=True)
                ]
            cka = statistics.fmean(1 - d / 2 for d in distances)
            rows.append({"task": args.task, "method": method, "seed": seed, "cka": cka})
            print(json.dumps(rows[-1]), flush=True)
    summary = {
        method: statistics.fmean(r["cka"] for r in rows if r["method"] == method)
        for method in args.methods
        if any(r["method"] == method for r in rows)
    }
    result = {
        "script": "python bench/ntk_alignment.py " + " ".join(sys.argv[1:]),
        "test_batches": args.batches,
        "batch": args.batch,
        "mean_cka": summary,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
