"""Where the studio keeps its state: jobs, their artifacts, and trained teachers.

``$ONN_STUDIO_HOME`` if set, else a per-user folder: ``$XDG_DATA_HOME/onn-studio`` or
``~/.local/share/onn-studio``. Several processes (the app, workers, the CLI) share it.
"""

from __future__ import annotations

import os
from pathlib import Path


def studio_home() -> Path:
    configured = os.environ.get("ONN_STUDIO_HOME")
    if configured:
        return Path(configured)
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "onn-studio"
