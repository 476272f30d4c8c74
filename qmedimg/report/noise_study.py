"""The noise study's report: curves of accuracy and expectation error over noise scale, and
``summary.md`` — what was run, where accuracy drops, whether the head is still used (the effective
dimension of its outputs next to accuracy at every scale; what a flat curve cannot show: :func:`reading_notes`),
and what each mitigation recovers at what cost, all read from the study's rows, every ACC with its bootstrap interval
and every accuracy lost with its paired one (:mod:`qmedimg.report.study_intervals`: a loss is claimed only where
that interval excludes zero); and, when points were cross-checked, how the trajectory
sampler's values compare with Aer's (:func:`cross_check_section`, also used by the width study).

Example::

    from qmedimg.report.noise_study import cross_check_section, plot_noise_study, summary
    plot_noise_study(rows, out)          # accuracy_vs_noise.png, expectation_error.png (, circuits.png)
    (out / "summary.md").write_text(summary(rows) + cross_check_section(pairs, asked=1, eligible=4))
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import matplotlib.pyplot as plt
import numpy as np

from qmedimg.report.plots import save_figure
from qmedimg.report.study_intervals import (acc_cell, interval_cell, lost_cell, lost_excludes_zero, lost_section,
                                            row_number)


def curves_by_key(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by curve: (run, device/backend, mitigation, shots, opt level); each curve runs over scale."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get("cross_check"):  # a point run again on another simulator: not a point of the curves
            continue
        groups.setdefault((row["run"], row["backend"], row["mitigation"], row["shots"], row["opt_level"]),
                          []).append(row)
    return groups


def curve(rows: list[dict], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scales, mean, min, max) of ``column`` over repeats, sorted by scale (blank scale -> 1)."""
    by_scale: dict[float, list[float]] = {}
    for row in rows:
        by_scale.setdefault(float(row["scale"]) if row["scale"] else 1.0, []).append(float(row[column]))
    scales = np.array(sorted(by_scale))
    values = [by_scale[s] for s in scales]
    return (scales, np.array([np.mean(v) for v in values]), np.array([min(v) for v in values]),
            np.array([max(v) for v in values]))


def curve_label(key: tuple, many_runs: bool, rows: list[dict]) -> str:
    run, backend, mitigation, shots, level = key
    parts = [backend, f"mitigation {mitigation}", f"{shots} shots" if shots else "no shot noise"]
    if level not in ("", "-1"):
        parts.append(f"opt {level}")
    if many_runs:
        parts.insert(0, f"{rows[0]['circuit']} ({'trained ' + rows[0]['trained_on']}) {Path(run).name}")
    return ", ".join(parts)


def mean_of(rows: list[dict], column: str) -> float | None:
    """Mean of ``column`` over ``rows``, blank or missing cells left out; None if none has a value
    (NaN if a value is NaN: MedMNIST's multi-class AUC is undefined when a class is absent)."""
    values = [float(r[column]) for r in rows if r.get(column, "") != ""]
    return float(np.mean(values)) if values else None


def cell(value: float | None, digits: int = 4) -> str:
    """A number for a table: "—" when there is none (not recorded, or undefined)."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _scale(row: dict) -> float:
    return float(row["scale"]) if row["scale"] else 1.0


def _dimension_table(groups: dict[tuple, list[dict]], many: bool) -> list[str]:
    """One line per curve and noise scale: accuracy (with its interval, and the ACC lost with its paired interval)
    next to the head's effective dimension."""
    lines = ["## Accuracy and the head's effective dimension per noise scale", "",
             "| curve | scale | ACC [low, high] | AUC [low, high] | ACC lost, points [low, high] | effective dimension "
             "(ideal) |", "|---|---|---|---|---|---|"]
    for key, group in groups.items():
        label = curve_label(key, many, group)
        for scale in sorted({_scale(r) for r in group}):
            at = [r for r in group if _scale(r) == scale]
            dimension, ideal = mean_of(at, "effective_dimension"), mean_of(at, "ideal_effective_dimension")
            outputs = at[0].get("head_outputs", "")
            of = f" of {outputs}" if outputs else ""
            shown = "—" if dimension is None else f"{cell(dimension, 2)}{of} ({cell(ideal, 2)})"
            lines.append(f"| {label} | {'—' if not at[0]['scale'] else f'{scale:g}'} | "
                         f"{acc_cell(at)} | {interval_cell(at, 'auc')} | {lost_cell(at)} | {shown} |")
    return lines


