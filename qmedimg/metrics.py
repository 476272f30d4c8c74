"""Metrics, computed as MedMNIST's own ``Evaluator`` does.

Example::

    from qmedimg.metrics import compute_metrics
    m = compute_metrics(labels, probs, "binary-class")                 # decided at P(class 1) > 0.5
    m["acc"], m["auc"], m["f1"], m["confusion"]
    compute_metrics(labels, probs, "binary-class", threshold=0.31)     # another decision threshold
    compute_metrics(labels_nk, probs_nk, "multi-label, binary-class")  # + m["per_label"]
    m["sensitivity"], m["specificity"], m["ece"]                       # at the threshold; calibration
    bootstrap_intervals(labels, probs, "binary-class")["auc"]          # [low, high]: 95 %, 1000 resamples

Tasks: ``binary-class`` and ``multi-class`` (labels (N,), probabilities (N, classes) that sum to 1)
and ``multi-label, binary-class`` (labels (N, K) of 0/1, probabilities (N, K): one sigmoid per
label, e.g. ChestMNIST's 14 findings). ``threshold`` is where a probability becomes a "yes": for
binary tasks on P(class 1), for multi-label on every label (a scalar or one per label); multi-class
decides by argmax and takes none.

Sensitivity and specificity are one-vs-rest rates at the decisions: for a binary task those of class 1 (the
positive class) at ``threshold``; for a multi-label task per label (in ``per_label``) and their mean; for a
multi-class task per class (``per_class``: class c against the rest, decided by argmax) and their mean (the mean
sensitivity is the macro recall). A rate without images to count on (sensitivity without positives, specificity
without negatives) is NaN, and so is a mean over classes or labels that holds one. ``ece`` is the expected
calibration error (:func:`reliability`): how far the confidence in the most probable class (per label for
multi-label tasks, then averaged) is from how often it is right, over ``ECE_BINS`` equal-width bins.
"""

from __future__ import annotations

import math

import numpy as np
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import (confusion_matrix, multilabel_confusion_matrix, precision_recall_fscore_support,
                             roc_auc_score)

