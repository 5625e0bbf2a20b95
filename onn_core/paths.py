"""Where the studio keeps its state, and where its shipped files are.

State (jobs, their artifacts, trained teachers): ``$ONN_STUDIO_HOME`` if set, else a per-user
folder: ``$XDG_DATA_HOME/onn-studio`` or ``~/.local/share/onn-studio``. Several processes (the
app, workers, the CLI) share it.

Shipped files (meta-atom tables, sweeps and surrogates, the estimator's calibration, the example
run, the NTKD evidence) live in ``assets/`` of a checkout; an installed package
(``pip install .``) carries the same folder as ``onn_core/_assets``. :func:`asset_path` finds
them either way, so no module needs to know how the studio was installed.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent  # the repository root when running from a checkout


def running_from_checkout() -> bool:
    """Whether this is a source checkout (its ``assets/`` beside the package) rather than an install."""
    return (CHECKOUT / "assets").is_dir() and (CHECKOUT / "pyproject.toml").is_file()


def asset_path(*parts: str) -> Path:
    """A shipped file or folder: ``asset_path("meta_atoms", "sin_750nm.csv")``."""
    root = CHECKOUT / "assets" if running_from_checkout() else PACKAGE_DIR / "_assets"
    return root.joinpath(*parts)


def studio_home() -> Path:
    configured = os.environ.get("ONN_STUDIO_HOME")
    if configured:
        return Path(configured)
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "onn-studio"


def default_data_home() -> Path:
    """Where users put their own copies of datasets when ``$ONN_DATA_DIR`` is unset: ``data/`` of a
    checkout, else ``data/`` in the studio's home."""
    return CHECKOUT / "data" if running_from_checkout() else studio_home() / "data"
