"""Readers for the standard on-disk dataset formats, each error naming the file at fault.

* IDX (MNIST, Fashion-MNIST), plain or gzip-compressed, as LeCun's site and torchvision's
  ``<root>/MNIST/raw`` store them;
* Keras ``mnist.npz`` (``x_train, y_train, x_test, y_test``), read without pickle;
* CIFAR-10 ``cifar-10-batches-py`` batches, read with a restricted unpickler that builds only the
  expected dict of bytes, lists and uint8 arrays, so a crafted pickle cannot run code;
* Carvana's Kaggle layout ``train/<id>_<nn>.jpg`` + ``train_masks/<id>_<nn>_mask.gif``.

Images come back as uint8 arrays (N, H, W) or (N, C, H, W); labels as int64 (N,).
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataFormatError
from ..user_input import MAX_GUNZIPPED_BYTES, gunzip, image_limits, load_npz, read_bytes

# IDX type codes → numpy dtypes (big-endian on disk).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# A CIFAR-10 batch is ~31 MB; anything far larger is not one.
MAX_CIFAR_BATCH_BYTES = 64 * 1024 * 1024
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped (detected by magic bytes, not by the name)."""
    refuse = _refusal(path)
    raw = read_bytes(path, MAX_GUNZIPPED_BYTES, refuse, what="dataset file")
    return gunzip(raw, refuse) if raw[:2] == _GZIP_MAGIC else raw


def _refusal(path: Path):
    """The ``fail`` of :mod:`onn_core.user_input` for a dataset file: a DataFormatError naming it."""
    return lambda problem, hint: DataFormatError(path, problem, hint)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or .gz) into an array of its stored type and shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFormatError(path, "is not an IDX file (its first two bytes must be zero).")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_TYPES or ndim == 0:
        raise DataFormatError(path, f"has an unknown IDX header (type 0x{type_code:02x}, {ndim} dimensions).")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DataFormatError(path, "is truncated inside its header.")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if 0 in shape[1:]:
        raise DataFormatError(path, f"declares items of shape {shape[1:]}: an image has at least one pixel a side.",
                              "download it again.")  # fmt: skip
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header_end
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise DataFormatError(
            path, f"is {state}: shape {shape} needs {expected} bytes of data, found {actual}.", "download it again."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # Some mirrors use "train-images.idx3-ubyte".
    dotted = folder / stem.replace("-idx", ".idx")
    return dotted if dotted.is_file() else None


def find_idx_folder(root: str | Path, subfolders: tuple[str, ...] = ()) -> Path | None:
    """The folder under ``root`` holding the four IDX files (also looks in ``subfolders``)."""
    root = Path(root)
    for folder in [root, *(root / sub for sub in subfolders)]:
        if folder.is_dir() and all(_idx_file(folder, stem) for stem in IDX_NAMES.values()):
            return folder
    return None


def read_idx_dataset(folder: str | Path) -> dict[str, np.ndarray]:
    """The four standard IDX files of ``folder`` → x_train (N,28,28) uint8, y_train, x_test, y_test."""
    folder = Path(folder)
    paths = {key: _idx_file(folder, stem) for key, stem in IDX_NAMES.items()}
    missing = [IDX_NAMES[key] for key, path in paths.items() if path is None]
    if missing:
        raise DataFormatError(folder, f"is missing {', '.join(missing)} (plain or .gz).")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    result = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        images_path, labels_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFormatError(
                images_path, f"must hold uint8 images (N, H, W), holds {images.dtype} {images.shape}."
            )
        if labels.ndim != 1:
            raise DataFormatError(labels_path, f"must hold one label per image, holds shape {labels.shape}.")
        if len(images) != len(labels):
            raise DataFormatError(
                labels_path, f"has {len(labels)} labels but {images_path.name} has {len(images)} images."
            )
        result[f"x_{split}"] = images
        result[f"y_{split}"] = check_labels(labels, labels_path, classes=10)
    return result


def check_labels(labels: np.ndarray, path: object, classes: int) -> np.ndarray:
    """Labels as int64, all in 0..classes-1, else an error naming ``path``."""
    labels = np.asarray(labels)
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= classes):
        raise DataFormatError(path, f"labels must be integers 0..{classes - 1}, found {labels.min()}..{labels.max()}.")
    return labels.astype(np.int64)


