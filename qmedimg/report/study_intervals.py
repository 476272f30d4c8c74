"""Intervals for the noise study's rows: how far each point's metrics could move with another draw of test
images, and whether the accuracy a point lost against the exact head is distinguishable from zero.

Every row of ``results.csv`` holds (from its per-image arrays, :func:`row_intervals`): percentile bootstrap
intervals over the test images of ACC, AUC, sensitivity and specificity (as
:func:`~qmedimg.metrics.bootstrap_intervals` computes them: decisions at the run's threshold; sensitivity and
specificity of class 1 for a binary task, their mean over classes or labels otherwise), and ``acc_lost``: the
exact head's ACC minus the point's on the same images, with its **paired** bootstrap interval
(:func:`~qmedimg.report.intervals.paired_difference`: the same image draw for both decisions). All drawn with
:data:`RESAMPLES` resamples from seed :data:`SEED` at level :data:`LEVEL`, stated in ``summary.md``
(:func:`method_note`).

A sentence of ``summary.md`` says noise costs (or gains) accuracy only where the paired interval excludes zero
(:func:`lost_clause`); with several repeats of a point, only where every repeat's interval excludes zero on the
same side, and the table shows their mean with the span of their intervals (never a "±": one draw of images
has no spread of its own to show).

Example::

    from qmedimg.report.study_intervals import acc_cell, lost_cell, row_intervals
    row.update(row_intervals(arrays))     # arrays: a point's per-image file (labels, probs, decisions, task ...)
    acc_cell([row]), lost_cell([row])     # '0.8125 [0.6250, 0.9375]', '+6.2 [+0.0, +12.5]'
"""

from __future__ import annotations

import math

import numpy as np

from qmedimg.metrics import bootstrap_intervals, compute_metrics
from qmedimg.report.intervals import LEVEL, RESAMPLES, SEED, correct, paired_difference

INTERVAL_COLUMNS = ("acc_low", "acc_high", "auc_low", "auc_high", "sensitivity", "sensitivity_low",
                    "sensitivity_high", "specificity", "specificity_low", "specificity_high", "acc_lost",
                    "acc_lost_low", "acc_lost_high")
"""The columns :func:`row_intervals` fills (blank in a row from before them whose per-image file is gone)."""


def _threshold(arrays: dict):
    """The run's decision threshold as the per-image file keeps it (NaN: none, multi-class)."""
    threshold = np.asarray(arrays["threshold"], dtype=float)
    if np.isnan(threshold).all():
        return 0.5  # multi-class decides by argmax: unused
    return threshold if threshold.ndim else float(threshold)


