"""What a design sees of a dataset: sample images after resizing and colour conversion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .registry import load_for_design

if TYPE_CHECKING:
    from ..design import Design


def design_view_samples(name: str, design: Design | None, per_class: int = 6) -> dict[str, list[np.ndarray]]:
    """Up to ``per_class`` training images of each class of ``name`` as ``design``'s student reads
    them (resized, colour-converted): class name → images (H, W) or (H, W, 3) in [0, 1]. For
    segmentation: ``{"images": …, "masks": …}`` of the first ``per_class`` pairs."""
    data = load_for_design(name, design)
    images = data.train.images.permute(0, 2, 3, 1).numpy()
    images = images[..., 0] if images.shape[-1] == 1 else images
    if data.spec.task == "segmentation":
        masks = data.train.targets[:per_class, 0].numpy()
        return {"images": list(images[:per_class]), "masks": list(masks)}
    labels = data.train.targets.numpy()
    return {
        class_name: list(images[np.flatnonzero(labels == index)[:per_class]])
        for index, class_name in enumerate(data.spec.classes)
    }
