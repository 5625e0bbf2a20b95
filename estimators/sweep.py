"""Sweeps: the estimator over a grid or a random sample of designs, on joblib (loky) or Dask.

A sweep spec (JSON) names the datasets, a base design, and either a ``grid`` (every combination
of the listed values) or a ``random`` sample (``samples`` designs with each field drawn from a
``[low, high]`` range — log-uniform for lengths — or from a list), plus estimator settings and
seeds. Lengths are SI metres, as in the design JSON::

    {"datasets": ["mnist"], "base": {"kernel_taps": 7},
     "grid": {"metasurface_width": [0.002, 0.004], "kernel_taps": [3, 5, 7]},
     "settings": {"train_size": 1500, "inits": 2}, "seeds": [0],
     "filters": {"min_kernels": 1, "max_kernels": 64}}

Each point is one (design, dataset, seed). Results are appended to a JSON-lines file as they
arrive, one line per point with full provenance (design JSON, dataset, estimator version,
seed, settings, duration, host), so an interrupted sweep resumes without redoing finished
points, and a design that cannot be built is recorded with the reason instead of stopping the
sweep. The same seeds give the same numbers on either backend: every point runs single-threaded
and seeds its own initialisations and subsets.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from onn_core.data.registry import SPECS, load_dataset
from onn_core.design import Design
from onn_core.errors import DesignError, SweepError

from .ntk_regression import EstimateSettings, estimate, estimator_version

BACKENDS = ("loky", "dask")
LENGTH_FIELDS = {
    "metasurface_height", "metasurface_width", "kernel_size", "kernel_spacing", "meta_atom_pitch",
    "sensor_distance", "sensor_pixel_pitch",
}  # fmt: skip


def _design_fields() -> set[str]:
    return {f.name for f in fields(Design) if f.init}


def _settings_from(spec: dict[str, Any]) -> EstimateSettings:
    given = dict(spec.get("settings", {}))
    known = {f.name for f in fields(EstimateSettings)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise SweepError(
            f"settings: unknown estimator setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    if "ridge_grid" in given:
        given["ridge_grid"] = tuple(given["ridge_grid"])
    try:
        return EstimateSettings(**given)
    except (DesignError, TypeError) as exc:
        raise SweepError(f"settings: {exc}") from None


def _check_fields(names, where: str) -> None:
    unknown = sorted(set(names) - _design_fields())
    if unknown:
        raise SweepError(
            f"{where}: {', '.join(unknown)} is not a design field; known: {', '.join(sorted(_design_fields()))}."
        )


def _draw(field_name: str, choice: Any, rng: np.random.Generator) -> Any:
    if (
        isinstance(choice, list)
        and len(choice) == 2
        and all(isinstance(v, int | float) for v in choice)
        and (field_name in LENGTH_FIELDS or isinstance(choice[0], float))
    ):
        low, high = float(choice[0]), float(choice[1])
        if not 0 < low <= high:
            raise SweepError(f"random.ranges.{field_name}: needs 0 < low ≤ high, got {choice}.")
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))  # log-uniform: lengths span decades
    if isinstance(choice, list) and choice:
        return choice[int(rng.integers(len(choice)))]
    raise SweepError(f"random.ranges.{field_name}: give [low, high] (numbers) or a non-empty list of values.")


def expand_spec(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of a sweep: {"design": dict, "dataset", "seed", "settings": dict, "point_id"}.

    Designs that cannot be built are kept (with their error) so the results say why; designs
    outside ``filters`` (kernel counts) are dropped.
    """
    if not isinstance(spec, dict):
        raise SweepError("the sweep spec must be a JSON object.")
    datasets = spec.get("datasets") or ([spec["dataset"]] if "dataset" in spec else [])
    if not datasets:
        raise SweepError('name the data: "datasets": ["mnist", ...].')
    for name in datasets:
        if name not in SPECS:
            raise SweepError(f"datasets: unknown dataset {name!r}; choose from {', '.join(SPECS)}.")
    base = dict(spec.get("base", {}))
    _check_fields(base, "base")
    settings = _settings_from(spec)
    seeds = spec.get("seeds", [settings.seed])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise SweepError(f"seeds: give a list of whole numbers ≥ 0, got {seeds!r}.")
    filters = spec.get("filters", {})
    low_k, high_k = int(filters.get("min_kernels", 1)), int(filters.get("max_kernels", 64))
    if ("grid" in spec) == ("random" in spec):
        raise SweepError('give exactly one of "grid" (every combination) or "random" (a sample).')
    variants: list[dict[str, Any]] = []
    if "grid" in spec:
        grid = spec["grid"]
        if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise SweepError("grid: map design fields to non-empty lists of values.")
        _check_fields(grid, "grid")
        variants = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    else:
        sample = spec["random"]
        ranges = sample.get("ranges", {}) if isinstance(sample, dict) else None
        count = sample.get("samples") if isinstance(sample, dict) else None
        if not ranges or not isinstance(count, int) or count < 1:
            raise SweepError(
                'random: give "samples" (a whole number ≥ 1) and "ranges" {field: [low, high] | [choices]}.'
            )
        _check_fields(ranges, "random.ranges")
        rng = np.random.default_rng(int(sample.get("seed", 0)))
        attempts = 0
        while len(variants) < count and attempts < 200 * count:
            attempts += 1
            variant = {name: _draw(name, choice, rng) for name, choice in ranges.items()}
            try:
                kernels = Design.from_dict({**base, **variant}).kernel_count
            except DesignError:
                continue  # resample: random draws that cannot be built are not interesting points
            if low_k <= kernels <= high_k:
                variants.append(variant)
    points = []
    settings_dict = {**asdict(settings), "ridge_grid": list(settings.ridge_grid)}
    for variant, dataset, seed in itertools.product(variants, datasets, seeds):
        design_dict = {**base, **variant}
        try:
            design = Design.from_dict(design_dict)
            if not low_k <= design.kernel_count <= high_k:
                continue
            design_dict, design_id = design.to_dict(), design.design_id
        except DesignError as exc:
            design_id = "invalid:" + str(exc)
        point = {"design": design_dict, "dataset": dataset, "seed": seed, "settings": {**settings_dict, "seed": seed}}
        identity = json.dumps([design_id, dataset, seed, point["settings"], estimator_version(dataset)], sort_keys=True)
        point["point_id"] = hashlib.sha256(identity.encode()).hexdigest()[:16]
        points.append(point)
    return points


