"""The statistical error of ACC/AUC from head values that carry one, each image with its covariance of its values
(metrics.statistical_spread)."""

import numpy as np
import pytest

from qmedimg.metrics import statistical_spread


def probs_of(values):
    """A one-output head read as P(class 1) (clipped to [0, 1])."""
    p = np.clip(values[:, 0], 0, 1)
    return np.stack([1 - p, p], axis=1)


def isotropic(values, error):
    """Each image's covariance when every value has standard error ``error`` and errors are independent."""
    return np.tile(error**2 * np.eye(values.shape[1]), (len(values), 1, 1))


def test_an_image_on_the_threshold_makes_acc_a_coin_flip_of_one_image():
    labels = np.array([1, 1])
    values = np.array([[0.5], [0.9]])  # the first image sits on the 0.5 threshold, the second far from it
    spread = statistical_spread(labels, values, isotropic(values, 0.01), probs_of, "binary-class", 0.5, draws=400)
    assert spread["acc"] == pytest.approx(0.25, abs=0.02)  # ACC 0.5 or 1.0, each half the time


def test_values_far_from_the_threshold_give_no_acc_error_and_it_grows_with_the_error():
    labels = np.array([0, 1, 0, 1])
    values = np.array([[0.1], [0.9], [0.2], [0.8]])
    assert statistical_spread(labels, values, isotropic(values, 0.01), probs_of, "binary-class", 0.5)["acc"] == 0.0
    small, large = (statistical_spread(labels, values, isotropic(values, e), probs_of, "binary-class", 0.5)["acc"]
                    for e in (0.2, 0.5))
    assert 0 < small < large


def test_it_is_seeded():
    labels = np.array([0, 1, 1])
    values = np.array([[0.45], [0.55], [0.5]])
    first, again = (statistical_spread(labels, values, isotropic(values, 0.05), probs_of, "binary-class", 0.5, seed=3)
                    for _ in range(2))
    assert first == again and first["auc"] > 0


def test_errors_one_images_outputs_share_are_drawn_together():
    """A head read as the difference of its two outputs: errors the outputs share cancel in it, independent ones
    do not, so the same standard errors move ACC or not depending on the covariance."""
    labels = np.array([1, 0])
    values = np.array([[0.55, 0.5], [0.45, 0.5]])  # differences ±0.05 from the 0.5 threshold

    def difference(v):
        p = np.clip(0.5 + v[:, 0] - v[:, 1], 0, 1)
        return np.stack([1 - p, p], axis=1)

    shared = np.tile(0.04 * np.ones((2, 2)), (2, 1, 1))  # σ = 0.2 on each output, correlation 1
    assert statistical_spread(labels, values, shared, difference, "binary-class", 0.5)["acc"] == 0.0
    assert statistical_spread(labels, values, isotropic(values, 0.2), difference, "binary-class", 0.5)["acc"] > 0.2


@pytest.mark.parametrize("task", ["binary-class", "multi-class", "multi-label, binary-class"])
def test_acc_and_auc_are_compute_metrics_numbers_on_every_task_ties_and_thresholds_included(task):
    from qmedimg.metrics import acc_and_auc, compute_metrics

    rng = np.random.default_rng(7)
    for trial in range(20):
        n = 40
        if task == "multi-label, binary-class":
            labels = rng.integers(0, 2, (n, 3))
            probs = np.round(rng.random((n, 3)), 1)  # rounded: many tied scores
            threshold = np.array([0.3, 0.5, 0.7])
        else:
            classes = 2 if task == "binary-class" else 4
            labels = rng.integers(0, classes, n)
            probs = rng.dirichlet(np.ones(classes), n).round(1)
            threshold = 0.35
        if trial == 0 and task != "multi-label, binary-class":
            labels[labels == 1] = 0  # a class absent: the AUC is undefined (NaN) in both
        want = compute_metrics(labels, probs, task, threshold)
        acc, auc = acc_and_auc(labels, probs, task, threshold)
        assert acc == pytest.approx(want["acc"], abs=1e-12)
        assert (np.isnan(auc) and np.isnan(want["auc"])) or auc == pytest.approx(want["auc"], abs=1e-12)
