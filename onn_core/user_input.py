"""The one boundary every reader of user input goes through: limits first, then parsing.

A small file must not cost unbounded memory or time, and a bad one must be refused with the
file, the limit and what to do — never a traceback. So each reader here checks what it can
before reading (the size on disk, a zip member's expanded size, an npy header's shape, an
image's declared pixels), parses with structure limits (JSON depth, no NaN/Infinity), and turns
the library errors a hostile file provokes (``RecursionError``, ``UnicodeDecodeError``,
``DecompressionBombError``, ``UnpicklingError``, ``MemoryError``) into the caller's own error.

Callers pass ``fail(problem, hint)``, which builds the error their users see (a
:class:`~onn_core.errors.DesignError` for a design, a
:class:`~onn_core.errors.DataFormatError` naming the file, a job error …), so the message
stays in the caller's terms while the limits live here.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

Fail = Callable[[str, str], Exception]

MAX_JSON_BYTES = 1 * 2**20  # a design, an error model or a job config is a few KiB
MAX_JSON_DEPTH = 32  # the deepest a studio JSON file nests is 4
MAX_IMAGE_PIXELS = 25_000_000  # one image, before it is decoded (Pillow's decompression-bomb guard)
MAX_NPZ_EXPANDED_BYTES = 2 * 2**30  # what an .npz may expand to
MAX_GUNZIPPED_BYTES = 512 * 2**20  # a gzip-compressed dataset file, once inflated (Fashion-MNIST: 47 MB)
MAX_CHECKPOINT_BYTES = 2 * 2**30  # a model.pt or checkpoint given as input


def refusal(error: Callable[[str], Exception], subject: object) -> Fail:
    """A ``fail`` for errors that take one message: "SUBJECT problem Fix: hint"."""
    return lambda problem, hint: error(f"{subject} {problem}" + (f" Fix: {hint}" if hint else ""))


def _raise(fail: Fail, problem: str, hint: str = "") -> NoReturn:
    raise fail(problem, hint)


def read_bytes(path: str | Path, limit: int, fail: Fail, *, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a readable file of at most ``limit`` bytes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            _raise(fail, f"is not a {what} (a folder or a device).")
        if size > limit:
            _raise(fail, f"is {_size(size)}; a {what} is at most {_size(limit)}.", f"check that this is the {what}.")
        return path.read_bytes()
    except FileNotFoundError:
        _raise(fail, "does not exist.", "check the path.")
    except OSError as exc:
        _raise(fail, f"cannot be read: {exc.strerror or exc}.")


def decode_text(raw: bytes, fail: Fail) -> str:
    """UTF-8 text (a byte-order mark is dropped); anything else refused with where it breaks."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _raise(fail, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start}).",
               "save it as UTF-8 JSON.")  # fmt: skip


def json_depth(value: Any) -> int:
    """How deep a parsed JSON value's arrays and objects nest (a loop, not recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, fail: Fail, *, max_bytes: int = MAX_JSON_BYTES,
               max_depth: int = MAX_JSON_DEPTH) -> Any:  # fmt: skip
    """Strict JSON of at most ``max_bytes`` and ``max_depth`` levels; NaN and Infinity refused."""
    if len(text) > max_bytes:
        _raise(fail, f"is {_size(len(text))}; JSON here is at most {_size(max_bytes)}.")
    if isinstance(text, bytes):
        text = decode_text(text, fail)
    too_deep = (f"nests more than {max_depth} levels deep; a studio file nests at most {max_depth}.",
                "give the JSON object the studio wrote (python -m onn_core design default shows one).")  # fmt: skip
    try:
        # The parser itself is linear in the text and stops a deep nesting with RecursionError.
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        _raise(fail, f"is not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno}).")
    except RecursionError:
        _raise(fail, *too_deep)
    except ValueError as exc:
        _raise(fail, f"is not valid JSON ({exc}).", "write numbers as numbers: NaN and Infinity are not JSON.")
    if json_depth(value) > max_depth:
        _raise(fail, *too_deep)
    return value


def read_json(path: str | Path, fail: Fail, *, max_bytes: int = MAX_JSON_BYTES, what: str = "JSON file") -> Any:
    """:func:`parse_json` of a file, its size checked before it is read."""
    return parse_json(read_bytes(path, max_bytes, fail, what=what), fail, max_bytes=max_bytes)


def gunzip(raw: bytes, fail: Fail, *, limit: int | None = None) -> bytes:
    """A gzip stream inflated to at most ``limit`` bytes (default ``MAX_GUNZIPPED_BYTES``; a bomb
    stops at the limit, refused)."""
    limit = MAX_GUNZIPPED_BYTES if limit is None else limit
    parts, total, rest = [], 0, raw
    while rest:  # a gzip file may hold several members, one after another
        inflater = zlib.decompressobj(wbits=31)
        try:
            part = inflater.decompress(rest, limit + 1 - total)
        except zlib.error as exc:
            _raise(fail, f"is a damaged or truncated gzip file ({exc}).", "download it again.")
        total += len(part)
        parts.append(part)
        if total > limit:
            _raise(fail, f"inflates to more than {_size(limit)}, the limit for one dataset file.",
                   "check that it is the dataset file (a small .gz that inflates this far is not one).")  # fmt: skip
        if not inflater.eof:
            _raise(fail, "is a truncated gzip file.", "download it again.")
        rest = inflater.unused_data
        if rest and rest[:2] != b"\x1f\x8b":
            _raise(fail, "has data after its gzip stream that is not gzip.", "download it again.")
    return b"".join(parts)


def _npy_header(member: zipfile.ZipExtFile) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    # Version 3 differs from 2 only in allowing UTF-8 in the header (field names of structured
    # dtypes, which are refused anyway); its length field is 2's.
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
              (3, 0): np.lib.format.read_array_header_2_0}.get(version)  # fmt: skip
    if reader is None:
        raise ValueError(f"npy format version {version}")
    try:
        shape, _fortran, dtype = reader(member, max_header_size=10_000)
    except Exception as exc:  # a damaged header reaches numpy's literal parser and tokenizer: any error
        raise ValueError(f"an unreadable npy header ({type(exc).__name__})") from None
    return shape, dtype


def _npz_refusal(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], wanted: list[str],
                 max_expanded: int) -> tuple[str, str] | None:  # fmt: skip
    """Why the archive must not be loaded (problem, hint), or None: checked from the zip's
    directory and each wanted member's npy header, before any array is made."""
    expanded = sum(info.file_size for info in members.values())
    if expanded > max_expanded:
        return f"expands to {_size(expanded)}; the limit is {_size(max_expanded)}.", "keep only the arrays needed."
    for name in wanted:
        with archive.open(members[name]) as member:
            shape, dtype = _npy_header(member)
        if dtype.hasobject:
            return (f"holds pickled Python objects in {name}, which are never loaded.",
                    "save plain numeric arrays (numpy.savez).")  # fmt: skip
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if claimed > members[name].file_size:
            return (f"{name}'s header claims shape {shape} ({_size(claimed)}), but the file holds "
                    f"{_size(members[name].file_size)}: it is damaged or was not written by numpy.",
                    "save it again with numpy.savez.")  # fmt: skip
    return None


