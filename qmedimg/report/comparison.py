"""The comparison report: per-model means ± standard deviations over seeds (comparison.md/.csv; one seed: its
single values, no ±), every run (runs.csv), learning curves and summed confusion matrices, and the hybrid against
each baseline on the same test images (paired.csv and a section of comparison.md: :mod:`qmedimg.report.paired`). Next to ACC/AUC: is the head
used? — the effective dimension of its outputs on the test split and the circuit weights that get
no gradient ("—" for networks without such a head).

Example::

    from qmedimg.report.comparison import write_comparison
    write_comparison(out, records, seeds=[0, 1, 2], data={"dataset": "breastmnist"})
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from qmedimg.files import reporting_os_errors, write_csv, write_text
from qmedimg.report.paired import PAIRED_COLUMNS, PairedReport, paired_rows, paired_section, summary_section
from qmedimg.report.plots import plot_compare_curves, plot_confusion

METRICS = ("acc", "auc", "precision", "recall", "f1")
# Published anchors, quoted only when a comparison runs on exactly their data (full dataset, 28×28).
ANCHORS = {"breastmnist": "MedMNIST v2 (Yang et al., 2023) reports ResNet-18 (28): ACC 0.863, AUC 0.901 on "
                          "BreastMNIST, trained 100 epochs."}


def _mean_std(values: list[float | None]) -> tuple[float, float | str]:
    """Mean and standard deviation over seeds ("" for one seed: no spread was measured); an undefined value
    (None as metrics.json records an undefined AUC, NaN in memory) makes both NaN, shown as "—"."""
    if any(v is None or not math.isfinite(v) for v in values):  # statistics.stdev fails on NaN
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else ""


def _spread(mean: float, std: float | str, digits: int = 4) -> str:
    """'0.8125 ± 0.0100'; one seed's single value without ± ('0.8125')."""
    return f"{mean:.{digits}f}" if std == "" else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _usage_on_test_split(record: dict) -> dict | None:
    """A run's head usage on the test split (``model.head_usage``): the record's own ``head_usage``
    when it has one, else what its metrics.json recorded; None for networks without a bounded head."""
    if "head_usage" in record:
        return record["head_usage"]
    return (record["metrics"].get("head_usage") or {}).get("test")


def _run_usage(usage: dict | None) -> tuple:
    """runs.csv's head-usage fields of one run: effective dimension, outputs, zero-gradient and all
    circuit weights (blank where the run has no such head or no circuit)."""
    if not usage:
        return "", "", "", ""
    if "weights" not in usage:  # a classical head: no circuit weights
        return usage["effective_dimension"], usage["outputs"], "", ""
    return usage["effective_dimension"], usage["outputs"], len(usage["zero_gradient_weights"]), usage["weights"]


def _usage_columns(usages: list[dict | None]) -> dict:
    """comparison.csv's head-usage fields over one model's seeds (blank when its runs have no head)."""
    found = [u for u in usages if u]
    if not found:
        return dict.fromkeys(("effective_dimension", "effective_dimension_std", "head_outputs",
                              "zero_gradient_weights_min", "zero_gradient_weights_max", "circuit_weights"), "")
    mean, std = _mean_std([u["effective_dimension"] for u in found])
    quantum = [u for u in found if "zero_gradient_weights" in u]
    zeros = [len(u["zero_gradient_weights"]) for u in quantum]
    return {"effective_dimension": mean, "effective_dimension_std": std, "head_outputs": found[0]["outputs"],
            "zero_gradient_weights_min": min(zeros) if zeros else "", "zero_gradient_weights_max": max(zeros) if zeros else "",
            "circuit_weights": quantum[0]["weights"] if quantum else ""}


def _usage_cells(row: dict) -> list[str]:
    """comparison.md's two head-usage cells: '1.10 ± 0.05 of 4' and '4 of 24' (a range if seeds differ)."""
    if row["effective_dimension"] == "":
        return ["—", "—"]
    dimension = f"{_spread(row['effective_dimension'], row['effective_dimension_std'], 2)} of {row['head_outputs']}"
    if row["zero_gradient_weights_min"] == "":
        return [dimension, "—"]
    low, high = row["zero_gradient_weights_min"], row["zero_gradient_weights_max"]
    return [dimension, f"{low if low == high else f'{low}–{high}'} of {row['circuit_weights']}"]


