"""Command line for stage 3: ``inverse-design``, ``fabricate``, ``compensate`` and ``export``.

Every command takes ``--run DIR`` (a finished student run) and ``--json`` (one JSON object on
stdout). Registered on the main parser by :func:`register`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import DesignError
from ..training.run import load_run


def _emit(args: argparse.Namespace, answer: dict, text: str) -> int:
    print(json.dumps(answer, indent=2, default=str) if args.json else text)
    return 0


def _progress(args: argparse.Namespace, label: str):
    def report(done: int, total: int, *rest) -> None:
        if not args.json and (done == total or done % max(1, total // 20) == 0):
            print(f"  {label} {done}/{total}", file=sys.stderr, flush=True)

    return report


def _optics(args: argparse.Namespace, run):
    """(metasurface, measured PSFs) the command's fabricated optics start from."""
    from .export import fabricated_optics

    return fabricated_optics(run, getattr(args, "measured_psfs", None), use_metasurface=not args.no_metasurface)


def _errors(args: argparse.Namespace, metasurface, measured):
    """The error model asked for; ``typical`` on optics without meta-atoms (no inverse design, or
    measured PSFs) leaves out the meta-atom terms, and says so."""
    from .error_model import TYPICAL_PROCESS, ErrorModel

    if args.error_model == "typical":
        errors = TYPICAL_PROCESS
        if metasurface is None or measured is not None:
            errors = errors.without_metasurface_terms()
            print("note: no meta-atoms to perturb (no inverse design of this run, or measured PSFs): the typical "
                  "process without its pillar-radius error; kernel, alignment, blur and camera errors apply",
                  file=sys.stderr)  # fmt: skip
    else:
        errors = ErrorModel.from_file(args.error_model) if args.error_model else ErrorModel()
    return errors.with_seed(args.seed) if args.seed is not None else errors


def _cmd_inverse_design(args: argparse.Namespace) -> int:
    from .inverse_design import InverseDesignSettings, inverse_design

    run = load_run(args.run)
    settings = InverseDesignSettings(iterations=args.iterations, learning_rate=args.learning_rate,
                                     phase_pixel=args.phase_pixel, patience=args.patience or None)  # fmt: skip
    metasurface = inverse_design(run.model, run.design, settings, progress=_progress(args, "iteration"))
    npz, meta = metasurface.save(run.folder)
    summary = metasurface.summary()
    grid = f"{summary['samples_per_side']}² phase pixels of {summary['phase_pixel_m'] * 1e9:.0f} nm"
    text = (f"{summary['kernels']} kernels on {summary['sub_optics']} sub-optics ({grid}): correlation min "
            f"{summary['min_correlation']:.4f}, mean {summary['mean_correlation']:.4f}; efficiency "
            f"{summary['mean_efficiency']:.2f}; "
            f"{summary['iterations']} iterations in {summary['seconds']:.0f} s → {npz}")  # fmt: skip
    return _emit(args, {**summary, "fidelity": metasurface.fidelity(), "files": [str(npz), str(meta)]}, text)


def _cmd_fabricate(args: argparse.Namespace) -> int:
    from .evaluate import check_evaluation, describe_drop, error_curve, monte_carlo, parse_factors

    factors = parse_factors(args.factors) if args.curve else None  # refused before anything is loaded
    check_evaluation(draws=args.draws, images=args.images, threshold=args.threshold, factors=factors)
    run = load_run(args.run)
    if args.captured_maps:
        from .evaluate import captured_score, load_captured_maps

        answer = captured_score(run, load_captured_maps(run, args.captured_maps))
        return _emit(args, answer, f"captured maps ({answer['images']} {answer['split']} images): accuracy "
                     f"{100 * answer['captured']:.1f} % vs {100 * answer['simulated']:.1f} % simulated")  # fmt: skip
    metasurface, measured = _optics(args, run)
    errors = _errors(args, metasurface, measured)
    if args.curve:
        points = error_curve(run, errors, factors, args.draws, metasurface=metasurface, images=args.images,
                             progress=_progress(args, "draw"))  # fmt: skip
        rows = [vars(point) for point in points]
        text = "\n".join(f"× {p.factor:g}: {100 * p.mean:.1f} ± {100 * p.std:.1f} %" for p in points)
        return _emit(args, {"metric": run.score_name, "curve": rows, "error_model": errors.to_dict()}, text)
    result = monte_carlo(run, errors, args.draws, metasurface=metasurface, measured=measured, images=args.images,
                         progress=_progress(args, "draw"))  # fmt: skip
    answer = result.to_dict()
    if args.threshold is not None:
        answer["yield"] = result.yield_at(args.threshold)
    return _emit(args, answer, describe_drop(result))


