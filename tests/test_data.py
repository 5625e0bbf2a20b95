"""Datasets: every on-disk format from small files written here, errors naming the file, splits."""

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onn_core.data import SPECS, list_datasets, load_dataset
from onn_core.data.formats import read_cifar_batch, read_idx, read_idx_dataset
from onn_core.data.registry import FASHION_MNIST_SYSTEM_DIR
from onn_core.errors import DataFormatError

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def fake_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), np.arange(count, dtype=np.uint8) % 10


def write_idx_set(folder: Path, *, compress: bool, train: int = 60, test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        images, labels = fake_digits(count, seed=count)
        write_idx(folder / f"{split}-images-idx3-ubyte", images, compress=compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels, compress=compress)
    return folder


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_in_torchvision_layout(tmp_path, compress):
    write_idx_set(tmp_path / "MNIST" / "raw", compress=compress)
    data = load_dataset("mnist", root=tmp_path, seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 20)  # 6 per class → 5 + 1
    images, labels = fake_digits(20, seed=20)
    np.testing.assert_allclose(data.test.images[:, 0].numpy(), images / 255.0, atol=1e-6)
    assert data.test.targets.tolist() == labels.tolist()


def test_truncated_idx_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", fake_digits(5)[0])
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte.*truncated"):
        read_idx(path)


def test_corrupt_gzip_and_bad_header_are_refused(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte.gz.*gzip"):
        read_idx(path)
    bad = tmp_path / "x"
    bad.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(DataFormatError, match=r"not an IDX file"):
        read_idx(bad)


def test_mismatched_image_and_label_counts(tmp_path):
    folder = write_idx_set(tmp_path, compress=False)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(59, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte.*59 labels.*60 images"):
        read_idx_dataset(folder)


def test_keras_npz(tmp_path):
    x_train, y_train = fake_digits(100)
    x_test, y_test = fake_digits(10, seed=3)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load_dataset("mnist", root=path)
    assert len(data.test) == 10 and len(data.train) + len(data.val) == 100
    np.savez(path, x_train=x_train, y_train=y_train)
    with pytest.raises(DataFormatError, match=r"mnist.npz.*x_test"):
        load_dataset("mnist", root=path)


def write_cifar(folder: Path, per_batch: int = 10) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_cifar10_layout(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", root=tmp_path)
    assert data.image_shape == (3, 32, 32)
    assert len(data.train) + len(data.val) == 50 and len(data.test) == 10
    images, labels = read_cifar_batch(folder / "test_batch")
    assert images.shape == (10, 3, 32, 32) and labels.dtype == np.int64


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_cifar_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(DataFormatError, match=r"data_batch_1.*refused to load .*system"):
        read_cifar_batch(path)
    assert not marker.exists()


class _ObjectFieldDtype:
    """A dtype whose state smuggles an object field over raw bytes (a pointer numpy would trust)."""

    def __reduce__(self):
        return np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 1)


class _ArrayOverRawBytes:
    def __reduce__(self):
        state = (1, (1,), _ObjectFieldDtype(), False, b"A" * 8)
        return np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state


class _HugeEmptyArray:
    def __reduce__(self):
        return np.ndarray, ((200_000, 3072), "u1")


@pytest.mark.parametrize("payload", [_ArrayOverRawBytes(), _HugeEmptyArray()], ids=["object-field", "huge"])
def test_crafted_numpy_state_is_refused_before_numpy_sees_it(tmp_path, payload):
    path = tmp_path / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2))
    with pytest.raises(DataFormatError, match=r"data_batch_2"):
        read_cifar_batch(path)


def test_cifar_with_wrong_content_is_refused(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), dtype=np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataFormatError, match=r"test_batch.*N, 3072"):
        read_cifar_batch(path)


def write_carvana(root: Path, cars: int = 5, views: int = 2) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    rng = np.random.default_rng(0)
    for car in range(cars):
        for view in range(1, views + 1):
            stem = f"car{car:03d}abc_{view:02d}"
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "train" / f"{stem}.jpg")
            mask = np.zeros((40, 60), dtype=np.uint8)
            mask[10:30, 15 + car : 45] = 1
            Image.fromarray(mask, mode="L").convert("P").save(root / "train_masks" / f"{stem}_mask.gif")
    return root