from qmedimg.data import MULTI_LABEL
from qmedimg.quantum.covariance import covariance_root


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
    and the confusion matrix (per label for multi-label tasks, with ``per_label`` ACC/AUC), sensitivity and
    specificity at ``threshold`` and the expected calibration error ``ece`` (the module's docstring says of
    which class). An AUC the labels leave undefined (a class, or a label's positives or negatives, absent) is
    NaN, with the reason in ``auc_undefined``; NaN is no JSON value: metrics files record it as null."""
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
    sensitivity, specificity = _rates(np.ones((1, len(labels))), *_units(labels, probs, task, threshold)[:2])
    return {
        "acc": float(getACC(labels, probs, task, threshold) if task == "binary-class" else getACC(labels, probs, task)),
        "auc": math.nan if absent else float(getAUC(labels, probs, task)),
        **({"auc_undefined": _why_no_auc(absent, classes)} if absent else {}),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "sensitivity": float(sensitivity[0].mean()), "specificity": float(specificity[0].mean()),
        **({} if task == "binary-class" else {"per_class": [
            {"class": c, "sensitivity": float(sensitivity[0, c]), "specificity": float(specificity[0, c])}
            for c in classes]}),
        "ece": reliability(labels, probs, task)["ece"],
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "n": int(len(labels)),
    }


def statistical_spread(labels: np.ndarray, values: np.ndarray, covariance: np.ndarray, probs_of, task: str,
                       threshold: float | np.ndarray = 0.5, *, draws: int = 200, seed: int = 0) -> dict[str, float]:
    """The statistical error of ACC and AUC computed from head values that carry one (means over noise
    trajectories): the standard deviation of each metric over ``draws`` copies of ``values`` (N, O), each image's
    values moved by a draw from N(0, ``covariance[i]``) (N, O, O: one image's values come from the same
    trajectories, so their errors are correlated; images are independent), seeded by ``seed``, each copy mapped
    to probabilities by ``probs_of``. In the metrics' own unit (0.005 = 0.5 ACC points); an undefined AUC
    gives NaN."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=float)
    roots = covariance_root(covariance)
    moved = (values + np.einsum("nop,np->no", roots, rng.standard_normal(values.shape)) for _ in range(draws))
    drawn = np.array([acc_and_auc(labels, probs_of(copy), task, threshold) for copy in moved])
    return {name: float(np.std(drawn[:, i], ddof=1)) for i, name in enumerate(("acc", "auc"))}


def acc_and_auc(labels: np.ndarray, probs: np.ndarray, task: str, threshold: float | np.ndarray = 0.5) -> tuple:
    """:func:`compute_metrics`'s ACC and AUC alone (the same numbers, to rounding), without its other metrics and
    sklearn's checks: about 80× faster, for many copies of one test set (:func:`statistical_spread`)."""
    probs = np.asarray(probs, dtype=float)
    n = len(probs)
    positive, _, scores = _units(labels, probs, task, threshold)
    truth = np.asarray(labels).reshape(n, -1) if task == MULTI_LABEL else np.asarray(labels).reshape(-1)
    correct = (decisions(probs, task, threshold) == truth).reshape(n, -1).mean(axis=1)
    every = np.ones((1, n))
    auc = np.mean([_auc(every, scores[:, u], positive[:, u])[0] for u in range(scores.shape[1])])
    return float(correct.mean()), float(auc)


ECE_BINS = 15  # equal-width bins of confidence in the expected calibration error
INTERVAL_METRICS = ("acc", "auc", "sensitivity", "specificity")  # what bootstrap_intervals gives an interval


def reliability(labels: np.ndarray, probs: np.ndarray, task: str, bins: int = ECE_BINS) -> dict:
    """A reliability diagram's numbers and the expected calibration error (ECE): how far a model's confidence is
    from how often it is right.

    Example::

        r = reliability(test_labels, test_probs, "binary-class")
        r["ece"]                                              # 0.043: 4.3 points off, weighted over bins
        r["confidence"][b], r["accuracy"][b], r["count"][b]   # bin b of r["edges"] (NaN where empty)

    The confidence of an image is its most probable class's probability (for a binary task max(p, 1 - p),
    whatever the decision threshold: calibration is a property of the probabilities) and it is right when
    that class is its label; a multi-label task counts every label apart (confidence max(p, 1 - p), right
    when p > 0.5 is its 0/1). Images go to ``bins`` equal-width bins of confidence, (low, high] (0 to the
    first); the ECE is the sum over bins of (images in it / all) × |accuracy − mean confidence| in it, for a
    multi-label task the mean of the labels' ECEs. The diagram's bins pool every label."""
    probs = np.asarray(probs, dtype=float)
    if task == MULTI_LABEL:
        truth = np.asarray(labels).reshape(probs.shape)
        confidence, right = np.maximum(probs, 1 - probs), (probs > 0.5) == (truth == 1)
    else:
        right = probs.argmax(axis=1) == np.asarray(labels).reshape(-1)
        confidence, right = probs.max(axis=1)[:, None], right[:, None]
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)  # (n, units): each one's bin

    def binned(values: np.ndarray) -> np.ndarray:  # (bins, units): sums per bin
        return np.stack([np.bincount(which[:, u], values[:, u], minlength=bins) for u in range(which.shape[1])], 1)

    count, said, hit = binned(np.ones_like(confidence)), binned(confidence), binned(right.astype(float))
    ece = (np.abs(hit - said).sum(axis=0) / max(len(probs), 1)).mean() if len(probs) else math.nan
    pooled = count.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"bins": bins, "edges": np.linspace(0, 1, bins + 1).tolist(), "count": pooled.astype(int).tolist(),
                "confidence": (said.sum(axis=1) / pooled).tolist(), "accuracy": (hit.sum(axis=1) / pooled).tolist(),
                "ece": float(ece)}


