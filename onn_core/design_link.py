"""Designs in links: a short, URL-safe code of the fields that differ from the default design.

The app keeps the sidebar's design in its address (``?design=<code>``), so a link reopens the
same design. ``from_link(to_link(design)) == design``; the default design's code is "".
"""

from __future__ import annotations

import base64
import binascii
import json

from .design import Design
from .errors import DesignError
from .user_input import parse_json

# A link longer than this is not one of ours (every field changed encodes to well under it).
MAX_LINK_CHARACTERS = 4096


def to_link(design: Design) -> str:
    """The code of ``design``: its non-default fields (SI values) as base64url JSON, unpadded."""
    default = Design().to_dict()
    changed = {k: v for k, v in design.to_dict().items() if k not in ("schema", "units") and default.get(k) != v}
    if not changed:
        return ""
    text = json.dumps(changed, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def from_link(code: str) -> Design:
    """The design a :func:`to_link` code describes; DesignError if the code is not one."""
    if not code:
        return Design()
    if len(code) > MAX_LINK_CHARACTERS:
        raise DesignError("link", f"{len(code)} characters", "is too long to be a design link.")
    def refuse(_problem: str = "", _hint: str = "") -> DesignError:
        return DesignError("link", code[:40], "is not a design link (damaged or cut short).",
                           "open the link as it was shared, or set the design in the sidebar.")  # fmt: skip

    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (ValueError, binascii.Error):
        raise refuse() from None
    data = parse_json(raw, refuse)
    if not isinstance(data, dict):
        raise refuse()
    return Design.from_dict(data)