def summary(rows: list[dict]) -> str:
    """summary.md: ideal accuracy, the scale at which each device loses 1/5/10 points, accuracy next
    to the head's effective dimension at every scale, what each mitigation recovers and at what shot cost."""
    groups = curves_by_key(rows)
    many = len({r["run"] for r in rows}) > 1
    lines = ["# Noise study", ""]
    for run in sorted({r["run"] for r in rows}):
        mine = [r for r in rows if r["run"] == run]
        first = mine[0]
        ideal_dimension = mean_of(mine, "ideal_effective_dimension")
        outputs = next((r["head_outputs"] for r in mine if r.get("head_outputs")), "?")
        used = (f", effective dimension of the head's outputs {ideal_dimension:.2f} of {outputs}"
                if ideal_dimension is not None else "")
        lines.append(f"- `{run}` (circuit {first['circuit']}, trained on {first['trained_on']}): ideal test "
                     f"ACC {float(first['ideal_acc']):.4f}, AUC {cell(float(first['ideal_auc']))}{used}")
    lines += ["", f"{len(rows)} grid points. ACC/AUC as MedMNIST computes them on the test split; mean |Δ| is the "
              "mean absolute difference of the head's expectation values from the ideal ones; the effective "
              "dimension is the participation ratio of the covariance of the head's outputs on the evaluated "
              "images (1: they carry one number; the number of outputs: all carry their own)."]
    if any(r["auc"] == "nan" or r["ideal_auc"] == "nan" for r in rows):
        lines.append("AUC — : undefined, some classes are absent from the evaluated images (MedMNIST's multi-class "
                     "AUC averages one-vs-rest over every class); a larger --test-limit includes them.")
    if any(r.get("effective_dimension", "") == "" for r in rows):
        lines.append("Effective dimension — : not recorded (rows from before qmedimg recorded it, or one image).")
    lines += reading_notes(rows)
    lines += ["",
              "## Noise scale at which accuracy drops", "",
              "The first scale at which ACC is that many points below the ideal ACC and the paired interval of the "
              "ACC lost excludes zero (where a row records none: the ACC alone).", "",
              "| curve | ACC at lowest scale | −1 point | −5 points | −10 points |", "|---|---|---|---|---|"]
    for key, group in groups.items():
        scales, acc, _, _ = curve(group, "acc")
        ideal = float(group[0]["ideal_acc"])
        shown = [lost_excludes_zero([r for r in group if _scale(r) == s]) is not False for s in scales]
        cells = []
        for drop in (0.01, 0.05, 0.10):
            hit = [s for s, a, ok in zip(scales, acc, shown) if ideal - a >= drop - 1e-12 and ok]
            cells.append(f"{hit[0]:g}" if hit else f"> {scales.max():g}")
        lines.append(f"| {curve_label(key, many, group)} | {acc[0]:.4f} | " + " | ".join(cells) + " |")
    lines += ["", *_dimension_table(groups, many)]
    lines += lost_section([(curve_label(key, many, group), group) for key, group in groups.items()])
    note = statistical_note(rows)
    if note:
        lines.append(note)
    lines += ["", "## What mitigation recovers (at noise scale 1)", "",
              "| run / backend / shots / opt | mitigation | ACC [low, high] | AUC | effective dimension | mean abs Δ | "
              "Δ vs none "
              "| shot cost |", "|---|---|---|---|---|---|---|---|"]
    for key, group in groups.items():
        at_one = [r for r in group if (float(r["scale"]) if r["scale"] else 1.0) == 1.0]
        if not at_one:
            continue
        base_key = (key[0], key[1], "none", key[3], key[4])
        base = [r for r in groups.get(base_key, []) if (float(r["scale"]) if r["scale"] else 1.0) == 1.0]
        acc = np.mean([float(r["acc"]) for r in at_one])
        auc = mean_of(at_one, "auc")
        err = np.mean([float(r["mean_abs_expectation_error"]) for r in at_one])
        versus = "—"
        if base and key[2] != "none":
            base_err = np.mean([float(r["mean_abs_expectation_error"]) for r in base])
            base_acc = np.mean([float(r["acc"]) for r in base])
            versus = f"ACC {acc - base_acc:+.4f}, mean abs Δ ×{err / base_err:.2f}" if base_err else "—"
        cost = at_one[0]["shot_cost"]
        where = f"{Path(key[0]).name} / {key[1]} / {key[3] or 'exact'} / opt {key[4]}"
        lines.append(f"| {where} | {key[2]} | {acc_cell(at_one)} | {cell(auc)} | "
                     f"{cell(mean_of(at_one, 'effective_dimension'), 2)} | {err:.4f} | {versus} | "
                     f"{cost if cost == 'exact' else cost + ' shots/image'} |")
    factor_sets = sorted({row.get("zne_factors", "") for row in rows if "zne" in row["mitigation"]} - {""})
    zne = "; ".join(f"ZNE costs {len(f.split(';'))} circuit executions per value (noise factors "
                    f"{', '.join(f.split(';'))})" for f in factor_sets)
    lines += ["", (zne + ". " if zne else "") + "Readout mitigation uses the device's calibration and costs no "
              "extra shots here (on hardware, TREX adds calibration shots).",
              "Plots: `accuracy_vs_noise.png`, `expectation_error.png`" + (", `circuits.png`" if many else "") + "."]
    return "\n".join(lines) + "\n"


