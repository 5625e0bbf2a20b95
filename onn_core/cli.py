"""Command line: ``python -m onn_core ...``.

Exit codes: 0 success, 2 invalid input (a design that cannot be built, an unreadable file), with
the message on stderr (and as ``{"error": ...}`` on stdout with ``--json``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from .budget import BUDGET_VARIABLE, format_bytes, memory_estimate
from .design import Design
from .errors import (
    ClusterError,
    DataFormatError,
    DesignError,
    OpticsInputError,
    SearchError,
    SurrogateUnavailable,
    SweepError,
    TrainingError,
)
from .jobs.store import JobError
from .units import format_length
from .user_input import read_json, refusal


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


def read_design(path: str) -> Design:
    """The design in a JSON file; a DesignError names the file when it cannot be read."""
    def refuse(problem: str, hint: str) -> DesignError:
        return DesignError("design", path, f"{path} {problem}", hint)

    return Design.from_dict(read_json(path, refuse, what="design JSON file"))


def _cmd_design(args: argparse.Namespace) -> int:
    design = Design() if args.action == "default" else read_design(args.design)
    if args.action == "default":
        print(design.to_json())
        return 0
    memory = memory_estimate(design)
    if args.json:
        print(json.dumps({"valid": True, "design": design.to_dict(), **design.report(), "memory": memory}, indent=2))
        return 0
    _print_report_text(design)
    physical, images, budget = (memory[key] for key in ("physical_frontend_bytes", "bytes_per_10000_images",
                                                         "budget_bytes"))  # fmt: skip
    over = " — over the budget: train it with the ideal frontend" if physical > budget else ""
    print(f"  memory: physical frontend ≈ {format_bytes(physical)}{over}; data ≈ {format_bytes(images)} per 10 000 "
          f"images at this input; budget {format_bytes(budget)} ({BUDGET_VARIABLE} or 70 % of this machine's memory)")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import list_datasets

    if args.action == "add":
        return _cmd_data_add(args)
    if args.action == "remove":
        from .data.user import remove_dataset

        remove_dataset(args.name)
        print(json.dumps({"removed": args.name}) if args.json else f"removed {args.name}")
        return 0
    if args.data_root and not args.dataset:
        raise DataFormatError(args.data_root, "--data-root needs --dataset NAME to say which dataset it holds.")
    roots = {args.dataset: args.data_root} if args.data_root else {}
    entries = list_datasets(roots)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        state = "available" if entry["available"] else f"not available: {entry['reason']}"
        size = "×".join(str(v) for v in entry["image_size"])
        print(f"{entry['name']:14s} {entry['task']:14s} {size:>6s}×{entry['channels']}  {state}")
        print(f"{'':14s} licence: {entry['licence']}")
    return 0


def _cmd_data_add(args: argparse.Namespace) -> int:
    from .data.registry import SHIPPED_SPECS
    from .data.user import add_dataset

    size = tuple(args.size) if args.size else None
    described = add_dataset(args.name, args.path, task=args.task, size=size, channels=args.channels,
                            shipped=tuple(SHIPPED_SPECS))  # fmt: skip
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    splits, (height, width) = described["splits"], described["image_size"]
    print(f"added {described['name']}: {described['task']}, {len(described['classes'])} classes "
          f"({', '.join(described['classes'])}), {height}×{width}×{described['channels']}; "
          f"train {splits['train']} / val {splits['val']} / test {splits['test']}")  # fmt: skip
    for warning in described["warnings"]:
        print(f"  warning: {warning}")
    print(f"  {described['student_input']}")
    return 0


def _training_config(args: argparse.Namespace, role: str):
    from .training import TrainConfig
    from .training.config import TRANSFER_DEFAULTS

    return TrainConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        role=role,
        model=args.model or "",
        method=getattr(args, "method", "e2e"),
        frontend=getattr(args, "frontend", "ideal"),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimiser=args.optimiser,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        early_stopping_patience=args.patience or None,
        seed=args.seed,
        split_seed=args.split_seed,
        threads=args.threads,
        train_limit=args.train_limit,
        augment=args.augment,
        sensor_noise=getattr(args, "sensor_noise", False),
        normalise_intensity=getattr(args, "normalise_intensity", False),
        phase_pixel=getattr(args, "phase_pixel", None),
        **{name: getattr(args, name) for name in TRANSFER_DEFAULTS if hasattr(args, name)},
    )


def _report_training(metrics: dict, args: argparse.Namespace, out: Path) -> None:
    if args.json:
        print(json.dumps({**metrics, "run_dir": str(out)}, indent=2))
        return
    from .training.metrics import headline

    score = headline(metrics["task"])
    print(f"{metrics['model']} on {metrics['dataset']}: test {score} {metrics[score]:.4f} → {out}")


def _progress_printer(args: argparse.Namespace):
    if args.json or args.quiet:
        return None

    def report(progress) -> None:
        if progress.phase == "validate":
            eta = f", ETA {progress.eta_s:.0f} s" if progress.eta_s is not None else ""
            print(f"epoch {progress.epoch}/{progress.epochs} loss {progress.train_loss:.4f} {progress.metrics}{eta}",
                  file=sys.stderr)  # fmt: skip

    return report


def _choose_method(args: argparse.Namespace, design: Design) -> dict:
    """Resolve ``--method auto`` from the measured regimes; settings left at their defaults follow it."""
    from .training.config import TRANSFER_DEFAULTS
    from .training.evidence import choose_method, design_regime

    regime = design_regime(design, frontend=args.frontend, sensor_noise=args.sensor_noise)
    method, settings, why = choose_method(args.dataset, regime)
    args.method = method
    applied = {}
    for name, value in settings.items():
        if name in TRANSFER_DEFAULTS and getattr(args, name, None) == TRANSFER_DEFAULTS[name]:
            setattr(args, name, value)
            applied[name] = value
    if not args.json:
        print(f"--method auto chose {method}: {why}")
    return {"method": method, "regime": regime, "settings": applied, "why": why}


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    design = read_design(args.design) if args.design else Design()
    choice = _choose_method(args, design) if args.method == "auto" else None
    config = _training_config(args, "student")
    out = Path(args.out)
    metrics = train(config, out, design=design, progress=_progress_printer(args))
    _report_training({**metrics, "method_choice": choice} if choice else metrics, args, out)
    return 0


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from .data import SPECS
    from .models import default_teacher
    from .training import teacher_dir, train

    config = _training_config(args, "teacher")
    if args.dataset not in SPECS:
        raise DataFormatError(args.dataset, f"unknown dataset; choose one of {', '.join(SPECS)}.")
    model = config.model or default_teacher(SPECS[args.dataset].task)
    design = read_design(args.design) if args.design else None
    stored_at = teacher_dir(args.dataset, model, args.seed, split_seed=args.split_seed, data_root=args.data_root,
                            input_shape=None if design is None else design.input_shape)  # fmt: skip
    out = Path(args.out) if args.out else stored_at
    metrics = train(config.replace(model=model), out, design=design, progress=_progress_printer(args))
    _report_training(metrics, args, out)
    return 0


def _job_summary(job) -> dict:
    summary = {key: getattr(job, key) for key in ("id", "kind", "state", "progress", "message", "artifact_dir")}
    return {**summary, "runs_on": job.scheduler or "this machine"}


def _cmd_jobs(args: argparse.Namespace) -> int:
    from . import jobs

    database = args.database
    if args.action == "worker":
        ran = jobs.work(database, idle_exit=None if args.idle_exit <= 0 else args.idle_exit, once=args.once)
        print(json.dumps({"jobs_run": ran}) if args.json else f"worker finished: {ran} job(s) run")
        return 0
    if args.action == "submit":
        config = read_json(args.config, refusal(jobs.JobError, args.config), what="job config")
        if not isinstance(config, dict):
            raise jobs.JobError(f"{args.config} must hold a JSON object of settings, not a {type(config).__name__}.")
        job_id = jobs.submit(args.kind, config, database=database, on_worker_death=args.on_worker_death,
                             start_worker=not args.no_worker, scheduler=args.scheduler)  # fmt: skip
        print(json.dumps({"id": job_id}) if args.json else job_id)
        return 0
    if args.action == "list":
        listed = jobs.list_jobs(state=args.state, database=database)
        if args.json:
            print(json.dumps([_job_summary(job) for job in listed], indent=2))
        for job in [] if args.json else listed:
            print(f"{job.id}  {job.kind:8s} {job.state:10s} {100 * job.progress:5.1f}%  {job.message}")
        return 0
    if args.action == "show":
        job = jobs.status(args.id, database=database)
        record = {**job.to_dict(), "events": jobs.history(args.id, database=database)}
        print(json.dumps(record, indent=2) if args.json else json.dumps(_job_summary(job), indent=2))
        return 0
    act = jobs.cancel if args.action == "cancel" else jobs.resume
    job = act(args.id, database=database)
    print(json.dumps(_job_summary(job)) if args.json else f"{job.id}: {job.state} ({job.message or 'ok'})")
    return 0


def _add_training_options(parser: argparse.ArgumentParser, *, epochs: int, lr: float) -> None:
    parser.add_argument("--dataset", required=True, help="registry name (see `data list`)")
    parser.add_argument("--data-root", default=None, help="your copy of the dataset (file or folder)")
    parser.add_argument("--model", default=None, help="architecture (default: the task's default)")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimiser", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--lr", type=float, default=lr, help="learning rate")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    parser.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs (0: off)")
    parser.add_argument("--seed", type=int, default=0, help="initial weights, batch order, noise")
    parser.add_argument("--split-seed", type=int, default=0, help="train/val/test split (keep fixed across seeds)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    parser.add_argument("--augment", action="store_true", help="random ±2-pixel shifts (classification)")
    parser.add_argument("--json", action="store_true", help="print the final test metrics as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")


def _add_transfer_options(parser: argparse.ArgumentParser) -> None:
    from .training.config import (
        METHODS,
        NTK_PARAMETERS,
        STUDENT_NTK_ENGINES,
        TEACHER_NTK_ENGINES,
        TRANSFER_DEFAULTS,
    )
    from .training.ntk import NORMALISATIONS

    d = TRANSFER_DEFAULTS
    parser.add_argument(
        "--method",
        choices=(*METHODS, "auto"),
        default="e2e",
        help="e2e (task loss), kd (Hinton), ntkd (NTK distillation), kd+ntkd, or auto: the best measured for "
        "this dataset and the design's regime (bench/ntkd_regimes.py), with its settings",
    )
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="RUN_DIR",
        help="trained teacher run folder (default: the teacher store's best for this data)",
    )
    parser.add_argument("--alpha", type=float, default=d["alpha"], help="NTKD weight of the task loss")
    parser.add_argument("--beta", type=float, default=d["beta"], help="NTKD weight of the kernel distance")
    parser.add_argument("--temperature", type=float, default=d["temperature"], help="KD temperature T")
    parser.add_argument("--kd-alpha", type=float, default=d["kd_alpha"], help="KD weight α (task gets 1 − α)")
    parser.add_argument(
        "--ntk-engine",
        choices=STUDENT_NTK_ENGINES,
        default=d["ntk_engine"],
        help="student NTK: structured (exact, cheap), the paper's estimator (finite differences) or exact (slow)",
    )
    parser.add_argument(
        "--teacher-ntk",
        choices=TEACHER_NTK_ENGINES,
        default=d["teacher_ntk"],
        help="teacher NTK: sketch (cached once), structured, estimator or exact (per batch)",
    )
    parser.add_argument("--ntk-draws", type=int, default=d["ntk_draws"], help="estimator draws R")
    parser.add_argument("--ntk-epsilon", type=float, default=d["ntk_epsilon"], help="estimator step ε")
    parser.add_argument("--ntk-sketch", type=int, default=d["ntk_sketch"], help="teacher sketch directions m")
    parser.add_argument("--ntk-normalisation", choices=NORMALISATIONS, default=d["ntk_normalisation"])
    parser.add_argument(
        "--ntk-output-pool",
        type=int,
        default=d["ntk_output_pool"],
        help="segmentation: logit maps pooled to this many pixels per side for the NTK",
    )
    parser.add_argument(
        "--ntk-parameters",
        choices=NTK_PARAMETERS,
        default=d["ntk_parameters"],
        help="the student's NTK over all parameters, the optical frontend or the backend",
    )
    parser.add_argument(
        "--ntk-batch",
        type=_whole_or_all,
        default=d["ntk_batch"],
        metavar="N|all",
        help="the kernels compare the first N images of each minibatch ('all': the whole of it)",
    )
    parser.add_argument("--ntk-unbiased", action="store_true",
                        help="estimator: two independent half-estimates (no variance term in the loss)")  # fmt: skip


def _whole_or_all(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of images or 'all', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from .jobs.kinds import job_kinds, providers

    parser = argparse.ArgumentParser(
        # the installed command is named as it was called; from a checkout, the module
        prog="onn-studio" if Path(sys.argv[0]).name == "onn-studio" else "python -m onn_core",
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

    data = commands.add_parser("data", help="datasets")
    data_actions = data.add_subparsers(dest="action", required=True)
    data_list = data_actions.add_parser("list", help="registered datasets and whether they are available here")
    data_list.add_argument("--json", action="store_true")
    data_list.add_argument("--dataset", default=None, help="check one dataset at --data-root")
    data_list.add_argument("--data-root", default=None)
    data_add = data_actions.add_parser("add", help="add your own dataset (class folders, npz, images/ + masks/, zip)")
    data_add.add_argument("name", help="its name: lower-case letters, digits, '-' and '_'")
    data_add.add_argument("path", help="a folder, an .npz or a .zip")
    data_add.add_argument("--task", choices=("classification", "segmentation"), default=None,
                          help="default: what the layout says (images/ + masks/: segmentation)")  # fmt: skip
    data_add.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                          help="store the images at H × W pixels (default: their most common size)")  # fmt: skip
    data_add.add_argument("--channels", type=int, choices=(1, 3), default=None,
                          help="1 grey or 3 RGB (default: 3 when any image is in colour)")  # fmt: skip
    data_add.add_argument("--json", action="store_true")
    data_remove = data_actions.add_parser("remove", help="remove a dataset you added")
    data_remove.add_argument("name")
    data_remove.add_argument("--json", action="store_true")
    data.set_defaults(handler=_cmd_data)

    train = commands.add_parser("train", help="train a hybrid ONN student; prints final test metrics")
    train.add_argument("--design", default=None, metavar="FILE.json", help="design JSON (default: the default design)")
    _add_transfer_options(train)
    train.add_argument("--frontend", choices=("ideal", "physical"), default="ideal")
    train.add_argument("--sensor-noise", action="store_true", help="simulate shot/read noise and the ADC")
    train.add_argument("--normalise-intensity", action="store_true", help="auto-exposure on the feature maps")
    train.add_argument("--phase-pixel", type=float, default=None, help="physical frontend phase pitch, metres")
    train.add_argument("--out", required=True, help="run folder (resumes if it holds this run)")
    _add_training_options(train, epochs=10, lr=2e-3)
    train.set_defaults(handler=_cmd_train)

    teacher = commands.add_parser("train-teacher", help="train an electronic teacher into the teacher store")
    teacher.add_argument("--design", default=None, metavar="FILE.json",
                         help="read the images as this design's student does (its input size and colours; "
                              "default: as the dataset stores them)")  # fmt: skip
    teacher.add_argument("--out", default=None, help="run folder (default: the teacher store)")
    _add_training_options(teacher, epochs=30, lr=2e-3)
    teacher.set_defaults(handler=_cmd_train_teacher)

    jobs = commands.add_parser("jobs", help="background jobs that survive the app: submit, watch, cancel, resume")
    job_actions = jobs.add_subparsers(dest="action", required=True)
    submit = job_actions.add_parser("submit", help="queue a job and start a worker; prints its id")
    submit.add_argument("--kind", required=True, help="the job kind: " + " | ".join(job_kinds()))
    submit.add_argument("--config", required=True, metavar="FILE.json",
                        help="training settings (TrainConfig keys) plus an optional 'design' object")  # fmt: skip
    submit.add_argument("--on-worker-death", choices=("fail", "requeue"), default="fail")
    submit.add_argument("--no-worker", action="store_true", help="queue only; start no worker")
    submit.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run it on the Dask cluster at ADDRESS (tcp://HOST:8786) instead of this machine; the "
                        "job store, progress and artifacts stay here")  # fmt: skip
    job_list = job_actions.add_parser("list", help="jobs, newest first")
    job_list.add_argument("--state", default=None)
    for name, text in (("show", "one job, with its progress events"), ("cancel", "stop a job (artifacts kept)"),
                       ("resume", "re-queue a failed/cancelled job from its last checkpoint")):  # fmt: skip
        action = job_actions.add_parser(name, help=text)
        action.add_argument("id")
    worker = job_actions.add_parser("worker", help="run a worker in the foreground")
    worker.add_argument("--idle-exit", type=float, default=0, help="exit after this many idle seconds (0: never)")
    worker.add_argument("--once", action="store_true", help="run at most one job, then exit")
    for action in job_actions.choices.values():
        action.add_argument("--database", default=None, help="job store (default: $ONN_STUDIO_HOME/jobs.sqlite3)")
        action.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=_cmd_jobs)


    # Stage 3's commands and each extension's (the estimator's sweep and estimate).
    for module in providers():
        register = getattr(module, "register_commands", None)
        if register is not None:
            register(commands)
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
    except (DataFormatError, TrainingError, JobError, SweepError, SearchError, SurrogateUnavailable,
            OpticsInputError, ClusterError) as exc:  # fmt: skip
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (`… --json | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet too
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MemoryError, OSError, RecursionError) as exc:
        print(f"error: {_resource_message(exc)}", file=sys.stderr)
        return 2


def _resource_message(exc: BaseException) -> str:
    """What ran out, in the user's terms (the cause of a fault nobody's input check could see)."""
    if isinstance(exc, MemoryError):
        return ("this machine ran out of memory. Fix: a smaller design or input, fewer images, or a machine with "
                "more memory.")  # fmt: skip
    if isinstance(exc, RecursionError):
        return "an input nests too deeply to be read. Fix: give the file as the studio wrote it."
    if getattr(exc, "errno", None) == errno.ENOSPC:
        if "disk is full" in (exc.strerror or ""):  # run_files.DiskFullError: already in the designer's terms
            return f"{exc.strerror}."
        return f"the disk is full ({exc.filename or 'while writing'}). Fix: free some space and run it again."
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"{exc.strerror or exc}{where}."
