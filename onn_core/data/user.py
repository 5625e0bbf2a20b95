"""A designer's own datasets: read a folder, npz or zip, check it, and keep a compact copy.

Layouts read by :func:`read_source`:

* classification folder — ``PATH/<class>/*.{png,jpg,jpeg,bmp,tif,tiff}`` (class names are the
  folder names, sorted: the ImageFolder convention), or ``PATH/train/<class>/…`` with
  ``PATH/test/<class>/…`` (then that is the test set);
* npz — ``x`` (N, H, W) or (N, H, W, C) and ``y`` (N,), optional ``class_names``, ``x_test`` /
  ``y_test``; loaded without pickle;
* segmentation folder — ``PATH/images/<stem>.<ext>`` with ``PATH/masks/<stem>.png`` (binary or
  0/255, the image's size);
* a ``.zip`` of any of these (entries confined to the folder it unpacks to, with limits on entry
  count, uncompressed size and pixels per image).

:func:`add_dataset` stores one ``data.npz`` (uint8 images, one common size) and a
``dataset.json`` in ``$ONN_STUDIO_HOME/datasets/NAME/``, written to a temporary folder and
renamed into place, so a refused dataset writes nothing. Every refusal is a DataFormatError that
names the file or class and what to change.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataFormatError
from ..paths import studio_home
from ..user_input import MAX_IMAGE_PIXELS, image_limits, load_npz

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
TASKS = ("classification", "segmentation")
# Limits on what one dataset may hold (each refusal says which limit and its value).
MAX_ARCHIVE_BYTES = 512 * 2**20  # a zip file as uploaded
MAX_UNPACKED_BYTES = 2 * 2**30  # its entries, uncompressed
MAX_FILES = 200_000  # entries in a zip, or images in a folder
MAX_STORED_BYTES = 2 * 2**30  # the stored copy, uint8 at the common size
# Every class needs this many test images and the validation split at least one, at the default
# fractions (test 20 % of a set without its own test split, validation 10 % of training); the
# registry's load_dataset takes its defaults from here, so the counts promised are the ones loaded.
MIN_TEST_PER_CLASS = 2
DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION = 0.2, 0.1
IMBALANCE_WARNING = 10.0  # largest over smallest class
SMALL_CLASS_WARNING = 20  # images


@dataclass
class UserDataset:
    """A dataset read from the designer's files, before it is stored.

    Attributes:
        task: classification or segmentation. classes: names in label order (segmentation:
        background, object). x_train/x_test: uint8 (N, H, W, C). y_train/y_test: int64 labels
        (N,) or uint8 {0, 1} masks (N, H, W). source: what was read. warnings: what is
        questionable but usable. skipped: files passed over (not images), by reason.
    """

    task: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[1]), int(self.x_train.shape[2])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[3])


# ---------------------------------------------------------------------------- reading
def read_source(
    path: str | Path, *, task: str | None = None, size: tuple[int, int] | None = None, channels: int | None = None
) -> UserDataset:
    """Read and check the dataset at ``path`` (folder, npz or zip); nothing is written.

    ``task`` defaults to what the layout says (``images/`` + ``masks/``: segmentation); ``size``
    (height, width pixels) to the most common image size; ``channels`` to 3 when any image is in
    colour, else 1.
    """
    source = Path(path)
    if task is not None and task not in TASKS:
        raise DataFormatError(path, f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    if channels is not None and channels not in (1, 3):
        raise DataFormatError(path, f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    if size is not None and (len(size) != 2 or min(size) < 1 or max(size) > 4096):
        raise DataFormatError(path, f"size must be two whole numbers of pixels in 1–4096, got {size}.")
    if not source.exists():
        raise DataFormatError(path, "does not exist; give a folder, an .npz or a .zip.")
    if source.is_file() and source.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="onn-dataset-") as folder:
            unpacked = unpack_zip(source, Path(folder))
            dataset = read_source(unpacked, task=task, size=size, channels=channels)
            dataset.source = f"{source} (zip)"
            return dataset
    if source.is_file() and source.suffix.lower() == ".npz":
        return _read_npz(source, task, size, channels)
    if source.is_dir():
        if (source / "images").is_dir() and (source / "masks").is_dir():
            if task == "classification":
                raise DataFormatError(path, "holds images/ and masks/: a segmentation layout, not classes.")
            return _read_segmentation_folder(source, size, channels)
        if task == "segmentation":
            raise DataFormatError(path, "a segmentation dataset needs images/ and masks/ folders (same file stems).")
        return _read_class_folder(source, size, channels)
    raise DataFormatError(path, "is neither a folder, an .npz nor a .zip.")


def unpack_zip(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` into ``target`` within the limits; returns the folder holding the data
    (a single top-level folder in the zip is stepped into)."""
    size = archive.stat().st_size
    if size > MAX_ARCHIVE_BYTES:
        limit = MAX_ARCHIVE_BYTES // 2**20
        raise DataFormatError(archive, f"is {size / 2**20:.0f} MiB; the limit for a zip is {limit} MiB.")
    try:
        with zipfile.ZipFile(archive) as handle:
            entries = [entry for entry in handle.infolist() if not entry.is_dir()]
            if len(entries) > MAX_FILES:
                raise DataFormatError(archive, f"holds {len(entries):,} files; the limit is {MAX_FILES:,}.")
            unpacked = sum(entry.file_size for entry in entries)
            if unpacked > MAX_UNPACKED_BYTES:
                raise DataFormatError(archive, f"unpacks to {unpacked / 2**30:.1f} GiB; the limit is "
                                      f"{MAX_UNPACKED_BYTES / 2**30:.0f} GiB.")  # fmt: skip
            root = target.resolve()
            for entry in entries:
                name = entry.filename.replace("\\", "/")
                parts = [part for part in name.split("/") if part not in ("", ".")]
                mode = entry.external_attr >> 16
                if name.startswith("/") or ".." in parts or (mode and (mode & 0o170000) == 0o120000):
                    raise DataFormatError(archive, f"entry {entry.filename!r} points outside the archive's folder "
                                          "(absolute path, '..' or a link); the zip is refused.")  # fmt: skip
                if parts[0] == "__MACOSX" or parts[-1].startswith("."):
                    continue  # macOS resource forks and hidden files
                destination = root.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with handle.open(entry) as reader, destination.open("wb") as writer:
                    shutil.copyfileobj(reader, writer, length=2**20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DataFormatError(archive, f"is not a readable zip ({exc}).") from None
    children = [child for child in root.iterdir() if not child.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir():
        return children[0]
    if len(children) == 1 and children[0].suffix.lower() == ".npz":
        return children[0]
    return root


def _open_image(path: Path, channels: int | None) -> Image.Image:
    """The image at ``path``, fully decoded (a truncated or corrupt file is refused, naming it)."""
    with image_limits(lambda problem, hint: DataFormatError(path, problem, hint), max_pixels=MAX_IMAGE_PIXELS):
        try:
            with Image.open(path) as image:
                image.load()
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                return image.copy()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataFormatError(path, f"is not a readable image (corrupt or truncated: {exc}).") from None


def _is_colour(image: Image.Image) -> bool:
    if image.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return False
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def _common_size(images: list[Image.Image], size: tuple[int, int] | None, notes: list[str]) -> tuple[int, int]:
    sizes = collections.Counter((image.height, image.width) for image in images)
    chosen = (int(size[0]), int(size[1])) if size is not None else sizes.most_common(1)[0][0]
    others = sum(count for shape, count in sizes.items() if shape != chosen)
    if others:
        notes.append(f"{others} of {len(images)} images were resized to {chosen[0]}×{chosen[1]} pixels "
                     f"(sizes found: {len(sizes)})")  # fmt: skip
    return chosen


def _to_array(images: list[Image.Image], size: tuple[int, int], channels: int) -> np.ndarray:
    mode = "L" if channels == 1 else "RGB"
    height, width = size
    out = np.empty((len(images), height, width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        converted = image.convert(mode)
        if (converted.height, converted.width) != size:
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        out[index] = np.asarray(converted).reshape(height, width, channels)
    return out


def _image_files(folder: Path, skipped: collections.Counter) -> list[Path]:
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            files.append(path)
        else:
            skipped[f"not an image ({path.suffix or 'no suffix'})"] += 1
    return files


def _class_folders(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith((".", "__")))


def _read_class_folder(folder: Path, size: tuple[int, int] | None, channels: int | None) -> UserDataset:
    skipped: collections.Counter = collections.Counter()
    parts = {"train": folder / "train", "test": folder / "test"}
    split_layout = parts["train"].is_dir() and parts["test"].is_dir()
    roots = parts if split_layout else {"train": folder}
    names = [child.name for child in _class_folders(roots["train"])]
    if split_layout:
        test_names = [child.name for child in _class_folders(roots["test"])]
        if test_names != names:
            missing = sorted(set(names) ^ set(test_names))
            raise DataFormatError(folder, f"train/ and test/ hold different classes ({', '.join(missing)}); "
                                  "give both the same class folders.")  # fmt: skip
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "no class folders"
        raise DataFormatError(folder, f"has {found}; a classification dataset needs ≥ 2 class folders "
                              "(PATH/<class>/*.png).")  # fmt: skip
    images: dict[str, list[Image.Image]] = {}
    labels: dict[str, list[int]] = {}
    total = 0
    for split, root in roots.items():
        images[split], labels[split] = [], []
        for label, name in enumerate(names):
            files = _image_files(root / name, skipped)
            if not files:
                raise DataFormatError(root / name, "holds no images (.png, .jpg, .bmp, .tif); add some or remove "
                                      "the folder.")  # fmt: skip
            total += len(files)
            if total > MAX_FILES:
                raise DataFormatError(folder, f"holds more than {MAX_FILES:,} images, the limit for one dataset.")
            for path in files:
                images[split].append(_open_image(path, channels))
                labels[split].append(label)
    every = images["train"] + images.get("test", [])
    notes: list[str] = []
    common = _common_size(every, size, notes)
    depth = channels if channels is not None else (3 if any(_is_colour(image) for image in every) else 1)
    dataset = UserDataset(
        "classification", tuple(names), _to_array(images["train"], common, depth),
        np.asarray(labels["train"], dtype=np.int64), source=str(folder), warnings=notes, skipped=dict(skipped),
    )  # fmt: skip
    if split_layout:
        dataset.x_test = _to_array(images["test"], common, depth)
        dataset.y_test = np.asarray(labels["test"], dtype=np.int64)
    return _checked(dataset, folder)


def _read_segmentation_folder(folder: Path, size: tuple[int, int] | None, channels: int | None) -> UserDataset:
    skipped: collections.Counter = collections.Counter()
    image_files = {path.stem: path for path in _image_files(folder / "images", skipped)}
    mask_files = {path.stem: path for path in _image_files(folder / "masks", skipped)}
    if not image_files:
        raise DataFormatError(folder / "images", "holds no images.")
    if len(image_files) > MAX_FILES:
        raise DataFormatError(folder, f"holds more than {MAX_FILES:,} images, the limit for one dataset.")
    unmatched = sorted(set(image_files) ^ set(mask_files))
    if unmatched:
        raise DataFormatError(folder, f"{len(unmatched)} image(s) or mask(s) have no partner, e.g. "
                              f"{unmatched[0]!r}; every images/<stem> needs masks/<stem>.png.")  # fmt: skip
    images, masks = [], []
    for stem in sorted(image_files):
        image, mask = _open_image(image_files[stem], channels), _open_image(mask_files[stem], 1)
        if image.size != mask.size:
            raise DataFormatError(mask_files[stem], f"is {mask.width}×{mask.height} pixels but its image is "
                                  f"{image.width}×{image.height}; a mask must match its image.")  # fmt: skip
        values = np.asarray(mask.convert("L"))
        if not np.isin(values, (0, 1, 255)).all():
            raise DataFormatError(mask_files[stem], "is not a binary mask (values other than 0 and 1 or 255).")
        images.append(image)
        masks.append(Image.fromarray(((values > 0) * 255).astype(np.uint8)))
    notes: list[str] = []
    common = _common_size(images, size, notes)
    depth = channels if channels is not None else (3 if any(_is_colour(image) for image in images) else 1)
    height, width = common
    labels = np.stack([np.asarray(mask.resize((width, height), Image.Resampling.NEAREST)) > 127 for mask in masks])
    dataset = UserDataset("segmentation", ("background", "object"), _to_array(images, common, depth),
                          labels.astype(np.uint8), source=str(folder), warnings=notes,
                          skipped=dict(skipped))  # fmt: skip
    return _checked(dataset, folder)


def _read_npz(path: Path, task: str | None, size: tuple[int, int] | None, channels: int | None) -> UserDataset:
    arrays = {key: value for key, value in load_npz(path, lambda problem, hint: DataFormatError(path, problem, hint),
                                                       max_expanded=MAX_UNPACKED_BYTES).items() if value is not None}
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataFormatError(path, f"lacks {', '.join(missing)}; an npz dataset holds x (N, H, W[, C]) and y (N,), "
                              "optionally class_names, x_test and y_test.")  # fmt: skip
    if (task or "classification") != "classification":
        raise DataFormatError(path, "an npz is read as a classification dataset; give segmentation as "
                              "images/ + masks/.")  # fmt: skip
    notes: list[str] = []
    x, y = _npz_images(arrays["x"], path, "x"), _npz_labels(arrays["y"], path, "y")
    if len(x) != len(y):
        raise DataFormatError(path, f"x holds {len(x)} images but y {len(y)} labels.")
    has_test = "x_test" in arrays or "y_test" in arrays
    x_test = _npz_images(arrays["x_test"], path, "x_test") if has_test and "x_test" in arrays else None
    y_test = _npz_labels(arrays["y_test"], path, "y_test") if has_test and "y_test" in arrays else None
    if has_test and (x_test is None or y_test is None or len(x_test) != len(y_test)):
        raise DataFormatError(path, "x_test and y_test must come together, one label per image.")
    every_label = y if y_test is None else np.concatenate([y, y_test])
    count = int(every_label.max()) + 1 if len(every_label) else 0
    if "class_names" in arrays:
        names = tuple(str(name) for name in arrays["class_names"].reshape(-1))
        if len(names) < count:
            raise DataFormatError(path, f"labels go up to {count - 1} but class_names has {len(names)} names "
                                  "(labels out of range).")  # fmt: skip
    else:
        names = tuple(str(label) for label in range(count))
    if len(names) < 2:
        raise DataFormatError(path, "holds one class; a classification dataset needs ≥ 2.")
    depth = channels if channels is not None else x.shape[3]
    target = (int(size[0]), int(size[1])) if size is not None else (x.shape[1], x.shape[2])
    if (x.shape[1], x.shape[2]) != target:
        notes.append(f"resized from {x.shape[1]}×{x.shape[2]} to {target[0]}×{target[1]} pixels")
    convert = lambda images: _to_array([Image.fromarray(i.squeeze(-1) if i.shape[-1] == 1 else i)  # noqa: E731
                                        for i in images], target, depth)  # fmt: skip
    dataset = UserDataset("classification", names, convert(x), y, source=str(path), warnings=notes)
    if x_test is not None:
        dataset.x_test, dataset.y_test = convert(x_test), y_test
    return _checked(dataset, path)


def _npz_images(values: np.ndarray, path: Path, key: str) -> np.ndarray:
    if values.ndim == 3:
        values = values[..., None]
    if values.ndim != 4 or values.shape[3] not in (1, 3) or min(values.shape[1:3]) < 1:
        raise DataFormatError(path, f"{key} has shape {values.shape}; expected (N, H, W) or (N, H, W, 1|3).")
    if values.shape[0] == 0:
        raise DataFormatError(path, f"{key} holds no images.")
    if values.shape[1] * values.shape[2] > MAX_IMAGE_PIXELS:
        raise DataFormatError(path, f"{key}'s images have more than {MAX_IMAGE_PIXELS:,} pixels, the limit.")
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise DataFormatError(path, f"{key} is {values.dtype}; images must be real numbers.")
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise DataFormatError(path, f"{key} holds NaN or infinite values.")
        top = float(values.max()) if values.size else 0.0
        if float(values.min()) < 0 or top > 255:
            raise DataFormatError(path, f"{key} spans {float(values.min()):g}–{top:g}; give 0–1 or 0–255.")
        values = values * 255.0 if top <= 1.0 else values
        return np.round(values).astype(np.uint8)
    if values.min() < 0 or values.max() > 255:
        raise DataFormatError(path, f"{key} spans {values.min()}–{values.max()}; give 8-bit values (0–255).")
    return values.astype(np.uint8)


def _npz_labels(values: np.ndarray, path: Path, key: str) -> np.ndarray:
    values = values.reshape(-1) if values.ndim == 2 and 1 in values.shape else values
    if values.ndim != 1:
        raise DataFormatError(path, f"{key} has shape {values.shape}; expected one label per image (N,).")
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise DataFormatError(path, f"{key} holds NaN or infinite labels.")
        if not np.all(values == np.round(values)):
            raise DataFormatError(path, f"{key} holds non-integer labels.")
    elif not np.issubdtype(values.dtype, np.integer):
        raise DataFormatError(path, f"{key} is {values.dtype}; labels must be whole numbers 0…K−1.")
    if len(values) and values.min() < 0:
        raise DataFormatError(path, f"{key} holds negative labels (labels out of range); use 0…K−1.")
    return values.astype(np.int64)


def split_counts(counts: np.ndarray, test_counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (train, val, test) images as the registry's stratified split cuts them at the
    default fractions (the same arithmetic, so the counts promised are the counts loaded)."""
    counts = np.asarray(counts)
    if test_counts is None:
        share = 1 - DEFAULT_TEST_FRACTION
        cuts = np.cumsum((share * (1 - DEFAULT_VAL_FRACTION), share * DEFAULT_VAL_FRACTION))
        first, second = (np.round(cut * counts).astype(int) for cut in cuts)
        return first, second - first, counts - second
    train = np.round((1 - DEFAULT_VAL_FRACTION) * counts).astype(int)
    return train, counts - train, np.asarray(test_counts)


def _checked(dataset: UserDataset, path: Path) -> UserDataset:
    """Refuse what cannot be split and scored; note what is questionable."""
    if dataset.task == "classification":
        for split, labels in (("training", dataset.y_train), ("test", dataset.y_test)):
            if labels is None:
                continue
            counts = np.bincount(labels, minlength=len(dataset.classes))
            empty = [dataset.classes[i] for i in np.flatnonzero(counts == 0)]
            if empty and split == "training":
                raise DataFormatError(path, f"class {empty[0]!r} has no {split} images; every class needs some.")
        train_counts = np.bincount(dataset.y_train, minlength=len(dataset.classes))
        given_test = None if dataset.y_test is None else np.bincount(dataset.y_test, minlength=len(dataset.classes))
        _, val_counts, test_counts = split_counts(train_counts, given_test)
        short = [(dataset.classes[i], int(train_counts[i]), int(test_counts[i]))
                 for i in np.flatnonzero(test_counts < MIN_TEST_PER_CLASS)]  # fmt: skip
        if short:
            name, total, test = short[0]
            need = math.ceil((MIN_TEST_PER_CLASS - 0.5) / DEFAULT_TEST_FRACTION)
            fix = (f"add images until it has ≥ {need}" if given_test is None
                   else f"give it ≥ {MIN_TEST_PER_CLASS} test images")  # fmt: skip
            raise DataFormatError(path, f"class {name!r} would have {test} test image(s) ({total} in all); each class "
                                  f"needs ≥ {MIN_TEST_PER_CLASS} to be scored: {fix}.")  # fmt: skip
        if int(val_counts.sum()) < 1:
            raise DataFormatError(path, f"{int(train_counts.sum())} images leave an empty validation split; "
                                  "add images.")  # fmt: skip
        smallest, largest = int(train_counts.min()), int(train_counts.max())
        if largest > IMBALANCE_WARNING * smallest:
            dataset.warnings.append(f"classes are imbalanced: {largest} images in the largest, {smallest} in the "
                                    "smallest (over 10:1)")  # fmt: skip
        few = [dataset.classes[i] for i in np.flatnonzero(train_counts < SMALL_CLASS_WARNING)]
        if few:
            dataset.warnings.append(f"under {SMALL_CLASS_WARNING} images in {', '.join(few)}")
    else:
        test = len(dataset.y_train) if dataset.y_test is None else len(dataset.y_test)
        if (test * DEFAULT_TEST_FRACTION if dataset.y_test is None else test) < MIN_TEST_PER_CLASS or len(
                dataset.y_train) < 10:  # fmt: skip
            raise DataFormatError(path, f"{len(dataset.y_train)} image/mask pairs are too few to split into train, "
                                  "validation and test; add at least 10.")  # fmt: skip
    duplicates = _duplicates(dataset.x_train)
    if duplicates:
        dataset.warnings.append(f"{duplicates} duplicate image(s) (same pixels after resizing)")
    if dataset.skipped:
        skipped = ", ".join(f"{count} {reason}" for reason, count in dataset.skipped.items())
        dataset.warnings.append(f"skipped files: {skipped}")
    stored = dataset.x_train.nbytes + (0 if dataset.x_test is None else dataset.x_test.nbytes)
    if stored > MAX_STORED_BYTES:
        raise DataFormatError(path, f"takes {stored / 2**30:.1f} GiB at {dataset.image_size[0]}×"
                              f"{dataset.image_size[1]}; the limit is {MAX_STORED_BYTES / 2**30:.0f} GiB: "
                              "choose a smaller --size.")  # fmt: skip
    return dataset


def _duplicates(images: np.ndarray) -> int:
    seen = collections.Counter(hashlib.sha1(image.tobytes()).hexdigest() for image in images)
    return sum(count - 1 for count in seen.values() if count > 1)


# ---------------------------------------------------------------------------- storing
def datasets_home() -> Path:
    return studio_home() / "datasets"


def check_name(name: str, shipped: tuple[str, ...] = ()) -> str:
    """A user dataset's name: lower-case letters, digits, '-' and '_', not a shipped dataset's."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise DataFormatError(name, "is not a dataset name: use 1–40 lower-case letters, digits, '-' or '_', "
                              "starting with a letter or digit.")  # fmt: skip
    if name in shipped:
        raise DataFormatError(name, "is a shipped dataset's name; choose another.")
    return name


def summary(name: str, dataset: UserDataset) -> dict[str, Any]:
    """What ``data add`` prints: name, task, classes, counts, size, channels, split sizes, warnings."""
    if dataset.task == "classification":
        counts = {name_: int(n) for name_, n in zip(dataset.classes, np.bincount(dataset.y_train,
                  minlength=len(dataset.classes)), strict=True)}  # fmt: skip
        if dataset.y_test is not None:
            test = np.bincount(dataset.y_test, minlength=len(dataset.classes))
            counts = {key: value + int(t) for (key, value), t in zip(counts.items(), test, strict=True)}
    else:
        counts = {"images": len(dataset.y_train) + (0 if dataset.y_test is None else len(dataset.y_test))}
    if dataset.task == "classification":
        per_class = np.bincount(dataset.y_train, minlength=len(dataset.classes))
        tested = None if dataset.y_test is None else np.bincount(dataset.y_test, minlength=len(dataset.classes))
    else:
        per_class = np.array([len(dataset.y_train)])
        tested = None if dataset.y_test is None else np.array([len(dataset.y_test)])
    train, val, test = (int(part.sum()) for part in split_counts(per_class, tested))
    return {
        "name": name, "task": dataset.task, "classes": list(dataset.classes), "counts": counts,
        "image_size": list(dataset.image_size), "channels": dataset.channels,
        "splits": {"train": train, "val": val, "test": test}, "source": "user", "read_from": dataset.source,
        "warnings": list(dataset.warnings), "student_input": STUDENT_INPUT,
    }  # fmt: skip


# What a design does to these images (onn_core.data.load_for_design), said where the data is described.
STUDENT_INPUT = (
    "each design reads the images resized to its input size and in its colours: grey (BT.601 luma of RGB "
    "images) for one wavelength, RGB (grey images repeated) for three"
)


def store(name: str, dataset: UserDataset, home: Path | None = None) -> dict[str, Any]:
    """Write ``dataset`` as ``home/NAME/{data.npz,dataset.json}`` (replacing an older copy); returns its summary."""
    home = home or datasets_home()
    home.mkdir(parents=True, exist_ok=True)
    described = {**summary(name, dataset), "stored": datetime.now(UTC).isoformat(timespec="microseconds")}
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
    try:
        arrays = {"x_train": dataset.x_train, "y_train": dataset.y_train}
        if dataset.x_test is not None:
            arrays.update(x_test=dataset.x_test, y_test=dataset.y_test)
        np.savez_compressed(staging / "data.npz", **arrays)
        (staging / "dataset.json").write_text(json.dumps(described, indent=2), encoding="utf-8")
        final = home / name
        if final.exists():
            retired = home / f".{name}.old"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return described


def add_dataset(name: str, path: str | Path, *, task: str | None = None, size: tuple[int, int] | None = None,
                channels: int | None = None, shipped: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """Read, check and store the designer's dataset at ``path`` as ``name``; returns its summary."""
    check_name(name, shipped)
    return store(name, read_source(path, task=task, size=size, channels=channels))


def add_upload(name: str, filename: str, payload: bytes, *, task: str | None = None,
               size: tuple[int, int] | None = None, channels: int | None = None,
               shipped: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """Store an uploaded ``.zip`` or ``.npz`` (its bytes) as ``name``; the upload itself is not kept."""
    suffix = Path(filename).suffix.lower()
    if suffix not in (".zip", ".npz"):
        raise DataFormatError(filename, "is not a .zip or an .npz: zip the dataset's folder (see the layouts).")
    if len(payload) > MAX_ARCHIVE_BYTES:
        raise DataFormatError(filename, f"is {len(payload) / 2**20:.0f} MiB; the limit for an upload is "
                              f"{MAX_ARCHIVE_BYTES // 2**20} MiB.")  # fmt: skip
    check_name(name, shipped)
    with tempfile.TemporaryDirectory(prefix="onn-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(payload)
        dataset = read_source(path, task=task, size=size, channels=channels)
    dataset.source = f"{Path(filename).name} (uploaded)"
    return store(name, dataset)


def confined_folder(given: str | Path, base: Path) -> Path:
    """The folder a user named on the server, resolved; refused unless it lies inside ``base``
    (relative names are taken from ``base``), so a form cannot read the server's other files."""
    base = Path(base).resolve()
    candidate = (base / given).resolve()  # an absolute ``given`` replaces ``base`` here
    if not candidate.is_relative_to(base):
        raise DataFormatError(given, f"is outside {base}; the app reads folders on the server only under it "
                              "(ONN_DATA_DIR chooses another).")  # fmt: skip
    if not candidate.exists():
        raise DataFormatError(given, f"does not exist under {base}.")
    return candidate


def remove_dataset(name: str) -> None:
    folder = datasets_home() / check_name(name)
    if not (folder / "dataset.json").is_file():
        raise DataFormatError(name, "is not a dataset you added (see `data list`).")
    shutil.rmtree(folder)


def user_datasets() -> list[dict[str, Any]]:
    """The summaries of every stored user dataset, by name."""
    home = datasets_home()
    if not home.is_dir():
        return []
    found = []
    for folder in sorted(home.iterdir()):
        if folder.name.startswith(".") or not (folder / "dataset.json").is_file():
            continue
        try:
            found.append(json.loads((folder / "dataset.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a damaged entry is skipped, not fatal to the listing
    return found


def stored_summary(name: str) -> dict[str, Any] | None:
    """The stored summary of ``name``, or None when no such user dataset exists (any string is safe)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        return None
    path = datasets_home() / name / "dataset.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def read_stored(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(summary, arrays) of the stored dataset ``name`` (arrays: x_train, y_train[, x_test, y_test])."""
    folder = datasets_home() / check_name(name)
    try:
        described = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        with np.load(folder / "data.npz", allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise DataFormatError(name, f"is not a readable stored dataset ({exc}); add it again.") from None
    return described, arrays