def bootstrap_intervals(labels: np.ndarray, probs: np.ndarray, task: str, threshold: float | np.ndarray = 0.5, *,
                        draws: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals over these images of ACC, AUC, sensitivity and specificity, each
    computed as :func:`compute_metrics` does (decisions at ``threshold``).

    Example::

        ci = bootstrap_intervals(test_labels, test_probs, "binary-class", threshold=0.5)
        ci["acc"], ci["auc"], ci["sensitivity"], ci["specificity"]   # each [low, high]
        ci["draws"], ci["seed"], ci["level"], ci["skipped"]          # 1000, 0, 0.95, {"auc": 0, ...}

    Resample b takes as many images as there are, with replacement: row b of ``rng.integers(0, n, (draws, n))``,
    ``rng = np.random.default_rng(seed)`` (drawn in blocks of rows, which numpy draws alike). A resample on which a
    metric is undefined (the AUC lacking a class, or a label's positives or negatives; a sensitivity lacking
    positives, a specificity negatives) is skipped for that metric and counted in ``skipped[metric]``. An
    interval is the (1 - level)/2 and (1 + level)/2 percentiles (numpy's linear interpolation) of the other
    resamples' values, [NaN, NaN] when none is left (the metric is undefined on these images): null in JSON.
    The same inputs and seed give the same intervals on any machine; ``method``, ``draws``, ``seed`` and
    ``level`` say how they were drawn. The resamples are computed together, as image weights (no loop of metric
    calls): 1000 resamples of BreastMNIST's 156 test images take about 20 ms, of OrganAMNIST's 17,778 (11 classes)
    about 5 s."""
    probs = np.asarray(probs, dtype=float)
    n = len(probs)
    if n == 0 or draws < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap intervals need images, draws >= 1 and a level in (0, 1); got {n} images, "
                         f"draws {draws}, level {level}")
    labels = np.asarray(labels).reshape(n, -1) if task == MULTI_LABEL else np.asarray(labels).reshape(-1)
    positive, yes, scores = _units(labels, probs, task, threshold)
    correct = (decisions(probs, task, threshold) == labels).reshape(n, -1).mean(axis=1)  # per image (of its labels)
    rng = np.random.default_rng(seed)
    values = {name: [] for name in INTERVAL_METRICS}
    per_chunk = max(1, (1 << 22) // n)  # resamples computed together: bounds memory on large test sets
    for start in range(0, draws, per_chunk):
        rows = min(per_chunk, draws - start)
        drawn = rng.integers(0, n, (rows, n))
        weights = np.bincount((drawn + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n)
        weights = weights.reshape(rows, n).astype(float)  # how often each image is in each resample
        sensitivity, specificity = _rates(weights, positive, yes)
        values["acc"].append(weights @ correct / n)
        values["auc"].append(np.mean([_auc(weights, scores[:, u], positive[:, u]) for u in range(scores.shape[1])], 0))
        values["sensitivity"].append(sensitivity.mean(axis=1))
        values["specificity"].append(specificity.mean(axis=1))
    out, skipped, tail = {}, {}, 100 * (1 - level) / 2
    for name, chunks in values.items():
        replicates = np.concatenate(chunks)
        kept = replicates[~np.isnan(replicates)]
        skipped[name] = int(draws - len(kept))
        out[name] = np.percentile(kept, [tail, 100 - tail]).tolist() if len(kept) else [math.nan, math.nan]
    return {**out, "method": "percentile bootstrap over images", "draws": int(draws), "seed": int(seed),
            "level": float(level), "skipped": skipped}


def _units(labels: np.ndarray, probs: np.ndarray, task: str, threshold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-vs-rest units a task's sensitivity, specificity and AUC average over, each (n, units): which images
    are positives, which the decisions call positive, and the scores ranked for the AUC (MedMNIST's ``getAUC``'s).
    Binary: one unit, class 1 (P(class 1)); multi-class: every class against the rest; multi-label: every label."""
    said = decisions(probs, task, threshold)
    if task == MULTI_LABEL:
        return np.asarray(labels).reshape(probs.shape) == 1, said == 1, probs
    labels = np.asarray(labels).reshape(-1)
    if task == "binary-class":
        return (labels == 1)[:, None], (said == 1)[:, None], probs[:, -1:]
    classes = np.arange(probs.shape[1])
    return labels[:, None] == classes, said[:, None] == classes, probs


def _rates(weights: np.ndarray, positive: np.ndarray, yes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity (resamples, units) of images counted ``weights`` (resamples, n) times: NaN where a
    resample holds no positive (sensitivity) or no negative (specificity) of a unit."""
    positive, yes = positive.astype(float), yes.astype(float)
    positives, negatives = weights @ positive, weights @ (1 - positive)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(positives > 0, (weights @ (positive * yes)) / positives, math.nan)
        specificity = np.where(negatives > 0, (weights @ ((1 - positive) * (1 - yes))) / negatives, math.nan)
    return sensitivity, specificity


def _auc(weights: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The ROC AUC (resamples,) of images counted ``weights`` (resamples, n) times: the share of (positive,
    negative) pairs the scores order right, ties counting one half (the Mann-Whitney statistic, which is
    sklearn's ``roc_auc_score``); NaN where a resample lacks positives or negatives."""
    negatives = np.flatnonzero(~positive)
    negatives = negatives[np.argsort(scores[negatives], kind="stable")]
    ranked, positives = scores[negatives], np.flatnonzero(positive)
    below = np.zeros((len(weights), len(negatives) + 1))  # below[:, j]: weight of the j lowest-scored negatives
    np.cumsum(weights[:, negatives], axis=1, out=below[:, 1:])
    lower = np.searchsorted(ranked, scores[positives], "left")  # negatives scored below each positive
    upper = np.searchsorted(ranked, scores[positives], "right")  # ... below or tied with it
    counted = weights[:, positives]
    pairs = counted.sum(axis=1) * below[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (counted * (below[:, lower] + below[:, upper])).sum(axis=1) / 2 / pairs, math.nan)


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
    sensitivity, specificity = _rates(np.ones((1, len(labels))), *_units(labels, probs, MULTI_LABEL, threshold)[:2])
    per_label = []
    for k in range(labels.shape[1]):
        both = len(np.unique(labels[:, k])) == 2  # an AUC needs positives and negatives
        per_label.append({"label": k, "positives": int(labels[:, k].sum()),
                          "acc": float((predicted[:, k] == labels[:, k]).mean()),
                          "auc": float(roc_auc_score(labels[:, k], probs[:, k])) if both else math.nan,
                          "sensitivity": float(sensitivity[0, k]), "specificity": float(specificity[0, k])})
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
        "sensitivity": float(sensitivity[0].mean()), "specificity": float(specificity[0].mean()),
        "ece": reliability(labels, probs, MULTI_LABEL)["ece"],
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
