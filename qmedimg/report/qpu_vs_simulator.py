"""Did the simulator predict the QPU? ``qpu_vs_simulator.md`` and ``qpu_vs_simulator.png`` from a run's ``ibm``
eval files: per eval file, ACC and AUC of the exact head, of its prediction on the calibration snapshot and of the
QPU's measured values, each with its bootstrap interval; measured − predicted with its paired interval; the
agreement test of the head's values and its verdict; QPU usage against the dry run's estimate; and a scatter of
measured against predicted values per image and observable, with shot error bars and the y = x line, titled with
the calibration's age at submission.

Example::

    from qmedimg.report.qpu_vs_simulator import write_qpu_report
    md, png = write_qpu_report(Path("runs/breast"), [("eval-ibm_local.json", record, arrays)])

``record`` is an eval file (its ``prediction``, ``qpu_vs_simulator``, ``qpu_usage``), ``arrays`` its per-image file
(``values``, ``predicted_values``, ``measured_se``, ``predicted_se``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from qmedimg.files import write_text
from qmedimg.report.plots import save_figure  # (which also chooses matplotlib's file-only backend)

MARKDOWN, FIGURE = "qpu_vs_simulator.md", "qpu_vs_simulator.png"


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def _interval(pair) -> str:
    return "n/a" if not pair or any(v is None for v in pair) else f"[{_number(pair[0])}, {_number(pair[1])}]"


def age_text(snapshot: dict) -> str:
    """'calibration 921.5 days old at submission' (or why the age is unknown)."""
    age = snapshot.get("calibration_age_days")
    return "calibration age unknown" if age is None else f"calibration {age:.1f} days old at submission"


def _section(name: str, record: dict) -> list[str]:
    prediction, compared = record["prediction"], record["qpu_vs_simulator"]
    snapshot, agreement, simulated = prediction["snapshot"], prediction["agreement"], prediction["simulated_with"]
    where = ("Runtime's local testing mode (a simulated fake device): no live QPU was used"
             if record.get("local_testing_mode") else f"the QPU {record.get('device')}")
    lines = [f"## {record.get('backend')} ({name})", "",
             f"**Verdict: {agreement['verdict']}**: measured and predicted values "
             f"{'agree within' if agreement['verdict'] == 'agrees' else 'differ by more than'} shot noise "
             f"(χ² = {agreement['chi2']:.1f} on {agreement['dof']} values, p = {agreement['p']:.3g}, "
             f"level {agreement['alpha']}).", "",
             f"- Measured on {where}; {record.get('images')} test images, {simulated['shots']} shots.",
             f"- Predicted on the calibration snapshot of {snapshot.get('device')} ({snapshot['used']}; "
             f"taken {snapshot.get('taken_at')}, calibrated {snapshot.get('calibration_date')}: {age_text(snapshot)}).",
             f"- Simulated with: readout mitigation {simulated['readout_mitigation']}, ZNE "
             f"{simulated['zne'] or 'none'}, seed {simulated['seed']}; {simulated['mapping']}."]
    lines += [f"- {note}." for note in simulated.get("not_simulated", [])]
    lines += ["", "| head values | ACC | 95 % interval | AUC | 95 % interval |", "|---|---|---|---|---|"]
    for key, label in (("ideal", "exact (ideal)"), ("predicted", "predicted (snapshot)"), ("measured", "measured")):
        row = compared[key]
        lines.append(f"| {label} | {_number(row['acc'])} | {_interval(row['intervals']['acc'])} | "
                     f"{_number(row['auc'])} | {_interval(row['intervals']['auc'])} |")
    lines += ["", "| measured − predicted | estimate | paired 95 % interval |", "|---|---|---|"]
    for metric, d in compared["measured_minus_predicted"].items():
        lines.append(f"| {metric.upper()} | {_number(d['estimate'])} | {_interval([d['low'], d['high']])} |")
    inside = "within" if compared["acc_difference_within_interval"] else "outside"
    lines += ["", f"|ACC difference| is {inside} half the measured ACC's bootstrap interval; "
                  f"{compared['decisions_changed']} decisions differ.", "",
              "| observable | mean residual | mean z | p (mean z) | χ² | dof | p (χ²) |",
              "|---|---|---|---|---|---|---|"]
    for row in agreement["per_observable"]:
        lines.append(f"| {row['observable']} | {_number(row['mean_residual'], 4)} | {_number(row['mean_z'], 2)} | "
                     f"{row['mean_z_p']:.3g} | {row['chi2']:.1f} | {row['dof']} | {row['p']:.3g} |")
    usage = record.get("qpu_usage") or {}
    lines += ["", f"QPU usage: {_number(usage.get('qpu_seconds'), 1)} s measured against "
                  f"{_number(usage.get('estimated_qpu_seconds'), 1)} s estimated by the dry run"
              + (" (local testing mode uses no QPU time)" if record.get("local_testing_mode") else "") + ".", ""]
    return lines


def write_qpu_report(out: Path, items: list[tuple[str, dict, dict]]) -> tuple[Path, Path]:
    """Write ``qpu_vs_simulator.md`` and ``qpu_vs_simulator.png`` into ``out`` for ``items`` (eval file name, its
    record, its per-image arrays); returns both paths."""
    lines = ["# QPU vs simulator", "",
             "Each ibm evaluation's measured values beside the same ISA circuits, parameter values, shots and "
             "mitigation simulated on the calibration snapshot taken when its jobs were submitted. The agreement "
             "test: standardized residuals (measured − predicted) / √(se_measured² + se_predicted²), χ² over "
             "every image and observable; `disagrees` when its p-value is below the stated level.", ""]
    for name, record, _ in items:
        lines += _section(name, record)
    md = write_text(out / MARKDOWN, "\n".join(lines))
    png = out / FIGURE
    plot_measured_vs_predicted(items, png)
    return md, png


def plot_measured_vs_predicted(items: list[tuple[str, dict, dict]], path: Path) -> None:
    """One panel per eval file: measured against predicted value for every image and observable (a colour per
    observable), shot error bars both ways, the y = x line; the title names the backend, the verdict and the
    calibration's age at submission."""
    fig, axes = plt.subplots(1, len(items), figsize=(5.2 * len(items), 5.0), squeeze=False)
    for ax, (name, record, arrays) in zip(axes[0], items):
        measured, predicted = np.asarray(arrays["values"]), np.asarray(arrays["predicted_values"])
        yerr, xerr = np.asarray(arrays["measured_se"]), np.asarray(arrays["predicted_se"])
        for o in range(measured.shape[1]):
            ax.errorbar(predicted[:, o], measured[:, o], xerr=xerr[:, o], yerr=yerr[:, o], fmt="o", ms=3,
                        elinewidth=0.6, alpha=0.8, label=f"observable {o}")
        both = np.r_[measured.ravel(), predicted.ravel()]
        both = both[np.isfinite(both)] if both.size else np.zeros(1)
        margin = 0.05 + 0.05 * float(np.ptp(both)) if both.size else 0.05
        ends = [float(both.min(initial=0.0)) - margin, float(both.max(initial=0.0)) + margin]  # the data, zoomed
        ax.plot(ends, ends, "k--", lw=0.8, label="y = x")
        ax.set_xlim(ends)
        ax.set_ylim(ends)
        prediction = record["prediction"]
        ax.set_title(f"{record.get('backend')}: {prediction['agreement']['verdict']}\n"
                     f"{age_text(prediction['snapshot'])}", fontsize=9)
        ax.set_xlabel(f"predicted on {prediction['snapshot'].get('device')} snapshot")
        ax.set_ylabel("measured" + (" (Runtime local testing mode)" if record.get("local_testing_mode") else ""))
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path)
