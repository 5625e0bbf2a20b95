"""A finished student run, read back from its folder: config, design, metrics and the trained model.

Everything downstream of training (inverse design, fabrication, compensation, exports, the
Inspect page) starts from here, so a folder that is not a finished run is refused once, with
what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data import SPECS, DatasetSplits, load_for_design
from ..design import Design
from ..errors import DesignError, TrainingError
from ..models import OpticalFrontend
from ..models.zoo import STUDENTS, FrontendOptions, SensorSettings, build_student, default_student
from ..user_input import load_weights, read_json, refusal
from .config import TrainConfig
from .metrics import headline

REQUIRED_FILES = ("config.json", "design.json", "metrics.json", "model.pt")


@dataclass
class FinishedRun:
    """A trained student and where it came from.

    Attributes:
        folder: the run folder. config, design, metrics: as written by the trainer.
        model: the student with its best-validation weights, in eval mode.
    """

    folder: Path
    config: TrainConfig
    design: Design
    metrics: dict[str, Any]
    model: nn.Module
    _data: DatasetSplits | None = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return SPECS[self.config.dataset].task

    @property
    def score_name(self) -> str:
        return headline(self.task)

    @property
    def classes(self) -> int:
        return len(SPECS[self.config.dataset].classes)

    def frontends(self) -> list[OpticalFrontend]:
        """The model's optical frontends in module order (one, or one per segmentation group)."""
        return [module for module in self.model.modules() if isinstance(module, OpticalFrontend)]

    def data(self) -> DatasetSplits:
        """The run's dataset with its own split, as its student reads it (loaded once)."""
        if self._data is None:
            config = self.config
            self._data = load_for_design(
                config.dataset, self.design, root=config.data_root, seed=config.split_seed,
                val_fraction=config.val_fraction, train_limit=config.train_limit,
            )  # fmt: skip
        return self._data


def build_run_model(config: TrainConfig, design: Design) -> nn.Module:
    """The untrained student a config and design describe (the trainer's construction, without data)."""
    spec = SPECS[config.dataset]
    sensor = SensorSettings(bit_depth=design.sensor_bit_depth) if config.sensor_noise else None
    options = FrontendOptions(
        kind=config.frontend, sensor=sensor, normalise_intensity=config.normalise_intensity,
        phase_pixel=config.phase_pixel, seed=config.seed,
    )  # fmt: skip
    name = config.model or default_student(spec.task, design.input_channels)
    return build_student(name, design, len(spec.classes), options)


MAX_RUN_JSON_BYTES = 64 * 2**20  # a run's metrics hold a confusion matrix: large for many classes


def load_history(folder: str | Path) -> list[dict[str, Any]]:
    """A run's ``history.json`` (one dict per epoch), [] when it has none; TrainingError when damaged."""
    path = Path(folder) / "history.json"
    if not path.exists():
        return []
    history = read_json(path, lambda problem, hint: TrainingError(f"{path} {problem}"), max_bytes=MAX_RUN_JSON_BYTES)
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise TrainingError(f"{path} must hold a list of epochs (JSON objects); it is damaged.")
    return history


def load_run(folder: str | Path, *, data: DatasetSplits | None = None) -> FinishedRun:
    """Read a finished student run; raises TrainingError naming what is missing or wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainingError(f"{folder} is not a folder; give the folder of a finished training run.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        hint = " It has a checkpoint: the run has not finished (resume it to finish)." if (
            folder / "checkpoint.pt").exists() else ""  # fmt: skip
        raise TrainingError(
            f"{folder} is not a finished student run: {', '.join(missing)} missing.{hint} "
            "A finished run folder holds config.json, design.json, metrics.json and model.pt."
        )
    def refuse(name: str):
        return refusal(TrainingError, folder / name)

    described = {}
    for name in ("config.json", "design.json", "metrics.json"):
        described[name] = read_json(folder / name, refuse(name), max_bytes=MAX_RUN_JSON_BYTES)
        if not isinstance(described[name], dict):
            raise TrainingError(f"{folder / name} must hold a JSON object, not a {type(described[name]).__name__}.")
    try:
        config = TrainConfig.from_dict(described["config.json"])
        design = Design.from_dict(described["design.json"])
    except (TypeError, ValueError) as exc:  # TrainingError (from refuse) passes through
        raise TrainingError(f"{folder} holds an unreadable run description: {exc}") from None
    metrics = described["metrics.json"]
    if config.role != "student":
        raise TrainingError(f"{folder} is a teacher run; fabrication and export apply to optical students.")
    try:
        # A run names the student it trained (older runs may predate a change of default).
        recorded = metrics.get("model") if not config.model and metrics.get("model") in STUDENTS else None
        model = build_run_model(config.replace(model=recorded) if recorded else config, design)
        weights = load_weights(folder / "model.pt", refuse("model.pt"))
        if not isinstance(weights, dict):
            raise TrainingError(f"{folder / 'model.pt'} holds a {type(weights).__name__}, not a model's weights.")
        model.load_state_dict(weights)
    except TrainingError:
        raise
    except (RuntimeError, DesignError) as exc:
        raise TrainingError(f"{folder}/model.pt does not match the run's config and design: {exc}") from None
    model.eval()
    return FinishedRun(folder, config, design, metrics, model, data)
