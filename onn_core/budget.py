"""Memory a design will need, estimated before anything is allocated, and the budget it must fit.

A design that passes ``design check`` can still ask for terabytes: a 0.5 m sub-optic sampled at
300 nm is 10¹² phase pixels, and a 4096 × 4096 input makes every image 64 MiB of float32. Such a
request must be refused up front with the figure and what to change, not discovered by the
operating system. The estimates here are what the studio allocates, per part:

* **physical frontend** (wave optics, one forward and backward pass): per capture and
  wavelength, about ``RADIUS_SAMPLE_BYTES`` per phase pixel of the sub-optic (radius map, phase,
  transmission and their gradients) and ``GRID_SAMPLE_BYTES`` per sample of the padded
  propagation grid (field, its FFT, the transfer function, intensity). Fitted to the peak
  memory of one pass with 1.6 mm and 2.4 mm kernels on this CPU build of torch (58 and 22
  bytes; the constants round up); on the default design (16 captures of 802 phase pixels,
  padded by 154) one pass peaks at 932 MiB against 1.05 GiB estimated.
* **dataset**: every image of every split as float32 at the design's input size (masks too,
  for segmentation).

The budget is ``ONN_MEMORY_BUDGET`` (bytes, or with a unit: ``12GiB``, ``500MB``) or, by default,
``DEFAULT_FRACTION`` of this machine's physical memory.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from .errors import DesignError

RADIUS_SAMPLE_BYTES = 64
GRID_SAMPLE_BYTES = 32
FLOAT32_BYTES = 4
DEFAULT_FRACTION = 0.7
BUDGET_VARIABLE = "ONN_MEMORY_BUDGET"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def machine_memory() -> int:
    """Physical memory of this machine, bytes (8 GiB when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def parse_bytes(text: str) -> int:
    """``"12GiB"`` → 12884901888; plain numbers are bytes. ValueError when it is not a size."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a memory size (e.g. 12GiB, 500MB or a number of bytes)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value < 2**20:
        raise ValueError(f"{text!r} is under 1 MiB; give a budget a design can fit in")
    return int(value)


def memory_budget() -> int:
    """The most a single design may ask for, bytes: ``ONN_MEMORY_BUDGET`` or a fraction of RAM."""
    text = os.environ.get(BUDGET_VARIABLE, "").strip()
    if not text:
        return int(DEFAULT_FRACTION * machine_memory())
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise DesignError(BUDGET_VARIABLE, text, f"{exc}.", "unset it to use 70 % of this machine's memory.") from None


def format_bytes(count: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} bytes"


@dataclass(frozen=True)
class SubopticGrid:
    """How a physical frontend samples one sub-optic: ``samples`` phase pixels a side, padded by
    ``padding`` for propagation; ``captures`` sub-optics, ``channels`` wavelengths."""

    samples: int
    padding: int
    captures: int
    channels: int

    @property
    def bytes(self) -> int:
        per_capture = RADIUS_SAMPLE_BYTES * self.samples**2 + GRID_SAMPLE_BYTES * (self.samples + self.padding) ** 2
        return self.captures * self.channels * per_capture


def check_fits(needed: int, parameter: str, value: object, what: str, fix: str) -> None:
    """Refuse ``needed`` bytes above the budget, in the designer's terms (a DesignError)."""
    budget = memory_budget()
    if needed > budget:
        raise DesignError(parameter, value, f"{what} would take about {format_bytes(needed)} of memory; the budget "
                          f"on this machine is {format_bytes(budget)}.",
                          f"{fix} (or set {BUDGET_VARIABLE}, e.g. 32GiB, on a larger machine).")  # fmt: skip


def dataset_bytes(images: int, channels: int, height: int, width: int, *, masks: bool = False) -> int:
    """Every image (and mask) as float32 at ``height`` × ``width``."""
    return images * (channels + (1 if masks else 0)) * height * width * FLOAT32_BYTES


def memory_estimate(design) -> dict[str, int]:
    """What ``design`` asks of memory, bytes: the physical frontend (one forward and backward pass
    of all its sub-optics) and 10 000 images at its input; and the budget they must fit."""
    from .models.frontends import suboptic_grid

    captures = design.kernel_count * (2 if design.signed_kernels else 1)
    channels, height, width = design.input_shape
    return {"physical_frontend_bytes": suboptic_grid(design, captures).bytes,
            "bytes_per_10000_images": dataset_bytes(10_000, channels, height, width),
            "budget_bytes": memory_budget()}  # fmt: skip
