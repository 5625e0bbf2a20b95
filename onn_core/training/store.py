"""Where runs and trained teachers live: ``$ONN_STUDIO_HOME`` (default ``<repo>/var``).

Teachers are trained once per dataset and reused: ``teachers/<dataset>/<model>-seed<S>/`` holds
an ordinary run folder (model.pt, metrics.json, ...). :func:`find_teacher` returns the best one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def studio_home() -> Path:
    return Path(os.environ.get("ONN_STUDIO_HOME", REPO_ROOT / "var"))


def teacher_dir(dataset: str, model: str, seed: int) -> Path:
    return studio_home() / "teachers" / dataset / f"{model}-seed{seed}"


def find_teacher(dataset: str, model: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The stored teacher for ``dataset`` (optionally of architecture ``model``) with the best test score."""
    root = studio_home() / "teachers" / dataset
    best = None
    for metrics_path in sorted(root.glob("*/metrics.json")):
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if model and metrics.get("model") != model:
            continue
        score = metrics.get("accuracy", metrics.get("miou", -1.0))
        if best is None or score > best[2]:
            best = (metrics_path.parent, metrics, score)
    return (best[0], best[1]) if best else None