def _cmd_compensate(args: argparse.Namespace) -> int:
    from .compensate import CompensationSettings, compensate, compensate_captured
    from .evaluate import load_captured_maps

    run = load_run(args.run)
    settings = CompensationSettings(method=args.method, fraction=args.fraction, epochs=args.epochs,
                                    learning_rate=args.learning_rate, teacher=args.teacher, seed=args.train_seed,
                                    beta=args.beta)  # fmt: skip
    if bool(args.captured_maps) != bool(args.captured_test_maps):
        raise DesignError("--captured-maps", "one file", "give maps of training images (--captured-maps) and of "
                          "test images (--captured-test-maps).")  # fmt: skip
    if args.captured_maps:
        out = Path(args.out) if args.out else run.folder / "compensation" / f"{args.method}-captured"
        train_maps, test_maps = (load_captured_maps(run, p) for p in (args.captured_maps, args.captured_test_maps))
        result = compensate_captured(run, train_maps, test_maps, settings, out_dir=out)
    else:
        metasurface, measured = _optics(args, run)
        out = Path(args.out) if args.out else run.folder / "compensation" / f"{args.method}-{args.fraction:g}"
        errors = _errors(args, metasurface, measured)
        result = compensate(run, settings, errors=errors, metasurface=metasurface, measured=measured,
                            out_dir=out)  # fmt: skip
    answer = {**result.to_dict(), "out": str(out)}
    recovered = "" if result.recovered is None else f", {100 * result.recovered:.0f} % of the drop recovered"
    text = (f"{result.metric}: trained {100 * result.trained:.1f} %, fabricated {100 * result.before:.1f} %, after "
            f"{result.method} compensation on {result.train_images} images {100 * result.after:.1f} %{recovered}"
            f" ({result.source}) → {out}")  # fmt: skip
    return _emit(args, answer, text)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import FORMATS, export

    run = load_run(args.run)
    formats = list(FORMATS) if args.format == "all" else [args.format]
    written = export(run, formats, args.out)
    text = "\n".join(f"{name}: {', '.join(paths)}" for name, paths in written.items())
    return _emit(args, {"files": written}, text)


def _add_optics_source(parser: argparse.ArgumentParser, *, measured: bool = True) -> None:
    parser.add_argument("--error-model", default=None, metavar="FILE.json", help="error model (SI units; see "
                        "onn_core/fabrication/error_model.py), or 'typical' (pillar radius σ 5 nm, misalignment σ "
                        "2 µm, camera noise, 8-bit ADC; the Fabricate page's start); default: no errors")  # fmt: skip
    if measured:
        parser.add_argument("--measured-psfs", default=None, metavar="FILE",
                            help="measured PSF stack (.npz, or a folder of PNG/TIFF per sub-optic)")  # fmt: skip
    parser.add_argument("--no-metasurface", action="store_true",
                        help="perturb the trained kernels even if the run has an inverse design")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="error draw seed (default: the error model's)")


def register(commands: argparse._SubParsersAction) -> None:
    from .export import FORMATS

    inverse = commands.add_parser("inverse-design", help="radius maps realising a trained run's kernels")
    inverse.add_argument("--run", required=True, metavar="DIR")
    inverse.add_argument("--iterations", type=int, default=500, help="Adam steps at most (default 500)")
    inverse.add_argument("--learning-rate", type=float, default=0.05, help="Adam step on the radius logit")
    inverse.add_argument("--patience", type=int, default=25, help="stop after this many steps without a 0.1 %% gain "
                         "(0: never)")  # fmt: skip
    inverse.add_argument("--phase-pixel", type=float, default=None, help="phase-map pitch, metres")
    inverse.add_argument("--json", action="store_true")
    inverse.set_defaults(handler=_cmd_inverse_design)

    fabricate = commands.add_parser("fabricate", help="accuracy through fabricated optics: Monte-Carlo yield, curves")
    fabricate.add_argument("--run", required=True, metavar="DIR")
    _add_optics_source(fabricate)
    fabricate.add_argument("--captured-maps", default=None, metavar="FILE.npz",
                           help="score the backend on captured feature maps (features, split, indices)")  # fmt: skip
    fabricate.add_argument("--draws", type=int, default=20, help="Monte-Carlo draws")
    fabricate.add_argument("--images", type=int, default=None, help="first N test images only")
    fabricate.add_argument("--threshold", type=float, default=None, help="report the yield at this score (0–1)")
    fabricate.add_argument("--curve", action="store_true", help="score vs error magnitude instead")
    fabricate.add_argument("--factors", default="0,0.25,0.5,1,1.5,2", help="error-model scale factors (--curve)")
    fabricate.add_argument("--json", action="store_true")
    fabricate.set_defaults(handler=_cmd_fabricate)

    compensate = commands.add_parser("compensate", help="fine-tune the backend behind fabricated optics")
    compensate.add_argument("--run", required=True, metavar="DIR")
    _add_optics_source(compensate)
    compensate.add_argument("--method", choices=("e2e", "kd", "ntkd", "kd+ntkd"), default="ntkd")
    compensate.add_argument("--fraction", type=float, default=0.1, help="share of the training images captured")
    compensate.add_argument("--epochs", type=int, default=15)
    compensate.add_argument("--learning-rate", type=float, default=1e-3)
    compensate.add_argument("--beta", type=float, default=None, help="NTK term weight (default: the run's)")
    compensate.add_argument("--teacher", default=None, metavar="DIR", help="teacher run (default: the run's)")
    compensate.add_argument("--train-seed", type=int, default=0, help="captured subset, batch order")
    compensate.add_argument("--captured-maps", default=None, metavar="TRAIN.npz",
                            help="fine-tune on feature maps captured from training images (features, split, indices); "
                            "needs --captured-test-maps; replaces the error model and measured PSFs")  # fmt: skip
    compensate.add_argument("--captured-test-maps", default=None, metavar="TEST.npz",
                            help="captured maps of test images: before/after are scored on them")  # fmt: skip
    compensate.add_argument("--out", default=None, metavar="DIR", help="default: RUN/compensation/METHOD-FRACTION")
    compensate.add_argument("--json", action="store_true")
    compensate.set_defaults(handler=_cmd_compensate)

    export = commands.add_parser("export", help="files for the fab and collaborators (GDSII, OASIS, maps, weights)")
    export.add_argument("--run", required=True, metavar="DIR")
    export.add_argument("--format", required=True, choices=(*FORMATS, "all"))
    export.add_argument("--out", default=None, metavar="DIR", help="default: RUN/export")
    export.add_argument("--json", action="store_true")
    export.set_defaults(handler=_cmd_export)
