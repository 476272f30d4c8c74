"""Metrics, computed as MedMNIST's own ``Evaluator`` does.

Example::

    from qmedimg.metrics import compute_metrics
    m = compute_metrics(labels, probs, "binary-class")                 # decided at P(class 1) > 0.5
    m["acc"], m["auc"], m["f1"], m["confusion"]
    compute_metrics(labels, probs, "binary-class", threshold=0.31)     # another decision threshold
    compute_metrics(labels_nk, probs_nk, "multi-label, binary-class")  # + m["per_label"]

Tasks: ``binary-class`` and ``multi-class`` (labels (N,), probabilities (N, classes) that sum to 1)
and ``multi-label, binary-class`` (labels (N, K) of 0/1, probabilities (N, K): one sigmoid per
label, e.g. ChestMNIST's 14 findings). ``threshold`` is where a probability becomes a "yes": for
binary tasks on P(class 1), for multi-label on every label (a scalar or one per label); multi-class
decides by argmax and takes none.
"""

from __future__ import annotations

import math

import numpy as np
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (confusion_matrix, multilabel_confusion_matrix, precision_recall_fscore_support,
                             roc_auc_score)

from qmedimg.data import MULTI_LABEL


def decisions(probs: np.ndarray, task: str, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """What a model says: the class per image (N,), or 0/1 per label (N, K) for multi-label tasks."""
    probs = np.asarray(probs, dtype=float)
    if task == MULTI_LABEL:
        return (probs > np.asarray(threshold, dtype=float)).astype(np.int64)
    if task == "binary-class":
        return (probs[:, -1] > float(threshold)).astype(np.int64)
    return probs.argmax(axis=1)


def compute_metrics(labels: np.ndarray, probs: np.ndarray, task: str, threshold: float | np.ndarray = 0.5) -> dict:
    """ACC/AUC exactly as MedMNIST computes them (its ``getACC``/``getAUC``; ACC at ``threshold``),
    plus precision, recall and F1 as macro averages over classes (or labels: no class is privileged)
    and the confusion matrix (per label for multi-label tasks, with ``per_label`` ACC/AUC). An AUC the
    labels leave undefined (a class, or a label's positives or negatives, absent) is NaN, with the
    reason in ``auc_undefined``; NaN is no JSON value: metrics files record it as null."""
    probs = np.asarray(probs, dtype=float)
    if task == MULTI_LABEL:
        return _multi_label(np.asarray(labels).reshape(len(probs), -1), probs, threshold)
    labels = np.asarray(labels).reshape(-1)
    predicted = decisions(probs, task, threshold)
    classes = list(range(probs.shape[1]))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="macro", labels=classes, zero_division=0
    )
    absent = [c for c in classes if not np.any(labels == c)]
    return {
        "acc": float(getACC(labels, probs, task, threshold) if task == "binary-class" else getACC(labels, probs, task)),
        "auc": math.nan if absent else float(getAUC(labels, probs, task)),
        **({"auc_undefined": _why_no_auc(absent, classes)} if absent else {}),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "n": int(len(labels)),
    }


def statistical_spread(labels: np.ndarray, values: np.ndarray, error: float, probs_of, task: str,
                       threshold: float | np.ndarray = 0.5, *, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The statistical error of ACC and AUC computed from head values that carry one (noise trajectories): the
    standard deviation of each metric over ``draws`` copies of ``values`` with independent N(0, ``error``²)
    added to every value (seeded by ``seed``), each mapped to probabilities by ``probs_of``. ``error`` is
    the largest standard error of one value, so every value is given the largest: an upper estimate. In
    the metrics' own unit (0.005 = 0.5 ACC points); an undefined AUC gives NaN."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    drawn = [compute_metrics(labels, probs_of(values + rng.normal(0.0, error, values.shape)), task, threshold)
             for _ in range(draws)]
    return {name: float(np.std([m[name] for m in drawn], ddof=1)) for name in ("acc", "auc")}


def _why_no_auc(absent: list[int], classes: list[int]) -> str:
    """Why the AUC of labels lacking the ``absent`` classes is undefined (NaN here, null in JSON)."""
    if len(classes) == 2:
        which = f"only class {1 - absent[0]} in these labels" if len(absent) == 1 else "no labels"
        return f"{which}: an AUC needs images of both classes"
    return (f"class{'es' * (len(absent) > 1)} {', '.join(map(str, absent))} absent from these labels: MedMNIST's "
            "multi-class AUC averages one-vs-rest AUCs over every class")