def read_keras_npz(path: str | Path) -> dict[str, np.ndarray]:
    """A Keras ``mnist.npz`` (x_train, y_train, x_test, y_test), loaded with pickle disabled."""
    path = Path(path)
    arrays = load_npz(path, _refusal(path))
    missing = [key for key in ("x_train", "y_train", "x_test", "y_test") if arrays.get(key) is None]
    if missing:
        raise DataFormatError(path, f"lacks the arrays {', '.join(missing)} of the Keras MNIST layout.")
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFormatError(path, f"x_{split} must be uint8 (N, 28, 28), is {images.dtype} {images.shape}.")
        if len(labels) != len(images):
            raise DataFormatError(path, f"x_{split} has {len(images)} images but y_{split} has {len(labels)} labels.")
        arrays[f"y_{split}"] = check_labels(labels.reshape(-1), path, classes=10)
    return {key: arrays[key] for key in ("x_train", "y_train", "x_test", "y_test")}


class _DtypeRecipe:
    """Stands in for ``numpy.dtype(...)`` while unpickling: records the request, builds nothing."""

    def __init__(self, spec, *_flags) -> None:
        self.spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state


class _ArrayRecipe:
    """Stands in for ``numpy._reconstruct(ndarray, ...)``: records (shape, dtype, raw bytes) only."""

    def __init__(self, *_args) -> None:
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state


class _NdarrayMarker:
    """What the pickle's reference to ``numpy.ndarray`` becomes: a name, not the real class."""


# Element types a CIFAR batch may hold; anything else (object, structured, sub-array) is refused.
_SAFE_ELEMENT_TYPES = {"u1": np.uint8, "i1": np.int8, "i2": np.int16, "i4": np.int32, "i8": np.int64}


