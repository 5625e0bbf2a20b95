"""``shapes-seg``: a synthetic segmentation set built from real silhouettes (the offline default).

No real image-plus-mask set is reachable offline, so this one is generated, and called synthetic
everywhere. Each image holds one real silhouette (an MNIST digit, or a Fashion-MNIST garment when
the user names a Fashion-MNIST folder) at a random scale, position and contrast, filled with its own texture,
on a cluttered background: smooth shading, a random grating, and distractor strokes and blobs
that are not part of the mask. The mask is exact: the silhouette's resized alpha > 0.5.

Everything is drawn from ``numpy.random.default_rng((seed, split))``, so a (seed, split, count)
triple always gives the same images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a cells×cells random grid bicubically upsampled to size×size, in [0, 1]."""
    coarse = torch.from_numpy(rng.random((1, 1, cells, cells), dtype=np.float32))
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0, 0].numpy()
    low, high = fine.min(), fine.max()
    return (fine - low) / max(high - low, 1e-6)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shading = _smooth_noise(rng, size, int(rng.integers(3, 6)))
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(2, 9)
    grating = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6))
    background = 0.55 * shading + rng.uniform(0.1, 0.35) * grating
    # Distractors: strokes and blobs as bright as a silhouette, but not in the mask.
    for _ in range(int(rng.integers(2, 6))):
        if rng.random() < 0.5:
            start, direction = rng.uniform(0, 1, 2), rng.normal(size=2)
            direction /= np.linalg.norm(direction) + 1e-9
            distance = np.abs((xx - start[0]) * direction[1] - (yy - start[1]) * direction[0])
            background = np.maximum(background, rng.uniform(0.4, 1.0) * (distance < rng.uniform(0.01, 0.03)))
        else:
            centre, radius = rng.uniform(0, 1, 2), rng.uniform(0.03, 0.1)
            blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * radius**2))
            background = np.maximum(background, rng.uniform(0.4, 1.0) * blob)
    return np.clip(background, 0, 1)


def _place(silhouette: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """The silhouette (H, W) in [0, 1], rescaled and dropped at a random position: alpha (size, size)."""
    side = round(rng.uniform(0.45, 0.95) * size)
    resized = F.interpolate(
        torch.from_numpy(silhouette[None, None].astype(np.float32)),
        size=(side, side),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0, 0].numpy()
    alpha = np.zeros((size, size), dtype=np.float32)
    top, left = (int(v) for v in rng.integers(-side // 6, size - side + side // 6 + 1, size=2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, size), min(left + side, size)
    alpha[y0:y1, x0:x1] = resized[y0 - top : y1 - top, x0 - left : x1 - left]
    return np.clip(alpha, 0, 1)


def generate(
    silhouettes: np.ndarray, *, count: int, size: int, seed: int, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` images (uint8 (N, 1, size, size)), masks (uint8 (N, 1, size, size)), source indices.

    Args:
        silhouettes: uint8 (M, h, w) real digit/garment images used as shapes.
        count: images to make. size: side in pixels. seed: dataset seed. split: train/val/test
            (each split draws from its own stream, and from its own third of the silhouettes, so
            no silhouette appears in two splits).
    """
    code = SPLIT_CODES[split]
    rng = np.random.default_rng((seed, code))
    pool = np.arange(len(silhouettes))[code::3]
    images = np.empty((count, 1, size, size), dtype=np.uint8)
    masks = np.empty((count, 1, size, size), dtype=np.uint8)
    chosen = rng.choice(pool, size=count, replace=count > len(pool))
    for index, source in enumerate(chosen):
        alpha = _place(silhouettes[source] / 255.0, rng, size)
        background = _background(rng, size)
        texture = 0.7 + 0.3 * _smooth_noise(rng, size, int(rng.integers(4, 9)))
        level = rng.uniform(0.35, 1.0)
        if rng.random() < 0.3:  # a dark shape on a lighter background, sometimes
            level, background = rng.uniform(0.0, 0.2), 0.4 + 0.6 * background
        foreground = level * texture
        image = background * (1 - alpha) + foreground * alpha
        image += rng.normal(0, 0.03, size=image.shape)
        images[index, 0] = np.round(np.clip(image, 0, 1) * 255)
        masks[index, 0] = alpha > 0.5
    return images, masks, chosen
