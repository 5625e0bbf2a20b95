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


def native_shape(dataset: str) -> tuple[int, int, int]:
    """(channels, height, width) a dataset is read at when no design says otherwise."""
    from ..data import SPECS

    spec = SPECS[dataset]
    return (spec.channels, *spec.image_size)


def teacher_dir(dataset: str, model: str, seed: int, *, split_seed: int = 0, data_root: str | None = None,
                input_shape: tuple[int, int, int] | None = None) -> Path:  # fmt: skip
    """The store folder of one teacher run (``input_shape``: the images it reads, when not the
    dataset's own: (channels, height, width))."""
    name = f"{model}-split{split_seed}-seed{seed}"
    if input_shape is not None and tuple(input_shape) != native_shape(dataset):
        name += "-{}x{}x{}".format(*input_shape)
    if data_root is not None:
        name += "-" + hashlib.sha256(str(Path(data_root).resolve()).encode()).hexdigest()[:8]
    return studio_home() / "teachers" / dataset / name


def find_teacher(
    dataset: str, model: str | None = None, *, split_seed: int = 0, data_root: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
) -> tuple[Path, dict[str, Any]] | None:
    """The stored teacher for ``dataset`` on this data source and split with the best validation
    score; with ``input_shape`` (channels, height, width), only one that reads images of that shape
    (a teacher distils into a student that sees the same images)."""
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
        if input_shape is not None and metrics.get("data", {}).get("image_shape") != list(input_shape):
            continue
        score = metrics.get("best_val", -1.0)
        if best is None or score > best[2]:
            best = (metrics_path.parent, metrics, score)
    return (best[0], best[1]) if best else None
