"""Files a run leaves behind: written atomically, as strict JSON, and its log.

Every result file (checkpoints, weights, metrics, metasurfaces, caches) is written to a
temporary file beside its target (``.<name>.<random>.tmp``) and renamed over it, so a crash or a
cancelled job never leaves a half-written file: what is on disk is the old version or the new
one. Files keep the umask's permissions (``mkstemp``'s 0600 would follow them; results are
meant to be shared). A full disk is reported as :class:`DiskFullError`, naming the file and the
folder to free, and the temporary file is removed.

JSON files are strict JSON (RFC 8259): a NaN or infinite number, which Python's ``json`` would
write as the bare words ``NaN`` / ``Infinity`` that browsers and other readers refuse, is
written as ``null`` (:func:`json_text`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
TEMPORARY_SUFFIX = ".tmp"
# ENOSPC: no space left; EDQUOT: the user's quota is spent. Either way the fix is freeing space.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """The disk (or the user's quota) filled up while a result file was written.

    Its message is in the designer's terms: which file, which folder to free, and that the run
    resumes from what was written before (every earlier file is intact: writes are atomic).
    """

    def __init__(self, path: str | Path, *, what: str | None = None) -> None:
        """``path``: the file being written; or, with ``what`` (e.g. "the job's results"), its folder."""
        path = Path(path)
        folder = path if what is not None else path.parent
        super().__init__(errno.ENOSPC, f"the disk is full while writing {what or path.name}; free space in {folder} "
                         "and resume", str(path))  # fmt: skip

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file, then rename it into place.

    Raises :class:`DiskFullError` (after removing the temporary file) when the disk fills up.
    """
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path) from exc
        raise
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path) from exc
        raise


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of atomic writes left in ``folder`` (by a process killed mid-write).

    Only names of the temporary pattern (``.<name>.<random>.tmp``) are touched; returns them.
    """
    removed = []
    for temporary in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        if temporary.is_file():
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
                removed.append(temporary)
    return removed


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON of ``value``: NaN and ±inf become null (``allow_nan=False`` catches any that slip by)."""
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False)


def plain_json(value: Any) -> Any:
    """``value`` as strict JSON values: unknown types as text, NaN and infinities as None (what a
    job's metrics and progress events must be to cross to the store or over the network)."""
    return json.loads(json.dumps(finite_or_null(value), default=str, allow_nan=False))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 2) -> None:
    """``value`` as strict JSON (:func:`json_text`), written atomically."""
    atomic_write_text(path, json_text(value, indent=indent))


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` of ``obj`` (tensors, state dicts), atomically."""
    import torch  # here, not at the top: the CLI and job store import this module and rarely save tensors

    atomic_write(path, lambda handle: torch.save(obj, handle))


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an OS lock on ``path`` and yield True, or yield False at once if another process (or
    another open of the file) holds it and ``wait`` is false.

    The lock is ``flock``'s: the kernel releases it however the holder ends, so a killed process
    never leaves a stale lock behind. The lock file itself stays (it is empty and harmless).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:  # "a", not "w": never truncate what a caller may have kept there
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def run_logger(folder: Path, name: str = "train.log") -> logging.Logger:
    """The logger of the run in ``folder``: INFO and up, appended to ``folder``/``name``, not propagated."""
    logger = logging.getLogger(f"onn_core.run.{Path(folder).resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(Path(folder) / name, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    return logger


def close_logger(logger: logging.Logger) -> None:
    """Flush and close a run logger's files (a run's end: the folder may be moved or deleted next)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def run_log(folder: Path, name: str = "train.log") -> Iterator[logging.Logger]:
    """A run logger open for the block, closed after it whatever happens."""
    logger = run_logger(folder, name)
    try:
        yield logger
    finally:
        close_logger(logger)