def row_intervals(arrays: dict, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """The interval columns of a row (:data:`INTERVAL_COLUMNS`) from its per-image arrays (``labels``, ``probs``,
    ``decision``, ``ideal_decision``, ``threshold``, ``task``: :func:`~qmedimg.workflows.per_image.per_image`'s)."""
    labels, probs, task, threshold = arrays["labels"], arrays["probs"], str(arrays["task"]), _threshold(arrays)
    point = compute_metrics(labels, probs, task, threshold)
    ci = bootstrap_intervals(labels, probs, task, threshold, draws=resamples, seed=seed, level=level)
    lost = paired_difference(correct(labels, arrays["ideal_decision"]), correct(labels, arrays["decision"]),
                             resamples=resamples, level=level, seed=seed)
    return {"acc_low": ci["acc"][0], "acc_high": ci["acc"][1], "auc_low": ci["auc"][0], "auc_high": ci["auc"][1],
            "sensitivity": point["sensitivity"], "sensitivity_low": ci["sensitivity"][0],
            "sensitivity_high": ci["sensitivity"][1], "specificity": point["specificity"],
            "specificity_low": ci["specificity"][0], "specificity_high": ci["specificity"][1],
            "acc_lost": lost.estimate, "acc_lost_low": lost.low, "acc_lost_high": lost.high}


def method_note(level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> str:
    """The sentence that says how the intervals of summary.md were drawn."""
    return (f"[low, high]: {100 * level:g} % percentile bootstrap intervals over the test images (B = {resamples} "
            f"resamples, seed {seed}); for ACC lost (the exact head's ACC − the point's, in points) the interval is "
            "paired: each resample draws the same images for the exact and the noisy decisions. With several "
            "repeats of a point: their mean, and the span of their intervals. A conclusion (noise costs or gains "
            "accuracy) is drawn only where the paired interval excludes zero.")


def row_number(row: dict, column: str) -> float | None:
    """A results.csv row's ``column`` as a finite number, or None (blank, not a number, NaN or infinite)."""
    try:
        value = float(row.get(column, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def span(rows: list[dict], column: str, factor: float = 1.0) -> tuple[float, float, float] | None:
    """(mean of ``column``, lowest ``column_low``, highest ``column_high``) over ``rows`` (repeats of a point),
    × ``factor``; None where a row lacks one (a row from before the interval columns, or undefined: NaN)."""
    found = [(row_number(r, column), row_number(r, f"{column}_low"), row_number(r, f"{column}_high")) for r in rows]
    if not found or any(v is None for triple in found for v in triple):
        return None
    return (factor * float(np.mean([f[0] for f in found])), factor * min(f[1] for f in found),
            factor * max(f[2] for f in found))


def interval_cell(rows: list[dict], column: str, digits: int = 4) -> str:
    """'0.8125 [0.6250, 0.9375]': ``column`` with its interval (over repeats: the mean, and the span); the value
    alone where no interval is recorded; '—' where there is no value."""
    spanned = span(rows, column)
    if spanned is None:
        values = [v for r in rows if (v := row_number(r, column)) is not None]
        return f"{np.mean(values):.{digits}f}" if values and len(values) == len(rows) else "—"
    mean, low, high = spanned
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def acc_cell(rows: list[dict]) -> str:
    """ACC [low, high] of a point's rows (:func:`interval_cell`)."""
    return interval_cell(rows, "acc")


def lost_cell(rows: list[dict]) -> str:
    """ACC lost in points with its paired interval: '+6.2 [+0.0, +12.5]'; '—' where not recorded."""
    lost = span(rows, "acc_lost", 100)
    return "—" if lost is None else f"{lost[0]:+.1f} [{lost[1]:+.1f}, {lost[2]:+.1f}]"


def lost_excludes_zero(rows: list[dict]) -> bool | None:
    """Whether the paired interval of ACC lost excludes zero at every one of ``rows`` (repeats of a point) on the
    same side; None where a row has no interval recorded."""
    spans = [span([r], "acc_lost") for r in rows]
    if not spans or any(s is None for s in spans):
        return None
    return all(s[1] > 0 for s in spans) or all(s[2] < 0 for s in spans)


def lost_clause(rows: list[dict], where: str) -> str:
    """A clause on the accuracy a point lost (``rows``: its repeats; ``where``: e.g. 'at noise scale 1') that says
    noise costs or gains accuracy only where the paired interval excludes zero."""
    lost = span(rows, "acc_lost", 100)
    if lost is None:
        return f"no paired interval of the ACC lost {where} is recorded (rows from before qmedimg recorded it)"
    estimate, low, high = lost
    if low == high == estimate == 0:
        return f"noise changes no decision {where} (0.0 points: every image decided as by the exact head)"
    if lost_excludes_zero(rows):
        sign = 1 if low > 0 else -1
        a, b = sorted((sign * low, sign * high))
        said = "noise costs" if sign > 0 else "the noisy head gains"
        return f"{said} {sign * estimate:.1f} points of ACC {where} [{a:.1f}, {b:.1f}]"
    return (f"ACC lost {where} {estimate:+.1f} points [{low:+.1f}, {high:+.1f}], the interval includes zero: no "
            "loss is shown on these images")


def _scale(row: dict) -> float:
    return float(row["scale"]) if row["scale"] else 1.0  # a backend without noise scales: as calibrated


def lost_section(curves: list[tuple[str, list[dict]]]) -> list[str]:
    """summary.md's lines on the accuracy lost to noise: the method (:func:`method_note`), one sentence per curve
    (``curves``: (label, its rows)) at calibrated noise (scale 1; else its largest scale) that concludes only where
    the paired interval excludes zero (:func:`lost_clause`), and sensitivity and specificity with their intervals
    at every scale."""
    lines = ["", "## Accuracy lost to noise (paired intervals)", "", method_note(), ""]
    for label, rows in curves:
        scales = sorted({_scale(r) for r in rows})
        scale = 1.0 if 1.0 in scales else scales[-1]
        at = [r for r in rows if _scale(r) == scale]
        where = f"at noise scale {scale:g}" if at[0]["scale"] else "on this device"
        lines.append(f"- {label}: {lost_clause(at, where)}.")
    lines += ["", "Sensitivity and specificity at the run's threshold (a binary task: of class 1; otherwise their "
              "mean over classes or labels):", "", "| curve | scale | sensitivity [low, high] | specificity [low, "
              "high] |", "|---|---|---|---|"]
    for label, rows in curves:
        for scale in sorted({_scale(r) for r in rows}):
            at = [r for r in rows if _scale(r) == scale]
            lines.append(f"| {label} | {f'{scale:g}' if at[0]['scale'] else '—'} | "
                         f"{interval_cell(at, 'sensitivity')} | {interval_cell(at, 'specificity')} |")
    return lines
