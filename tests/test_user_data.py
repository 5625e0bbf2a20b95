"""A designer's own datasets: reading folders, npz and zips, the checks, and the stored copy."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onn_core.data import user
from onn_core.errors import DataFormatError


@pytest.fixture(autouse=True)
def studio(tmp_path, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_image(path: Path, size=(12, 10), mode="L", value=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mode == "L":
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L").save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode).save(path)
    return path


def class_folder(root: Path, counts=None, **kwargs) -> Path:
    counts = counts or {"cat": 12, "dog": 11, "emu": 10}
    for name, count in counts.items():
        for index in range(count):
            write_image(root / name / f"{index}.png", value=hash((name, index)) % 2**32, **kwargs)
    return root


def test_a_class_folder_of_mixed_sizes_and_modes_is_read_sized_and_stored(studio, tmp_path):
    root = class_folder(tmp_path / "animals")
    write_image(root / "cat" / "big.png", size=(20, 16), mode="RGB", value=1)  # colour, another size
    write_image(root / "dog" / "palette.png", mode="P", value=2)
    (root / "emu" / "notes.txt").write_text("not an image")
    described = user.add_dataset("animals", root)
    assert described["classes"] == ["cat", "dog", "emu"]  # sorted folder names
    assert described["counts"] == {"cat": 13, "dog": 12, "emu": 10}
    assert described["image_size"] == [10, 12] and described["channels"] == 3  # most common size; colour seen
    assert described["splits"] == {"train": 25, "val": 3, "test": 7}
    assert any("resized to 10×12" in w for w in described["warnings"])
    assert any("1 not an image (.txt)" in w for w in described["warnings"])
    assert described["source"] == "user"
    assert [d["name"] for d in user.user_datasets()] == ["animals"]
    stored, arrays = user.read_stored("animals")
    assert stored == described and arrays["x_train"].shape == (35, 10, 12, 3) and arrays["x_train"].dtype == np.uint8
    assert sorted(np.bincount(arrays["y_train"])) == [10, 12, 13]
    grey = user.read_source(root, channels=1, size=(8, 8))
    assert grey.x_train.shape == (35, 8, 8, 1)
    user.remove_dataset("animals")
    assert user.user_datasets() == []


def test_train_and_test_folders_keep_their_test_set(tmp_path):
    root = tmp_path / "split"
    class_folder(root / "train", {"a": 6, "b": 6})
    class_folder(root / "test", {"a": 2, "b": 3})
    dataset = user.read_source(root)
    assert dataset.classes == ("a", "b") and len(dataset.y_test) == 5 and list(np.bincount(dataset.y_test)) == [2, 3]
    assert user.summary("split", dataset)["splits"] == {"train": 10, "val": 2, "test": 5}


def test_an_npz_with_class_names_and_float_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "faces.npz"
    np.savez(path, x=rng.random((40, 9, 9)).astype(np.float32), y=np.repeat([0, 1], 20),
             class_names=np.array(["face", "not-face"]))  # fmt: skip
    dataset = user.read_source(path)
    assert dataset.classes == ("face", "not-face") and dataset.x_train.shape == (40, 9, 9, 1)
    assert dataset.x_train.max() > 200  # 0–1 floats scaled to 8 bits


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.full((20, 4, 4), np.nan), "y": np.repeat([0, 1], 10)}, "NaN"),
        ({"x": np.zeros((20, 4, 4)), "y": np.repeat([0, 1], 10), "class_names": np.array(["a"])}, "out of range"),
        ({"x": np.zeros((20, 4, 4)), "y": np.repeat([0, -1], 10)}, "negative labels"),
        ({"x": np.zeros((20, 4, 4)), "y": np.zeros(19, dtype=int)}, "20 images but y 19"),
        ({"x": np.zeros((20, 4, 4)), "y": np.zeros(20, dtype=int)}, "one class"),
        ({"x": np.zeros((20, 4, 4))}, "lacks y"),
        ({"x": np.zeros((20, 4, 4)), "y": np.array([0] * 18 + [1, 1])}, "class '1' would have 0 test image"),
        ({"x": np.array([None] * 20, dtype=object), "y": np.repeat([0, 1], 10)}, "pickled"),
    ],
)
def test_bad_npz_files_are_refused_saying_why(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=message):
        user.add_dataset("bad", path)
    assert user.user_datasets() == []  # nothing written


def test_bad_folders_are_refused_saying_why_and_write_nothing(tmp_path, studio):
    with pytest.raises(DataFormatError, match="only 'a'"):
        user.add_dataset("one", class_folder(tmp_path / "one", {"a": 10}))
    empty = class_folder(tmp_path / "empty", {"a": 10, "b": 10})
    (empty / "c").mkdir()
    with pytest.raises(DataFormatError, match="holds no images"):
        user.add_dataset("empty", empty)
    broken = class_folder(tmp_path / "broken", {"a": 10, "b": 10})
    data = (broken / "a" / "0.png").read_bytes()
    (broken / "a" / "0.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"0\.png: is not a readable image"):
        user.add_dataset("broken", broken)
    with pytest.raises(DataFormatError, match=r"class 'b' would have 1 test image\(s\) \(7 in all\).*≥ 8"):
        user.add_dataset("few", class_folder(tmp_path / "few", {"a": 10, "b": 7}))
    assert not any(studio.joinpath("datasets").glob("[!.]*"))


def test_a_segmentation_folder_and_its_refusals(tmp_path):
    root = tmp_path / "seg"
    for index in range(12):
        write_image(root / "images" / f"{index}.jpg", size=(16, 16), mode="RGB", value=index)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:9, 3:12] = 255
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"{index}.png")
    dataset = user.read_source(root)
    assert dataset.task == "segmentation" and dataset.y_train.shape == (12, 16, 16)
    assert set(np.unique(dataset.y_train)) == {0, 1} and dataset.channels == 3
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "3.png")
    with pytest.raises(DataFormatError, match=r"3\.png: is 8×8 pixels but its image is 16×16"):
        user.read_source(root)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(root / "masks" / "3.png")
    with pytest.raises(DataFormatError, match="not a binary mask"):
        user.read_source(root)
    (root / "masks" / "3.png").unlink()
    with pytest.raises(DataFormatError, match=r"have no partner, e\.g\. '3'"):
        user.read_source(root)


def test_zips_are_unpacked_within_limits_and_confined(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "shapes", {"round": 10, "square": 10})
    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in root.rglob("*.png"):
            handle.write(path, Path("shapes") / path.relative_to(root))
        handle.writestr("__MACOSX/shapes/._0.png", b"resource fork")
    assert user.add_dataset("shapes", archive)["counts"] == {"round": 10, "square": 10}
    escaping = tmp_path / "escape.zip"
    with zipfile.ZipFile(escaping, "w") as handle:
        handle.writestr("../outside.png", b"x")
    with pytest.raises(DataFormatError, match="points outside the archive"):
        user.read_source(escaping)
    assert not (tmp_path / "outside.png").exists()
    monkeypatch.setattr(user, "MAX_FILES", 5)
    with pytest.raises(DataFormatError, match="holds 21 files; the limit is 5"):
        user.read_source(archive)
    monkeypatch.setattr(user, "MAX_FILES", 10_000)
    monkeypatch.setattr(user, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(DataFormatError, match="the limit is 0 GiB"):
        user.read_source(archive)
    monkeypatch.setattr(user, "MAX_UNPACKED_BYTES", 2**30)
    monkeypatch.setattr(user, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(DataFormatError, match="more than 50 pixels"):
        user.read_source(archive)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataFormatError, match="not a readable zip"):
        user.read_source(garbage)


@pytest.mark.parametrize("name", ["../up", "Mixed", "", "a" * 41, "with space", "mnist"])
def test_dataset_names_are_plain_and_never_a_shipped_one(name):
    with pytest.raises(DataFormatError):
        user.check_name(name, shipped=("mnist",))


def test_a_stored_copy_replaces_the_old_one_whole(tmp_path, studio):
    user.add_dataset("pets", class_folder(tmp_path / "v1", {"a": 10, "b": 10}))
    user.add_dataset("pets", class_folder(tmp_path / "v2", {"a": 10, "b": 10, "c": 10}))
    assert json.loads((studio / "datasets" / "pets" / "dataset.json").read_text())["classes"] == ["a", "b", "c"]
    assert sorted(p.name for p in (studio / "datasets").iterdir()) == ["pets"]


def test_data_add_then_train_on_it_from_the_command_line(tmp_path, studio, capsys):
    import subprocess

    from onn_core.cli import main

    root = class_folder(tmp_path / "pets", {"cat": 14, "dog": 12, "emu": 12})
    write_image(root / "cat" / "wide.png", size=(30, 14), mode="RGB", value=5)

    def cli(*args: str) -> subprocess.CompletedProcess:
        """The command through ``main`` in this process (tests/test_cli.py runs the entry point itself)."""
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    added = cli("data", "add", "pets", str(root), "--json")
    assert added.returncode == 0, added.stderr
    described = json.loads(added.stdout)
    assert described["classes"] == ["cat", "dog", "emu"] and described["channels"] == 3  # one RGB image
    listed = {entry["name"]: entry for entry in json.loads(cli("data", "list", "--json").stdout)}
    assert listed["pets"]["user"] and listed["pets"]["available"] and not listed["mnist"]["user"]
    trained = cli("train", "--dataset", "pets", "--epochs", "1", "--out", str(tmp_path / "run"), "--json")
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads(trained.stdout)
    assert metrics["classes"] == ["cat", "dog", "emu"] and len(metrics["per_class_accuracy"]) == 3
    assert metrics["data"]["sizes"] == described["splits"] == {"train": 29, "val": 3, "test": 7}
    assert "resized from 10×12 to 28×28" in " ".join(metrics["data"]["notes"])
    assert "converted from RGB to grey (BT.601 luma)" in metrics["data"]["notes"]  # the default design is monochrome
    fabricated = cli("fabricate", "--run", str(tmp_path / "run"), "--error-model", "typical", "--draws", "2", "--json")
    assert fabricated.returncode == 0, fabricated.stderr
    assert len(json.loads(fabricated.stdout)["scores"]) == 2 and "without its pillar-radius error" in fabricated.stderr
    refused = cli("data", "add", "mnist", str(root))
    assert refused.returncode == 2 and "shipped dataset" in refused.stderr and "Traceback" not in refused.stderr
    assert cli("data", "remove", "pets").returncode == 0
    assert "pets" not in {entry["name"] for entry in json.loads(cli("data", "list", "--json").stdout)}


def test_a_design_reads_the_images_in_its_own_colours_and_size(tmp_path):
    import torch

    from onn_core.data import load_for_design
    from onn_core.design import Design

    user.add_dataset("colour", class_folder(tmp_path / "colour", {"a": 10, "b": 10}, mode="RGB"))
    stored = load_for_design("colour", None)
    assert stored.image_shape == (3, 10, 12)  # as stored: a teacher's view
    grey = load_for_design("colour", Design())
    assert grey.image_shape == (1, 28, 28) and "converted from RGB to grey (BT.601 luma)" in grey.notes
    # luma of the stored RGB, resized: the conversion is BT.601's weighting, not a channel pick
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    unresized = load_for_design("colour", Design(input_height=10, input_width=12))
    assert torch.allclose(unresized.train.images, (stored.train.images * weights).sum(1, keepdim=True), atol=1e-6)
    rgb_design = Design(wavelengths=(460e-9, 532e-9, 630e-9), input_channels=3)
    user.add_dataset("grey", class_folder(tmp_path / "grey", {"a": 10, "b": 10}))
    rgb = load_for_design("grey", rgb_design)
    assert rgb.image_shape == (3, 28, 28) and "converted from grey to RGB" in rgb.notes
    assert torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])


def test_a_sweep_of_the_designers_data_makes_estimates_instant(tmp_path, studio, capsys):
    from onn_core.cli import main

    user.add_dataset("pets", class_folder(tmp_path / "pets", {"cat": 16, "dog": 16, "emu": 16}))
    assert main(["estimate", "--dataset", "pets", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["method"] == "ntk" and first["fitted_on"] is None and "sweep --dataset pets" in first["why"]
    assert main(["sweep", "--dataset", "pets", "--samples", "8", "--jobs", "1", "--json"]) == 0
    swept = json.loads(capsys.readouterr().out)
    assert swept["ran"] == 8 and (studio / "datasets" / "pets" / "sweep.jsonl").is_file()
    assert main(["estimate", "--dataset", "pets", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["method"] == "surrogate" and answer["fitted_on"] == "pets" and 0 <= answer["accuracy"] <= 1
    # the sweep belongs to the data: replaced data starts without it
    user.add_dataset("pets", class_folder(tmp_path / "pets2", {"cat": 12, "dog": 12}))
    assert not (studio / "datasets" / "pets" / "sweep.jsonl").exists()
    assert main(["sweep", "--samples", "8", "--json"]) == 2
    assert "--dataset NAME" in json.loads(capsys.readouterr().out)["error"]
