"""Metrics, computed as MedMNIST's own ``Evaluator`` does.

Example::

    from qmedimg.metrics import compute_metrics
    m = compute_metrics(labels, probs, "binary-class")
    m["acc"], m["auc"], m["f1"], m["confusion"]
"""

from __future__ import annotations

import numpy as np
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


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
