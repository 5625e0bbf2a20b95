"""Design search: the Pareto front of accuracy against metasurface area (and kernels, MACs, energy).

A designer's question runs the other way round from an estimate: *the smallest metasurface that
reaches 95 % on my task, under my fab's rules*. The search asks the surrogate (milliseconds a
design, calibrated to trained accuracy) for many designs, chosen by a seeded multi-objective
Optuna sampler (NSGA-II), and keeps the non-dominated ones. The free fields are the layout's
(metasurface height and width, kernel aperture, spacing, sensor distance, taps), within the
ranges the shipped sweeps cover (where the surrogate was fitted) unless bounded otherwise; the
fab's fields (meta-atom pitch, wavelengths, sensor) stay at the default design's or the values
given. Designs that cannot be built are Optuna constraint violations, with the reason kept on
the trial. The study lives in SQLite (``DIR/study.db``), so a search resumes where it stopped
and ``--budget`` is the total number of trials. The ``K`` front designs best spread along the
area are then confirmed by the exact NTK regression, in parallel (the sweeps' loky or Dask).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onn_core.data.registry import SPECS
from onn_core.design import Design
from onn_core.errors import DesignError, SearchError, SurrogateUnavailable
from onn_core.models.energy import DEFAULT_ENERGY_MODEL, EnergyModel, energy_per_image
from onn_core.paths import asset_path

from .surrogate import surrogate_for

SPEC_FOLDER = asset_path("sweeps", "specs")
FREE_FIELDS = ("metasurface_height", "metasurface_width", "kernel_size", "kernel_spacing", "sensor_distance",
               "kernel_taps")  # fmt: skip
OBJECTIVES = {"accuracy": "maximize", "area": "minimize", "kernels": "minimize", "macs": "minimize",
              "energy": "minimize"}
OBJECTIVE_KEYS = {"accuracy": "accuracy", "area": "area_mm2", "kernels": "kernels", "macs": "macs",
                  "energy": "energy_j"}  # the front row's key for each objective
STUDY_NAME = "design-search"
MAX_BUDGET = 100_000
# Without a surrogate (a designer's own data before a sweep) every trial is an exact estimate on a
# smaller regression (seconds a trial), so the budget is bounded.
MAX_EXACT_BUDGET = 200
EXACT_TRIAL_SETTINGS = {"train_size": 1000, "val_size": 300, "test_size": 500, "inits": 1}


CHOICE_FIELDS = ("kernel_taps", "sensor_bit_depth")  # whole-number fields: searched among the swept values


@dataclass(frozen=True)
class SearchSpace:
    """What the search varies: ``bounds`` (field → (low, high), SI) and ``choices`` (whole-number
    field → allowed values: taps, and the bit depth when bounded), and what it holds: ``fixed``
    (field → value, SI), on top of the dataset's input shape."""

    bounds: dict[str, tuple[float, float]]
    choices: dict[str, tuple[int, ...]]
    fixed: dict[str, Any] = field(default_factory=dict)
    kernel_range: tuple[int, int] = (1, 64)  # the shipped sweeps' kernel counts

    @property
    def taps(self) -> tuple[int, ...]:
        return self.choices.get("kernel_taps", ())


def swept_spec(dataset: str) -> dict[str, Any]:
    """The shipped sweeps for ``dataset``'s task merged (where the surrogate is fitted): each
    range spans every sweep's, the kernel filter likewise, the held fields of the first."""
    prefix = "shapes-seg" if SPECS[dataset].task == "segmentation" else "classification"
    specs = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(SPEC_FOLDER.glob(f"{prefix}*.json"))]
    ranges: dict[str, Any] = {}
    for spec in specs:
        for name, values in spec["random"]["ranges"].items():
            if name in CHOICE_FIELDS:
                ranges[name] = sorted(set(ranges.get(name, [])) | set(values))
            else:
                low, high = ranges.get(name, (math.inf, -math.inf))
                ranges[name] = (min(low, values[0]), max(high, values[1]))
    filters = {"min_kernels": min(spec["filters"]["min_kernels"] for spec in specs),
               "max_kernels": max(spec["filters"]["max_kernels"] for spec in specs)}  # fmt: skip
    return {"random": {"ranges": ranges}, "filters": filters, "base": specs[0].get("base", {})}


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SearchError(f"{where}: {text!r} is not a number (values are SI: metres, e.g. 2.4e-3).") from None
    if not math.isfinite(value):
        raise SearchError(f"{where}: {text!r} is not a finite number.")
    return value


