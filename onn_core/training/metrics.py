"""Task metrics computed over a whole split (not averaged per batch), and the task losses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# The metric that ranks runs of a task, its key in metrics.json, and how a person reads it.
HEADLINES = {"classification": "accuracy", "segmentation": "miou"}
HEADLINE_LABELS = {"accuracy": "accuracy", "miou": "mIoU"}


def headline(task: str) -> str:
    """The metric that ranks runs: ``accuracy`` (classification) or ``miou`` (segmentation)."""
    if task not in HEADLINES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(HEADLINES)}")
    return HEADLINES[task]


def headline_label(task: str) -> str:
    """The headline metric as the studio prints it ("accuracy" or "mIoU")."""
    return HEADLINE_LABELS[headline(task)]


def classification_metrics(confusion: torch.Tensor) -> dict[str, Any]:
    """Accuracy (fraction 0–1), per-class accuracy and the confusion matrix (rows: true class)."""
    confusion = confusion.double()
    per_class = torch.diag(confusion) / confusion.sum(dim=1).clamp_min(1)
    return {
        "accuracy": float(torch.diag(confusion).sum() / confusion.sum().clamp_min(1)),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": confusion.long().tolist(),
    }


def segmentation_metrics(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """Binary segmentation over all pixels of a split.

    ``miou`` is the mean of the object and background IoU (the convention behind the method's
    mIoU figures); ``iou`` is the object IoU; ``dice`` the object Dice (F1).
    """
    iou_object = tp / max(tp + fp + fn, 1.0)
    iou_background = tn / max(tn + fp + fn, 1.0)
    return {
        "miou": (iou_object + iou_background) / 2,
        "iou": iou_object,
        "iou_background": iou_background,
        "dice": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "pixel_accuracy": (tp + tn) / max(tp + tn + fp + fn, 1.0),
    }


def segmentation_counts(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(tp, fp, fn, tn) of thresholded logits (> 0) against {0, 1} masks."""
    predicted = logits > 0
    truth = masks > 0.5
    return torch.stack(
        [
            (predicted & truth).sum(),
            (predicted & ~truth).sum(),
            (~predicted & truth).sum(),
            (~predicted & ~truth).sum(),
        ]
    ).double()


def dice_loss(logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − soft Dice of sigmoid(logits) against masks, per image, averaged."""
    probability = torch.sigmoid(logits).flatten(1)
    truth = masks.flatten(1)
    overlap = (probability * truth).sum(dim=1)
    return (1 - (2 * overlap + smooth) / (probability.sum(dim=1) + truth.sum(dim=1) + smooth)).mean()


def task_loss(task: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (classification) or BCE + Dice (segmentation: the paper leaves it open)."""
    if task == "classification":
        return F.cross_entropy(outputs, targets)
    return F.binary_cross_entropy_with_logits(outputs, targets) + dice_loss(outputs, targets)