def test_carvana_layout_resized_and_split_by_car(tmp_path):
    root = write_carvana(tmp_path / "carvana", cars=10)
    data = load_dataset("carvana", root=root, image_size=(16, 24), seed=2)
    assert data.image_shape == (3, 16, 24)
    assert set(np.unique(data.train.targets.numpy())) <= {0.0, 1.0}
    assert len(data.train) + len(data.val) + len(data.test) == 20
    # Both views of a car stay together: every split has an even count.
    assert all(len(split) % 2 == 0 for split in (data.train, data.val, data.test))


def test_no_split_is_ever_left_empty_so_nothing_is_scored_over_zero_images(tmp_path):
    x_train, y_train = fake_digits(100)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_train[:0], y_test=y_train[:0])
    with pytest.raises(DataFormatError, match=r"mnist.npz: the test split would hold no images \(train \d+, val \d+, "
                                              r"test 0\).*Fix: add images per class"):  # fmt: skip
        load_dataset("mnist", root=path)
    one_car = write_carvana(tmp_path / "carvana", cars=1)
    with pytest.raises(DataFormatError, match=r"the (val|test).*split.*would hold no images.*separate objects"):
        load_dataset("carvana", root=one_car)


def test_fractions_that_leave_no_training_data_are_refused(tmp_path):
    root = write_carvana(tmp_path / "carvana", cars=4)
    with pytest.raises(DataFormatError, match=r"val_fraction \(0.85\).*leave some data for training"):
        load_dataset("carvana", root=root, val_fraction=0.85)


def test_carvana_missing_mask_names_the_file(tmp_path):
    root = write_carvana(tmp_path / "carvana", cars=2)
    (root / "train_masks" / "car001abc_02_mask.gif").unlink()
    with pytest.raises(DataFormatError, match=r"car001abc_02_mask.gif"):
        load_dataset("carvana", root=root)


def test_mnist5k_is_shuffled_stratified_and_seeded():
    first = load_dataset("mnist", seed=0)
    again = load_dataset("mnist", seed=0)
    other = load_dataset("mnist", seed=1)
    assert (len(first.train), len(first.val), len(first.test)) == (3600, 400, 1000)
    assert np.bincount(first.test.targets.numpy()).tolist() == [100] * 10
    assert np.bincount(first.train.targets.numpy()).tolist() == [360] * 10
    assert first.train.targets[:20].tolist() != sorted(first.train.targets[:20].tolist())  # shuffled
    assert (first.train.images == again.train.images).all()
    assert not (first.test.images == other.test.images).all()
    assert first.train.images.dtype.is_floating_point and 0 <= first.train.images.min() <= first.train.images.max() <= 1


def test_digits_are_upsampled_and_say_so():
    data = load_dataset("digits", seed=0)
    assert data.image_shape == (1, 28, 28)
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert any("8×8" in note for note in data.notes)


def test_shapes_seg_is_reproducible_with_exact_binary_masks():
    counts = (30, 10, 10)
    first = load_dataset("shapes-seg", seed=3, generated_counts=counts)
    again = load_dataset("shapes-seg", seed=3, generated_counts=counts)
    assert first.spec.synthetic and "synthetic" in first.source
    assert (first.train.images == again.train.images).all()
    masks = first.train.targets
    assert set(np.unique(masks.numpy())) == {0.0, 1.0}
    coverage = masks.mean(dim=(1, 2, 3))
    assert (coverage > 0.01).all() and (coverage < 0.7).all()
    # Not trivially thresholdable: the best global threshold is far from perfect.
    images = first.train.images.flatten()
    truth = masks.flatten() > 0.5
    best = max(float(((images > t) & truth).sum() / ((images > t) | truth).sum()) for t in np.linspace(0.05, 0.95, 19))
    assert best < 0.8


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist", seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.spec.classes[9] == "Ankle boot"


def test_unavailable_dataset_says_why(tmp_path):
    with pytest.raises(DataFormatError, match=r"cifar10 is not available.*cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path)


def test_data_list_json_cli():
    result = subprocess.run(
        [sys.executable, "-m", "onn_core", "data", "list", "--json"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [entry["name"] for entry in entries] == list(SPECS)
    for entry in entries:
        assert {"name", "task", "image_size", "source", "licence", "available"} <= set(entry)
        assert entry["available"] or entry["reason"]
    assert entries == list_datasets()
