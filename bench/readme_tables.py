"""Regenerate the benchmark tables in README.md and docs/*.md from bench/results/*.json.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` markers, NAME being
the block's name in TABLES (usually the results file's stem). A block is rendered into every file
that holds its markers (README.md and docs/*.md), and it is an error for a block's markers to be
in no file. Usage: python bench/readme_tables.py [NAME …] (no names: every block).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"(\]\()([^)\s#]+)(\))")  # a markdown link's target, e.g. ](docs/figure.png)


def documents() -> list[Path]:
    """The files tables are rendered into: README.md, then docs/*.md."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def markers(name: str) -> re.Pattern:
    return re.compile(rf"^(<!-- bench:{re.escape(name)} -->\n)(?:.*?\n)?(<!-- /bench:{re.escape(name)} -->)$",
                      re.S | re.M)


def relink(table: str, document: Path) -> str:
    """Renderers name files from the repository root (docs/x.png); make such links relative to ``document``."""

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if "://" in target or not (ROOT / target).exists():
            return match.group(0)
        return match.group(1) + os.path.relpath(ROOT / target, document.parent).replace(os.sep, "/") + match.group(3)

    return LINK.sub(fix, table)


def propagation_table(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`{result['command']}` — {result['date'][:10]}, {machine['cpu']}, {machine['cores']} threads, "
        f"torch {machine['torch']}{', GPU ' + machine['gpu'] if machine.get('gpu') else ''}. "
        "Batch 8 × 3 wavelengths, complex64; best of the repeats after a warm-up, ours and the floor timed "
        "round-robin in one process.",
        "",
        "| N | ours, 2N pad (s) | ours, derived pad (s) | FFT floor (s) | ours / floor | torchoptics 2N pad (s) "
        "| torchoptics defaults (s) | torchoptics defaults / ours | max abs diff vs torchoptics (f32 / f64) "
        "| rel. MSE vs Fresnel integrals (ours / torchoptics) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        timed = row["torchoptics_default_calls_timed"]
        total = row["torchoptics_default_calls_total"]
        scaled = "" if timed == total else f" (scaled from {timed}/{total} calls)"
        lines.append(
            f"| {row['N']} | {row['ours_s']:.3f} | {row['ours_auto_s']:.3f} (grid {row['auto_padded']}) "
            f"| {row['fft_floor_s']:.3f} | **{row['ours_over_floor']:.2f}×** | {row['torchoptics_matched_s']:.3f} "
            f"| {row['torchoptics_default_s']:.1f}{scaled} | **{row['torchoptics_default_over_ours']:.0f}×** "
            f"| {row['max_abs_diff']:.1e} / {row.get('max_abs_diff_vs_torchoptics_float64', float('nan')):.1e} "
            f"| {row['rel_mse_vs_fresnel_ours']:.1e} / "
            f"{row['rel_mse_vs_fresnel_torchoptics_matched']:.1e} |"
        )
    return "\n".join(lines)


def training_table(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`{result['command']}` — {result['date'][:10]}, {machine['threads']} threads, torch {machine['torch']}; "
        f"{result['workload']['student']}, batch {result['workload']['batch']}, {result['workload']['dataset']}; "
        "best of the repeats, round-robin in one process.",
        "",
        "| frontend | images / s | time per image vs plain Conv2d |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['frontend']} | {row['images_per_s']:.0f} | **{row['ratio_to_conv2d']:.2f}×** |")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def training_accuracy_table(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`python {result['script']}` (each row: `--only NAME`), torch {machine['torch']}, "
        f"{machine['threads']} threads. Mean ± std over seeds (a seed fixes split, initialisation and batch order); "
        "the headline metric is the test accuracy (classification) or test mIoU, mean of object and background "
        "IoU (segmentation), of the best-validation weights.",
        "",
        "| experiment | model | data (train/val/test) | test metric (%) | seeds | epochs run | digital MACs / image "
        "| parameters | train time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["experiments"].items():
        sizes = row["data"]["sizes"]
        spread = f" ± {_percent(row['std'])}" if len(row["values"]) > 1 else ""
        dice = f"; Dice {_percent(sum(row['dice']) / len(row['dice']))}" if "dice" in row else ""
        lines.append(
            f"| {name} | {row['model']} | {sizes['train']}/{sizes['val']}/{sizes['test']} "
            f"| {row['metric']} **{_percent(row['mean'])}{spread}**{dice} | {len(row['values'])} "
            f"| {', '.join(str(e) for e in row['epochs_run'])} | {row['cost']['digital_macs']:,} "
            f"| {row['cost']['parameters']:,} | {', '.join(str(t) for t in row['train_seconds'])} |"
        )
    return "\n".join(lines)


def reproduce_table3_table(result: dict) -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    from reproduce_table3 import markdown

    return (
        f"`{result['script']}` — {result['date'][:10]}, {result['hardware']}. Test metric (%), mean ± std over "
        "seeds; KD/NTKD settings chosen on validation (`--select`, bench/results/ntkd_selection.json).\n\n"
        + markdown(result).rstrip()
    )


def ntkd_cost_table(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`{result['script']}`, torch {machine['torch']}, {machine['threads']} thread(s); Compressed Meta student, "
        f"{result['teacher']} teacher, batch {result['batch']}, Fashion-MNIST. Median step (forward, loss, backward, "
        "AdamW) over interleaved rounds; peak memory = growth of the resident set during the steps, fresh process.",
        "",
        "| method | step (ms) | × e2e step | peak memory growth (MB) |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['method']} | {1e3 * row['step_s']:.1f} | **{row['ratio_to_e2e']:.2f}×** | {row['peak_mb']:.0f} |"
        )
    lines += ["", f"NTKD (estimator) step / KD step = **{result['ntkd_estimator_over_kd']:.2f}×**."]
    return "\n".join(lines)


def estimator_validation_table(result: dict) -> str:
    lines = [
        f"`{result['script']}` — {result['date'][:10]}, {result['hardware']}. Training: "
        + "; ".join(f"{d} {t['epochs']} epochs" + (f" on {t['train_limit']} images" if t["train_limit"] else "")
                    for d, t in result["training"].items())
        + " (1 seed per design and method; NTKD with the settings of the Table 3 reproduction).",
        "",
        "| dataset | design | kernels | taps | estimate [low–high] | subset score | trained e2e | trained NTKD |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in result["rows"]:
        lines.append(
            f"| {row['dataset']} | {row['label']} | {row['kernels']} | {row['taps']} | {_percent(row['estimate'])} "
            f"[{_percent(row['low'])}–{_percent(row['high'])}] | {_percent(row['subset_estimate'])} "
            f"| {_percent(row['trained_e2e'])} | {_percent(row['trained_ntkd'])} |"
        )
    lines += ["", "| over | Spearman vs e2e | Spearman vs NTKD | MAE vs e2e (points) | MAE vs NTKD (points) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for label, key in (("estimate", "summary"), ("subset score", "summary_subset_estimate")):
        for scope, stats in result[key].items():
            lines.append(
                f"| {label}, {scope} | {stats['spearman_vs_e2e']:.2f} | **{stats['spearman_vs_ntkd']:.2f}** "
                f"| {stats['mae_points_vs_e2e']:.1f} | **{stats['mae_points_vs_ntkd']:.1f}** |"
            )
    if result.get("bounds"):
        lines += ["", "Infinite-kernel bound (the method's \"∞\" row; default optics, K kernels, one initialisation): "
                  + "; ".join(f"{d}: " + ", ".join(f"K={k} {_percent(v)}" for k, v in b["kernels"].items())
                              for d, b in result["bounds"].items()) + "."]  # fmt: skip
    return "\n".join(lines)


def estimator_calibration_table(result: dict) -> str:
    summary, raw = result["summary"], result["raw_summary"]
    training = result["training"]
    seeds = sorted({row["seeds"] for row in result["rows"]})
    lines = [
        f"`{result['script']}` — {result['date'][:10]}. Trained: {training['method']}, up to {training['epochs']} "
        f"epochs (early stopping after {training['early_stopping_patience']}), {training['frontend']} frontend, "
        f"{'/'.join(map(str, seeds))} seed(s) per pair. Every row predicted by a calibration fitted without its "
        f"dataset; {round(100 * result['level'])} % conformal interval.",
        "",
        "| left out | pairs | raw MAE (points) | calibrated MAE (points) | interval coverage "
        "| Spearman raw / calibrated |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for dataset in sorted(summary["spearman"]):
        rows = [r for r in result["rows"] if r["dataset"] == dataset]
        covered = sum(r["low"] <= r["trained_mean"] <= r["high"] for r in rows)
        rho_raw, rho = raw["spearman"][dataset], summary["spearman"][dataset]
        lines.append(
            f"| {dataset} | {len(rows)} | {raw['loo_mae_points_per_dataset'][dataset]:.2f} "
            f"| **{summary['loo_mae_points_per_dataset'][dataset]:.2f}** | {covered}/{len(rows)} "
            f"| {'—' if rho_raw is None else f'{rho_raw:.2f}'} / {'—' if rho is None else f'{rho:.2f}'} |"
        )
    lines.append(
        f"| **all {summary['datasets']} datasets** | {summary['pairs']} | {raw['loo_mae_points']:.2f} "
        f"(bias {raw['bias_points']:+.2f}) | **{summary['loo_mae_points']:.2f}** (bias {summary['bias_points']:+.2f}) "
        f"| **{100 * summary['coverage']:.0f} %** | |"
    )
    widths = result.get("mean_interval_points")
    if widths:
        lines += ["", f"Mean width: the calibrated interval {widths['calibrated']:.1f} points; the raw range "
                  f"{widths['raw']:.1f} points, which held for {100 * raw['coverage']:.0f} % of the pairs left "
                  "out."]  # fmt: skip
    return "\n".join(lines)


def design_search_table(result: dict) -> str:
    lines = [
        f"`{result['script']}` — {result['date'][:10]}, {result['machine']}. A shipped sweep design is matched when a "
        f"front design reaches its accuracy − {result['tolerance_points']:.1f} points on no more area.",
        "",
        "| dataset | trials (feasible) | front designs | sweep designs matched | exact checks within the band "
        "| time to front (s) |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for dataset, row in result["per_dataset"].items():
        lines.append(f"| {dataset} | {row['trials']} ({row['feasible_trials']}) | {row['front_size']} "
                     f"| {row['grid_points_matched']}/{row['grid_points']} | {row['exact_within_band']}/"
                     f"{row['exact_checked']} | {row['seconds']:.0f} |")  # fmt: skip
    matched = result["grid_points_matched"] / max(1, result["grid_points"])
    lines.append(f"| **all** | {result['trials']} | | **{100 * matched:.0f} %** | **{result['exact_within_band']}/"
                 f"{result['exact_checked']}** | {result['seconds']:.0f} |")  # fmt: skip
    if result.get("figure"):
        lines += ["", f"![The fronts against the shipped sweeps' designs]({result['figure']})"]
    return "\n".join(lines)


def estimator_cost_table(result: dict) -> str:
    lines = [
        f"`{result['command']}` — {result['date'][:10]}, {result['hardware']}.",
        "",
        "| surrogate | model (CV MAE gp / gbm, points) | swept designs | query median / max (ms) | first fit (s) |",
        "|---|---|---|---|---|",
    ]
    for row in result["surrogate"]:
        cv = row["cv_mae"]
        lines.append(
            f"| {row['dataset']} | {row['kind']} ({100 * cv['gp']:.2f} / {100 * cv['gbm']:.2f}) | {row['n_points']} "
            f"| **{row['query_ms_median']:.2f}** / {row['query_ms_max']:.1f} | {row['first_fit_s']:.2f} |"
        )
    lines += ["", "| exact, default design | training subset | seconds | subset score | estimate | "
              "estimate − largest subset's (points) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["exact"]:
        mark = "**" if row["default"] else ""
        lines.append(
            f"| {row['dataset']} | {mark}{row['train_size']}{mark} | {mark}{row['seconds']:.1f}{mark} "
            f"| {_percent(row['subset_score'])} | {_percent(row['estimate'])} "
            f"| {row['estimate_minus_reference_points']:+.1f} |"
        )
    return "\n".join(lines)


def app_latency_table(result: dict) -> str:
    lines = [
        f"`{result['command']}` — {result['date'][:10]}, {result['hardware']}; medians over {result['repeats']} "
        "sessions after a first visit. Rendered = title shown, script finished, every chart drawn. Baseline (a "
        f"one-chart app with the same shell, same process): new tab {result['baseline_new_tab_render_s']:.2f} s.",
        "",
        "| page | first render: opened from the sidebar (s) | design edit → redraw (s) | new tab (s) "
        "| new tab ÷ baseline | worst first render / redraw / new tab (s) | first visit, cold server: sidebar / new "
        "tab (s) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in result["rows"]:
        lines.append(
            f"| {row['page']} | **{row['first_render_s']:.2f}** | **{row['edit_redraw_s']:.2f}** "
            f"| {row['new_tab_render_s']:.2f} | {row['new_tab_over_baseline']:.2f} "
            f"| {row['first_render_max_s']:.2f} / {row['edit_redraw_max_s']:.2f} / {row['new_tab_render_max_s']:.2f} "
            f"| {row['cold_first_render_s']:.2f} / {row['cold_new_tab_render_s']:.2f} |"
        )
    return "\n".join(lines)


def reproduce_table4_table(result: dict) -> str:
    commands = sorted({entry.get("command", result["command"]) for entry in result["tasks"].values()})
    threads = result.get("threads", 2)  # the script's default before it recorded its threads
    lines = [
        f"{', '.join(f'`{c}`' for c in commands)} — {result['generated'][:10]}, CPU, {threads} "
        f"thread{'s' if threads != 1 else ''}. Test metric (%), mean ± std over seeds "
        f"(one trained student and one fabrication draw per seed); compensation on "
        f"{100 * result['compensation']['fraction']:.0f} % of the training images, "
        f"{result['compensation']['epochs']} epochs, backend only.",
        "",
        "| dataset | simulated (trained) | no compensation | e2e compensation | NTKD compensation "
        "| drop recovered: e2e / NTKD | NTKD − e2e, paired (seeds > 0) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_task: dict[str, dict[str, dict]] = {}
    for row in result["rows"]:
        by_task.setdefault(row["dataset"], {})[row["method"]] = row
    for dataset, rows in by_task.items():
        reference = rows["none"]["simulated_reference"]
        drop = reference - rows["none"]["mean"]
        cells = [f"{_percent(rows[m]['mean'])} ± {_percent(rows[m]['std'])}" if m in rows else "–"
                 for m in ("none", "e2e", "ntkd")]  # fmt: skip
        recovered = " / ".join(f"{100 * (rows[m]['mean'] - rows['none']['mean']) / drop:.0f} %" if m in rows and drop
                               > 0 else "–" for m in ("e2e", "ntkd"))  # fmt: skip
        metric = "mIoU" if rows["none"]["metric"] == "miou" else "accuracy"
        lines.append(f"| {dataset} ({metric}) | {_percent(reference)} | {' | '.join(cells)} | {recovered} "
                     f"| {_paired_gain(result['tasks'][dataset]['seeds'])} | {rows['none']['n_seeds']} |")  # fmt: skip
    reused = any(isinstance(trial.get("reused"), str) for entry in result["tasks"].values()
                 for trial in entry["calibration"])  # fmt: skip
    if not reused:  # the signed table carries the paper's; the other regimes sit right under it
        lines += ["", "| the method's Table 4 (fabricated) | no compensation | e2e | NTKD |", "|---|---|---|---|"]
        for dataset, values in result["paper"].items():
            lines.append(f"| {dataset} | {values['none']} | {values['e2e']} | {values['ntkd']} |")
    label = "Error models (the signed table's calibrated process)" if reused else "Calibrated error models"
    lines += ["", f"{label}: " + "; ".join(
        f"{task}: {', '.join(entry['terms'])}" for task, entry in result["tasks"].items())]  # fmt: skip
    return "\n".join(lines)


def _paired_gain(seeds: list[dict]) -> str:
    """Mean ± standard error of NTKD − e2e compensation over seeds, in points, and how many are > 0."""
    differences = [100 * (seed["ntkd"] - seed["e2e"]) for seed in seeds if "ntkd" in seed and "e2e" in seed]
    if not differences:
        return "–"
    positive = sum(d > 0 for d in differences)
    spread = f" ± {statistics.stdev(differences) / len(differences) ** 0.5:.2f}" if len(differences) > 1 else ""
    return f"{statistics.fmean(differences):+.2f}{spread} ({positive}/{len(differences)})"


def layout_export_table(result: dict) -> str:
    """The default design's layout in each format: bytes, write and read seconds, discs read back."""
    names = {"gds": "GDSII", "gds.gz": "GDSII, gzip", "oas": "OASIS"}
    lines = [f"`{result['command']}` — {result['date'][:10]}, {result['hardware']}: the default design, "
             f"{result['sub_optics']} sub-optics of {result['phase_pixels_per_side']}² phase pixels.", "",
             "| format | file | write (s) | read back (s) | discs read back | checks |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        failed = [name for name, ok in row["checks"].items() if not ok]
        lines.append(f"| {names.get(row['format'], row['format'])} | {row['bytes'] / 1e6:,.1f} MB "
                     f"| {row['seconds']:.1f} | {row['read_seconds']:.1f} | {row['discs']:,} "
                     f"| {', '.join(failed) or 'all pass'} |")  # fmt: skip
    return "\n".join(lines)


def inverse_design_table(result: dict) -> str:
    design = result.get("design", {})
    lines = [f"`{result['command']}` — {result['generated'][:10]}, CPU, {design.get('threads', 2)} threads."]
    if design:
        lines += [
            "",
            f"Default design, {design['kernels']} signed 7×7 kernels on {design['sub_optics']} sub-optics of "
            f"{design['samples_per_side']}² phase pixels ({design['phase_pixel_m'] * 1e9:.0f} nm): "
            f"**correlation min {design['min_correlation']:.4f}, mean {design['mean_correlation']:.4f}**, normalised "
            f"error ≤ {design['max_normalised_error']:.3f}, {100 * design['mean_efficiency']:.0f} % of the light on "
            f"the kernel window, {design['iterations']} iterations in {design['wall_seconds'] / 60:.1f} min.",
        ]
    sensitivity = result.get("sensitivity")
    if sensitivity:
        rows = sensitivity["rows"]
        nominal = rows[0]
        lines += [
            "",
            f"Sensitivity, one term at a time: test accuracy (%) through the fabricated metasurface, mean ± std over "
            f"{sensitivity['draws']} draws on {sensitivity['images']} test images; as designed "
            f"{_percent(nominal['mean'])} (trained {_percent(nominal['trained'])}).",
            "",
            "| term | values → accuracy |",
            "|---|---|",
        ]
        terms: dict[str, list[str]] = {}
        units = {"radius_sigma": 1e9, "radius_bias": 1e9, "radius_quantisation": 1e9, "psf_blur": 1e6,
                 "shift_sigma": 1e6}  # fmt: skip
        suffix = {"radius_sigma": " nm", "radius_bias": " nm", "radius_quantisation": " nm", "psf_blur": " µm",
                  "shift_sigma": " µm", "phase_sigma": " rad", "rotation": " rad", "read_noise": " e⁻"}  # fmt: skip
        for row in rows[1:]:
            value = row["value"] * units.get(row["term"], 1)
            terms.setdefault(row["term"], []).append(
                f"{value:g}{suffix.get(row['term'], '')} → {_percent(row['mean'])} ± {_percent(row['std'])}"
            )
        for term, cells in terms.items():
            lines.append(f"| {term} | {'; '.join(cells)} |")
    return "\n".join(lines)


def ntk_engines_table(result: dict) -> str:
    """Per student and engine (float32): kernel error, gradient fidelity at init / trained, step cost."""
    lines = [
        f"`{result['script']}` — {result['date'][:10]}, torch {result['machine']['torch']}, "
        f"{result['machine']['threads']} threads; every row is in `bench/results/ntk_engines.json`. Kernel error: "
        "max |Θ − Θ_exact| / max |Θ_exact| against the exact kernel in float64, after e2e training. Gradient: of the "
        "CKA kernel distance to the teacher's exact kernel, cosine and norm ratio to the exact gradient, at "
        "initialisation / after e2e training (estimator: mean over 10 draws of one draw's). Step: one NTKD training "
        f"step at batch {result['train_batch']['classification']} ({result['train_batch']['segmentation']} for "
        "segmentation, logits pooled to 8 × 8), teacher kernel from its sketch, against a Hinton KD step in the same "
        f"process; the structured engine's default kernel batch is {result['ntk_batch_default']} images.",
        "",
        "| student | engine | kernel error | gradient cosine | gradient norm ratio | step (ms) | × KD step |",
        "|---|---|---|---|---|---|---|",
    ]

    def number(value, pattern):
        return "—" if value is None else format(value, pattern)

    rows = [r for r in result["rows"] if r["dtype"] == "float32" and "teacher sketch" not in r["engine"]]
    by_state = {(r["student"], r["engine"], r["state"]): r for r in rows}
    for row in rows:
        if row["state"] != "after e2e training":
            continue
        start = by_state.get((row["student"], row["engine"], "initialisation"), {})
        pair = [number(start.get("grad_cosine_vs_exact"), ".3f"), number(row.get("grad_cosine_vs_exact"), ".3f")]
        ratios = [number(start.get("grad_norm_ratio"), ".2f"), number(row.get("grad_norm_ratio"), ".2f")]
        step, kd = row.get("step_s"), row.get("kd_step_s")
        name = row["engine"] + (" (default)" if row.get("default") else "")
        lines.append(
            f"| {row['student']} | {name} | {number(row.get('max_rel_error_vs_exact'), '.1e')} | {' / '.join(pair)} "
            f"| {' / '.join(ratios)} | {number(None if step is None else step * 1e3, '.0f')} "
            f"| {'—' if step is None or not kd else f'**{step / kd:.2f}×**'} |"
        )
    sketches = [r for r in result["rows"] if "teacher sketch" in r["engine"] and r["state"] == "after e2e training"]
    errors = {f"{r['student'].split(' ')[0]} m = {r['engine'].split('=')[1]}": r["max_rel_error_vs_exact"]
              for r in sketches}  # fmt: skip
    errors = ", ".join(f"{name}: {error:.2f}" for name, error in errors.items())
    lines += ["", f"The teacher sketch's kernel error, same measure: {errors}."]
    return "\n".join(lines)


def ntkd_regimes_table(result: dict) -> str:
    """Per dataset and regime: mean ± std test score of each method, NTKD's paired gain and verdict."""
    methods = ("e2e", "kd", "ntkd", "kd+ntkd", "ntkd-random-teacher")
    lines = [
        f"`{result['script']}` — {result['date'][:10]}, {result['machine']}. Test score (%), mean ± std over "
        "seeds 0–4; settings chosen on validation (seed 100); gains are paired per seed, ± one paired standard error.",
        "",
        "| dataset | regime | e2e | KD | NTKD | KD+NTKD | NTKD, random teacher | NTKD − e2e (seeds > 0) "
        "| NTKD verdict | KD+NTKD verdict | control | e2e validation, last 5 − previous 5 epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    convergence = result.get("convergence", {})
    verdicts = {(v["dataset"], v["regime"]): v for v in result.get("verdicts", [])}
    keys = sorted({(r["dataset"], r["regime"]) for r in result["rows"]})
    for dataset, regime in keys:
        cells = []
        for method in methods:
            values = [100 * r["test"] for r in result["rows"]
                      if (r["dataset"], r["regime"], r["method"]) == (dataset, regime, method)]  # fmt: skip
            if not values:
                cells.append("—")
                continue
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.fmean(values):.1f}{spread}" + (f" ({len(values)})" if len(values) < 5 else ""))
        verdict = verdicts.get((dataset, regime), {})
        gain = verdict.get("ntkd_minus_e2e")
        spread = "" if not gain or gain["paired_se"] is None else f" ± {gain['paired_se']:.2f}"
        gain_text = "—" if not gain else f"{gain['mean']:+.2f}{spread} ({gain['positive_seeds']}/{gain['seeds']})"
        curve = convergence.get(dataset, {}).get(regime)
        flat = "—" if not curve else f"{curve['last5_minus_previous5_points']:+.2f} points"
        lines.append(
            f"| {dataset} | {regime} | {' | '.join(cells)} | {gain_text} | {verdict.get('ntkd_verdict', '—')} "
            f"| {verdict.get('kd+ntkd_verdict', '—')} | {verdict.get('control', '—')} | {flat} |"
        )
    if not keys:
        lines.append("| (running: no final runs yet) | | | | | | | | | | | |")
    selected = len(result.get("selection", []))
    lines += ["", f"Selection runs: {selected}; final runs: {len(result['rows'])}."]
    return "\n".join(lines)


def table3_by_regime(result: dict) -> str:
    """The method's Table 3 layout (no transfer, KD, NTKD, KD+NTKD) per dataset, one row per regime,
    from the regimes benchmark (exact student kernel; finished comparisons only)."""
    lines = [
        "Test score (%), mean ± std over seeds 0–4, from `bench/results/ntkd_regimes.json` (the structured, "
        "exact student kernel; settings chosen on validation).",
        "",
        "| dataset | regime | no transfer | KD | NTKD | KD+NTKD | NTKD verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = {(v["dataset"], v["regime"]): v for v in result.get("verdicts", [])}
    keys = sorted({(r["dataset"], r["regime"]) for r in result["rows"]})
    for dataset, regime in keys:
        cells = []
        for method in ("e2e", "kd", "ntkd", "kd+ntkd"):
            values = [100 * r["test"] for r in result["rows"]
                      if (r["dataset"], r["regime"], r["method"]) == (dataset, regime, method)]  # fmt: skip
            cells.append(f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}" if len(values) == 5
                         else "—")  # fmt: skip
        if "—" in cells:
            continue  # still running
        lines.append(f"| {dataset} | {regime} | {' | '.join(cells)} "
                     f"| {verdicts.get((dataset, regime), {}).get('ntkd_verdict', '—')} |")  # fmt: skip
    return "\n".join(lines)


def bad_inputs_table(result: dict) -> str:
    classes: dict[str, list[dict]] = {}
    for row in result["cases"]:
        classes.setdefault(row["class"], []).append(row)
    lines = [
        f"`{result['command']}` — {result['date']}, each case a fresh `python -m onn_core` limited to "
        f"{result['timeout_s']:.0f} s and {result['memory_gib']:g} GiB.",
        "",
        "| class | cases | refused with a message | right answer | traceback | exit 0 on bad input | unbounded "
        "| slowest (s) | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, rows in classes.items():
        count = {verdict: sum(r["verdict"] == verdict for r in rows)
                 for verdict in ("refused", "ok", "traceback", "wrong exit 0", "unbounded")}  # fmt: skip
        peak = max((r["peak_rss_mib"] or 0) for r in rows)
        lines.append(f"| {name} | {len(rows)} | {count['refused']} | {count['ok']} | {count['traceback']} "
                     f"| {count['wrong exit 0']} | {count['unbounded']} | {max(r['seconds'] for r in rows):.0f} "
                     f"| {peak} |")  # fmt: skip
    return "\n".join(lines)


# Block name → (results file it is rendered from, renderer); a bare renderer reads bench/results/<block>.json.
TABLES = {
    "bad_inputs": bad_inputs_table,
    "table3_by_regime": ("ntkd_regimes", table3_by_regime),
    "app_latency": app_latency_table,
    "reproduce_table4": reproduce_table4_table,
    "reproduce_table4_non_negative": reproduce_table4_table,
    "inverse_design": inverse_design_table,
    "estimator_validation": estimator_validation_table,
    "estimator_calibration": estimator_calibration_table,
    "design_search": design_search_table,
    "estimator_cost": estimator_cost_table,
    "propagation": propagation_table,
    "training": training_table,
    "training_accuracy": training_accuracy_table,
    "reproduce_table3": reproduce_table3_table,
    "ntkd_cost": ntkd_cost_table,
    "ntk_engines": ntk_engines_table,
    "ntkd_regimes": ntkd_regimes_table,
    "layout_export": layout_export_table,
}


def rendered(only: set[str] | frozenset[str] = frozenset()) -> dict[Path, str]:
    """Each document's text with the blocks named in ``only`` (every block if empty) rendered
    from bench/results/*.json; nothing is written."""
    texts = {path: path.read_text(encoding="utf-8") for path in documents()}
    if not only:  # a block nobody renders would silently go stale
        for path, text in texts.items():
            for name in re.findall(r"^<!-- bench:([\w-]+) -->$", text, re.M):
                if name not in TABLES:
                    raise SystemExit(f"{path.relative_to(ROOT)} has a <!-- bench:{name} --> block no renderer knows")
    for name, entry in TABLES.items():
        if only and name not in only:
            continue
        pattern = markers(name)
        holders = [path for path, text in texts.items() if pattern.search(text)]
        if not holders:
            raise SystemExit(f"no file holds the <!-- bench:{name} --> … <!-- /bench:{name} --> markers "
                             "(looked in README.md and docs/*.md)")  # fmt: skip
        source, render = entry if isinstance(entry, tuple) else (name, entry)
        path = ROOT / "bench" / "results" / f"{source}.json"
        if not path.exists():
            continue
        table = render(json.loads(path.read_text()))
        for holder in holders:
            linked = relink(table, holder)
            texts[holder] = pattern.sub(lambda m, t=linked: m.group(1) + t + "\n" + m.group(2), texts[holder])
    return texts


def main(names: list[str] | None = None) -> None:
    only = set(sys.argv[1:] if names is None else names)  # e.g. `python bench/readme_tables.py bad_inputs`
    unknown = sorted(only - set(TABLES))
    if unknown:
        raise SystemExit(f"no such table: {', '.join(unknown)} (known: {', '.join(TABLES)})")
    texts = rendered(only)
    changed = []
    for path, text in texts.items():
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            changed.append(str(path.relative_to(ROOT)))
    print(f"tables updated in {', '.join(changed)}" if changed else "tables already up to date")


if __name__ == "__main__":
    main()
