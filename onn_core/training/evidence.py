"""Which knowledge-transfer method to use: what bench/ntkd_regimes.py measured, by dataset and regime.

The regimes benchmark trains e2e, KD, NTKD and KD+NTKD (5 seeds, settings chosen on validation)
per dataset and optical regime and ships its summary as ``assets/ntkd_regimes_summary.json``:
per dataset and regime, each method's mean paired gain over e2e (test points), the best method
and its chosen settings. This module maps a design to its regime, phrases the measurement for
a designer, and picks the method ``--method auto`` and the Train page preselect. Only finished
comparisons (all 5 seeds) are in the summary; anything else counts as unmeasured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..design import Design
from ..paths import asset_path

SUMMARY = asset_path("ntkd_regimes_summary.json")
REGIME_TEXT = {
    "signed": "signed kernels",
    "non-negative": "non-negative kernels",
    "non-negative-noisy": "non-negative kernels with camera noise",
    "physical": "the physical frontend",
}
METHOD_TEXT = {"e2e": "e2e", "kd": "KD", "ntkd": "NTKD", "kd+ntkd": "KD+NTKD"}
FALLBACK_METHOD = "e2e"  # needs no teacher, and nothing measured says another is better
NOT_THE_TEACHERS = "gain not the teacher's"  # bench/ntkd_regimes.py's control verdict when the control gains as much


def design_regime(design: Design, *, frontend: str = "ideal", sensor_noise: bool = False) -> str:
    """The benchmark regime a design trains in (the physical frontend first, then the kernels' sign)."""
    if frontend == "physical":
        return "physical"
    if design.signed_kernels:
        return "signed"
    return "non-negative-noisy" if sensor_noise else "non-negative"


@dataclass(frozen=True)
class Evidence:
    """One measured comparison: gains over e2e (points) of each method, the best and its settings."""

    dataset: str
    regime: str
    seeds: int
    gains: dict[str, float]
    best: str
    settings: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    control: str | None = None  # the random-teacher control's verdict on NTKD's gain

    def line(self) -> str:
        """E.g. "measured on mnist, non-negative kernels, 5 seeds: KD +1.7, KD+NTKD +1.2, NTKD +0.3
        over e2e"; when the random-teacher control gains as much as NTKD, the line says so (a
        designer should know that gain is a regulariser's, not the teacher's knowledge)."""
        gains = ", ".join(f"{METHOD_TEXT[m]} {g:+.1f}" for m, g in sorted(self.gains.items(), key=lambda i: -i[1]))
        caveat = ""
        if self.control == NOT_THE_TEACHERS:
            caveat = " (NTKD from a teacher trained one epoch on 64 images gains as much: not the teacher's knowledge)"
        return (f"measured on {self.dataset}, {REGIME_TEXT.get(self.regime, self.regime)}, {self.seeds} seeds: "
                f"{gains} over e2e{caveat}")  # fmt: skip


def load_summary(path: Path | None = None) -> dict[str, Any]:
    """The shipped summary (default :data:`SUMMARY`; {} when the benchmark has not produced one)."""
    try:
        return json.loads((path or SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def measured(dataset: str, regime: str, summary: dict[str, Any] | None = None) -> Evidence | None:
    entry = (summary if summary is not None else load_summary()).get("measured", {}).get(dataset, {}).get(regime)
    if not entry:
        return None
    return Evidence(dataset, regime, int(entry["seeds"]), dict(entry["gain_over_e2e_points"]), entry["best"],
                    dict(entry.get("chosen") or {}), entry.get("ntkd_verdict"), entry.get("control"))  # fmt: skip


def choose_method(dataset: str, regime: str, summary: dict[str, Any] | None = None) -> tuple[str, dict, str]:
    """(method, its measured settings, why) for ``--method auto``."""
    summary = summary if summary is not None else load_summary()
    evidence = measured(dataset, regime, summary)
    if evidence is None:
        known = [f"{d}/{r}" for d, regimes in summary.get("measured", {}).items() for r in regimes]
        measured_list = ", ".join(known) if known else "nothing yet"
        return FALLBACK_METHOD, {}, (
            f"no measurements for {dataset} with {REGIME_TEXT.get(regime, regime)} (bench/ntkd_regimes.py has "
            f"measured: {measured_list}); training {FALLBACK_METHOD}, which needs no teacher."
        )  # fmt: skip
    settings = ", ".join(f"{k} {v}" for k, v in evidence.settings.items())
    why = f"{evidence.line()}; {METHOD_TEXT[evidence.best]} is best" + (f" (with {settings})" if settings else "")
    return evidence.best, evidence.settings, why + "."