def load_npz(path: str | Path, fail: Fail, *, names: tuple[str, ...] | None = None,
             max_expanded: int = MAX_NPZ_EXPANDED_BYTES) -> dict[str, np.ndarray | None]:  # fmt: skip
    """The arrays ``names`` (all when None; the others' names map to None) of an .npz, never
    unpickling, and each member's npy header checked against its size before any array is made."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()
                       if info.filename.endswith(".npy")}  # other members (a README) are not arrays
            wanted = list(members) if names is None else [name for name in names if name in members]
            refusal = _npz_refusal(archive, members, wanted, max_expanded)
    except FileNotFoundError:
        _raise(fail, "no such file.")
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, SyntaxError, zlib.error, RuntimeError,
            NotImplementedError) as exc:  # damaged, encrypted or exotically compressed members
        if _is_pickle(path):
            _raise(fail, "holds pickled Python objects, which are never loaded.",
                   "save plain numeric arrays (numpy.savez).")  # fmt: skip
        _raise(fail, f"is not a readable .npz archive ({type(exc).__name__}: {exc}).",
               "save it with numpy.savez or numpy.savez_compressed.")  # fmt: skip
    if refusal is not None:
        _raise(fail, *refusal)
    try:
        with np.load(path, allow_pickle=False) as archive:
            loaded: dict[str, np.ndarray | None] = dict.fromkeys(members)
            loaded.update({name: archive[name] for name in wanted})
            return loaded
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error, RuntimeError, NotImplementedError) as exc:
        if "pickle" in str(exc).lower():
            _raise(fail, "holds pickled Python objects, which are never loaded.",
                   "save plain numeric arrays (numpy.savez).")  # fmt: skip
        _raise(fail, f"is not a readable .npz archive ({type(exc).__name__}: {exc}).")


def _is_pickle(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
    except OSError:
        return False


@contextlib.contextmanager
def image_limits(fail: Fail, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[None]:
    """Inside: Pillow refuses an image declaring more than ``max_pixels`` before decoding it (a
    decompression bomb is a few bytes claiming gigapixels), refused through ``fail``."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _raise(fail, f"has more than {max_pixels:,} pixels, the limit for one image.",
               "give images of at most a few thousand pixels a side.")  # fmt: skip
    except MemoryError:
        _raise(fail, "needs more memory to decode than this machine has.", "give smaller images.")
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def load_weights(path: str | Path, fail: Fail, *, limit: int = MAX_CHECKPOINT_BYTES) -> Any:
    """``torch.load(weights_only=True)`` of a model or checkpoint a user gave: tensors and plain
    containers only; anything else refused as not a studio file (never the loader's advice to
    turn the safety off)."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        _raise(fail, "no such file.")
    if size > limit:
        _raise(fail, f"is {_size(size)}; a model file is at most {_size(limit)}.")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            _raise(fail, f"is not a readable model file ({str(exc)[:120]}).",
                   "use the run folder as training wrote it, or retrain.")  # fmt: skip
        what = f" ({found.group(1)})"
        _raise(fail, f"holds Python objects other than weights{what}, which are never loaded: it is not a file "
               "the studio wrote.", "use the run folder as training wrote it, or retrain.")  # fmt: skip
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        _raise(fail, f"is not a readable model file ({type(exc).__name__}: {str(exc)[:200]}).",
               "use the run folder as training wrote it, or retrain.")  # fmt: skip


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
