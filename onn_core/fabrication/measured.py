"""Measured data from the bench: PSF stacks of the fabricated sub-optics, captured feature maps.

Everything here comes from a user, so it is size-limited, read without pickles, and validated
for shape, dtype, range and count against the run it is meant for; anything else is refused
with the reason and what the file should hold (:class:`~onn_core.errors.MeasuredDataError`).

**PSF stacks** — one non-negative image per capture, K⁺ of every kernel then K⁻ of every
kernel (signed), in the frontend's channel order:

* ``.npz`` with ``psfs`` (S, C, t, t) or (S, t, t) for a single-group model, or ``group0_psfs``,
  ``group1_psfs``, … for a model with several kernel groups;
* a folder of PNG/TIFF images (8- or 16-bit, grey or RGB), one per capture, named
  ``k003_plus.png`` / ``k003_minus.png`` (signed) or ``k003.png`` (unsigned), with a ``g1_``
  prefix for groups after the first.

Images may be sampled per kernel tap (t × t) or per sensor pixel (t·p × t·p with p sensor
pixels per tap, summed onto taps here). Absolute scale is rarely known on a bench, so the stack
is brought to a peak of 1 here and rescaled as a whole to the designed captures' total power when
used (:func:`~.fabricated.fabricate`), which keeps the measured relative efficiencies.

**Captured feature maps** — ``.npz`` with ``features`` (N, K, H, W) (the frontend's output
after the K⁺ − K⁻ subtraction, in the simulation's units), ``split`` ("train", "val" or
"test") and ``indices`` (N,) locating each image in that split of the run's dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..design import Design
from ..errors import MeasuredDataError
from ..models.frontends import OpticalFrontend
from ..user_input import image_limits, load_npz

MAX_MEASURED_BYTES = 64 * 1024 * 1024  # a PSF stack or a few thousand feature maps
MAX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024  # what an .npz may expand to (a small file can hold a bomb)
MAX_IMAGE_FILES = 4096
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
# Background subtraction leaves small negative values; beyond this fraction of the peak the
# image is not an intensity.
NEGATIVE_TOLERANCE = 0.02
_IMAGE_NAME = re.compile(r"^(?:g(?P<group>\d+)_)?k(?P<kernel>\d+)(?:_(?P<sign>plus|minus))?$")


def _check_size(path: Path) -> None:
    if not path.exists():
        raise MeasuredDataError(path, "no such file or folder.")
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    if size > MAX_MEASURED_BYTES:
        raise MeasuredDataError(path, f"is {size / 2**20:.1f} MiB; the limit is {MAX_MEASURED_BYTES // 2**20} MiB.",
                                "crop each PSF to its kernel window before uploading.")  # fmt: skip


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    """The arrays ``names`` of an .npz (see :func:`onn_core.user_input.load_npz`)."""
    return load_npz(path, lambda problem, hint: MeasuredDataError(path, problem, hint), names=names,
                    max_expanded=MAX_UNCOMPRESSED_BYTES)  # fmt: skip


def _expected_shapes(frontends: list[OpticalFrontend], design: Design) -> list[tuple[int, int, int, int]]:
    """(captures, channels, taps, sensor pixels per tap) per kernel group: a group working on a
    binned image has taps ``scale`` times wider on the sensor."""
    pixels = design.sensor_pixels_per_tap
    return [(f.kernels * f.captures_per_kernel, f.channels, f.taps, pixels * f.scale) for f in frontends]


def _to_taps(stack: np.ndarray, taps: int, pixels_per_tap: int, where: str, path: Path) -> np.ndarray:
    """(S, C, side, side) at tap or sensor-pixel sampling → (S, C, t, t) power per tap."""
    side = stack.shape[-1]
    if stack.shape[-2] != side:
        raise MeasuredDataError(path, f"{where}: PSFs must be square; got {stack.shape[-2]}×{side}.")
    if side == taps:
        return stack
    if side == taps * pixels_per_tap:
        return stack.reshape(*stack.shape[:-2], taps, pixels_per_tap, taps, pixels_per_tap).sum(axis=(-3, -1))
    raise MeasuredDataError(
        path, f"{where}: each PSF is {side}×{side} pixels; this design's kernels are {taps}×{taps} taps "
        f"({taps * pixels_per_tap}×{taps * pixels_per_tap} sensor pixels).",
        "crop each PSF to the kernel window, centred on the sub-optic's axis.",
    )  # fmt: skip


def _validate_stack(stack: np.ndarray, expected: tuple[int, int, int, int], where: str, path: Path) -> torch.Tensor:
    count, channels, taps, pixels_per_tap = expected
    if not isinstance(stack, np.ndarray) or stack.dtype.kind not in "uif":
        kind = getattr(stack, "dtype", type(stack))
        raise MeasuredDataError(path, f"{where}: PSFs must be real numbers (integer or float); got {kind}.")
    if stack.ndim == 3 and channels == 1:
        stack = stack[:, None]
    if stack.ndim != 4:
        raise MeasuredDataError(path, f"{where}: expected (captures, channels, rows, cols) = ({count}, {channels}, "
                                f"{taps}, {taps}); got shape {stack.shape}.")  # fmt: skip
    if stack.shape[0] != count:
        raise MeasuredDataError(path, f"{where}: the model has {count} captures (sub-optics) here; the file holds "
                                f"{stack.shape[0]} PSFs.",
                                "one PSF per sub-optic: K⁺ of every kernel, then K⁻.")  # fmt: skip
    if stack.shape[1] != channels:
        raise MeasuredDataError(path, f"{where}: the model reads {channels} colour channel(s); the PSFs have "
                                f"{stack.shape[1]}.")  # fmt: skip
    values = stack.astype(np.float64)
    if not np.isfinite(values).all():
        raise MeasuredDataError(path, f"{where}: holds NaN or infinite values.")
    # The absolute scale is not used (the stack is rescaled as a whole to the designed power), and
    # a stack scaled by 1e-60 or 1e308 must give the same answer: bring the peak to 1 before any
    # sum (which would overflow) or clamp and cast (which would underflow).
    largest = float(np.abs(values).max()) if values.size else 0.0
    values = _to_taps(values / largest if largest > 0 else values, taps, pixels_per_tap, where, path)
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0:
        raise MeasuredDataError(path, f"{where}: every value is ≤ 0; a PSF is a measured intensity.")
    if float(values.min()) < -NEGATIVE_TOLERANCE * peak:
        raise MeasuredDataError(path, f"{where}: has values down to {values.min():.3g} (peak {peak:.3g}); an "
                                "intensity is non-negative.", "subtract the background and clip at zero.")  # fmt: skip
    values = np.clip(values, 0.0, None)
    power = values.sum(axis=(1, 2, 3))
    dark = [s for s in range(count) if power[s] <= 0]
    if dark:
        raise MeasuredDataError(path, f"{where}: PSF(s) {dark[:8]} hold no light.",
                                "re-measure those sub-optics or check the file order.")  # fmt: skip
    return torch.as_tensor(values)  # float64, peak 1: relative powers kept, absolute scale gone


def read_measured_psfs(path: str | Path, frontends: list[OpticalFrontend], design: Design) -> list[torch.Tensor]:
    """Measured capture PSFs for each of a model's frontends, validated; (S, C, t, t) per group."""
    path = Path(path)
    _check_size(path)
    expected = _expected_shapes(frontends, design)
    if path.is_dir():
        return _read_image_folder(path, frontends, expected)
    if path.suffix.lower() != ".npz":
        raise MeasuredDataError(path, f"unsupported file type {path.suffix or '(none)'}.",
                                "give an .npz file or a folder of PNG/TIFF images.")  # fmt: skip
    arrays = _load_npz(path, ("psfs", *(f"group{g}_psfs" for g in range(len(frontends)))))
    names = [f"group{g}_psfs" for g in range(len(frontends))]
    if len(frontends) == 1 and "group0_psfs" not in arrays:
        names = ["psfs"]
    missing = [name for name in names if arrays.get(name) is None]
    if missing:
        present = ", ".join(arrays) or "none"
        raise MeasuredDataError(path, f"has no array named {', '.join(missing)} (it has: {present}).",
                                "name it 'psfs' (one kernel group) or 'group0_psfs', 'group1_psfs', …")  # fmt: skip
    return [_validate_stack(arrays[name], shape, name, path) for name, shape in zip(names, expected, strict=True)]


