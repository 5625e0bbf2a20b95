"""The estimator as a studio extension: the ``estimate`` job kind and the ``sweep`` and ``estimate`` commands.

``onn_core`` loads this module by name (:mod:`onn_core.jobs.kinds`, ``ONN_STUDIO_EXTENSIONS``):
the estimator builds on ``onn_core`` and ``onn_core`` never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onn_core.cli import read_design
from onn_core.data import SPECS, dataset_status
from onn_core.design import Design
from onn_core.errors import SurrogateUnavailable, SweepError
from onn_core.jobs.kinds import JobKind, eta_text, no_inputs
from onn_core.jobs.store import JobError
from onn_core.jobs.worker import job_threads
from onn_core.run_files import atomic_write_json
from onn_core.training.metrics import headline
from onn_core.training.progress import counting

if TYPE_CHECKING:
    from .ntk_regression import EstimateSettings

# The regression, surrogate and sweep (scipy, joblib) are imported where a command or job runs:
# every `python -m onn_core` call loads this module to register its commands, and most need none.

ESTIMATE_KEYS = {"design", "dataset", "settings"}


# ---------------------------------------------------------------------------- the estimate job
def estimate_inputs(config: dict[str, Any]) -> tuple[Design, str | None, EstimateSettings]:
    from .ntk_regression import EstimateSettings

    unknown = sorted(set(config) - ESTIMATE_KEYS)
    if unknown:
        raise JobError(f"an estimate job takes design, dataset and settings; not {', '.join(unknown)}.")
    design = Design.from_dict(config["design"]) if config.get("design") is not None else Design()
    settings = dict(config.get("settings") or {})
    if "ridge_grid" in settings:
        settings["ridge_grid"] = tuple(settings["ridge_grid"])
    return design, config.get("dataset"), EstimateSettings(**settings)


def validate_estimate(config: dict[str, Any]) -> None:
    from onn_core.models.zoo import segmentation_groups

    design, dataset, settings = estimate_inputs(config)
    if dataset not in SPECS:
        raise JobError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}.")
    status = dataset_status(dataset, settings.data_root)
    if not status["available"]:
        raise JobError(f"{dataset} is not available: {status['reason']}")
    if SPECS[dataset].task == "segmentation":
        segmentation_groups(settings.kernels or design.kernel_count)


def run_estimate(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:
    """The exact NTK-regression estimate of a design (seconds to a minute), as a job."""
    from .ntk_regression import estimate

    design, dataset, settings = estimate_inputs(config)
    result = estimate(design, dataset, settings, threads=job_threads(), progress=counting(progress, "estimate"))
    atomic_write_json(folder / "estimate.json", result.to_dict())
    return result.to_dict()


def estimate_progress_text(update: Any) -> str:
    return f"NTK regression: initialisation {update.step}/{update.steps} done{eta_text(update)}"


# ---------------------------------------------------------------------------- the search job
SEARCH_KEYS = {"dataset", "objectives", "budget", "seed", "fixed", "bounds", "exact_top", "exact", "energy_model"}
FRONT_EVERY = 25  # trials between snapshots of the growing front (the page draws it)


def search_options(config: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - SEARCH_KEYS)
    if unknown:
        raise JobError(f"a search job takes {', '.join(sorted(SEARCH_KEYS))}; not {', '.join(unknown)}.")
    if config.get("dataset") not in SPECS:
        raise JobError(f"unknown dataset {config.get('dataset')!r}; choose one of {', '.join(SPECS)}.")
    return {"objectives": config.get("objectives") or ["accuracy", "area"], "budget": config.get("budget", 300),
            "seed": config.get("seed", 0), "fixed": config.get("fixed"), "bounds": config.get("bounds"),
            "exact_top": config.get("exact_top", 0), "exact": config.get("exact", False),
            "energy_model": energy_model(config.get("energy_model") or {})}  # fmt: skip


def energy_model(values: dict[str, Any]) -> Any:
    """An :class:`~onn_core.models.energy.EnergyModel` from {"mac_energy", "conversion_step_energy"}
    (joules; either may be left out for the default), refused in the designer's terms."""
    from onn_core.models.energy import EnergyModel

    unknown = sorted(set(values) - {"mac_energy", "conversion_step_energy"})
    if unknown:
        raise JobError(f"energy_model takes mac_energy and conversion_step_energy (joules); not {', '.join(unknown)}.")
    try:
        return EnergyModel(**{name: value for name, value in values.items() if value is not None})
    except ValueError as exc:
        raise JobError(f"energy model: {exc}") from None


