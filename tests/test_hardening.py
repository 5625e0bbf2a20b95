"""Bad input gets a clear error, in bounded time and memory: one test per class of case (issue 19).

The classes: scores over nothing, tracebacks instead of messages, unbounded cost from a small
input, wrong answers from valid data, and the server's settings. ``bench/bad_inputs.py`` runs a
broader set through the CLI as a user would and records the verdicts.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onn_core import user_input
from onn_core.cli import main
from onn_core.data import formats
from onn_core.design import Design
from onn_core.design_link import from_link
from onn_core.errors import DataFormatError, DesignError, MeasuredDataError, TrainingError
from onn_core.fabrication.evaluate import check_evaluation, parse_factors

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_RUN = ROOT / "assets" / "example_run"


def _refused(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with a one-line error and no traceback. Returns the error."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# ---------------------------------------------------------------------------- 1. scores over nothing
@pytest.mark.parametrize(
    ("options", "field"),
    [({"draws": 0}, "draws"), ({"draws": -3}, "draws"), ({"draws": 2.5}, "draws"), ({"images": 0}, "images"),
     ({"images": -5}, "images"), ({"threshold": float("nan")}, "threshold"), ({"threshold": 2}, "threshold"),
     ({"threshold": -0.1}, "threshold"), ({"factors": []}, "factors"), ({"factors": [1, float("inf")]}, "factors"),
     ({"factors": [-1]}, "factors")],
)  # fmt: skip
def test_a_fabrication_evaluation_that_would_score_nothing_or_else_is_refused(options, field):
    with pytest.raises(DesignError) as refused:
        check_evaluation(**options)
    assert refused.value.parameter == field and refused.value.hint


def test_fabricate_refuses_bad_counts_before_loading_the_run(capsys, tmp_path):
    err = _refused(capsys, ["fabricate", "--run", str(tmp_path / "no-run"), "--images", "0"])
    assert "images" in err and "no-run" not in err  # refused before the run is even looked for
    assert "factors" in _refused(capsys, ["fabricate", "--run", str(tmp_path), "--curve", "--factors", "1,abc"])
    assert parse_factors("0, 0.5,1") == [0.0, 0.5, 1.0]


# ---------------------------------------------------------------------------- 2. tracebacks → messages
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"kernel_size": 1e-4, "name": "\xff\xfe"}', "not UTF-8 text"), (DEEP, "nests more than 32 levels deep"),
     (b'"' + b'\\"' * 200_000, "not valid JSON"),
     (b'{"kernel_size": NaN}', "NaN and Infinity are not JSON"), (b"[1, 2]", "must be a JSON object"),
     (b'{"kernel_size": 1e-4' + b" " * (2 * 2**20) + b"}", "at most 1.0 MiB"), (b"{", "not valid JSON")],
)  # fmt: skip
def test_a_bad_design_file_is_refused_with_the_reason(capsys, tmp_path, content, message):
    path = tmp_path / "design.json"
    path.write_bytes(content)
    assert message in _refused(capsys, ["design", "check", "--design", str(path)])
    with pytest.raises(DesignError, match=re.escape(message)):
        Design.from_json(content)  # the app's upload reads the same bytes the same way


@pytest.mark.parametrize("payload", [b"[" * 3000, b'{"kernel_size": Infinity}', b"\xff\xfe", b"[]"])
def test_a_bad_design_link_is_a_design_error(payload):
    with pytest.raises(DesignError, match="not a design link"):
        from_link(base64.urlsafe_b64encode(payload).decode().rstrip("="))


def _idx(shape: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def _npz_claiming(shape: str) -> bytes:
    """An .npz whose x.npy header claims ``shape`` over 128 bytes of data."""
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + bytes(128))
        archive.writestr("y.npy", _npy(np.arange(2)))
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _gif_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def test_idx_files_that_declare_empty_images_or_inflate_past_the_limit_are_refused(tmp_path, monkeypatch):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(_idx((100, 0, 28), b"")))
    with pytest.raises(DataFormatError, match="at least one pixel a side"):
        formats.read_idx(empty)
    monkeypatch.setattr(user_input, "MAX_GUNZIPPED_BYTES", 2**20)
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(_idx((3000, 28, 28), bytes(3000 * 784))))  # 2.2 MiB inflated, 3 KiB on disk
    with pytest.raises(DataFormatError, match=r"inflates to more than 1\.0 MiB"):
        formats.read_idx(bomb)
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(_idx((10, 28, 28), bytes(7840)))[:-20])
    with pytest.raises(DataFormatError, match=r"truncated|damaged"):
        formats.read_idx(truncated)


@pytest.mark.parametrize(
    ("content", "message"),
    [(_npz_claiming("(1099511627776, 8, 8)"), "header claims shape"), (b"\x80\x04K\x01.", "pickled Python objects"),
     (b"PK\x03\x04 not really a zip", "not a readable .npz")],
)  # fmt: skip
def test_an_npz_is_checked_before_any_array_is_made(tmp_path, content, message):
    from onn_core.data.user import add_dataset

    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        add_dataset("crafted", path)
    with pytest.raises(MeasuredDataError, match=message):
        user_input.load_npz(path, lambda problem, hint: MeasuredDataError(path, problem, hint))


def test_a_cifar_pickle_of_shared_references_is_refused_in_milliseconds(tmp_path):
    nested: list = [0]
    for _ in range(6):
        nested = [nested] * 30  # 30⁶ leaves in a few hundred bytes
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"labels": nested, b"data": nested}, protocol=2))
    assert path.stat().st_size < 1000
    with pytest.raises(DataFormatError, match="not a CIFAR-10 batch"):
        formats.read_cifar_batch(path)


@pytest.mark.parametrize("where", ["image", "mask"])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, where):
    root = tmp_path / "carvana"
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    Image.new("RGB", (32, 32)).save(root / "train" / "car_01.jpg")
    Image.new("L", (32, 32)).save(root / "train_masks" / "car_01_mask.gif")
    if where == "mask":
        (root / "train_masks" / "car_01_mask.gif").write_bytes(_gif_claiming(65535, 65535))
    else:
        jpeg = bytearray((root / "train" / "car_01.jpg").read_bytes())
        start = jpeg.index(b"\xff\xc0")
        jpeg[start + 5 : start + 9] = struct.pack(">HH", 60000, 60000)
        (root / "train" / "car_01.jpg").write_bytes(bytes(jpeg))
    [(_, image, mask)] = formats.carvana_pairs(root)
    with pytest.raises(DataFormatError, match="25,000,000 pixels") as refused:
        formats.read_carvana_pair(image, mask, (64, 96))
    assert str(refused.value).startswith(str(image if where == "image" else mask))


def _malicious_weights() -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    buffer = io.BytesIO()
    torch.save({"weight": Payload()}, buffer)
    return buffer.getvalue()


def test_a_malicious_model_file_is_refused_as_not_a_studio_file(tmp_path, monkeypatch):
    from onn_core.training.run import load_run

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE_RUN, run)
    (run / "model.pt").write_bytes(_malicious_weights())
    with pytest.raises(TrainingError) as refused:
        load_run(run)
    message = str(refused.value)
    assert "never loaded" in message and "posix.system" in message and "weights_only" not in message
    assert not (tmp_path / "pwned").exists()
    (run / "model.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(TrainingError, match="not a readable model file"):
        load_run(run)


def test_a_closed_pipe_ends_the_cli_quietly(tmp_path):
    env = {**os.environ, "ONN_STUDIO_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "onn_core", "data", "list", "--json"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    child.stdout.read(10)
    child.stdout.close()
    err = child.communicate(timeout=120)[1].decode()
    assert "Traceback" not in err and "BrokenPipe" not in err


# ---------------------------------------------------------------------------- 3. unbounded cost
def test_a_physical_frontend_too_large_for_this_machine_is_refused_before_allocating(monkeypatch):
    from onn_core.models import PhysicalFrontend

    design = Design(metasurface_height=0.5, metasurface_width=0.5, kernel_size=0.2, kernel_spacing=0.01)
    with pytest.raises(DesignError, match=r"would take about .* TiB of memory") as refused:
        PhysicalFrontend(design, design.kernel_count)
    assert refused.value.parameter == "kernel_size" and "ideal frontend" in refused.value.hint
    monkeypatch.setenv("ONN_MEMORY_BUDGET", "100MiB")  # the default design's 1 GiB no longer fits
    with pytest.raises(DesignError, match=r"budget on this machine is 100 MiB"):
        PhysicalFrontend(Design(), Design().kernel_count)
    monkeypatch.setenv("ONN_MEMORY_BUDGET", "lots")
    with pytest.raises(DesignError, match="not a memory size"):
        PhysicalFrontend(Design(), Design().kernel_count)


def test_data_at_an_input_too_large_for_this_machine_is_refused_before_resizing(monkeypatch):
    from onn_core.data import load_for_design

    with pytest.raises(DesignError, match=r"1,797 images of digits at 4096 × 4096 pixels would take about 112 GiB"):
        load_for_design("digits", Design(input_height=4096, input_width=4096))


def test_design_check_prints_the_memory_estimate(capsys, tmp_path):
    path = tmp_path / "design.json"
    path.write_text(Design().to_json())
    assert main(["design", "check", "--design", str(path)]) == 0
    assert "memory: physical frontend ≈ 1.05 GiB" in capsys.readouterr().out
    assert main(["design", "check", "--design", str(path), "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert memory["physical_frontend_bytes"] < memory["budget_bytes"]


# ---------------------------------------------------------------------------- 4. wrong answers
def test_measured_psfs_give_the_same_optics_at_any_absolute_scale(tmp_path):
    from onn_core.fabrication.measured import read_measured_psfs
    from onn_core.training.run import load_run

    run = load_run(EXAMPLE_RUN)
    frontends = run.frontends()
    psfs = frontends[0].capture_kernels().detach().double().numpy()
    read = []
    for scale in (1.0, 1e-60, 1e-300, 1e300):
        path = tmp_path / f"psfs-{scale:g}.npz"
        np.savez(path, psfs=psfs * scale)
        read.append(read_measured_psfs(path, frontends, run.design)[0])
    for stack in read[1:]:
        assert torch.allclose(stack, read[0], rtol=1e-12, atol=0)
    assert float(read[0].max()) == pytest.approx(1.0)  # peak-normalised; relative powers kept
    assert torch.allclose(read[0] / read[0].sum(), torch.as_tensor(psfs / psfs.sum()), rtol=1e-9)


# ---------------------------------------------------------------------------- 6. server settings
def test_the_server_listens_locally_hides_tracebacks_and_takes_the_largest_upload_the_app_accepts():
    from onn_core.data.user import MAX_ARCHIVE_BYTES

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["client"]["showErrorDetails"] == "none"
    assert settings["server"]["maxUploadSize"] == MAX_ARCHIVE_BYTES // 2**20


@pytest.mark.parametrize(
    ("fault", "message"),
    [(MemoryError(), "ran out of memory"), (OSError(28, "No space left on device", "/x/model.pt"), "disk is full"),
     (RecursionError(), "nests too deeply"), (PermissionError(13, "Permission denied", "/x"), "Permission denied")],
)  # fmt: skip
def test_a_fault_in_any_command_is_a_one_line_error(capsys, monkeypatch, fault, message):
    from onn_core import cli

    def failing(_args):
        raise fault

    monkeypatch.setattr(cli, "_cmd_design", failing)
    assert message in _refused(capsys, ["design", "default"])


def test_valid_files_in_their_real_variants_still_load(tmp_path):
    """Multi-member gzip, an npz with a README beside its arrays, npy format 3, compressed npz."""
    images = _idx((2, 28, 28), bytes(2 * 784))
    multi = tmp_path / "multi.gz"
    multi.write_bytes(gzip.compress(images[:500]) + gzip.compress(images[500:]))
    assert formats.read_idx(multi).shape == (2, 28, 28)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.arange(6).reshape(2, 3), version=(3, 0))
    with zipfile.ZipFile(tmp_path / "v3.npz", "w") as archive:
        archive.writestr("x.npy", buffer.getvalue())
        archive.writestr("README.txt", "what the arrays are")
    loaded = user_input.load_npz(tmp_path / "v3.npz", lambda problem, hint: DataFormatError("v3", problem, hint))
    assert list(loaded) == ["x"] and loaded["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(10_000.0).reshape(100, 100))
    damaged = bytearray((tmp_path / "c.npz").read_bytes())
    damaged[200:220] = bytes(20)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(DataFormatError, match=r"not a readable \.npz"):
        user_input.load_npz(tmp_path / "damaged.npz", lambda problem, hint: DataFormatError("c", problem, hint))


@pytest.mark.parametrize(("name", "content"), [("metasurface.json", b"[]"), ("history.json", b"[1]"),
                                               ("history.json", b'[{"epoch": 1'), ("config.json", b"[1, 2]")])
def test_a_damaged_file_inside_a_run_folder_is_refused_naming_it(tmp_path, capsys, name, content):
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE_RUN, run)
    (run / name).write_bytes(content)
    argv = ["export", "--run", str(run), "--format", "html", "--out", str(tmp_path / "out")]
    if name == "history.json":  # the report leaves the curve out; Inspect says why
        assert main(argv) == 0
        from onn_core.training.run import load_history

        with pytest.raises(TrainingError, match=r"history\.json"):
            load_history(run)
    else:
        err = _refused(capsys, ["fabricate", "--run", str(run), "--draws", "1", "--images", "10"])
        assert name in err or (name == "metasurface.json" and "metasurface files are unreadable" in err)