ONE_NUMBER = 1.5
"""An ideal effective dimension below this: the head's outputs carry about one number."""


def reading_notes(rows: list[dict]) -> list[str]:
    """What a flat curve can and cannot say, where it applies: a head that carries about one number (ideal
    effective dimension below :data:`ONE_NUMBER`) and values computed without shots (exact expectation values).
    Lines for summary.md ([] when neither applies)."""
    notes = []
    for run in sorted({r["run"] for r in rows}):
        mine = [r for r in rows if r["run"] == run]
        dimension = mean_of(mine, "ideal_effective_dimension")
        if dimension is not None and dimension < ONE_NUMBER:
            outputs = next((r["head_outputs"] for r in mine if r.get("head_outputs")), "?")
            whose = f"The head of `{run}`" if len({r["run"] for r in rows}) > 1 else "The head"
            notes.append(f"- {whose} carries about one number (effective dimension {dimension:.1f} of {outputs}): noise "
                         "that moves that number little costs no accuracy; a head that carries more may lose more.")
    exact = [r for r in rows if r["shots"] == ""]
    if exact:
        which = "Without shots these are" if len(exact) == len(rows) else 'The rows without shots ("no shot noise") are'
        notes.append(f"- {which} exact expectation values: on hardware each value is estimated from N shots, adding "
                     "statistical noise not shown here (a standard error of up to 1/√N per value: 0.016 at 4096 "
                     "shots).")
    return ["", "## Reading these numbers", "", *notes] if notes else []


def statistical_note(rows: list[dict]) -> str:
    """The sentence on the statistical error of rows simulated by noise trajectories: the largest of their ACC
    and AUC (:func:`qmedimg.metrics.statistical_spread`), or '' when no row has one."""
    sampled = [r for r in rows if r.get("acc_statistical_error", "") not in ("", None)]
    if not sampled:
        return ""
    acc = max(float(r["acc_statistical_error"]) for r in sampled)
    auc = max((float(r["auc_statistical_error"]) for r in sampled if r.get("auc_statistical_error", "") != ""
               and np.isfinite(float(r["auc_statistical_error"]))), default=None)
    auc_text = f" and of AUC {auc:.4f}" if auc is not None else ""
    return (f"{len(sampled)} row{'s' * (len(sampled) != 1)} simulated by noise trajectories carry a statistical "
            f"error: at most {100 * acc:.2f} ACC points{auc_text} (the spread of each metric when each image's "
            "values move by draws from their covariance over the trajectories; columns acc_statistical_error and "
            "auc_statistical_error of results.csv).")


CROSS_CHECKED = (("acc", "ACC"), ("auc", "AUC"), ("mean_abs_expectation_error", "mean abs Δ expectation"))
"""The metrics a cross-check compares (where the rows hold them)."""


def _simulated_by(row: dict) -> str:
    """'qmedimg trajectories ×200' / 'aer density_matrix' / '—' (a kind that does not say)."""
    what = " ".join(x for x in (row.get("simulator", ""), row.get("simulation", "")) if x)
    return (what + (f" ×{row['trajectories']}" if row.get("trajectories") else "")) or "—"