def _read_image(file: Path, sides: tuple[int, ...]) -> np.ndarray:
    """A grey or RGB image as (C, H, W) float64; its size is checked before it is decoded."""
    with image_limits(lambda problem, hint: MeasuredDataError(file, problem, hint)):
        return _decode_image(file, sides)


def _decode_image(file: Path, sides: tuple[int, ...]) -> np.ndarray:
    try:
        with Image.open(file) as image:
            if image.width != image.height or image.width not in sides:
                raise MeasuredDataError(file, f"is {image.width}×{image.height} pixels; a PSF of this kernel group "
                                        f"is square, {' or '.join(f'{s}×{s}' for s in sides)}.",
                                        "crop each PSF to the kernel window around the axis.")  # fmt: skip
            image.load()
            if image.mode in ("RGB", "RGBA"):
                return np.asarray(image.convert("RGB"), dtype=np.float64).transpose(2, 0, 1)
            if image.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                return np.asarray(image, dtype=np.float64)[None]
            raise MeasuredDataError(file, f"image mode {image.mode} is not a grey or RGB intensity.")
    except OSError as exc:
        raise MeasuredDataError(file, f"is not a readable PNG/TIFF image ({exc}).") from None


def _read_image_folder(folder: Path, frontends: list[OpticalFrontend], expected) -> list[torch.Tensor]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MeasuredDataError(folder, "holds no PNG or TIFF images.", "name them k000_plus.png, k000_minus.png, ….")
    if len(files) > MAX_IMAGE_FILES:
        raise MeasuredDataError(folder, f"holds {len(files)} images; the limit is {MAX_IMAGE_FILES}.")
    found: dict[tuple[int, int], np.ndarray] = {}
    for file in files:
        match = _IMAGE_NAME.match(file.stem)
        if match is None:
            raise MeasuredDataError(file, "does not follow the naming k<kernel>_plus / k<kernel>_minus (or k<kernel> "
                                    "for unsigned kernels), with a g<group>_ prefix after group 0.")  # fmt: skip
        group, kernel = int(match["group"] or 0), int(match["kernel"])
        if group >= len(frontends):
            raise MeasuredDataError(file, f"names kernel group {group}; the model has {len(frontends)}.")
        frontend = frontends[group]
        if kernel >= frontend.kernels:
            raise MeasuredDataError(file, f"names kernel {kernel}; group {group} has {frontend.kernels} kernels.")
        if frontend.signed != (match["sign"] is not None):
            need = "_plus/_minus suffixes" if frontend.signed else "no _plus/_minus suffix (unsigned kernels)"
            raise MeasuredDataError(file, f"naming does not match the model: it needs {need}.")
        capture = kernel + (frontend.kernels if match["sign"] == "minus" else 0)
        if (group, capture) in found:
            raise MeasuredDataError(file, "duplicates another image of the same sub-optic.")
        _, _, taps, pixels = expected[group]
        found[(group, capture)] = _read_image(file, (taps, taps * pixels))
    stacks = []
    for group, (count, channels, taps, pixels) in enumerate(expected):
        missing = [c for c in range(count) if (group, c) not in found]
        if missing:
            raise MeasuredDataError(folder, f"kernel group {group} misses {len(missing)} of its {count} sub-optic "
                                    "images.", "give one image per sub-optic (K⁺ and K⁻ of every kernel).")  # fmt: skip
        shapes = {found[(group, c)].shape for c in range(count)}
        if len(shapes) > 1:
            raise MeasuredDataError(folder, f"kernel group {group}'s images differ in size or channels: "
                                    f"{sorted(shapes)}.")  # fmt: skip
        stack = np.stack([found[(group, c)] for c in range(count)])
        stacks.append(_validate_stack(stack, (count, channels, taps, pixels), f"group {group}", folder))
    return stacks


