"""What the Inspect page shows about a finished run, computed without Streamlit.

All arrays are numpy; lengths in metres. A run's first kernel group is the one shown (a
segmentation student's full-resolution group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from onn_core.training.run import FinishedRun


@dataclass
class RunKernels:
    """Signed kernels (K, t, t) of the first group and, with a metasurface, realised captures."""

    signed: np.ndarray
    tap_pitch: float
    plus: np.ndarray | None = None  # realised K⁺ PSFs (K, t, t), power fraction per tap
    minus: np.ndarray | None = None
    realised: np.ndarray | None = None  # realised signed kernels
    correlation: list[float] | None = None


def run_kernels(run: FinishedRun) -> RunKernels:
    from onn_core.fabrication.export import run_metasurface

    frontend = run.frontends()[0]
    with torch.no_grad():
        signed = frontend.signed_kernels().double().numpy()[:, 0]
    result = RunKernels(signed, run.design.tap_pitch * frontend.scale)
    metasurface = run_metasurface(run, required=False)
    if metasurface is not None:
        group = metasurface.groups[0]
        kernels = group.kernels
        result.plus = group.realised[:kernels, 0]
        result.minus = group.realised[kernels:, 0] if group.signed else None
        result.realised = group.realised_kernels[:, 0]
        result.correlation = [row["correlation"] for row in group.fidelity()]
    return result


def inspect_image(run: FinishedRun, index: int) -> dict[str, Any]:
    """One test image through the run: its feature maps (first group) and the prediction."""
    test = run.data().test
    if not 0 <= index < len(test):
        raise IndexError(f"test image {index} does not exist; the test split has {len(test)} images.")
    image = test.images[index : index + 1]
    with torch.no_grad():
        maps = run.frontends()[0](image)[0].double().numpy()
        outputs = run.model(image)
    answer: dict[str, Any] = {"image": image[0, 0].numpy(), "maps": maps}
    target = test.targets[index]
    if run.task == "classification":
        probabilities = torch.softmax(outputs[0], dim=0).numpy()
        answer.update(probabilities=probabilities, predicted=int(probabilities.argmax()), truth=int(target))
    else:
        answer.update(predicted_mask=(outputs[0, 0] > 0).double().numpy(), truth_mask=target[0].double().numpy())
    return answer


def compare_runs(runs: list[FinishedRun]) -> list[dict[str, Any]]:
    """One row per run: what a side-by-side comparison needs."""
    rows = []
    for run in runs:
        metrics = run.metrics
        cost = metrics.get("cost") or {}
        teacher = metrics.get("teacher") or {}
        rows.append({
            "run": run.folder.name, "dataset": metrics.get("dataset"), "method": run.config.method,
            "kernels": run.design.kernel_count, f"test {run.score_name} (%)": round(100 * metrics[run.score_name], 2),
            f"teacher {run.score_name} (%)": round(100 * teacher[run.score_name], 2) if teacher.get(run.score_name)
            else None,
            "parameters": cost.get("parameters"), "digital MACs / image": cost.get("digital_macs"),
            "optical MACs / image": cost.get("optical_macs"),
            "energy / image (µJ)": round(cost["energy"]["total_j"] * 1e6, 3) if cost.get("energy") else None,
            "epochs": metrics.get("epochs_run"),
            "train time (s)": round(metrics.get("train_seconds", 0.0), 1),
        })  # fmt: skip
    return rows
