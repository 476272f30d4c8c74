"""Drift: how a noise study's prediction moves between calibrations of one device. When a study's backends include
two or more entries of the same physical device (the same ``device`` column, e.g. calibration snapshots of
ibm_brisbane taken on different days: ``calibration: FILE`` entries) whose ``calibration_date`` differ, the report
plots ACC with its bootstrap interval against the calibration date (``accuracy_vs_calibration.png``, one line per
run, device, mitigation, shots and optimization level, at calibrated noise: scale 1) and says, per line, how far
the prediction moved from the oldest calibration to the newest, with the paired interval over the same test images
(:func:`~qmedimg.report.intervals.seeded_difference`: repeats paired by number, images paired within each), and
whether that interval excludes zero.

Example::

    from qmedimg.report.drift import drift_curves, drift_section, plot_drift
    if drift_curves(rows):
        plot_drift(rows, out)                                     # accuracy_vs_calibration.png
        text += drift_section(rows, lambda row: read_point(out, row))
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from qmedimg.report.intervals import LEVEL, RESAMPLES, SEED, correct, seeded_difference
from qmedimg.report.plots import save_figure
from qmedimg.report.study_intervals import span


def _calibrated(row: dict) -> bool:
    return row["scale"] in ("", "1", "1.0")  # a backend without noise scales runs as calibrated


def drift_curves(rows: list[dict]) -> dict[tuple, list[tuple[str, str, list[dict]]]]:
    """{(run, device, mitigation, shots, opt level): [(calibration date, backend, its rows at calibrated noise),
    ...] oldest first} for every curve with two or more backends of one device at different calibration dates
    (grid rows only: no cross-check; rows without a calibration date left out)."""
    found: dict[tuple, dict[str, list[dict]]] = {}
    for row in rows:
        if row.get("cross_check") or not row.get("calibration_date") or not _calibrated(row):
            continue
        key = (row["run"], row["device"], row["mitigation"], row["shots"], row["opt_level"])
        found.setdefault(key, {}).setdefault(row["backend"], []).append(row)
    curves = {}
    for key, backends in found.items():
        dated = sorted((group[0]["calibration_date"], name, group) for name, group in backends.items())
        if len({date for date, _, _ in dated}) >= 2:
            curves[key] = dated
    return curves


def _label(key: tuple, many_runs: bool) -> str:
    run, device, mitigation, shots, level = key
    parts = [device, f"mitigation {mitigation}", f"{shots} shots" if shots else "no shot noise"]
    if level not in ("", "-1"):
        parts.append(f"opt {level}")
    return ", ".join(([Path(run).name] if many_runs else []) + parts)


def _when(date: str) -> datetime | None:
    try:
        return datetime.fromisoformat(date)
    except ValueError:
        return None


def plot_drift(rows: list[dict], out: Path) -> Path | None:
    """accuracy_vs_calibration.png: ACC (mean over repeats) against calibration date per curve
    (:func:`drift_curves`), error bars its bootstrap interval (over repeats, the span of theirs); None (nothing
    drawn) where no curve has two calibrations."""
    curves = drift_curves(rows)
    if not curves:
        return None
    many = len({key[0] for key in curves}) > 1
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, dated in curves.items():
        points = [(when, group) for date, _, group in dated if (when := _when(date)) is not None]
        if not points:
            continue
        x = [when for when, _ in points]
        spans = [span(group, "acc") or (float(np.mean([float(r["acc"]) for r in group])), np.nan, np.nan)
                 for _, group in points]  # over repeats: the mean ACC and the span of their intervals
        acc, low, high = (np.array(values) for values in zip(*spans))
        ax.errorbar(x, acc, yerr=[np.nan_to_num(acc - low), np.nan_to_num(high - acc)], marker="o", capsize=4,
                    label=_label(key, many))
    ax.set(xlabel="calibration date (UTC)", ylabel="test ACC",
           title="Predicted accuracy vs the device's calibration (noise scale 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.text(0.5, 0.005, f"error bars: bootstrap {100 * LEVEL:g} % intervals over the test images (B = {RESAMPLES}, "
             f"seed {SEED})", ha="center", fontsize=7)
    path = out / "accuracy_vs_calibration.png"
    save_figure(fig, path, rect=(0, 0.03, 1, 1))
    return path


def _moved(oldest: list[dict], newest: list[dict], arrays_of) -> tuple | None:
    """The paired interval (points of ACC, newest − oldest) over the same images, repeats paired by number; None
    where the two were not evaluated on the same images."""
    by_repeat = {r["repeat"]: r for r in oldest}
    pairs = []
    for row in newest:
        if row["repeat"] not in by_repeat:
            continue
        new, old = arrays_of(row), arrays_of(by_repeat[row["repeat"]])
        if not np.array_equal(new["labels"], old["labels"]) or not np.array_equal(new["index"], old["index"]):
            return None
        pairs.append((correct(new["labels"], new["decision"]), correct(old["labels"], old["decision"])))
    return seeded_difference(pairs).scaled(100) if pairs else None


def drift_section(rows: list[dict], arrays_of) -> str:
    """summary.md's "Drift between calibrations" ('' when no curve has two calibrations): per curve, the ACC at
    the oldest and the newest calibration and how far the prediction moved, with its paired interval and whether it
    excludes zero. ``arrays_of(row)``: the row's per-image arrays (its point file)."""
    curves = drift_curves(rows)
    if not curves:
        return ""
    many = len({key[0] for key in curves}) > 1
    lines = ["", "## Drift between calibrations", "",
             f"Entries of one device calibrated on different dates, at noise scale 1. Moved = ACC at the newest "
             f"calibration − ACC at the oldest, in points, on the same test images; [low, high]: paired bootstrap "
             f"{100 * LEVEL:g} % interval (B = {RESAMPLES} resamples, seed {SEED}; repeats paired by number). A "
             "shift is claimed only where the interval excludes zero. Plot: `accuracy_vs_calibration.png`.", ""]
    for key, dated in curves.items():
        (old_date, old_name, oldest), (new_date, new_name, newest) = dated[0], dated[-1]
        acc = lambda group: np.mean([float(r["acc"]) for r in group])  # noqa: E731
        said = (f"- {_label(key, many)}: ACC {acc(oldest):.4f} with the calibration of {old_date} (`{old_name}`), "
                f"{acc(newest):.4f} with that of {new_date} (`{new_name}`)")
        moved = _moved(oldest, newest, arrays_of)
        if moved is None:
            lines.append(said + "; not evaluated on the same images, so no paired interval.")
        elif moved.all_zero:
            lines.append(said + "; the prediction did not move (0.0 points: every image decided the same way).")
        elif moved.excludes_zero:
            lines.append(said + f"; the prediction moved by {moved.estimate:+.1f} points [{moved.low:+.1f}, "
                         f"{moved.high:+.1f}], an interval that excludes zero: the calibrations predict different "
                         "accuracies on these images.")
        else:
            lines.append(said + f"; the prediction moved by {moved.estimate:+.1f} points [{moved.low:+.1f}, "
                         f"{moved.high:+.1f}], the interval includes zero: no shift is shown on these images.")
    return "\n".join(lines) + "\n"