@dataclass
class CapturedMaps:
    """Real feature maps of some images of one split: ``features`` (N, K, H, W), ``indices`` (N,)."""

    split: str
    indices: torch.Tensor
    features: torch.Tensor


def read_captured_maps(path: str | Path, frontend: OpticalFrontend, image_size: tuple[int, int],
                       split_sizes: dict[str, int]) -> CapturedMaps:  # fmt: skip
    """Captured feature maps for a single-frontend model, validated against its output and data."""
    path = Path(path)
    _check_size(path)
    if path.suffix.lower() != ".npz":
        raise MeasuredDataError(path, "captured feature maps come as an .npz file (features, split, indices).")
    arrays = _load_npz(path, ("features", "split", "indices"))
    missing = [name for name in ("features", "split", "indices") if arrays.get(name) is None]
    if missing:
        raise MeasuredDataError(path, f"lacks {', '.join(missing)}.", "save features (N, K, H, W), split "
                                "('train', 'val' or 'test') and indices (N,) into that split.")  # fmt: skip
    features, indices = arrays["features"], arrays["indices"]
    split = str(arrays["split"].item() if arrays["split"].shape == () else arrays["split"])
    if split not in split_sizes:
        raise MeasuredDataError(path, f"split {split!r} is not one of {', '.join(split_sizes)}.")
    height, width = (side // frontend.scale for side in image_size)
    shape = (frontend.kernels, height, width)
    if features.dtype.kind not in "uif" or features.ndim != 4 or tuple(features.shape[1:]) != shape:
        raise MeasuredDataError(path, f"features must be real (N, {shape[0]}, {shape[1]}, {shape[2]}) maps for this "
                                f"run; got {features.dtype} {features.shape}.")  # fmt: skip
    if indices.dtype.kind not in "iu" or indices.shape != (features.shape[0],):
        raise MeasuredDataError(path, f"indices must be {features.shape[0]} whole numbers, one per map; got "
                                f"{indices.dtype} {indices.shape}.")  # fmt: skip
    size = split_sizes[split]
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= size:
        raise MeasuredDataError(path, f"indices must lie in 0…{size - 1} (the {split} split's size).")
    if len(np.unique(indices)) != len(indices):
        raise MeasuredDataError(path, "indices repeat: each captured image appears once.")
    if not np.isfinite(features).all():
        raise MeasuredDataError(path, "features hold NaN or infinite values.")
    return CapturedMaps(split, torch.as_tensor(indices.astype(np.int64)),
                        torch.as_tensor(features, dtype=torch.float32))  # fmt: skip
