"""The reliability diagram: how often a model is right against how sure it says it is, bin by bin of confidence,
with its expected calibration error (ECE). Training draws one for the test split as ``calibration.png``.

Example::

    from qmedimg.metrics import reliability
    from qmedimg.report.calibration import plot_reliability
    plot_reliability(reliability(test_labels, test_probs, "binary-class"), Path("calibration.png"), "test")

The numbers come from :func:`qmedimg.metrics.reliability` (15 equal-width bins by default; a multi-label task's
bins pool every label, its ECE is the mean over labels). A calibrated model's bars reach the diagonal; bars below
it are over-confidence, above it under-confidence. The lower panel counts the images in each bin: a bin of a few
images says little.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from qmedimg.report.plots import save_figure  # (which also chooses matplotlib's file-only backend)


def plot_reliability(reliability: dict, path: Path, title: str) -> None:
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration, each bin's mean confidence
    marked on it (the bar's gap to its mark is that bin's calibration error), the ECE in the title, and the images
    per bin below."""
    edges = np.asarray(reliability["edges"])
    count = np.asarray(reliability["count"])
    accuracy = np.nan_to_num(np.asarray(reliability["accuracy"], dtype=float))  # an empty bin draws no bar
    confidence = np.asarray(reliability["confidence"], dtype=float)
    left, width = edges[:-1], np.diff(edges)
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(left, accuracy, width, align="edge", edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy")
    full = count > 0
    ax.scatter((left + width / 2)[full], confidence[full], color="tab:red", marker="_", s=160, linewidths=2, zorder=3,
               label="mean confidence in the bin")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.set(ylim=(0, 1), ylabel="accuracy in the bin",
           title=f"{title}\nECE {reliability['ece']:.3f} ({reliability['bins']} bins)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax_count.bar(left, count, width, align="edge", edgecolor="black", color="tab:grey")
    ax_count.set(xlim=(0, 1), xlabel="confidence (probability of the most probable class)", ylabel="images")
    save_figure(fig, path)