def _pairs(text: str | None, option: str) -> list[tuple[str, str]]:
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SearchError(f"{option}: {item!r} is not FIELD=VALUE.")
        pairs.append((name.strip(), value.strip()))
    return pairs


def search_space(dataset: str, fixed: str | None = None, bounds: str | None = None) -> SearchSpace:
    """The space for ``dataset`` from ``--fixed FIELD=VALUE,…`` and ``--bounds FIELD=LOW:HIGH,…``."""
    if dataset not in SPECS:
        raise SearchError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}.")
    fields = set(Design.__dataclass_fields__)
    swept = swept_spec(dataset)
    ranges = swept["random"]["ranges"]
    kernel_range = (int(swept["filters"]["min_kernels"]), int(swept["filters"]["max_kernels"]))
    space = {name: tuple(ranges[name]) for name in FREE_FIELDS if name not in CHOICE_FIELDS and name in ranges}
    choices = {"kernel_taps": tuple(ranges["kernel_taps"])} if "kernel_taps" in ranges else {}
    # What the sweep held (segmentation: 3 taps, the student's), unless the designer holds it otherwise.
    held: dict[str, Any] = {k: v for k, v in swept.get("base", {}).items() if k not in ("input_height", "input_width")}
    given = {name for name, _ in _pairs(fixed, "--fixed")}
    for name, value in _pairs(fixed, "--fixed"):
        if name not in fields:
            raise SearchError(f"--fixed: {name!r} is not a design field; choose from {', '.join(sorted(fields))}.")
        if name == "wavelengths":
            held[name] = [_number(v, f"--fixed {name}") for v in value.split(";")]
        elif name in ("kernel_taps", "sensor_bit_depth", "sensor_pixels_per_tap", "input_height", "input_width",
                      "input_channels"):  # fmt: skip
            held[name] = int(_number(value, f"--fixed {name}"))
        elif name == "signed_kernels":
            held[name] = value.lower() in ("1", "true", "yes")
        else:
            held[name] = _number(value, f"--fixed {name}")
        space.pop(name, None)
        choices.pop(name, None)
    boundable = (*FREE_FIELDS, "sensor_bit_depth")
    for name, value in _pairs(bounds, "--bounds"):
        if name not in boundable:
            raise SearchError(f"--bounds: {name!r} is not a free field; bound one of {', '.join(boundable)}.")
        if name in held and name not in given:
            raise SearchError(f"--bounds: {name} is fixed at {held[name]} for this task's student.")
        if name in held:
            raise SearchError(f"--bounds: {name} is also --fixed; give one or the other.")
        low_text, sep, high_text = value.partition(":")
        if not sep:
            raise SearchError(f"--bounds: {name}={value!r} is not LOW:HIGH.")
        low, high = _number(low_text, f"--bounds {name}"), _number(high_text, f"--bounds {name}")
        if not 0 < low <= high:
            raise SearchError(f"--bounds: {name} needs 0 < LOW ≤ HIGH; got {low:g}:{high:g}.")
        if name == "kernel_taps":
            allowed = tuple(t for t in range(math.ceil(low), math.floor(high) + 1) if t % 2 == 1)
            if not allowed:
                raise SearchError(f"--bounds: kernel_taps {low:g}:{high:g} holds no odd tap count (3, 5, 7 …).")
            choices[name] = allowed
        elif name == "sensor_bit_depth":  # the bit depths the sweeps measured, within the bounds
            allowed = tuple(b for b in ranges.get(name, ()) if low <= b <= high)
            if not allowed:
                raise SearchError(f"--bounds: no swept bit depth ({', '.join(map(str, ranges.get(name, ())))}) lies "
                                  f"in {low:g}:{high:g}.")  # fmt: skip
            choices[name] = allowed
        else:
            space[name] = (low, high)
    spec = SPECS[dataset]
    held = {"input_height": spec.image_size[0], "input_width": spec.image_size[1], **held}
    return SearchSpace(bounds=space, choices=choices, fixed=held, kernel_range=kernel_range)


