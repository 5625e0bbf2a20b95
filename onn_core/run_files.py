"""Files a run leaves behind: written atomically, and its log.

Every result file (checkpoints, weights, metrics, metasurfaces, caches) is written to a
temporary file beside its target and renamed over it, so a crash or a cancelled job never
leaves a half-written file: what is on disk is the old version or the new one. Files keep the
umask's permissions (``mkstemp``'s 0600 would follow them; results are meant to be shared).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file, then rename it into place."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` of ``obj`` (tensors, state dicts), atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


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
