"""Metrics (computed as MedMNIST's own ``Evaluator`` does) and evaluation of a trained run.

Example::

    from qmedimg.evaluate import evaluate_run
    result = evaluate_run("runs/breast")      # re-computes test metrics from the checkpoint
    result["test"]["acc"], result["test"]["auc"]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from qmedimg.errors import QmedimgError


def compute_metrics(labels: np.ndarray, probs: np.ndarray, task: str) -> dict:
    """ACC/AUC exactly as MedMNIST computes them (its ``getACC``/``getAUC``), plus precision,
    recall and F1 as macro averages over classes (no class is privileged) and the confusion matrix."""
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=float)
    predicted = probs.argmax(axis=1)
    classes = list(range(probs.shape[1]))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="macro", labels=classes, zero_division=0
    )
    return {
        "acc": float(getACC(labels, probs, task)),
        "auc": float(getAUC(labels, probs, task)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "n": int(len(labels)),
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised to [-1, 1] (MedMNIST's Normalize(0.5, 0.5))."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of a model in eval mode, batch by batch."""
    model.eval()
    out = [
        torch.softmax(model(to_tensor(images[i : i + batch_size])), dim=1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).double().numpy()


def evaluate_run(run_dir: str | Path) -> dict:
    """Re-compute the test metrics of a run from its checkpoint; writes ``eval-exact.json``."""
    from qmedimg.train import load_run  # train owns the run directory layout

    run = load_run(run_dir)
    start = time.perf_counter()
    probs = predict_probs(run.model, run.dataset.test.images)
    result = {
        "backend": "exact",
        "test": compute_metrics(run.dataset.test.labels, probs, run.dataset.task),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "trained_test": run.metrics.get("test"),
    }
    path = Path(run_dir) / "eval-exact.json"
    path.write_text(json.dumps(result, indent=2))
    return result


def require_run(run_dir: str | Path) -> Path:
    """The run directory, or a one-line error if it holds no qmedimg run."""
    path = Path(run_dir)
    if not (path / "config.json").is_file() or not (path / "checkpoint.pt").is_file():
        raise QmedimgError(
            f"{path}: not a qmedimg run directory (needs config.json and checkpoint.pt, "
            "written by `qmedimg train --out DIR`)"
        )
    return path
