"""Plots a person would rather look at than read: learning curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