@functools.lru_cache(maxsize=8)
def _dataset(name: str, data_root: str | None, split_seed: int, shape: tuple[int, int, int]):
    """The data a design of input ``shape`` (channels, height, width) takes; cached across points."""
    channels, height, width = shape
    return load_dataset(name, root=data_root, seed=split_seed, image_size=(height, width), channels=channels)


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Estimate one point (in a worker process); never raises: failures become error rows,
    marked ``retryable`` unless the design itself is at fault."""
    import torch

    torch.set_num_threads(1)  # one core per point: workers share the machine, results are reproducible
    started = time.perf_counter()
    row = {
        "point_id": point["point_id"], "dataset": point["dataset"], "seed": point["seed"],
        "design": point["design"], "settings": point["settings"],
        "estimator_version": estimator_version(point["dataset"]),
        "host": platform.node(), "pid": os.getpid(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    try:
        design = Design.from_dict(point["design"])
        given = {k: (tuple(v) if k == "ridge_grid" else v) for k, v in point["settings"].items()}
        settings = EstimateSettings(**given)
        data = _dataset(point["dataset"], settings.data_root, settings.split_seed, design.input_shape)
        result = estimate(design, point["dataset"], settings, data=data)
        row["result"] = {k: v for k, v in result.to_dict().items() if k != "settings"}
        row["design_id"] = design.design_id
    except DesignError as exc:  # the design itself: final, recorded with the reason
        row["error"] = str(exc)
        row["retryable"] = False
    except Exception as exc:  # data not there, out of memory…: recorded, and tried again on resume
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["retryable"] = True
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def finished(row: dict[str, Any]) -> bool:
    """A point that a resumed sweep does not run again: a result, or a design that cannot be built."""
    return "result" in row or row.get("retryable") is False


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results file; a torn last line (a crash mid-write) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise SweepError(f"{path}: line {number} is not valid JSON; the file is not a sweep's results.") from None
    return rows


def _drop_torn_tail(handle) -> None:
    """Cut a line left half-written by a crash, so the next row starts on a line of its own."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return
    handle.seek(max(0, size - 1))
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    content = handle.read()
    handle.truncate(content.rfind(b"\n") + 1)
    handle.seek(0, os.SEEK_END)


def _parallel_results(points, backend: str, jobs: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    from joblib import Parallel, delayed, parallel_config

    tasks = (delayed(run_point)(point) for point in points)
    if backend == "loky":
        yield from Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(tasks)
        return
    from dask.distributed import Client, LocalCluster

    from onn_core.cluster import checked_client, remote_failure

    cluster = None
    if scheduler:  # every node is checked first: a node without the studio is named now, not a silent hang
        client = checked_client(scheduler)
    else:  # no address: a cluster of local processes, one single-threaded worker per job
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        # A point whose worker died is re-run by the scheduler on another worker; points already
        # written stay (the sweep resumes by point id).
        with parallel_config(backend="dask", n_jobs=-1 if scheduler else jobs, client=client):
            try:
                yield from Parallel(return_as="generator_unordered")(tasks)
            except SweepError:
                raise
            except Exception as exc:  # a point's own failures are rows; this is the cluster's or the code's
                raise SweepError(str(remote_failure(exc, "a sweep point")) + " Points finished so far are kept; "
                                 "run the same command again to resume.") from exc  # fmt: skip
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(
    spec: dict[str, Any],
    out: str | Path,
    *,
    backend: str = "loky",
    jobs: int | None = None,
    scheduler: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the points of ``spec`` not yet in ``out`` and append each result as it arrives."""
    if backend not in BACKENDS:
        raise SweepError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    if scheduler and backend != "dask":
        raise SweepError("--scheduler is the address of a Dask scheduler; use it with --backend dask.")
    jobs = jobs or max(1, (os.cpu_count() or 2) - 1)
    if jobs < 1:
        raise SweepError(f"jobs must be ≥ 1; got {jobs}.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    points = expand_spec(spec)
    started = time.perf_counter()
    written = 0
    with out.open("a+b") as handle:
        try:  # one sweep per results file at a time: a second one would redo and interleave points
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"{out} is being written by another sweep; wait for it or choose another --out.") from None
        _drop_torn_tail(handle)
        done = {row["point_id"] for row in read_results(out) if finished(row)}
        todo = [p for p in points if p["point_id"] not in done]
        for row in _parallel_results(todo, backend, jobs, scheduler) if todo else ():
            handle.write((json.dumps(row, sort_keys=True) + "\n").encode("utf-8"))
            handle.flush()  # each finished point survives a crash of the sweep
            written += 1
            if on_row:
                on_row(row)
    return {
        "points": len(points), "already_done": len(points) - len(todo), "ran": written,
        "errors": None if not written else sum(1 for row in read_results(out)[-written:] if "error" in row),
        "backend": backend, "jobs": jobs, "seconds": round(time.perf_counter() - started, 2), "out": str(out),
    }  # fmt: skip