def _multi_label(labels: np.ndarray, probs: np.ndarray, threshold) -> dict:
    """MedMNIST's multi-label ACC (mean over labels of the per-label accuracy) and AUC (mean over labels
    of the per-label ROC AUC), macro precision/recall/F1 over labels, and the same per label."""
    predicted = decisions(probs, MULTI_LABEL, threshold)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    per_label = []
    for k in range(labels.shape[1]):
        both = len(np.unique(labels[:, k])) == 2  # an AUC needs positives and negatives
        per_label.append({"label": k, "positives": int(labels[:, k].sum()),
                          "acc": float((predicted[:, k] == labels[:, k]).mean()),
                          "auc": float(roc_auc_score(labels[:, k], probs[:, k])) if both else math.nan})
    one_sided = [row["label"] for row in per_label if row["auc"] != row["auc"]]
    return {
        "acc": float(getACC(labels, probs, MULTI_LABEL, threshold)),
        "auc": math.nan if one_sided else float(getAUC(labels, probs, MULTI_LABEL)),
        **({"auc_undefined": f"label{'s' * (len(one_sided) > 1)} {', '.join(map(str, one_sided))} without both "
                             "positives and negatives here: MedMNIST's multi-label AUC averages every label's AUC"}
           if one_sided else {}),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "confusion": multilabel_confusion_matrix(labels, predicted).tolist(),  # per label: [[TN, FP], [FN, TP]]
        "per_label": per_label,
        "n": int(len(labels)),
    }


THRESHOLD_RULES = {"val": "maximises validation accuracy",
                   "youden": "maximises Youden's J (sensitivity + specificity - 1) on validation"}


def choose_threshold(labels: np.ndarray, probs: np.ndarray, task: str, rule: str) -> float | list[float]:
    """The decision threshold ``rule`` (``THRESHOLD_RULES``) picks from one split's labels and
    probabilities — pass the validation split's: the threshold is then used on the test split.

    Example::

        t = choose_threshold(val_labels, val_probs, "binary-class", "youden")    # on P(class 1)
        compute_metrics(test_labels, test_probs, "binary-class", threshold=t)
        choose_threshold(val_nk, val_probs_nk, "multi-label, binary-class", "val")  # one per label

    Candidates are 0.5 and the midpoints between consecutive distinct probabilities (and 0 and 1):
    every different decision on this split. Ties go to the candidate nearest 0.5, then the lower one,
    so 0.5 stays unless another threshold does strictly better. Youden's J needs both classes: a
    split (or label) with one class keeps 0.5."""
    probs = np.asarray(probs, dtype=float)
    if task == MULTI_LABEL:
        labels = np.asarray(labels).reshape(len(probs), -1)
        return [_best_threshold(labels[:, k], probs[:, k], rule) for k in range(probs.shape[1])]
    if task != "binary-class":
        raise ValueError(f"a decision threshold is for binary-class and multi-label tasks, not {task}")
    return _best_threshold(np.asarray(labels).reshape(-1), probs[:, -1], rule)


def _best_threshold(truth: np.ndarray, scores: np.ndarray, rule: str) -> float:
    positives, negatives = np.sort(scores[truth == 1]), np.sort(scores[truth == 0])
    if rule == "youden" and (not len(positives) or not len(negatives)):
        return 0.5
    edges = np.unique(np.concatenate(([0.0, 1.0], scores)))
    candidates = np.concatenate(([0.5], (edges[:-1] + edges[1:]) / 2))
    candidates = candidates[(candidates > 0) & (candidates < 1)]
    hits = len(positives) - np.searchsorted(positives, candidates, side="right")   # positives with p > t
    alarms = len(negatives) - np.searchsorted(negatives, candidates, side="right")  # negatives with p > t
    if rule == "val":
        score = hits + (len(negatives) - alarms)  # correct decisions
    elif rule == "youden":
        score = hits * len(negatives) - alarms * len(positives)  # J × positives × negatives, in integers
    else:
        raise ValueError(f"unknown threshold rule {rule!r}; valid: {', '.join(THRESHOLD_RULES)}")
    best = candidates[score == score.max()]
    return float(best[np.lexsort((best, np.abs(best - 0.5)))[0]])