def value_agreement(sampler: dict, aer: dict) -> tuple[float, int] | None:
    """(largest |z|, values compared) between two points' per-image arrays (their ``point-<id>.npz``, with
    ``values``): each head value's difference over both sides' own standard errors combined (the diagonal of each
    image's ``value_covariance``; none on an exact side). None where a file holds no values (written before points
    kept them) or neither side states an error."""
    if "values" not in sampler or "values" not in aer or all("value_covariance" not in side for side in (sampler, aer)):
        return None
    variance = sum(np.diagonal(side["value_covariance"], axis1=1, axis2=2) for side in (sampler, aer)
                   if "value_covariance" in side)
    difference = np.abs(np.asarray(sampler["values"]) - np.asarray(aer["values"]))
    z = np.divide(difference, np.sqrt(variance), out=np.where(difference > 0, np.inf, 0.0), where=variance > 0)
    return float(z.max()), int(z.size)


def chance_largest_z(values: int, probability: float) -> float:
    """The |z| that the largest of ``values`` independent standard normal |z| stays below with ``probability``."""
    return NormalDist().inv_cdf((1 + probability ** (1 / values)) / 2)


def cross_check_section(pairs: list[tuple[str, dict, dict, tuple[float, int] | None]], *, asked: int, eligible: int,
                        why_none: str = "") -> str:
    """summary.md's "Cross-check against Aer": for each (point, sampler's row, Aer's row, their
    :func:`value_agreement`), ACC, AUC and mean abs Δ expectation (those the rows hold) on both, their difference
    (sampler − Aer) and the sampler row's statistical error (the largest standard error of one of its expectation
    values); then one sentence: the largest difference (in mean abs Δ expectation where recorded: the unit the
    error is in) and whether it is within the statistical error stated at that point; and one on the head values
    themselves: the largest |z| of one value against what chance alone gives over that many values."""
    lines = ["", "## Cross-check against Aer", ""]
    if not pairs:
        return "\n".join(lines + [f"No point could be cross-checked: {why_none}."]) + "\n"
    lines.append(f"{len(pairs)} point{'s' * (len(pairs) != 1)} run again with `simulator: aer` (the same entry, seed "
                 "and images otherwise), chosen in this order: noisy exact points (noise scale > 0, no "
                 "shots: where the sampler can run), the widest heads first, then grid order. Difference = sampler − Aer; the statistical "
                 "error is the largest standard error of one expectation value of the sampler's row.")
    if asked > eligible:
        lines.append(f"--cross-check {asked} asked for more points than the {eligible} that can be cross-checked: "
                     f"all {eligible} were.")
    lines += ["", "| point | metric | sampler | Aer | difference | sampler's statistical error | sampler row simulated by |",
              "|---|---|---|---|---|---|---|"]
    metrics = [(c, label) for c, label in CROSS_CHECKED if any(row_number(s, c) is not None for _, s, _, _ in pairs)]
    found: dict[str, list] = {c: [] for c, _ in metrics}
    for name, sampler, aer, _ in pairs:
        error = row_number(sampler, "statistical_error")
        for column, label in metrics:
            mine, theirs = row_number(sampler, column), row_number(aer, column)
            difference = None if mine is None or theirs is None else mine - theirs
            if difference is not None:
                found[column].append((abs(difference), name, error, sampler))
            lines.append(f"| {name} | {label} | {cell(mine)} | {cell(theirs)} | "
                         f"{'—' if difference is None else f'{difference:+.4f}'} | {cell(error)} | "
                         f"{_simulated_by(sampler)} |")
    return "\n".join(lines + ["", _largest_difference(found, dict(metrics)), "", _value_sentence(pairs)]) + "\n"


def _value_sentence(pairs: list[tuple[str, dict, dict, tuple[float, int] | None]]) -> str:
    """The sentence on the head values: the largest |z| over the compared points, judged at 1 in 100."""
    compared = [(agreement, name) for name, _, _, agreement in pairs if agreement is not None]
    if not compared:
        return ("Per value: not compared (the points' files hold no head values, or neither side states a "
                "statistical error).")
    values = sum(count for (_, count), _ in compared)
    (largest, _), name = max(compared, key=lambda c: c[0][0])
    median, rare = chance_largest_z(values, 0.5), chance_largest_z(values, 0.99)
    verdict = "within what chance gives" if largest <= rare else "beyond what chance gives: the two disagree"
    return (f"Per value (each image's head outputs, the difference over both sides' own standard errors): largest "
            f"|z| {largest:.2f} over {values} values, at {name}; {verdict} (over {values} values the largest |z| "
            f"of pure noise has median {median:.2f} and exceeds {rare:.2f} 1 time in 100).")


