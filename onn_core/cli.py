"""Command line: ``python -m onn_core ...``.

Exit codes: 0 success, 2 invalid input (a design that cannot be built, an unreadable file), with
the message on stderr (and as ``{"error": ...}`` on stdout with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .design import Design
from .errors import DesignError
from .units import format_length


def _print_report_text(design: Design) -> None:
    report = design.report()
    layout = report["layout"]
    print(f"design {report['design_id']}")
    print(
        f"  layout: {layout['n_rows']} × {layout['n_cols']} sub-optics → {layout['kernels']} "
        f"{'signed ' if design.signed_kernels else ''}kernels "
        f"({format_length(design.kernel_size)} apertures, {format_length(design.sub_optic_pitch)} apart)"
    )
    print(
        f"  kernel: {design.kernel_taps}×{design.kernel_taps} taps of {format_length(design.tap_pitch)} "
        f"= {design.kernel_size_pixels} sensor pixels ({format_length(design.kernel_support)})"
    )
    print(f"  optics: F/{design.f_number:.3g}, NA {design.numerical_aperture:.3g}")
    for row in design.per_wavelength():
        print(
            f"    {format_length(row['wavelength_m'])}: Airy radius {format_length(row['airy_radius_m'])}, "
            f"Fresnel number {row['fresnel_number']:.3g}, Q {row['nyquist_q']:.3g}"
        )
    for warning in design.warnings:
        print(f"  [{warning.severity}] {warning.code}: {warning.message}")


def _read_design(path: str) -> Design:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise DesignError("design", path, f"cannot read {path}: {exc.strerror or exc}.") from None
    return Design.from_json(text)


def _cmd_design(args: argparse.Namespace) -> int:
    design = Design() if args.action == "default" else _read_design(args.design)
    if args.action == "default":
        print(design.to_json())
        return 0
    if args.json:
        print(json.dumps({"valid": True, "design": design.to_dict(), **design.report()}, indent=2))
    else:
        _print_report_text(design)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m onn_core",
        description="Design studio for hybrid optical neural networks (lengths in metres).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    design = commands.add_parser("design", help="create and check frontend designs")
    actions = design.add_subparsers(dest="action", required=True)
    default = actions.add_parser("default", help="print the default design as JSON")
    default.add_argument("--json", action="store_true", help="JSON output (the default for this command)")
    check = actions.add_parser("check", help="validate a design; print derived quantities and warnings")
    check.add_argument("--design", required=True, metavar="FILE.json", help="design JSON file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    design.set_defaults(handler=_cmd_design)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except DesignError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"valid": False, "error": str(exc), "parameter": exc.parameter, "hint": exc.hint}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
