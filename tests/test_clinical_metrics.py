"""What a clinician reads beside ACC/AUC: sensitivity and specificity at the run's threshold, calibration (ECE and
the reliability diagram) and bootstrap intervals over the test images, each checked against a plain computation
of its own (sklearn, a loop); and class names for a data file that has none."""

import json
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from qmedimg.backends.registry import exact_backend
from qmedimg.data import MULTI_LABEL
from qmedimg.errors import QmedimgError
from qmedimg.inference import Inference
from qmedimg.metrics import INTERVAL_METRICS, bootstrap_intervals, compute_metrics, reliability
from qmedimg.model import predict_probs
from qmedimg.rundir import load_run, make_config


def _binary(n=60, seed=1):
    """Labels and two-column probabilities that rank positives higher on average, with ties (two decimals)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    p1 = np.round(np.clip(0.35 * labels + 0.65 * rng.random(n), 0, 1), 2)
    return labels, np.stack([1 - p1, p1], axis=1)


def _multi_class(n=60, k=3, seed=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs


def _multi_label(n=60, k=3, seed=3):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < [0.5, 0.3, 0.15]).astype(int)
    return labels, np.round(np.clip(0.4 * labels + 0.6 * rng.random((n, k)), 0, 1), 2)


def _reference(labels, probs, task, threshold, draws, seed, level):
    """The intervals by a plain loop over the same resamples (documented: row b of rng.integers(0, n, (draws, n)),
    which numpy draws alike one row at a time), with sklearn's metrics; a resample where a metric is undefined is
    skipped for it."""
    rng, n = np.random.default_rng(seed), len(probs)
    values = {"acc": [], "auc": [], "sensitivity": [], "specificity": []}
    for _ in range(draws):
        i = rng.integers(0, n, n)
        y, p = labels[i], probs[i]
        if task == "binary-class":
            said = (p[:, 1] > threshold).astype(int)
            units = [(y == 1, said == 1, p[:, 1])]
            values["acc"].append(accuracy_score(y, said))
        elif task == MULTI_LABEL:
            said = (p > threshold).astype(int)
            units = [(y[:, k] == 1, said[:, k] == 1, p[:, k]) for k in range(y.shape[1])]
            values["acc"].append(np.mean([accuracy_score(y[:, k], said[:, k]) for k in range(y.shape[1])]))
        else:
            said = p.argmax(axis=1)
            units = [(y == c, said == c, p[:, c]) for c in range(p.shape[1])]
            values["acc"].append(accuracy_score(y, said))
        if all(0 < truth.sum() < n for truth, _, _ in units):
            values["auc"].append(np.mean([roc_auc_score(truth, score) for truth, _, score in units]))
        if all(truth.any() for truth, _, _ in units):
            values["sensitivity"].append(np.mean([recall_score(truth, yes) for truth, yes, _ in units]))
        if all((~truth).any() for truth, _, _ in units):
            values["specificity"].append(np.mean([recall_score(~truth, ~yes) for truth, yes, _ in units]))
    tail = 100 * (1 - level) / 2
    return ({name: list(np.percentile(v, [tail, 100 - tail])) for name, v in values.items()},
            {name: draws - len(v) for name, v in values.items()})


@pytest.mark.parametrize("task, data, threshold", [
    ("binary-class", _binary(), 0.4),
    ("binary-class", _binary(n=14, seed=5), 0.5),  # few images: resamples without a class are skipped
    ("multi-class", _multi_class(), None),
    (MULTI_LABEL, _multi_label(), 0.5),
])
def test_bootstrap_intervals_agree_with_a_reference_loop_over_the_same_resamples(task, data, threshold):
    labels, probs = data
    got = bootstrap_intervals(labels, probs, task, threshold if threshold is not None else 0.5,
                              draws=300, seed=7, level=0.9)
    expected, skipped = _reference(labels, probs, task, threshold if threshold is not None else 0.5, 300, 7, 0.9)
    for name, ends in expected.items():
        assert got[name] == pytest.approx(ends, abs=1e-12), name
    assert got["skipped"] == skipped
    assert (got["draws"], got["seed"], got["level"]) == (300, 7, 0.9)
    if len(labels) == 14:
        assert got["skipped"]["auc"] > 0  # the case the skipping is for did occur


def test_bootstrap_intervals_are_seeded_and_narrow_with_the_level():
    labels, probs = _binary(n=120)
    first = bootstrap_intervals(labels, probs, "binary-class")
    assert first == bootstrap_intervals(labels, probs, "binary-class")  # same seed: the same intervals
    other = bootstrap_intervals(labels, probs, "binary-class", seed=1)
    assert [first[name] for name in INTERVAL_METRICS] != [other[name] for name in INTERVAL_METRICS]
    assert (first["draws"], first["seed"], first["level"], first["method"]) == \
        (1000, 0, 0.95, "percentile bootstrap over images")
    narrower = bootstrap_intervals(labels, probs, "binary-class", level=0.5)
    for name in INTERVAL_METRICS:
        low, high = first[name]
        assert low <= narrower[name][0] <= narrower[name][1] <= high
        assert narrower[name][1] - narrower[name][0] < high - low
        assert low <= compute_metrics(labels, probs, "binary-class")[name] <= high


def test_bootstrap_intervals_of_a_metric_undefined_on_the_images_are_nan_with_every_resample_skipped():
    labels, probs = _binary(n=30)
    labels[:] = 0  # no positives: no AUC, no sensitivity
    got = bootstrap_intervals(labels, probs, "binary-class", draws=50)
    assert np.isnan(got["auc"]).all() and np.isnan(got["sensitivity"]).all()
    assert got["skipped"] == {"acc": 0, "auc": 50, "sensitivity": 50, "specificity": 0}
    with pytest.raises(ValueError):
        bootstrap_intervals(labels[:0], probs[:0], "binary-class")


def test_sensitivity_and_specificity_are_sklearns_recalls_at_the_threshold_for_every_task():
    labels, probs = _binary()
    m = compute_metrics(labels, probs, "binary-class", threshold=0.4)
    said = probs[:, 1] > 0.4
    assert m["sensitivity"] == recall_score(labels, said)  # of class 1, the positive class
    assert m["specificity"] == recall_score(1 - labels, ~said)
    assert "per_class" not in m
    labels, probs = _multi_class()
    m = compute_metrics(labels, probs, "multi-class")
    said = probs.argmax(axis=1)
    per = [(recall_score(labels == c, said == c), recall_score(labels != c, said != c)) for c in range(3)]
    assert [(row["sensitivity"], row["specificity"]) for row in m["per_class"]] == pytest.approx(per, abs=1e-15)
    assert m["sensitivity"] == pytest.approx(np.mean([s for s, _ in per])) == pytest.approx(m["recall"])
    assert m["specificity"] == pytest.approx(np.mean([s for _, s in per]))
    labels, probs = _multi_label()
    m = compute_metrics(labels, probs, MULTI_LABEL, threshold=[0.3, 0.5, 0.7])
    said = probs > [0.3, 0.5, 0.7]
    per = [(recall_score(labels[:, k], said[:, k]), recall_score(1 - labels[:, k], ~said[:, k])) for k in range(3)]
    assert [(row["sensitivity"], row["specificity"]) for row in m["per_label"]] == pytest.approx(per, abs=1e-15)
    assert (m["sensitivity"], m["specificity"]) == pytest.approx(tuple(np.mean(per, axis=0)))


def test_ece_is_the_binned_gap_between_confidence_and_accuracy():
    # every image 80 % sure, right 3 times in 5: one bin, a gap of 0.2
    labels, probs = np.array([1, 1, 1, 0, 0]), np.tile([0.2, 0.8], (5, 1))
    r = reliability(labels, probs, "binary-class")
    assert r["ece"] == pytest.approx(0.2) and r["bins"] == 15 and sum(r["count"]) == 5
    assert compute_metrics(labels, probs, "binary-class")["ece"] == pytest.approx(0.2)
    # bins are (low, high]: 80 % sure (an edge, 12/15) and right, 81 % sure and wrong: two bins, not one
    labels, probs = np.array([1, 1, 0, 0]), np.array([[0.2, 0.8], [0.2, 0.8], [0.19, 0.81], [0.19, 0.81]])
    assert reliability(labels, probs, "binary-class")["ece"] == pytest.approx((0.2 + 0.81) / 2)
    labels, probs = _multi_class(n=200)
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    expected = 0.0
    for low, high in zip(np.arange(15) / 15, np.arange(1, 16) / 15):  # the bins (low, high], by a loop
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            expected += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    assert reliability(labels, probs, "multi-class")["ece"] == pytest.approx(expected, abs=1e-12)
    labels, probs = _multi_label()  # multi-label: the mean over labels of each label's own ECE
    per_label = [reliability(labels[:, k], np.stack([1 - probs[:, k], probs[:, k]], 1), "binary-class")["ece"]
                 for k in range(3)]
    assert compute_metrics(labels, probs, MULTI_LABEL)["ece"] == pytest.approx(np.mean(per_label), abs=1e-12)


def test_training_writes_the_test_intervals_the_ece_and_the_reliability_diagram(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    run = load_run(tiny_run)
    probs = predict_probs(run.model, run.dataset.test.images)
    expected = json.loads(json.dumps(bootstrap_intervals(run.dataset.test.labels, probs, run.dataset.task,
                                                         run.threshold)).replace("NaN", "null"))
    for name in ("acc", "auc", "sensitivity", "specificity"):
        assert metrics["test_intervals"][name] == pytest.approx(expected[name], abs=1e-12)
    assert {key: metrics["test_intervals"][key] for key in ("method", "draws", "seed", "level", "skipped")} == \
        {key: expected[key] for key in ("method", "draws", "seed", "level", "skipped")}
    assert metrics["test"]["ece"] == pytest.approx(reliability(run.dataset.test.labels, probs, run.dataset.task)["ece"])
    assert {"sensitivity", "specificity"} <= set(metrics["test"])
    assert (tiny_run / "calibration.png").stat().st_size > 0


def test_an_eval_record_holds_the_test_intervals_of_its_own_probabilities(tiny_run):
    run = load_run(tiny_run)
    inference = Inference(run, run.dataset.test.images)
    head = inference.on(exact_backend())
    record = inference.evaluation(head, run.dataset.test.labels)
    assert record["test_intervals"] == bootstrap_intervals(run.dataset.test.labels, head.probs, run.dataset.task,
                                                           run.threshold)


@pytest.fixture
def unnamed_npz(tiny_npz):
    """The tiny npz without its label_names array: its classes are "0" and "1"."""
    with np.load(tiny_npz) as npz:
        arrays = {key: npz[key] for key in npz.files if key != "label_names"}
    np.savez(tiny_npz, **arrays)
    return tiny_npz


def test_class_names_name_a_data_files_classes_in_the_run_record_and_its_loaded_data(unnamed_npz, trainer, tmp_path):
    _, out = trainer(tmp_path / "named", dataset=None, data_file=str(unnamed_npz), limit=None, epochs=1,
                     class_names=["benign", "malignant"])
    record = json.loads((out / "config.json").read_text())
    assert record["dataset"]["label_names"] == ["benign", "malignant"]
    run = load_run(out)
    assert run.dataset.label_names == ("benign", "malignant")
    assert run.dataset.loaded.label_names == ("benign", "malignant")  # the data read again: named the same
    _, plain = trainer(tmp_path / "plain", dataset=None, data_file=str(unnamed_npz), limit=None, epochs=1)
    assert load_run(plain).dataset.label_names == ("0", "1")


@pytest.mark.parametrize("names, says", [
    (["benign", "malignant", "normal"], "class_names: 3 names (benign, malignant, normal), but"),
    (["benign", "benign"], "give distinct, non-empty names, one per class"),
    (["benign", " "], "give distinct, non-empty names, one per class"),
])
def test_class_names_not_one_distinct_name_per_class_are_one_line_before_anything_is_written(unnamed_npz, trainer,
                                                                                             tmp_path, names, says):
    with pytest.raises(QmedimgError, match=re.escape(says)) as info:
        trainer(tmp_path / "run", dataset=None, data_file=str(unnamed_npz), limit=None, class_names=names)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_class_names_are_for_data_file_runs_only():
    with pytest.raises(QmedimgError, match="class_names is for data_file runs: synthetic names its own classes"):
        make_config(dataset="synthetic", class_names=["a", "b"], out="runs/x")


def _benchmark(name):
    """A benchmark script (benchmarks/NAME.py) as a module, its main() not run."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_seed_prints_its_value_and_its_interval_and_no_plus_minus():
    accuracy, threshold = _benchmark("accuracy"), _benchmark("threshold")
    one = [{"acc": 0.8462, "intervals": {"acc": [0.7885, 0.9], "auc": [float("nan")] * 2}, "auc": float("nan")}]
    summary = {"acc": {"mean": 0.8462, "std": None}, "auc": {"mean": float("nan"), "std": None}}
    assert accuracy._headline(summary, one, "acc") == "0.8462 [0.7885, 0.9000]"
    assert accuracy._headline(summary, one, "auc") == "nan [undefined]"
    three = one * 3
    assert accuracy._headline({"acc": {"mean": 0.85, "std": 0.01}}, three, "acc") == "0.8500 ± 0.0100"
    assert threshold._ms([0.8462]) == "0.8462" and threshold._ms([0.84, 0.86]) == "0.8500 ± 0.0141"
