"""Plots a person would rather look at than read: learning curves, confusion matrices, comparison
curves, Grad-CAM overlays and the quantum head's feature space.

Example::

    from qmedimg.report.plots import plot_confusion
    plot_confusion([[50, 3], [7, 40]], ["benign", "malignant"], Path("confusion.png"), "test")
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120, rect: tuple | None = None) -> None:
    """Lay out, save and close a figure (``rect``: the part of the figure the axes may use)."""
    fig.tight_layout(rect=rect)
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
    save_figure(fig, path)


def plot_confusion(confusion: list[list[int]], label_names: list[str], path: Path, title: str) -> None:
    """A confusion matrix with counts and row-normalised shading; for multi-label data (one 2×2 matrix
    per label) a row per label: true/false positives and negatives, shaded by rate within the truth."""
    cm = np.asarray(confusion)
    if cm.ndim == 3:
        _plot_label_confusions(cm, label_names, path, title)
        return
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
    save_figure(fig, path)


def _plot_label_confusions(cm: np.ndarray, label_names: list[str], path: Path, title: str) -> None:
    table = cm.reshape(len(cm), 4)  # TN, FP, FN, TP per label
    negatives, positives = table[:, :2].sum(1, keepdims=True), table[:, 2:].sum(1, keepdims=True)
    rates = np.hstack([table[:, :2] / np.maximum(negatives, 1), table[:, 2:] / np.maximum(positives, 1)])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(cm) + 1.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(cm)):
        for j in range(4):
            ax.text(j, i, str(table[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(4), ["true neg.", "false pos.", "false neg.", "true pos."])
    ax.set_yticks(range(len(cm)), [n if len(n) <= 18 else n[:16] + "…" for n in label_names])
    ax.set_title(title)
    save_figure(fig, path)


def plot_per_label(per_label: list[dict], label_names: list[str], path: Path, title: str) -> None:
    """Multi-label data: test AUC per label (bars; a label without positives has none), positives noted."""
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(per_label) + 1.5))
    aucs = [row["auc"] for row in per_label]
    ax.barh(range(len(aucs)), [0 if a != a else a for a in aucs], color="tab:blue")
    ax.axvline(0.5, color="gray", linestyle=":")
    for i, row in enumerate(per_label):
        text = f"{row['auc']:.3f}" if row["auc"] == row["auc"] else "no positives"
        ax.text(0.01, i, f"{text}  ({row['positives']} positive)", va="center", color="white" if aucs[i] > 0.3 else "black")
    ax.set_yticks(range(len(aucs)), [n if len(n) <= 18 else n[:16] + "…" for n in label_names])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="AUC", title=title)
    save_figure(fig, path)


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
    save_figure(fig, path)


CAM_SCALE = "relevance (1 = most relevant)"
"""What the colour bar of a Grad-CAM figure measures: the map scaled to its own maximum."""


def plot_gradcam(image: np.ndarray, heat: np.ndarray, path: Path, title: str) -> None:
    """The image and its Grad-CAM overlay side by side, with the overlay's colour bar."""
    shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    cmap = "gray" if image.shape[0] == 1 else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.4))
    left.imshow(shown, cmap=cmap)
    left.set_title("image", fontsize=9)
    right.imshow(shown, cmap=cmap)
    scaled = heat / heat.max() if heat.max() > 0 else heat
    overlay = right.imshow(scaled, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    right.set_title("Grad-CAM (predicted class)", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    _cam_colorbar(fig, overlay, right)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _cam_colorbar(fig, overlay, ax) -> None:
    """The colour bar of a Grad-CAM overlay (drawn opaque: the overlay's transparency would wash it out)."""
    bar = fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    bar.solids.set_alpha(1)
    bar.set_label(CAM_SCALE, fontsize=7)
    bar.ax.tick_params(labelsize=6)


def plot_gradcam_volume(volume: np.ndarray, heat: np.ndarray, path: Path, title: str) -> None:
    """A volume (1, D, H, W) and its 3D Grad-CAM map (D, H, W): the middle axial (D), coronal (H) and
    sagittal (W) slices, each alone (top) and overlaid (bottom), one colour scale for all three."""
    d, h, w = (n // 2 for n in heat.shape)
    slices = {"axial": (volume[0, d], heat[d]), "coronal": (volume[0, :, h], heat[:, h]),
              "sagittal": (volume[0, :, :, w], heat[:, :, w])}
    top = heat.max()
    fig, axes = plt.subplots(2, 3, figsize=(8.5, 6))
    for j, (name, (image, cam)) in enumerate(slices.items()):
        axes[0, j].imshow(image, cmap="gray", vmin=0, vmax=255)
        axes[0, j].set_title(f"{name} (middle slice)", fontsize=9)
        axes[1, j].imshow(image, cmap="gray", vmin=0, vmax=255)
        overlay = axes[1, j].imshow(cam / top if top > 0 else cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[1, j].set_title(f"Grad-CAM, {name}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    _cam_colorbar(fig, overlay, axes[1, -1])  # one scale for the three slices (vmin 0, vmax 1 in each)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_head_space(values: np.ndarray, labels: np.ndarray, names: list[str], path: Path) -> None:
    """Pairwise scatter of the quantum head's expectation values over a split, coloured by true class: the
    most frequent class drawn first, the rarest last, on top (the legend says which), so that no class hides
    a rarer one."""
    k = values.shape[1]
    labels = np.asarray(labels).reshape(-1)
    counts = np.bincount(labels, minlength=len(names))[: len(names)]
    order = sorted(range(len(names)), key=lambda c: (-counts[c], c))  # drawn in this order: the rarest on top
    legend = [f"{name} (n={counts[c]}{', drawn on top' if c == order[-1] and len(names) > 1 else ''})"
              for c, name in enumerate(names)]
    fig, axes = plt.subplots(k, k, figsize=(2.2 * k, 2.2 * k), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            for rank, c in enumerate(order):
                style = {"color": f"C{c % 10}", "label": legend[c], "zorder": 2 + rank}
                if i == j:
                    ax.hist(values[labels == c, i], bins=20, range=(-1, 1), alpha=0.6, **style)
                else:
                    ax.scatter(values[labels == c, j], values[labels == c, i], s=6, alpha=0.7, **style)
            if i != j:
                ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05))
            if i == k - 1:
                ax.set_xlabel(f"⟨O{j}⟩", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"⟨O{i}⟩", fontsize=8)
            ax.tick_params(labelsize=6)
    handles = dict(zip(*reversed(axes[0, min(1, k - 1)].get_legend_handles_labels())))
    axes[0, min(1, k - 1)].legend([handles[text] for text in legend if text in handles],
                                  [text for text in legend if text in handles], fontsize=6, loc="upper right")
    fig.suptitle("Quantum head expectation values on the test split, by true class", fontsize=10)
    save_figure(fig, path, dpi=110)
