"""Plots a person would rather look at than read: learning curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path, dpi: int = 120) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_learning_curves(history: list[dict], path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy/AUC per epoch, train vs validation; the selected epoch marked."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train ACC")
    ax_acc.plot(epochs, [h["val_acc"] for h in history], label="validation ACC")
    ax_acc.plot(epochs, [h["val_auc"] for h in history], label="validation AUC", linestyle="--")
    ax_acc.set(xlabel="epoch", ylim=(0, 1.02), title="Accuracy / AUC")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"selected (epoch {best_epoch})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_confusion(confusion: list[list[int]], label_names: list[str], path: Path, title: str) -> None:
    """A confusion matrix with counts and row-normalised shading."""
    cm = np.asarray(confusion)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(label_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    short = [name if len(name) <= 18 else name[:16] + "…" for name in label_names]
    ax.set_xticks(range(k), short, rotation=30, ha="right")
    ax.set_yticks(range(k), short)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)


def _plot_curve(ax, rows: list[dict], column: str, label: str) -> None:
    """Mean of ``column`` over repeats vs noise scale, with the min–max spread as a band."""
    from qmedimg.study import curve

    scales, mean, low, high = curve(rows, column)
    (line,) = ax.plot(scales, mean, marker="o", label=label)
    if (high > low).any():
        ax.fill_between(scales, low, high, color=line.get_color(), alpha=0.2)


def plot_noise_study(rows: list[dict], out: Path) -> None:
    """accuracy_vs_noise.png (ACC and AUC vs noise scale, bands = spread over repeats),
    expectation_error.png, and circuits.png when several runs are compared."""
    from qmedimg.study import _groups, _label, curve

    groups = _groups(rows)
    many = len({r["run"] for r in rows}) > 1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, group in groups.items():
        label = _label(key, many, group)
        for ax, column in zip(axes, ("acc", "auc")):
            _plot_curve(ax, group, column, label)
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
    axes[1].legend(fontsize=7, loc="lower left")
    _save(fig, out / "accuracy_vs_noise.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, group in groups.items():
        _plot_curve(ax, group, "mean_abs_expectation_error", _label(key, many, group))
    ax.set(xlabel="noise scale (× calibrated error rates)", ylabel="mean |Δ expectation| vs ideal",
           title="Expectation-value error of the quantum head")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out / "expectation_error.png")

    if many:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, group in groups.items():
            if key[2] != "none":
                continue
            scales, mean, low, high = curve(group, "acc")
            ax.plot(scales, mean - float(group[0]["ideal_acc"]), marker="o", label=_label(key, True, group))
        ax.set(xlabel="noise scale (× calibrated error rates)", ylabel="test ACC − ideal ACC",
               title="Which circuit keeps its accuracy as noise grows (no mitigation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        _save(fig, out / "circuits.png")


def plot_compare_curves(records: list[dict], path: Path) -> None:
    """Validation accuracy and training loss per epoch, mean over seeds, one line per model."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for label in dict.fromkeys(r["model"] for r in records):
        histories = [r["history"] for r in records if r["model"] == label]
        length = min(len(h) for h in histories)
        epochs = list(range(1, length + 1))
        for ax, key in ((ax_acc, "val_acc"), (ax_loss, "train_loss")):
            values = np.mean([[float(h[i][key]) for i in range(length)] for h in histories], axis=0)
            ax.plot(epochs, values, label=label)
    ax_acc.set(xlabel="epoch", ylabel="validation ACC", title="Validation accuracy (mean over seeds)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss (mean over seeds)")
    for ax in (ax_acc, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_gradcam(image: np.ndarray, heat: np.ndarray, path: Path, title: str) -> None:
    """The image and its Grad-CAM overlay side by side."""
    shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    cmap = "gray" if image.shape[0] == 1 else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.5, 3.4))
    left.imshow(shown, cmap=cmap)
    left.set_title("image", fontsize=9)
    right.imshow(shown, cmap=cmap)
    scaled = heat / heat.max() if heat.max() > 0 else heat
    right.imshow(scaled, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    right.set_title("Grad-CAM (predicted class)", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_head_space(values: np.ndarray, labels: np.ndarray, names: list[str], path: Path) -> None:
    """Pairwise scatter of the quantum head's expectation values over a split, coloured by true class."""
    k = values.shape[1]
    labels = np.asarray(labels).reshape(-1)
    fig, axes = plt.subplots(k, k, figsize=(2.2 * k, 2.2 * k), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if i == j:
                for c, name in enumerate(names):
                    ax.hist(values[labels == c, i], bins=20, range=(-1, 1), alpha=0.6, label=name)
            else:
                for c, name in enumerate(names):
                    ax.scatter(values[labels == c, j], values[labels == c, i], s=6, alpha=0.7, label=name)
                ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05))
            if i == k - 1:
                ax.set_xlabel(f"⟨O{j}⟩", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"⟨O{i}⟩", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0, min(1, k - 1)].legend(fontsize=6, loc="upper right")
    fig.suptitle("Quantum head expectation values on the test split, by true class", fontsize=10)
    _save(fig, path, dpi=110)
