"""Stage-3 work as background jobs: ``inverse-design``, ``fabricate`` (yield), ``compensate``, ``export``.

Each takes ``run`` (a finished student run folder) plus its own settings, reports progress to
the job store like training does, and writes its results into the job's artifact folder
(inverse design also saves the metasurface into the run folder, where exports look for it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DesignError, TrainingError
from ..jobs.kinds import JobKind
from ..run_files import atomic_write_json
from ..training.progress import counting
from ..training.run import REQUIRED_FILES, load_run
from .cli import register as register_commands  # noqa: F401 (the CLI reads it from here)
from .compensate import CompensationSettings, compensate, compensate_captured
from .error_model import ErrorModel
from .evaluate import check_evaluation, error_curve, load_captured_maps, monte_carlo
from .export import FORMATS, export, fabricated_optics
from .inverse_design import InverseDesignSettings, inverse_design

_KEYS = {
    "inverse-design": {"run", "settings"},
    "fabricate": {"run", "error_model", "draws", "images", "factors", "measured_psfs", "use_metasurface"},
    "compensate": {"run", "error_model", "settings", "measured_psfs", "use_metasurface", "captured_maps",
                   "captured_test_maps"},
    "export": {"run", "formats", "out"},
}




def _existing_path(name: str, value: Any) -> None:
    """A bench file named in a config: text naming something that exists (or left out)."""
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise DesignError(name, value, "must be the path of a file or folder (text), or left out.")
    if not Path(value).exists():
        raise DesignError(name, value, "no such file or folder.",
                          "upload it again (the Fabricate page) or fix the path.")  # fmt: skip


def validate(kind: str, config: dict[str, Any]) -> None:
    """Refuse a config that cannot work, before it is queued (raises ValueError subclasses)."""
    unknown = sorted(set(config) - _KEYS[kind])
    if unknown:
        raise DesignError("job", kind, f"takes {', '.join(sorted(_KEYS[kind]))}; not {', '.join(unknown)}.")
    folder = Path(str(config.get("run", "")))
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not config.get("run") or missing:
        raise TrainingError(f"{folder} is not a finished student run ({', '.join(missing) or 'no folder given'}).")
    if config.get("error_model") is not None:
        if not isinstance(config["error_model"], dict):
            raise DesignError("error_model", config["error_model"], "must be an object of error terms (SI units).")
        ErrorModel.from_dict(config["error_model"])
    for name in ("measured_psfs", "captured_maps", "captured_test_maps"):
        _existing_path(name, config.get(name))
    if not isinstance(config.get("use_metasurface", True), bool):
        raise DesignError("use_metasurface", config["use_metasurface"], "must be true or false.")
    if kind == "export" and config.get("out") is not None and (not isinstance(config["out"], str) or not config["out"]):
        raise DesignError("out", config["out"], "must be a folder path (text), or left out for the job's folder.")
    if kind == "fabricate":
        check_evaluation(draws=config.get("draws", 20), images=config.get("images"), factors=config.get("factors"))
    if kind == "compensate":

        CompensationSettings(**(config.get("settings") or {}))
        if bool(config.get("captured_maps")) != bool(config.get("captured_test_maps")):
            raise DesignError("captured maps", "one file", "compensating from captured maps needs maps of training "
                              "images (captured_maps) and of test images (captured_test_maps).")  # fmt: skip
    if kind == "inverse-design":

        InverseDesignSettings(**(config.get("settings") or {}))
    if kind == "export":

        formats = config.get("formats") or []
        unknown = [name for name in formats if name not in FORMATS]
        if not formats or unknown:
            raise DesignError("formats", formats, f"choose one or more of {', '.join(FORMATS)}.")


def _optics(config: dict[str, Any], run):
    return fabricated_optics(run, config.get("measured_psfs"), use_metasurface=config.get("use_metasurface", True))


def run_inverse_design(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:

    run = load_run(config["run"])
    settings = InverseDesignSettings(**(config.get("settings") or {}))
    metasurface = inverse_design(run.model, run.design, settings, progress=counting(progress, "inverse-design"))
    metasurface.save(run.folder)
    summary = {**metasurface.summary(), "fidelity": metasurface.fidelity(), "run": str(run.folder)}
    atomic_write_json(folder / "inverse_design.json", summary)
    return summary


def run_fabricate(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:

    run = load_run(config["run"])
    errors = ErrorModel.from_dict(config.get("error_model") or {})
    metasurface, measured = _optics(config, run)
    draws, images = config.get("draws", 20), config.get("images")
    result = monte_carlo(run, errors, draws, metasurface=metasurface, measured=measured, images=images,
                         progress=counting(progress, "fabricate"))  # fmt: skip
    answer: dict[str, Any] = {"yield": result.to_dict()}
    if config.get("factors"):
        points = error_curve(run, errors, config["factors"], max(1, draws // 4), metasurface=metasurface,
                             images=images, progress=counting(progress, "error curve"))  # fmt: skip
        answer["curve"] = [vars(point) for point in points]
    atomic_write_json(folder / "fabricate.json", answer)
    return {"metric": result.metric, "mean": result.mean, "std": result.std, "trained": result.trained}


def run_compensate(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:

    run = load_run(config["run"])
    settings = CompensationSettings(**(config.get("settings") or {}))
    if config.get("captured_maps"):  # real captures: nothing simulated, the error model does not apply
        train_maps = load_captured_maps(run, config["captured_maps"])
        test_maps = load_captured_maps(run, config["captured_test_maps"])
        result = compensate_captured(run, train_maps, test_maps, settings, out_dir=folder, progress=progress)
        return {key: value for key, value in result.to_dict().items() if key != "history"}
    errors = ErrorModel.from_dict(config.get("error_model") or {})
    metasurface, measured = _optics(config, run)
    result = compensate(run, settings, errors=errors, metasurface=metasurface, measured=measured, out_dir=folder,
                        progress=progress)  # fmt: skip
    return {key: value for key, value in result.to_dict().items() if key != "history"}


def run_export(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:

    run = load_run(config["run"])
    out = Path(config.get("out") or folder)
    report = counting(progress, "export")
    report(0, 1)
    written = export(run, list(config["formats"]), out)
    report(1, 1)
    return {"files": written}


def compensation_inputs(config: dict[str, Any]) -> dict[str, str]:
    """What a ``compensate`` job reads on the studio's host (sent with it to a Dask worker): the run,
    its bench files, and the teacher an NTKD/KD compensation learns from (the one named in its
    settings, else the run's own while its folder exists)."""
    inputs = {name: config[name] for name in ("run", "measured_psfs", "captured_maps", "captured_test_maps")
              if config.get(name)}  # fmt: skip
    settings = config.get("settings") or {}
    teacher = settings.get("teacher") or load_run(config["run"]).config.teacher
    if teacher and Path(teacher).is_dir():
        inputs["settings.teacher"] = str(teacher)
    return inputs


def _validator(kind: str) -> Callable[[dict[str, Any]], None]:
    return lambda config: validate(kind, config)


JOB_KINDS = (
    JobKind("inverse-design", run_inverse_design, _validator("inverse-design"),
            "design the metasurface that realises a run's kernels", ", ".join(sorted(_KEYS["inverse-design"]))),
    JobKind("fabricate", run_fabricate, _validator("fabricate"), "the yield of a run under fabrication errors",
            ", ".join(sorted(_KEYS["fabricate"]))),
    JobKind("compensate", run_compensate, _validator("compensate"),
            "fine-tune a run's digital backend to fabricated optics", ", ".join(sorted(_KEYS["compensate"])),
            remote_inputs=compensation_inputs),
    JobKind("export", run_export, _validator("export"), "write a run's fab and collaborator files",
            ", ".join(sorted(_KEYS["export"]))),
)  # fmt: skip