class _CifarUnpickler(pickle.Unpickler):
    """Reads what a CIFAR batch holds (dicts, lists, bytes, ints, numeric arrays) and nothing else.

    Every global a pickle names passes through ``find_class``. numpy's array and dtype
    constructors are replaced by recipe objects that only record their arguments, so no real
    numpy object is ever built from attacker-chosen state (numpy's ``__setstate__`` trusts it);
    :func:`_materialise` then checks each recipe and builds the array from its own bytes.
    Anything else (``os.system``, ``builtins.eval``, any class with a ``__reduce__``) is refused.
    """

    _RECIPES: ClassVar[dict[tuple[str, str], type]] = {
        ("numpy.core.multiarray", "_reconstruct"): _ArrayRecipe,
        ("numpy._core.multiarray", "_reconstruct"): _ArrayRecipe,
        ("numpy", "ndarray"): _NdarrayMarker,
        ("numpy", "dtype"): _DtypeRecipe,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._RECIPES:
            return self._RECIPES[module, name]
        if (module, name) == ("_codecs", "encode"):
            # Protocol-2 pickles written by Python 3 store raw bytes as _codecs.encode(str, "latin1").
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch never contains it")


# A batch is a dict of four entries, two of them lists of 10 000 items, nesting two deep. A pickle
# can share one list among many (a few hundred bytes describing billions of items), so walking it
# is bounded by items visited, not by the file's size.
MAX_CIFAR_ITEMS = 200_000
MAX_CIFAR_DEPTH = 4


def _materialise(value, path: Path, visited: list[int] | None = None, depth: int = 0):
    """Turn array recipes inside ``value`` (dicts/lists) into checked numpy arrays."""
    visited = [0] if visited is None else visited
    visited[0] += 1
    if visited[0] > MAX_CIFAR_ITEMS or depth > MAX_CIFAR_DEPTH:
        raise DataFormatError(path, f"nests deeper than {MAX_CIFAR_DEPTH} levels or holds more than "
                              f"{MAX_CIFAR_ITEMS:,} items: not a CIFAR-10 batch.",
                              "use the cifar-10-batches-py files as downloaded.")  # fmt: skip
    if isinstance(value, dict):
        return {key: _materialise(item, path, visited, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_materialise(item, path, visited, depth + 1) for item in value]
    if isinstance(value, _DtypeRecipe | _NdarrayMarker) or value is _NdarrayMarker:
        raise DataFormatError(path, "holds a stray numpy type outside an array.")
    if not isinstance(value, _ArrayRecipe):
        return value
    state = value.state
    if not (isinstance(state, tuple) and len(state) == 5):
        raise DataFormatError(path, "holds an array without the expected state.")
    _version, shape, recipe, fortran, raw = state
    if not isinstance(recipe, _DtypeRecipe) or recipe.spec not in _SAFE_ELEMENT_TYPES:
        raise DataFormatError(
            path, f"holds an array of a type a CIFAR batch never uses ({getattr(recipe, 'spec', recipe)!r})."
        )
    dtype_state = recipe.state
    if not (isinstance(dtype_state, tuple) and len(dtype_state) >= 5 and all(v is None for v in dtype_state[2:5])):
        raise DataFormatError(path, "holds an array with a structured or sub-array element type.")
    order = dtype_state[1].decode("latin1") if isinstance(dtype_state[1], bytes) else dtype_state[1]
    dtype = np.dtype(_SAFE_ELEMENT_TYPES[recipe.spec]).newbyteorder(order if order in ("<", ">") else "=")
    if not (isinstance(shape, tuple) and all(isinstance(v, int) and v >= 0 for v in shape)):
        raise DataFormatError(path, f"holds an array with an invalid shape {shape!r}.")
    if not isinstance(raw, bytes) or len(raw) != math.prod(shape) * dtype.itemsize:
        raise DataFormatError(path, f"holds an array of shape {shape} whose data is not exactly that many values.")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.astype(dtype.newbyteorder("="))


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` batch → images uint8 (N, 3, 32, 32), labels int64 (N,)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataFormatError(path, "file not found.") from None
    if size > MAX_CIFAR_BATCH_BYTES:
        raise DataFormatError(path, f"is {size / 2**20:.0f} MiB, far larger than a CIFAR-10 batch (~30 MiB).")
    try:
        with path.open("rb") as handle:
            batch = _materialise(_CifarUnpickler(handle, encoding="bytes").load(), path)
    except pickle.UnpicklingError as exc:
        raise DataFormatError(path, f"is not a safe CIFAR-10 batch: {exc}.") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(path, f"is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}).") from None
    if not isinstance(batch, dict):
        raise DataFormatError(path, f"must unpickle to a dict, got {type(batch).__name__}.")
    data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataFormatError(path, f"'data' must be a uint8 array (N, 3072), got {shape}.")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise DataFormatError(path, f"'labels' must list one label per image ({len(data)}).")
    if isinstance(labels, list) and not all(isinstance(v, int) for v in labels):
        raise DataFormatError(path, "'labels' must be integers 0..9.")
    return data.reshape(-1, 3, 32, 32), check_labels(np.asarray(labels), path, classes=10)


def read_cifar10(folder: str | Path) -> dict[str, np.ndarray]:
    """The ``cifar-10-batches-py`` folder → x_train (50000,3,32,32) uint8, y_train, x_test, y_test."""
    folder = Path(folder)
    names = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataFormatError(folder, f"is missing {', '.join(missing)} of the cifar-10-batches-py layout.")
    train = [read_cifar_batch(folder / name) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = read_cifar_batch(folder / CIFAR_TEST_BATCH)
    return {
        "x_train": np.concatenate([images for images, _ in train]),
        "y_train": np.concatenate([labels for _, labels in train]),
        "x_test": x_test,
        "y_test": y_test,
    }


_CARVANA_IMAGE = re.compile(r"^(?P<car>[0-9a-zA-Z]+)_(?P<angle>\d{2})\.jpg$")


def carvana_pairs(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """(car id, image, mask) for every ``train/<id>_<nn>.jpg`` with its ``train_masks`` GIF."""
    folder = Path(folder)
    images_dir, masks_dir = folder / "train", folder / "train_masks"
    for needed in (images_dir, masks_dir):
        if not needed.is_dir():
            raise DataFormatError(needed, "folder not found: Carvana needs train/ and train_masks/ side by side.")
    pairs = []
    for image_path in sorted(images_dir.iterdir()):
        match = _CARVANA_IMAGE.match(image_path.name)
        if not match:
            continue
        mask_path = masks_dir / f"{image_path.stem}_mask.gif"
        if not mask_path.is_file():
            raise DataFormatError(mask_path, f"not found: every image needs its mask ({image_path.name}).")
        pairs.append((match["car"], image_path, mask_path))
    if not pairs:
        raise DataFormatError(images_dir, "holds no <id>_<nn>.jpg images.")
    return pairs


def read_carvana_pair(image_path: Path, mask_path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One Carvana image (uint8 (3, H, W)) and its binary mask (uint8 (H, W)), resized to ``size``."""
    height, width = size
    with image_limits(_refusal(image_path)):
        try:
            with Image.open(image_path) as image:
                original_size = image.size
                image.draft("RGB", (width * 2, height * 2))  # JPEG decodes at reduced scale: much faster
                rgb = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataFormatError(image_path, f"is not a readable JPEG ({exc}).") from None
    with image_limits(_refusal(mask_path)):
        try:
            with Image.open(mask_path) as mask_image:
                if mask_image.size != original_size:
                    raise DataFormatError(
                        mask_path, f"is {mask_image.size} pixels but {image_path.name} is {original_size}."
                    )
                mask = np.asarray(mask_image.convert("L").resize((width, height), Image.Resampling.NEAREST))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataFormatError(mask_path, f"is not a readable mask image ({exc}).") from None
    return rgb.transpose(2, 0, 1).copy(), (mask > 0).astype(np.uint8)
