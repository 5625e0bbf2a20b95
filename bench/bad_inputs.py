"""Bad inputs and faults through the CLI: does every one get a clear error, in bounded time and memory?

Each case builds a small bad file (or argument) in a scratch folder and runs one
``python -m onn_core`` command on it in a child process, limited to ``--timeout`` seconds and
``--memory`` GiB of address space. The verdict:

* ``refused``: a non-zero exit with a message and no Python traceback (what we want);
* ``ok``: a case that should succeed did, with the right answer (e.g. scale-free PSFs);
* ``traceback``: a Python traceback reached the user;
* ``wrong exit 0``: a bad input exited 0 (a silently wrong result);
* ``unbounded``: it ran past the time limit or out of the memory limit;
* ``wrong``: an answer that should not change changed.

    python bench/bad_inputs.py [--only NAME …] [--timeout 120] [--memory 6]

Writes bench/results/bad_inputs.json {command, date, counts, cases: [{case, class, verdict,
seconds, peak_rss_mib, message}]}.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "bad_inputs.json"
EXAMPLE_RUN = ROOT / "assets" / "example_run"


@dataclass
class Case:
    name: str
    kind: str  # the class: scores over nothing, bad files and arguments, unbounded cost, wrong answers, faults
    build: Callable[[Path], list[str]]  # scratch folder → CLI arguments after ``python -m onn_core``
    expect: str = "refused"  # or "ok"
    check: Callable[[Path, str], str | None] | None = None  # ok cases: None when right, else what is wrong
    env: dict[str, str] | None = None
    stdout_bytes: int | None = None  # close the reader's end after this many bytes (a broken pipe)


CASES: list[Case] = []


def case(name: str, kind: str, **options) -> Callable:
    def register(build: Callable[[Path], list[str]]) -> Callable:
        CASES.append(Case(name, kind, build, **options))
        return build

    return register


# ---------------------------------------------------------------------------- helpers
def write_design(folder: Path, **fields) -> Path:
    path = folder / "design.json"
    path.write_text(json.dumps(fields))
    return path


def example_run(folder: Path) -> Path:
    run = folder / "run"
    if not run.exists():
        shutil.copytree(EXAMPLE_RUN, run)
    return run


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def idx_bytes(shape: tuple[int, ...], data: bytes, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def idx_folder(folder: Path, train_images: bytes) -> Path:
    """An MNIST-layout IDX folder whose training images are ``train_images`` (the rest valid)."""
    root = folder / "idx"
    root.mkdir(exist_ok=True)
    (root / "train-images-idx3-ubyte.gz").write_bytes(train_images)
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes((100,), bytes(range(10)) * 10))
    (root / "t10k-images-idx3-ubyte").write_bytes(idx_bytes((20, 28, 28), bytes(20 * 784)))
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes((20,), bytes(range(10)) * 2))
    return root


def class_folder_with(folder: Path, name: str, payload: bytes) -> Path:
    """A two-class image folder with one extra file ``name`` holding ``payload``."""
    root = folder / "images"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(12):
            Image.fromarray(np.full((16, 16), 40 * index % 255, np.uint8)).save(root / label / f"{index}.png")
    (root / "a" / name).write_bytes(payload)
    return root


def gif_bomb() -> bytes:
    """A ~40-byte GIF whose header claims 65535 × 65535 pixels."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def jpeg_bomb() -> bytes:
    """A small JPEG whose frame header claims 60000 × 60000 pixels."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"\xff\xc0")
    data[start + 5 : start + 9] = struct.pack(">HH", 60000, 60000)
    return bytes(data)


def malicious_pickle() -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/bad_inputs_pwned",))

    buffer = io.BytesIO()
    import torch

    torch.save({"model": Payload()}, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- 1. scores over nothing
@case("npz with an empty test split", "scores over nothing")
def _(folder):
    x, y = np.zeros((40, 8, 8), np.uint8), np.arange(40) % 2
    np.savez(folder / "d.npz", x=x, y=y, x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64))
    return ["data", "add", "empty-test", str(folder / "d.npz")]


@case("Carvana-style folder with one car", "scores over nothing")
def _(folder):
    for sub in ("images", "masks"):
        (folder / "seg" / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "seg" / "images" / "car_01.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "seg" / "masks" / "car_01.png")
    return ["data", "add", "one-car", str(folder / "seg")]


for _images in ("0", "-5"):

    @case(f"fabricate --images {_images}", "scores over nothing")
    def _(folder, images=_images):
        return ["fabricate", "--run", str(example_run(folder)), "--images", images, "--draws", "1"]


for _threshold in ("nan", "2", "-0.5"):

    @case(f"fabricate --threshold {_threshold}", "scores over nothing")
    def _(folder, threshold=_threshold):
        return ["fabricate", "--run", str(example_run(folder)), "--threshold", threshold, "--draws", "1",
                "--images", "50"]  # fmt: skip


@case("compensate --fraction 0", "scores over nothing")
def _(folder):
    return ["compensate", "--run", str(example_run(folder)), "--fraction", "0", "--epochs", "1"]


# ---------------------------------------------------------------------------- 2. tracebacks
@case("design JSON not UTF-8", "bad files and arguments")
def _(folder):
    (folder / "design.json").write_bytes(b'{"kernel_size": 1e-4, "name": "\xff\xfe"}')
    return ["design", "check", "--design", str(folder / "design.json")]


@case("design JSON nested 100 000 deep", "bad files and arguments")
def _(folder):
    (folder / "design.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["design", "check", "--design", str(folder / "design.json")]


@case("design JSON a list, not an object", "bad files and arguments")
def _(folder):
    (folder / "design.json").write_text("[1, 2, 3]")
    return ["design", "check", "--design", str(folder / "design.json")]


@case("design JSON of 20 MB", "bad files and arguments")
def _(folder):
    (folder / "design.json").write_text('{"kernel_size": 1e-4' + " " * 20_000_000 + "}")
    return ["design", "check", "--design", str(folder / "design.json")]


@case("IDX images of height 0", "bad files and arguments")
def _(folder):
    root = idx_folder(folder, gzip.compress(idx_bytes((100, 0, 28), b"")))
    return ["train", "--dataset", "mnist", "--data-root", str(root), "--epochs", "1", "--out", str(folder / "out")]


@case("npz whose npy header claims TiBs", "bad files and arguments")
def _(folder):
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776, 8, 8), }"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"  # npy v1: the header pads to a multiple of 64
    body = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + bytes(128)
    with zipfile.ZipFile(folder / "d.npz", "w") as archive:
        archive.writestr("x.npy", body)
        archive.writestr("y.npy", npy_bytes(np.arange(2)))
    return ["data", "add", "tib", str(folder / "d.npz")]


@case("JPEG decompression bomb in an image folder", "bad files and arguments")
def _(folder):
    return ["data", "add", "jpeg-bomb", str(class_folder_with(folder, "bomb.jpg", jpeg_bomb()))]


@case("GIF decompression bomb as a Carvana mask", "bad files and arguments")
def _(folder):
    root = folder / "carvana"
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    for car in ("aaa", "bbb", "ccc"):
        for angle in ("01", "02"):
            Image.new("RGB", (32, 32)).save(root / "train" / f"{car}_{angle}.jpg")
            Image.new("L", (32, 32)).save(root / "train_masks" / f"{car}_{angle}_mask.gif")
    (root / "train_masks" / "ccc_02_mask.gif").write_bytes(gif_bomb())
    return ["train", "--dataset", "carvana", "--data-root", str(root), "--epochs", "1", "--out", str(folder / "out")]


@case("fabricate --draws 0", "bad files and arguments")
def _(folder):
    return ["fabricate", "--run", str(example_run(folder)), "--draws", "0"]


@case("fabricate --curve --factors 1,abc", "bad files and arguments")
def _(folder):
    return ["fabricate", "--run", str(example_run(folder)), "--curve", "--factors", "1,abc"]


@case("run with a malicious model.pt", "bad files and arguments")
def _(folder):
    run = example_run(folder)
    (run / "model.pt").write_bytes(malicious_pickle())
    return ["fabricate", "--run", str(run), "--draws", "1", "--images", "20"]


@case("teacher with a malicious model.pt", "bad files and arguments")
def _(folder):
    teacher = example_run(folder)
    (teacher / "model.pt").write_bytes(malicious_pickle())
    return ["train", "--dataset", "digits", "--method", "kd", "--teacher", str(teacher), "--epochs", "1",
            "--out", str(folder / "out")]  # fmt: skip


@case("job store that is not a database", "bad files and arguments")
def _(folder):
    home = folder / "home"
    home.mkdir()
    (home / "jobs.sqlite3").write_text("not a database, a note somebody saved here\n" * 50)
    return ["jobs", "list"]


@case("data list --json into a closed pipe", "bad files and arguments", stdout_bytes=10, expect="ok",
      check=lambda folder, out: None)
def _(folder):
    return ["data", "list", "--json"]


# ---------------------------------------------------------------------------- 3. unbounded cost
@case("CIFAR pickle of shared references", "unbounded cost")
def _(folder):
    root = folder / "cifar-10-batches-py"
    root.mkdir()
    # A list of 30 references to a list of 30 references …: a few hundred bytes, 30^6 leaves.
    nested = [0]
    for _ in range(6):
        nested = [nested] * 30
    blob = pickle.dumps({b"labels": nested, b"data": nested}, protocol=2)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (root / name).write_bytes(blob)
    return ["train", "--dataset", "cifar10", "--data-root", str(folder), "--epochs", "1", "--out", str(folder / "o")]


@case("IDX .gz of 1 MB inflating to 1 GiB", "unbounded cost")
def _(folder):
    count = (2**30) // 784
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [compressor.compress(idx_bytes((count, 28, 28), b""))]
    block = bytes(2**24)
    for _ in range(count * 784 // len(block)):
        chunks.append(compressor.compress(block))
    chunks.append(compressor.compress(bytes(count * 784 % len(block))))
    chunks.append(compressor.flush())
    root = idx_folder(folder, b"".join(chunks))
    return ["train", "--dataset", "mnist", "--data-root", str(root), "--epochs", "1", "--out", str(folder / "out")]


for _label, _fields, _frontend in (
    ("0.5 m metasurface, physical frontend", {"metasurface_height": 0.5, "metasurface_width": 0.5,
                                             "kernel_size": 0.2, "kernel_spacing": 0.01}, "physical"),
    ("19 mm kernels, physical frontend", {"metasurface_height": 0.04, "metasurface_width": 0.04,
                                          "kernel_size": 0.019, "kernel_spacing": 0.001}, "physical"),
    ("4096 × 4096 input", {"input_height": 4096, "input_width": 4096}, "ideal"),
):

    @case(f"design that passes check: {_label}", "unbounded cost")
    def _(folder, fields=_fields, frontend=_frontend):
        design = write_design(folder, **fields)
        return ["train", "--design", str(design), "--dataset", "digits", "--frontend", frontend, "--epochs", "1",
                "--out", str(folder / "out")]  # fmt: skip


# ---------------------------------------------------------------------------- 4. wrong answers
def _psf_stack(folder: Path, scale: float) -> Path:
    sys.path.insert(0, str(ROOT))
    from onn_core.training.run import load_run

    run = load_run(EXAMPLE_RUN)
    frontend = run.frontends()[0]
    psfs = frontend.capture_kernels().detach().double().numpy()
    path = folder / f"psfs-{scale:g}.npz"
    np.savez(path, psfs=psfs * scale)
    return path


_REFERENCE: dict[str, float] = {}


def _fabricate_score(output: str) -> float:
    return float(json.loads(output)["mean"])


def _same_score_as_unscaled(folder: Path, output: str) -> str | None:
    try:
        score = _fabricate_score(output)
    except (ValueError, KeyError):
        return f"no score in the output: {output[-300:]}"
    if "unscaled" not in _REFERENCE:
        _REFERENCE["unscaled"] = score
    reference = _REFERENCE["unscaled"]
    return None if abs(score - reference) < 1e-3 else f"scores {score:.4f}, unscaled {reference:.4f}"


for _scale in (1.0, 1e-60, 1e308):

    @case(f"measured PSFs scaled by {_scale:g}", "wrong answers", expect="ok", check=_same_score_as_unscaled)
    def _(folder, scale=_scale):
        return ["fabricate", "--run", str(example_run(folder)), "--measured-psfs", str(_psf_stack(folder, scale)),
                "--draws", "1", "--images", "200", "--json"]  # fmt: skip


# ---------------------------------------------------------------------------- 5. faults and job configs
for _label, _config in (
    ("phase_pixel Infinity", '{"dataset": "digits", "epochs": 1, "frontend": "physical", "phase_pixel": Infinity}'),
    ("phase_pixel 1e308", '{"dataset": "digits", "epochs": 1, "frontend": "physical", "phase_pixel": 1e308}'),
    ("data_root 5", '{"dataset": "digits", "epochs": 1, "data_root": 5}'),
    ("epochs -1", '{"dataset": "digits", "epochs": -1}'),
    ("learning_rate NaN", '{"dataset": "digits", "epochs": 1, "learning_rate": NaN}'),
):

    @case(f"train job config with {_label}", "faults")
    def _(folder, config=_config):
        (folder / "config.json").write_text(config)
        return ["jobs", "submit", "--kind", "train", "--config", str(folder / "config.json"), "--no-worker",
                "--database", str(folder / "jobs.sqlite3")]  # fmt: skip


def _strict_history(folder: Path, output: str) -> str | None:
    history = folder / "out" / "history.json"
    if history.exists():
        try:
            json.loads(history.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        except ValueError as exc:
            return f"history.json is not strict JSON ({exc})"
    if "last good checkpoint kept" in output and not (folder / "out" / "checkpoint.pt").exists():
        return "says a last good checkpoint was kept, and none exists"
    return None


@case("training that diverges (lr 1e9)", "faults", check=_strict_history)
def _(folder):
    return ["train", "--dataset", "digits", "--lr", "1e9", "--epochs", "2", "--out", str(folder / "out")]


# ---------------------------------------------------------------------------- more of each class
def _job(kind: str, config: str) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        (folder / "config.json").write_text(config.replace("RUN", str(example_run(folder))))
        return ["jobs", "submit", "--kind", kind, "--config", str(folder / "config.json"), "--no-worker",
                "--database", str(folder / "jobs.sqlite3")]  # fmt: skip

    return build


for _label, _kind, _config in (
    ("budget 1e308", "search", '{"dataset": "mnist", "budget": 1e308}'),
    ("seed text", "search", '{"dataset": "mnist", "seed": "x"}'),
    ("settings.data_root 5", "estimate", '{"dataset": "mnist", "settings": {"data_root": 5}}'),
    ("measured_psfs 5", "fabricate", '{"run": "RUN", "measured_psfs": 5}'),
    ("a missing PSF file", "fabricate", '{"run": "RUN", "measured_psfs": "/nowhere/psfs.npz"}'),
    ("draws 0", "fabricate", '{"run": "RUN", "draws": 0}'),
    ("learning_rate 1e308", "compensate", '{"run": "RUN", "settings": {"learning_rate": 1e308}}'),
    ("out 5", "export", '{"run": "RUN", "formats": ["json"], "out": 5}'),
    ("a list, not an object", "train", '[1, 2, 3]'),
):
    CASES.append(Case(f"{_kind} job config with {_label}", "faults", _job(_kind, _config)))


def _error_model(content: bytes) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        (folder / "errors.json").write_bytes(content)
        return ["fabricate", "--run", str(example_run(folder)), "--error-model", str(folder / "errors.json"),
                "--draws", "1"]  # fmt: skip

    return build


for _label, _content in (("NaN", b'{"radius_sigma": NaN}'), ("nested", b"[" * 50_000),
                         ("not UTF-8", b'{"radius_sigma": "\xff"}'), ("negative", b'{"radius_sigma": -1e-9}')):
    CASES.append(Case(f"error-model JSON {_label}", "bad files and arguments", _error_model(_content)))


def _measured(array: np.ndarray | bytes) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        path = folder / "psfs.npz"
        if isinstance(array, bytes):
            path.write_bytes(array)
        else:
            np.savez(path, psfs=array)
        return ["fabricate", "--run", str(example_run(folder)), "--measured-psfs", str(path), "--draws", "1"]

    return build


for _label, _array in (("NaN values", np.full((16, 1, 7, 7), np.nan)), ("all negative", -np.ones((16, 1, 7, 7))),
                       ("the wrong count", np.ones((3, 1, 7, 7))), ("a pickle", pickle.dumps({"psfs": [1]}))):
    CASES.append(Case(f"measured PSFs: {_label}", "wrong answers", _measured(_array)))


@case("CIFAR batch that runs code when unpickled", "bad files and arguments")
def _(folder):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/bad_inputs_pwned",))

    root = folder / "cifar-10-batches-py"
    root.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (root / name).write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    return ["train", "--dataset", "cifar10", "--data-root", str(folder), "--epochs", "1", "--out", str(folder / "o")]


for _label, _argv in (
    ("train --epochs 0", ["train", "--dataset", "digits", "--epochs", "0", "--out", "OUT"]),
    ("train --batch-size 0", ["train", "--dataset", "digits", "--batch-size", "0", "--out", "OUT"]),
    ("train --lr -1", ["train", "--dataset", "digits", "--lr", "-1", "--out", "OUT"]),
    ("train on a dataset that is not there", ["train", "--dataset", "cifar10", "--data-root", "OUT", "--out", "OUT"]),
    ("search --budget 0", ["search", "--dataset", "mnist", "--budget", "0", "--out", "OUT"]),
    ("search --objectives speed", ["search", "--dataset", "mnist", "--objectives", "accuracy,speed", "--out", "OUT"]),
    ("search --bounds garbage", ["search", "--dataset", "mnist", "--bounds", "kernel_size=a:b", "--out", "OUT"]),
    ("data add a path that is not there", ["data", "add", "parts", "/nowhere/parts"]),
    ("data add a name with a path in it", ["data", "add", "../evil", "OUT"]),
    ("jobs show an unknown id", ["jobs", "show", "nope"]),
    ("export a folder that is not a run", ["export", "--run", "OUT", "--format", "json"]),
    ("sweep spec that is not JSON", ["sweep", "--spec", "/etc/hostname", "--out", "OUT/r.jsonl"]),
):

    @case(_label, "bad files and arguments")
    def _(folder, argv=_argv):
        (folder / "out").mkdir(exist_ok=True)
        return [str(folder / "out") if part == "OUT" else part.replace("OUT", str(folder / "out")) for part in argv]


# ---------------------------------------------------------------------------- running them
# The CLI as a user runs it, writing its peak resident memory when it exits (not when killed).
MEASURED_CLI = """
import atexit, resource, runpy, sys
peak = sys.argv[1]
atexit.register(lambda: open(peak, "w").write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
sys.argv = ["python -m onn_core", *sys.argv[2:]]
runpy.run_module("onn_core", run_name="__main__", alter_sys=True)
"""


def _limit_memory(gib: float) -> Callable[[], None]:
    def apply() -> None:
        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.setsid()

    return apply


def run_case(item: Case, timeout: float, memory: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as scratch:
        folder = Path(scratch)
        env = {**os.environ, "ONN_STUDIO_HOME": str(folder / "home"), "PYTHONPATH": str(ROOT), **(item.env or {})}
        argv = item.build(folder)
        started = time.perf_counter()
        peak_file = folder / "peak_rss_kib"
        child = subprocess.Popen([sys.executable, "-c", MEASURED_CLI, str(peak_file), *argv], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 preexec_fn=_limit_memory(memory))  # fmt: skip
        timed_out = False
        try:
            if item.stdout_bytes is not None:
                child.stdout.read(item.stdout_bytes)
                child.stdout.close()
                stdout = ""
                stderr = child.communicate(timeout=timeout)[1].decode(errors="replace")
            else:
                out, err = child.communicate(timeout=timeout)
                stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)
            out, err = child.communicate()
            stdout, stderr = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
            timed_out = True
        seconds = time.perf_counter() - started
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else None
        text = stdout + stderr
        memory_out = "MemoryError" in text or "can't allocate memory" in text or "Cannot allocate memory" in text
        if timed_out or memory_out:
            verdict = "unbounded"
        elif "Traceback (most recent call last)" in text:
            verdict = "traceback"
        elif item.expect == "ok":
            problem = item.check(folder, stdout) if child.returncode == 0 else f"exit {child.returncode}"
            verdict = "ok" if problem is None else "wrong"
            stderr = problem or stderr
        elif child.returncode == 0:
            verdict = "wrong exit 0"
        else:
            problem = item.check(folder, text) if item.check else None
            verdict = "refused" if problem is None else "wrong"
            stderr = problem or stderr
        if Path("/tmp/bad_inputs_pwned").exists():
            verdict = "code executed"
            Path("/tmp/bad_inputs_pwned").unlink()
        message = (stderr.strip() or stdout.strip()).splitlines()
        return {"case": item.name, "class": item.kind, "verdict": verdict, "exit": child.returncode,
                "seconds": round(seconds, 1), "peak_rss_mib": round(peak) if peak else None,
                "message": " | ".join(message[-3:])[:600]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="cases whose name contains any of these")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--memory", type=float, default=6.0, help="address-space limit per case, GiB")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or any(word in c.name for word in args.only)]
    rows = []
    for item in chosen:
        row = run_case(item, args.timeout, args.memory)
        rows.append(row)
        print(f"{row['verdict']:>13}  {row['seconds']:6.1f} s  {item.name}: {row['message'][:160]}", flush=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    print(json.dumps(counts))
    if args.only is None:
        Path(args.out).write_text(json.dumps({
            "command": "python bench/bad_inputs.py", "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "timeout_s": args.timeout, "memory_gib": args.memory, "counts": counts, "cases": rows,
        }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