def _cell(mean: float, std: float | str) -> str:
    """'0.8125 ± 0.0100' ('0.8125': one seed), or '—' when undefined (multi-class AUC with a class absent from the
    test split)."""
    return _spread(mean, std) if math.isfinite(mean) and (std == "" or math.isfinite(std)) else "—"


def write_comparison(out: Path, records: list[dict], seeds: list[int], data: dict,
                     paired: PairedReport | None = None) -> list[dict]:
    """Write the comparison of ``records`` (model, seed, run, metrics, history per trained run);
    ``data`` is the data options every model was trained on (it decides which anchor applies); ``paired``: the
    hybrid against each baseline on the same test images (:func:`~qmedimg.report.paired.paired_comparison`),
    written to paired.csv and as a section of comparison.md (None: no such section).
    Returns comparison.csv's rows (one per model)."""
    with reporting_os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    usages = [_usage_on_test_split(r) for r in records]
    write_csv(out / "runs.csv", [
        [r["model"], r["seed"], *(r["metrics"]["test"][k] for k in METRICS),
         *_run_usage(u),
         r["metrics"]["parameters"]["total"], r["metrics"]["train_seconds"], r["metrics"]["train_samples_per_s"],
         r["run"]] for r, u in zip(records, usages)],
        header=["model", "seed", *METRICS, "effective_dimension", "head_outputs", "zero_gradient_weights",
                "circuit_weights", "parameters", "train_seconds", "train_samples_per_s", "run"])
    labels = list(dict.fromkeys(r["model"] for r in records))
    rows = []
    for label in labels:
        mine = [r["metrics"] for r in records if r["model"] == label]
        row = {"model": label, "seeds": len(mine)}
        for key in METRICS:
            row[key], row[f"{key}_std"] = _mean_std([m["test"][key] for m in mine])
        row.update(_usage_columns([u for r, u in zip(records, usages) if r["model"] == label]))
        row["parameters"] = mine[0]["parameters"]["total"]
        row["quantum_parameters"] = mine[0]["parameters"]["quantum"]
        row["train_seconds"], row["train_seconds_std"] = _mean_std([m["train_seconds"] for m in mine])
        row["train_samples_per_s"] = statistics.mean(m["train_samples_per_s"] for m in mine)
        rows.append(row)
        confusion = np.sum([m["test"]["confusion"] for m in mine], axis=0).tolist()
        names = [str(i) for i in range(len(confusion))]
        with reporting_os_errors(out / f"confusion-{label}.png"):
            plot_confusion(confusion, names, out / f"confusion-{label}.png",
                           f"{label}: test, summed over {len(mine)} seeds")
    write_csv(out / "comparison.csv", [list(row.values()) for row in rows], header=list(rows[0]))
    first = records[0]["metrics"]
    lines = [f"# Comparison on {first['dataset']} (test split; seeds {', '.join(map(str, seeds))})", "",
             "| model | ACC | AUC | head effective dimension | zero-gradient circuit weights | precision | recall | "
             "F1 | trainable params | training time (s) | samples/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [_cell(row[k], row[k + "_std"]) for k in METRICS]
        cells[2:2] = _usage_cells(row)
        params = f"{row['parameters']:,}" + (f" ({row['quantum_parameters']} quantum)" if row["quantum_parameters"] else "")
        lines.append(f"| {row['model']} | " + " | ".join(cells) +
                     f" | {params} | {_spread(row['train_seconds'], row['train_seconds_std'], 1)} | "
                     f"{row['train_samples_per_s']:.0f} |")
    spread = "Mean ± standard deviation over seeds" if len(seeds) > 1 else "One seed: single values, no spread measured"
    lines += ["", f"{spread}; ACC/AUC as MedMNIST computes them; model selection on "
              "the validation split only; every model trained with the same recipe on the same machine in this run.",
              "Is the head used? Head effective dimension: the participation ratio of the covariance of the head's "
              "outputs on the test split (1: they carry one number; the number of outputs: each carries its own); "
              "zero-gradient circuit weights: weights whose gradient is zero on every test image and output "
              "(min–max over seeds); — : no such head (a plain linear head, a baseline CNN)."]
    if any(not math.isfinite(row[k]) for row in rows for k in METRICS):
        lines.append("— in a metric: undefined for some seed (MedMNIST's multi-class AUC needs every class in the "
                     "test split; a larger --limit includes them).")
    anchor = ANCHORS.get(str(data.get("dataset", "")).lower())
    if anchor and not data.get("classes") and not data.get("limit") and data.get("size", 28) == 28:
        lines.append("For reference, " + anchor)
    by = {row["model"]: row for row in rows}
    hybrid = next((row for row in rows if row["model"].startswith("hybrid")), None)
    if hybrid and "classical" in by:
        c = by["classical"]
        heads = [next(r["metrics"]["parameters"].get("head") for r in records if r["model"] == m)
                 for m in (hybrid["model"], "classical")]  # equal for sel and ring, not for fqa (22 vs 24)
        size = "same number of head parameters" if heads[0] == heads[1] else f"head parameters {heads[0]} vs {heads[1]}"
        used = (f"; head effective dimension {hybrid['effective_dimension']:.2f} vs {c['effective_dimension']:.2f}"
                if "" not in (hybrid["effective_dimension"], c["effective_dimension"]) else "")
        lines += ["", f"Ablation: {hybrid['model']} − classical (same backbone, {size}): "
                  f"ACC {hybrid['acc'] - c['acc']:+.4f}, AUC {hybrid['auc'] - c['auc']:+.4f} "
                  + (f"(seed-to-seed std {hybrid['acc_std']:.4f} / {c['acc_std']:.4f} ACC)" if hybrid["seeds"] > 1 else
                     "(one seed: no spread measured)") + f"{used}."]
    if hybrid and "resnet18" in by:
        lines.append(f"Parameters: {hybrid['model']} has {hybrid['parameters'] / by['resnet18']['parameters']:.2%} of "
                     f"ResNet-18's ({hybrid['parameters']:,} vs {by['resnet18']['parameters']:,}).")
    if paired is not None:
        write_csv(out / "paired.csv", paired_rows(paired), header=list(PAIRED_COLUMNS))
        lines += paired_section(paired)
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
    with reporting_os_errors(out / "learning_curves.png"):
        plot_compare_curves(records, out / "learning_curves.png")
    return rows


def write_summary(out: Path, tables: dict[str, list[dict]], seeds: list[int],
                  paired: dict[str, PairedReport] | None = None) -> None:
    """summary.md/.csv across datasets: test ACC and AUC (mean ± std over seeds; one seed's single values) of every
    model on every dataset, from each dataset's comparison rows (``tables``: dataset -> rows); with ``paired``
    (dataset -> its paired comparison), the pooled paired differences and whether each is distinguishable from 0."""
    models = list(dict.fromkeys(row["model"] for rows in tables.values() for row in rows))
    write_csv(out / "summary.csv", [[name, row["model"], row["seeds"], row["acc"], row["acc_std"], row["auc"],
                                     row["auc_std"]] for name, rows in tables.items() for row in rows],
              header=["dataset", "model", "seeds", "acc", "acc_std", "auc", "auc_std"])
    lines = [f"# Comparison across datasets (test split; seeds {', '.join(map(str, seeds))})", "",
             f"ACC / AUC, {'mean ± standard deviation over seeds' if len(seeds) > 1 else 'one seed (no spread)'}; "
             "each dataset's own table is in its folder.", "",
             "| dataset | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, rows in tables.items():
        by = {row["model"]: row for row in rows}
        cells = [f"{_cell(by[m]['acc'], by[m]['acc_std'])} / {_cell(by[m]['auc'], by[m]['auc_std'])}"
                 if m in by else "—" for m in models]
        lines.append(f"| [{name}]({name}/comparison.md) | " + " | ".join(cells) + " |")
    hybrid = next((m for m in models if m.startswith("hybrid")), None)
    if hybrid and "classical" in models:
        wins = [name for name, rows in tables.items()
                if {r["model"]: r for r in rows}.get(hybrid, {}).get("auc", -1)
                > {r["model"]: r for r in rows}.get("classical", {}).get("auc", 2)]
        lines += ["", f"{hybrid} beats the same-size classical head on mean test AUC on {len(wins)} of "
                  f"{len(tables)} datasets" + (f" ({', '.join(wins)})" if wins else "") +
                  "; read the spreads" + (" and the paired intervals" if paired else "") +
                  " before calling any of it a difference."]
    lines += summary_section(paired or {})
    write_text(out / "summary.md", "\n".join(lines) + "\n")