def validate_search(config: dict[str, Any]) -> None:
    from .search import check_request, search_space

    options = search_options(config)
    check_request(dataset=config["dataset"], **{key: options[key] for key in ("objectives", "budget", "seed",
                                                                             "exact_top", "exact")})  # fmt: skip
    for key in ("fixed", "bounds"):
        if options[key] is not None and not isinstance(options[key], str):
            raise JobError(f"{key} is FIELD=VALUE pairs separated by commas (text); got {options[key]!r}.")
    search_space(config["dataset"], options["fixed"], options["bounds"])  # refuses bad fields and bounds now


def run_search_job(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:
    """A design search as a job: the study in FOLDER/search, the front snapshotted as it grows."""
    from .search import load_front, run_search

    out = folder / "search"
    report = counting(progress, "search")

    def on_trial(done: int, total: int) -> None:
        report(done, total)
        if done % FRONT_EVERY == 0:
            atomic_write_json(folder / "front.json", load_front(out), indent=None)

    result = run_search(config["dataset"], out, jobs=job_threads(), on_trial=on_trial, **search_options(config))
    atomic_write_json(folder / "front.json", result["front"], indent=None)
    return {key: value for key, value in result.items() if key != "front"} | {"front_size": len(result["front"])}


def search_progress_text(update: Any) -> str:
    return f"Design search: trial {update.step}/{update.steps}{eta_text(update)}"


JOB_KINDS = (
    JobKind("estimate", run_estimate, validate_estimate, "the accuracy a design can reach, before training",
            "design, dataset, settings (EstimateSettings keys)", estimate_progress_text, remote_inputs=no_inputs),
    JobKind("search", run_search_job, validate_search, "the Pareto front of accuracy against metasurface area",
            "dataset, objectives, budget, seed, fixed, bounds, exact_top, exact, energy_model", search_progress_text),
)  # fmt: skip


# ---------------------------------------------------------------------------- commands
def _load_spec(path: str) -> dict:
    from onn_core.user_input import read_json, refusal

    spec = read_json(path, refusal(SweepError, f"the sweep spec {path}"), what="sweep spec")
    if not isinstance(spec, dict):
        raise SweepError(f"the sweep spec {path} must hold a JSON object, not a {type(spec).__name__}.")
    return spec


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .surrogate import own_sweep_path, own_sweep_spec
    from .sweep import run_sweep

    def progress(row: dict) -> None:
        if args.json:
            return
        result = row.get("result")
        text = f"{result['metric']} {result['accuracy']:.4f}" if result else f"error: {row['error']}"
        print(f"{row['dataset']} {row.get('design_id', 'invalid design')} seed {row['seed']}: {text} "
              f"({row['seconds']:.1f} s)", flush=True)  # fmt: skip

    if args.spec is None and args.dataset is None:
        raise SweepError("give --spec FILE.json, or --dataset NAME to sweep that dataset with the shipped ranges.")
    if args.dataset is not None and args.dataset not in SPECS:
        raise SweepError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(SPECS)}.")
    if args.spec is not None:
        spec = _load_spec(args.spec)
        if args.dataset is not None:
            spec["datasets"] = [args.dataset]
    else:
        spec = own_sweep_spec(args.dataset, args.samples)
    if args.out is None and args.dataset is None:
        raise SweepError("--out RESULTS is needed with --spec alone (with --dataset the studio keeps the results).")
    out = args.out or own_sweep_path(args.dataset)
    summary = run_sweep(spec, out, backend=args.backend, jobs=args.jobs, scheduler=args.scheduler,
                        on_row=progress)  # fmt: skip
    print(json.dumps(summary, indent=2) if args.json else
          f"{summary['ran']} point(s) run, {summary['already_done']} already done, in {summary['seconds']} s "
          f"→ {summary['out']}")  # fmt: skip
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from .ntk_regression import EstimateSettings, estimate
    from .surrogate import check_design_for, surrogate_for

    """The surrogate's instant answer where it was fitted on this data; the exact NTK regression
    otherwise (``--exact``, another copy of the data, or a dataset no sweep covers), saying why."""
    from onn_core.data.registry import load_for_design

    design = read_design(args.design) if args.design else Design()
    check_design_for(design, args.dataset)
    why, surrogate = None, None
    if not args.exact:
        if args.data_root is not None:
            why = (f"the surrogate was fitted on the studio's {args.dataset}, not on {args.data_root}: "
                   "running the exact NTK regression on it")  # fmt: skip
        else:
            try:
                surrogate = surrogate_for(args.dataset, design, args.results or [])
            except SurrogateUnavailable as exc:
                why = f"no instant estimate ({exc}); running the exact NTK regression instead"
    if surrogate is None:
        if why and not args.json:
            print(why, file=sys.stderr, flush=True)
        settings = EstimateSettings(data_root=args.data_root)
        data = load_for_design(args.dataset, design, root=args.data_root)
        started = time.perf_counter()  # the query itself: the data are loaded once, before
        result = estimate(design, args.dataset, settings, data=data)
        answer = {
            "accuracy": result.accuracy, "low": result.low, "high": result.high, "method": "ntk",
            "extrapolation": False, "seconds": time.perf_counter() - started, "metric": result.metric,
            "kernels": result.kernels, "subset_accuracy": result.subset_accuracy,
            "learning_curve": result.learning_curve, "band_limited": result.band_limited, "fitted_on": None,
            "raw_accuracy": result.raw_accuracy, "raw_low": result.raw_low, "raw_high": result.raw_high,
            "calibrated": result.calibrated, "calibration": result.calibration,
        }  # fmt: skip
        if why:
            answer["why"] = why
    else:
        answer = surrogate.predict(design).to_dict()
        answer.update(metric=headline(SPECS[args.dataset].task), kernels=design.kernel_count,
                      surrogate=surrogate.describe(), fitted_on=args.dataset)  # fmt: skip
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        flag = " (EXTRAPOLATION: outside the swept designs)" if answer["extrapolation"] else ""
        print(f"{args.dataset}: estimated {answer['metric']} {100 * answer['accuracy']:.1f} % "
              f"[{100 * answer['low']:.1f}–{100 * answer['high']:.1f}] by {answer['method']}{flag}, "
              f"{answer['seconds'] * 1e3:.1f} ms")  # fmt: skip
        raw = f" (raw NTK regression {100 * answer['raw_accuracy']:.1f} %)" if answer.get("raw_accuracy") else ""
        print(f"  {'calibrated to trained students: ' if answer['calibrated'] else ''}{answer['calibration']}{raw}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    """The Pareto front of accuracy against cost for a dataset (see ``estimators.search``)."""
    from .search import run_search

    def progress(done: int, total: int) -> None:
        if not args.json and (done % 50 == 0 or done == total):
            print(f"trial {done}/{total}", file=sys.stderr, flush=True)

    objectives = [name.strip() for name in args.objectives.split(",")]
    result = run_search(args.dataset, args.out, objectives=objectives, budget=args.budget, seed=args.seed,
                        fixed=args.fixed, bounds=args.bounds, exact_top=args.exact_top, backend=args.backend,
                        scheduler=args.scheduler, exact=args.exact, on_trial=progress,
                        energy_model=energy_model({"mac_energy": args.mac_energy,
                                                   "conversion_step_energy": args.conversion_step_energy}))  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.dataset}: {len(result['front'])} designs on the front after {result['trials']} trials "
          f"({result['seconds']:.1f} s); study {result['study']}")  # fmt: skip
    for row in result["front"]:
        exact = f"  exact {100 * row['exact_accuracy']:.1f} %" if "exact_accuracy" in row else ""
        print(f"  {row['area_mm2']:8.3f} mm²  {row['kernels']:3d} kernels  {row['energy_j'] * 1e6:8.3f} µJ  "
              f"{100 * row['accuracy']:5.1f} % "
              f"[{100 * row['low']:.1f}–{100 * row['high']:.1f}]{exact}  {row['design_id']}")  # fmt: skip
    return 0


def register_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``estimate`` and ``search`` to ``python -m onn_core``."""
    sweep = commands.add_parser("sweep", help="run the estimator over a grid or random sample of designs")
    sweep.add_argument("--spec", default=None, metavar="FILE.json", help="sweep spec (see estimators/sweep.py)")
    sweep.add_argument("--dataset", default=None, metavar="NAME",
                       help="sweep this dataset (with --spec: in place of the spec's datasets; alone: the shipped "
                            "ranges); the studio keeps the results and `estimate` then answers for it at once")
    sweep.add_argument("--samples", type=int, default=None, help="designs to sample with --dataset alone (default 24)")
    sweep.add_argument("--out", default=None, metavar="RESULTS",
                       help="JSON-lines results (appended; resumes; default with --dataset: kept by the studio)")
    sweep.add_argument("--backend", choices=("loky", "dask"), default="loky")
    sweep.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address (default with dask: a local cluster)")  # fmt: skip
    sweep.add_argument("--jobs", type=int, default=None, help="parallel points (default: cores − 1)")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=_cmd_sweep)

    estimate_parser = commands.add_parser("estimate", help="accuracy a design can reach, before training")
    estimate_parser.add_argument("--design", default=None, metavar="FILE",
                                 help="design JSON (default: the default design)")  # fmt: skip
    estimate_parser.add_argument("--dataset", required=True)
    estimate_parser.add_argument("--exact", action="store_true",
                                 help="run the NTK regression (seconds) not the surrogate")  # fmt: skip
    estimate_parser.add_argument("--results", action="append", metavar="RESULTS",
                                 help="extra sweep results to fit the surrogate on (repeatable)")  # fmt: skip
    estimate_parser.add_argument("--data-root", default=None, help="your copy of the dataset (with --exact)")
    estimate_parser.add_argument("--json", action="store_true")
    estimate_parser.set_defaults(handler=_cmd_estimate)

    search = commands.add_parser("search", help="the Pareto front of accuracy against metasurface area (and cost)")
    search.add_argument("--dataset", required=True)
    search.add_argument("--objectives", default="accuracy,area",
                        help="two or more of accuracy, area, kernels, macs, energy (default accuracy,area)")
    search.add_argument("--budget", type=int, default=300, help="total trials (a resumed search runs the rest)")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--fixed", default=None, metavar="FIELD=VALUE,…",
                        help="design fields held (SI; wavelengths as a;b;c)")  # fmt: skip
    search.add_argument("--bounds", default=None, metavar="FIELD=LOW:HIGH,…",
                        help="ranges of the free fields (SI; default: the shipped sweeps' ranges)")  # fmt: skip
    search.add_argument("--exact-top", type=int, default=0, metavar="K",
                        help="confirm K front designs, spread along the area, by the exact NTK regression")  # fmt: skip
    search.add_argument("--exact", action="store_true",
                        help="an exact NTK regression a trial (data no sweep covers; seconds a trial; "
                             "budget ≤ 200)")  # fmt: skip
    search.add_argument("--mac-energy", type=float, default=None, metavar="J",
                        help="energy model: joules per digital MAC (default 4.6e-12; docs/ENERGY.md)")
    search.add_argument("--conversion-step-energy", type=float, default=None, metavar="J",
                        help="energy model: joules per ADC conversion step, × 2^bits a conversion (default 1e-12)")
    search.add_argument("--backend", choices=("loky", "dask"), default="loky")
    search.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler for the exact checks")
    search.add_argument("--out", required=True, metavar="DIR", help="the study (SQLite) lives here; resumes")
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=_cmd_search)
