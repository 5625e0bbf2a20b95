"""Trained teachers in the studio's home (:func:`onn_core.paths.studio_home`).

Teachers are trained once per dataset and reused: ``teachers/<dataset>/<model>-split<S>-seed<T>[-<root>]/``
holds an ordinary run folder (model.pt, metrics.json, ...). A teacher is only reusable for a
student that shares its data source and split (else it may have trained on the student's test
images), so :func:`find_teacher` filters on both and ranks by validation score, never test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..paths import studio_home


def teacher_dir(dataset: str, model: str, seed: int, *, split_seed: int = 0, data_root: str | None = None) -> Path:
    """The store folder of one teacher run."""
    name = f"{model}-split{split_seed}-seed{seed}"
    if data_root is not None:
        name += "-" + hashlib.sha256(str(Path(data_root).resolve()).encode()).hexdigest()[:8]
    return studio_home() / "teachers" / dataset / name


def find_teacher(
    dataset: str, model: str | None = None, *, split_seed: int = 0, data_root: str | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The stored teacher for ``dataset`` on this data source and split with the best validation score."""
    root = studio_home() / "teachers" / dataset
    best = None
    for metrics_path in sorted(root.glob("*/metrics.json")):
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if model and metrics.get("model") != model:
            continue
        if metrics.get("split_seed") != split_seed or metrics.get("data_root") != data_root:
            continue
        score = metrics.get("best_val", -1.0)
        if best is None or score > best[2]:
            best = (metrics_path.parent, metrics, score)
    return (best[0], best[1]) if best else None