@functools.lru_cache(maxsize=256)
def _student_cost(kernels: int, taps: int, input_shape: tuple[int, int, int], task: str, classes: int,
                  signed: bool) -> dict[str, Any]:  # fmt: skip
    """The student's MACs and sensor values per image (they depend on the kernel count and taps)."""
    from onn_core.models import build_student, count_cost, default_student

    design = Design(kernel_taps=taps, signed_kernels=signed, input_channels=input_shape[0],
                    input_height=input_shape[1], input_width=input_shape[2])  # fmt: skip
    model = build_student(default_student(task, input_shape[0]), design, classes, kernels=kernels)
    return count_cost(model, input_shape)


def describe(design: Design, dataset: str, answer: Any, energy_model: EnergyModel = DEFAULT_ENERGY_MODEL
             ) -> dict[str, Any]:  # fmt: skip
    """One front row: the design, what the search measured for it (energy per image in joules,
    by ``energy_model``), and the codes of its design warnings."""
    spec = SPECS[dataset]
    cost = _student_cost(design.kernel_count, design.kernel_taps, design.input_shape, spec.task, len(spec.classes),
                         design.signed_kernels)  # fmt: skip
    return {
        "design": design.to_dict(), "design_id": design.design_id, "accuracy": answer.accuracy,
        "low": answer.low, "high": answer.high, "extrapolation": answer.extrapolation,
        "area_mm2": design.metasurface_height * design.metasurface_width * 1e6, "kernels": design.kernel_count,
        "macs": int(cost["digital_macs"] + cost["optical_macs"]),
        "energy_j": float(f"{energy_per_image(cost, design, energy_model)['total_j']:.4g}"),
        "warnings": [w.code for w in design.warnings if w.severity == "warning"],
    }  # fmt: skip


def _objective_values(row: dict[str, Any], objectives: list[str]) -> list[float]:
    return [float(row[OBJECTIVE_KEYS[name]]) for name in objectives]


def _worst(objectives: list[str]) -> list[float]:
    return [0.0 if OBJECTIVES[name] == "maximize" else 1e12 for name in objectives]


