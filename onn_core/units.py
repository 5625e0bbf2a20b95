"""Unit conversion at the UI edge.

Code works in SI units (metres, seconds, radians). Designers type and read mm, µm and nm; these
helpers are the only place where that conversion happens.
"""

from __future__ import annotations

import math

NM = 1e-9
UM = 1e-6
MM = 1e-3

_LENGTH_UNITS = (("m", 1.0), ("mm", MM), ("µm", UM), ("nm", NM), ("pm", 1e-12))


def format_length(metres: float, digits: int = 4) -> str:
    """Render a length (metres) with the unit that keeps the number between 1 and 1000."""
    if not math.isfinite(metres):
        return f"{metres} m"
    magnitude = abs(metres)
    for name, scale in _LENGTH_UNITS:
        if magnitude >= scale or name == "pm":
            return f"{metres / scale:.{digits}g} {name}"
    return f"{metres:.{digits}g} m"  # unreachable; keeps type checkers content


def format_value(value: object, unit: str | None) -> str:
    """Render a design value for messages: lengths get a readable unit, others their own."""
    if unit == "m" and isinstance(value, int | float) and not isinstance(value, bool):
        return format_length(float(value))
    if unit == "m" and isinstance(value, tuple):
        return "(" + ", ".join(format_value(v, unit) for v in value) + ")"
    if unit:
        return f"{value} {unit}"
    return repr(value)


def format_duration(seconds: float) -> str:
    """A duration as a designer reads it: '40 s', '3 min', '1 h 20 min' (rounded; it is an estimate)."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
