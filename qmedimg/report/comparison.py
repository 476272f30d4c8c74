"""The comparison report: per-model means ± standard deviations over seeds (comparison.md/.csv),
every run (runs.csv), learning curves and summed confusion matrices.

Example::

    from qmedimg.report.comparison import write_comparison
    write_comparison(out, records, seeds=[0, 1, 2], data={"dataset": "breastmnist"})
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from qmedimg.files import reporting_os_errors, write_csv, write_text
from qmedimg.report.plots import plot_compare_curves, plot_confusion

METRICS = ("acc", "auc", "precision", "recall", "f1")
# Published anchors, quoted only when a comparison runs on exactly their data (full dataset, 28×28).
ANCHORS = {"breastmnist": "MedMNIST v2 (Yang et al., 2023) reports ResNet-18 (28): ACC 0.863, AUC 0.901 on "
                          "BreastMNIST, trained 100 epochs."}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_comparison(out: Path, records: list[dict], seeds: list[int], data: dict) -> None:
    """Write the comparison of ``records`` (model, seed, run, metrics, history per trained run);
    ``data`` is the data options every model was trained on (it decides which anchor applies)."""
    with reporting_os_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "runs.csv", [
        [r["model"], r["seed"], *(r["metrics"]["test"][k] for k in METRICS), r["metrics"]["parameters"]["total"],
         r["metrics"]["train_seconds"], r["metrics"]["train_samples_per_s"], r["run"]] for r in records],
        header=["model", "seed", *METRICS, "parameters", "train_seconds", "train_samples_per_s", "run"])
    labels = list(dict.fromkeys(r["model"] for r in records))
    rows = []
    for label in labels:
        mine = [r["metrics"] for r in records if r["model"] == label]
        row = {"model": label, "seeds": len(mine)}
        for key in METRICS:
            row[key], row[f"{key}_std"] = _mean_std([m["test"][key] for m in mine])
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
             "| model | ACC | AUC | precision | recall | F1 | trainable params | training time (s) | samples/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[k]:.4f} ± {row[k + '_std']:.4f}" for k in METRICS]
        params = f"{row['parameters']:,}" + (f" ({row['quantum_parameters']} quantum)" if row["quantum_parameters"] else "")
        lines.append(f"| {row['model']} | " + " | ".join(cells) +
                     f" | {params} | {row['train_seconds']:.1f} ± {row['train_seconds_std']:.1f} | "
                     f"{row['train_samples_per_s']:.0f} |")
    lines += ["", "Mean ± standard deviation over seeds; ACC/AUC as MedMNIST computes them; model selection on "
              "the validation split only; every model trained with the same recipe on the same machine in this run."]
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
        lines += ["", f"Ablation: {hybrid['model']} − classical (same backbone, {size}): "
                  f"ACC {hybrid['acc'] - c['acc']:+.4f}, AUC {hybrid['auc'] - c['auc']:+.4f} "
                  f"(seed-to-seed std {hybrid['acc_std']:.4f} / {c['acc_std']:.4f} ACC)."]
    if hybrid and "resnet18" in by:
        lines.append(f"Parameters: {hybrid['model']} has {hybrid['parameters'] / by['resnet18']['parameters']:.2%} of "
                     f"ResNet-18's ({hybrid['parameters']:,} vs {by['resnet18']['parameters']:,}).")
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
    with reporting_os_errors(out / "learning_curves.png"):
        plot_compare_curves(records, out / "learning_curves.png")