def _spread(front: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` front rows evenly spaced along the area (the front is sorted by area)."""
    if count >= len(front):
        return list(front)
    if count == 1:
        return [front[-1]]
    picks = sorted({round(i * (len(front) - 1) / (count - 1)) for i in range(count)})
    return [front[i] for i in picks]


def check_request(*, objectives: list[str], budget: Any, seed: Any, exact_top: Any, exact: Any,
                  dataset: str) -> None:  # fmt: skip
    """Refuse a search that cannot run as asked, before anything is built (also at job submit)."""
    if not isinstance(objectives, list) or not all(isinstance(name, str) for name in objectives):
        raise SearchError(f"--objectives: give a list of names; got {objectives!r}.")
    unknown = [name for name in objectives if name not in OBJECTIVES]
    if unknown or len(set(objectives)) != len(objectives) or len(objectives) < 2:
        raise SearchError(f"--objectives: give two or more of {', '.join(OBJECTIVES)} (no repeats); "
                          f"got {','.join(objectives)}.")  # fmt: skip
    if "accuracy" not in objectives:
        raise SearchError("--objectives must include accuracy: it is what the front trades against cost.")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise SearchError(f"--budget: give a whole number of trials from 1 to {MAX_BUDGET}; got {budget!r}.")
    if isinstance(exact_top, bool) or not isinstance(exact_top, int) or not 0 <= exact_top <= 32:
        raise SearchError(f"--exact-top: give 0 … 32 designs to confirm exactly; got {exact_top!r}.")
    if exact and budget > MAX_EXACT_BUDGET:
        raise SearchError(f"--budget: an exact search runs one NTK regression a trial; give at most "
                          f"{MAX_EXACT_BUDGET} trials, or sweep the dataset first (python -m onn_core sweep "
                          f"--dataset {dataset}) and search its surrogate.")  # fmt: skip
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise SearchError(f"--seed: give a whole number from 0 to 2³²−1; got {seed!r}.")
    if not isinstance(exact, bool):
        raise SearchError(f"exact must be true or false; got {exact!r}.")


def run_search(
    dataset: str,
    out: str | Path,
    *,
    objectives: list[str] | None = None,
    budget: int = 300,
    seed: int = 0,
    fixed: str | None = None,
    bounds: str | None = None,
    exact_top: int = 0,
    backend: str = "loky",
    scheduler: str | None = None,
    jobs: int | None = None,
    exact_settings: dict[str, Any] | None = None,
    exact: bool = False,
    energy_model: EnergyModel = DEFAULT_ENERGY_MODEL,
    on_trial: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Search (or resume searching) ``dataset``'s designs; returns {"front", "trials", "seconds", "study"}.

    ``exact``: every trial is an exact NTK-regression estimate (``exact_settings``, default
    ``EXACT_TRIAL_SETTINGS``) instead of the surrogate: for data no sweep covers; budget ≤
    ``MAX_EXACT_BUDGET``. ``energy_model``: the costs behind the ``energy`` objective and every
    row's ``energy_j`` (see :mod:`onn_core.models.energy`)."""
    import optuna

    objectives = objectives or ["accuracy", "area"]
    check_request(objectives=objectives, budget=budget, seed=seed, exact_top=exact_top, exact=exact,
                  dataset=dataset)  # fmt: skip
    space = search_space(dataset, fixed, bounds)
    probe = _probe(dataset, space)
    if exact:
        surrogate = ExactTrials(dataset, exact_settings or EXACT_TRIAL_SETTINGS)
    else:
        try:
            surrogate = surrogate_for(dataset, probe)
        except SurrogateUnavailable as exc:
            raise SearchError(f"the search asks the surrogate, and there is none for {dataset}: {exc} Or "
                              f"search with an exact estimate a trial: --exact --budget ≤ {MAX_EXACT_BUDGET}."
                              ) from None  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(seed=seed)
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, load_if_exists=True, sampler=sampler,
                                directions=[OBJECTIVES[name] for name in objectives])  # fmt: skip
    recorded = study.user_attrs.get("search")
    asked = {"dataset": dataset, "objectives": objectives, "fixed": space.fixed, "bounds": space.bounds,
             "choices": {name: list(values) for name, values in space.choices.items()}}  # fmt: skip
    if "energy" in objectives:  # another energy model is another question
        asked["energy_model"] = {"mac_energy": energy_model.mac_energy,
                                 "conversion_step_energy": energy_model.conversion_step_energy}  # fmt: skip
    asked = json.loads(json.dumps(asked))  # tuples → lists, as stored
    if recorded is None:
        study.set_user_attr("search", asked)
    elif recorded != asked:
        raise SearchError(f"{out} holds a search of another question ({recorded['dataset']}, "
                          f"{','.join(recorded['objectives'])}, other bounds, fixed fields or energy model); "
                          "choose another --out to start a new one.")  # fmt: skip

    def objective(trial: optuna.Trial) -> list[float]:
        # Four significant figures: what a layout drawing states (0.3630 mm, 32.25 µm), and a design
        # that survives the sidebar's unit conversions.
        values = {name: min(high, max(low, float(f"{trial.suggest_float(name, low, high, log=True):.4g}")))
                  for name, (low, high) in space.bounds.items()}  # fmt: skip
        for name, allowed in space.choices.items():
            values[name] = trial.suggest_categorical(name, list(allowed))
        try:
            design = Design.from_dict({**space.fixed, **values})
        except DesignError as exc:
            return infeasible(trial, str(exc))
        low_k, high_k = space.kernel_range
        if not low_k <= design.kernel_count <= high_k:  # outside what the surrogate was fitted on
            return infeasible(trial, f"{design.kernel_count} kernels, outside the swept {low_k}–{high_k}")
        row = describe(design, dataset, surrogate.predict(design), energy_model)
        trial.set_constraint("cannot_build", 0.0)
        trial.set_user_attr("feasible", True)
        trial.set_user_attr("row", row)
        return _objective_values(row, objectives)

    def infeasible(trial: optuna.Trial, reason: str) -> list[float]:
        trial.set_constraint("cannot_build", 1.0)  # Optuna's constraint: the sampler steers away from it
        trial.set_user_attr("cannot_build", reason)
        return _worst(objectives)

    started = time.perf_counter()
    done = len(study.trials)
    for number in range(done, budget):
        study.optimize(objective, n_trials=1)
        if on_trial:
            on_trial(number + 1, budget)
    front = pareto_front(study)
    if exact_top and front:
        confirm_exactly(dataset, _spread(front, exact_top), backend=backend, scheduler=scheduler, jobs=jobs,
                        settings=exact_settings)  # fmt: skip
    feasible = sum(1 for t in study.trials if t.user_attrs.get("feasible"))
    return {"front": front, "trials": len(study.trials), "feasible_trials": feasible,
            "energy_model": {"mac_energy_j": energy_model.mac_energy,
                             "conversion_step_energy_j": energy_model.conversion_step_energy},
            "seconds": round(time.perf_counter() - started, 2), "study": str(out / "study.db"),
            "objectives": objectives, "surrogate": {"kind": surrogate.kind, "n_points": surrogate.n_points}}


@dataclass
class _ExactAnswer:
    accuracy: float
    low: float
    high: float
    extrapolation: bool = False


class ExactTrials:
    """Answers a trial with the exact NTK-regression estimate (calibrated), as the surrogate would."""

    kind = "exact NTK regression"

    def __init__(self, dataset: str, settings: dict[str, Any]) -> None:
        from .ntk_regression import EstimateSettings

        self.dataset, self.n_points = dataset, 0
        self.settings = EstimateSettings(**settings)
        self._data: dict[tuple[int, int, int], Any] = {}

    def predict(self, design: Design) -> _ExactAnswer:
        from onn_core.data.registry import load_for_design

        from .ntk_regression import estimate

        if design.input_shape not in self._data:  # the data once per input shape, not once a trial
            self._data[design.input_shape] = load_for_design(self.dataset, design, seed=self.settings.split_seed)
        result = estimate(design, self.dataset, self.settings, data=self._data[design.input_shape], threads=1)
        self.n_points += 1
        return _ExactAnswer(result.accuracy, result.low, result.high)


def _probe(dataset: str, space: SearchSpace) -> Design:
    """A buildable design of the space (the surrogate is chosen for its input and colours)."""
    middle = {name: math.sqrt(low * high) for name, (low, high) in space.bounds.items()}
    for taps in space.taps or (None,):
        values = {**space.fixed, **middle, **({"kernel_taps": taps} if taps else {})}
        try:
            return Design.from_dict(values)
        except DesignError:
            continue
    try:
        return Design.from_dict(space.fixed)
    except DesignError as exc:
        raise SearchError(f"the fixed fields do not make a design: {exc}") from None


def load_front(out: str | Path) -> list[dict[str, Any]]:
    """The front of the study in ``out`` as it stands (empty when none is there yet, or none feasible)."""
    import optuna

    path = Path(out) / "study.db"
    if not path.is_file():
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{path}")
        return pareto_front(study)
    except (KeyError, SearchError):
        return []


def pareto_front(study: Any) -> list[dict[str, Any]]:
    """The study's feasible non-dominated designs, one row per design, sorted by area."""
    rows, seen = [], set()
    for trial in study.best_trials:
        row = trial.user_attrs.get("row")
        if row is None or not trial.user_attrs.get("feasible") or row["design_id"] in seen:
            continue
        seen.add(row["design_id"])
        rows.append(row)
    if not rows:
        reasons = [t.user_attrs.get("cannot_build") for t in study.trials if t.user_attrs.get("cannot_build")]
        why = f" (e.g. {reasons[0]})" if reasons else ""
        raise SearchError(f"no design within these bounds and fixed fields can be built{why}: widen the bounds or "
                          "change the fixed fields.")  # fmt: skip
    return sorted(rows, key=lambda r: (r["area_mm2"], -r["accuracy"]))


def confirm_exactly(dataset: str, rows: list[dict[str, Any]], *, backend: str = "loky", scheduler: str | None = None,
                    jobs: int | None = None, settings: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Add ``exact_accuracy`` (and its interval) to ``rows`` from the exact NTK regression, in parallel
    (``settings``: the estimate's, as in a sweep spec; default the estimator's own)."""
    from .sweep import _parallel_results, expand_spec

    points = []
    for row in rows:
        base = {k: v for k, v in row["design"].items() if k not in ("schema", "units")}  # the fields alone
        spec = {"datasets": [dataset], "base": base, "grid": {"kernel_taps": [base["kernel_taps"]]},
                "filters": {"min_kernels": 1, "max_kernels": 4096}, "settings": settings or {}}  # fmt: skip
        points += expand_spec(spec)
    by_design = {row["design_id"]: row for row in rows}
    jobs = jobs or max(1, min(len(points), (os.cpu_count() or 2) - 1))
    for result in _parallel_results(points, backend, jobs, scheduler):
        row = by_design.get(Design.from_dict(result["design"]).design_id)
        if row is None:
            continue
        if "result" in result:
            row.update(exact_accuracy=result["result"]["accuracy"], exact_low=result["result"]["low"],
                       exact_high=result["result"]["high"], exact_seconds=result["seconds"])  # fmt: skip
        else:
            row["exact_error"] = result["error"]