def _largest_difference(found: dict[str, list], labels: dict[str, str]) -> str:
    """The sentence under the cross-check table."""
    primary = next((c for c in ("mean_abs_expectation_error", "acc", "auc") if found.get(c)), None)
    if primary is None:
        return "No metric could be compared (the rows hold none on both sides)."
    size, name, error, sampler = max(found[primary], key=lambda f: f[0])
    if error is None:
        verdict = (f"the sampler's row states no statistical error (it was simulated by {_simulated_by(sampler)}: "
                   "nothing sampled there), so it is not judged against one")
    else:
        ratio = f": {size / error:.2f}× it" if error > 0 else ""
        verdict = f"{'within' if size <= error else 'beyond'} the sampler's statistical error there ({error:.4f}{ratio}"
        stated = [f for f in found[primary] if f[2] is not None]
        within = sum(f[0] <= f[2] for f in stated)
        verdict += f"; {within} of the {len(stated)} points that state one are within theirs)" if len(stated) > 1 else ")"
    others = [f"{labels[c]} by at most {max(f[0] for f in found[c]):.4f}" for c in ("acc", "auc")
              if c != primary and found.get(c)]
    rest = (f"; {' and '.join(others).replace(' by', ' differs by', 1)} (they can turn on differences smaller than "
            "the error where images' outputs lie close together)") if others else ""
    return f"Largest difference: {size:.4f} in {labels[primary]} at {name}, {verdict}{rest}."


STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 3)), "P")]


def _plot_curve(ax, rows: list[dict], column: str, label: str, index: int = 0) -> None:
    """Mean of ``column`` over repeats vs noise scale, with the min–max spread as a band; each curve
    its own line style and marker, so curves that coincide stay visible."""
    scales, mean, low, high = curve(rows, column)
    linestyle, marker = STYLES[index % len(STYLES)]
    (line,) = ax.plot(scales, mean, marker=marker, linestyle=linestyle, markerfacecolor="none",
                      markersize=7 - (index % 3), label=label)
    if (high > low).any():
        ax.fill_between(scales, low, high, color=line.get_color(), alpha=0.2)


def plot_noise_study(rows: list[dict], out: Path) -> None:
    """accuracy_vs_noise.png (ACC and AUC vs noise scale, bands = spread over repeats),
    expectation_error.png, and circuits.png when several runs are compared."""
    groups = curves_by_key(rows)
    many = len({r["run"] for r in rows}) > 1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, (key, group) in enumerate(groups.items()):
        label = curve_label(key, many, group)
        for ax, column in zip(axes, ("acc", "auc")):
            _plot_curve(ax, group, column, label, index)
    for ax, column in zip(axes, ("acc", "auc")):
        for run in sorted({r["run"] for r in rows}):
            ideal = float(next(r for r in rows if r["run"] == run)[f"ideal_{column}"])
            ax.axhline(ideal, color="grey", linestyle="--", linewidth=1)
        low, high = ax.get_ylim()
        if high - low < 0.2:  # a flat curve should look flat, not like a cliff
            middle = (low + high) / 2
            ax.set_ylim(max(0.0, middle - 0.1), middle + 0.1 if middle + 0.1 <= 1 else 1.01)
        ax.set(xlabel="noise scale (× calibrated error rates)", ylabel=column.upper(),
               title=f"Test {column.upper()} vs noise (dashed: ideal)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend for both panels, below them
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(3, len(labels)))
    save_figure(fig, out / "accuracy_vs_noise.png", rect=(0, 0.06 * ((len(labels) + 2) // 3) + 0.02, 1, 1))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (key, group) in enumerate(groups.items()):
        _plot_curve(ax, group, "mean_abs_expectation_error", curve_label(key, many, group), index)
    ax.set(xlabel="noise scale (× calibrated error rates)", ylabel="mean |Δ expectation| vs ideal",
           title="Expectation-value error of the quantum head")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out / "expectation_error.png")

    if many:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, group in groups.items():
            if key[2] != "none":
                continue
            scales, mean, low, high = curve(group, "acc")
            ax.plot(scales, mean - float(group[0]["ideal_acc"]), marker="o", label=curve_label(key, True, group))
        ax.set(xlabel="noise scale (× calibrated error rates)", ylabel="test ACC − ideal ACC",
               title="Which circuit keeps its accuracy as noise grows (no mitigation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save_figure(fig, out / "circuits.png")
