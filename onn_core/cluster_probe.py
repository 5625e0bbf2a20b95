"""What the studio asks of every node of a Dask cluster before it sends work there.

This module is sent to the nodes *by value* (see :mod:`onn_core.cluster`), so it works on a
node that cannot import the studio: that is what it finds out. It imports nothing of the studio.
"""

from __future__ import annotations


def importable(modules: list[str]) -> dict[str, str]:
    """Each module → its version (``__version__``, else "?") or ``"error: <why it cannot be imported>"``."""
    import importlib

    found = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import failure is the answer, not a crash of the probe
            found[name] = f"error: {type(exc).__name__}: {exc}"
        else:
            found[name] = str(getattr(module, "__version__", "?"))
    return found
