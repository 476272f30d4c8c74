"""Decision thresholds chosen on validation, and balanced sampling, as a user meets them: a tiny run
trained with a rule, then evaluate, predict and the noise study deciding at that run's threshold."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qmedimg.cli import main
from qmedimg.data import write_synthetic_npz
from qmedimg.metrics import choose_threshold, compute_metrics, decisions
from qmedimg.model import predict_probs
from qmedimg.rundir import load_run, make_config, read_record
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.predict import predict
from qmedimg.workflows.train import epoch_order, resume, train
from support import one_line_error

TINY = {"limit": 48, "epochs": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def youden_run(tmp_path_factory, trainer) -> Path:
    """A tiny run whose threshold Youden's J chose on validation (read-only: tests copy it to write)."""
    return trainer(tmp_path_factory.mktemp("threshold") / "youden", threshold="youden")[1]


def probs_of(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    run = load_run(run_dir, device="cpu")
    part = getattr(run.dataset, split)
    return part.labels, predict_probs(run.model, part.images)


def test_the_rules_pick_thresholds_deterministically_keeping_0_5_when_it_is_as_good():
    labels = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.35, 0.4, 0.7, 0.2, 0.9])
    probs = np.stack([1 - p1, p1], axis=1)
    assert choose_threshold(labels, probs, "binary-class", "val") == pytest.approx(0.375)  # between 0.35 and 0.4
    assert choose_threshold(labels, probs, "binary-class", "youden") == pytest.approx(0.375)
    separable = np.array([0.1, 0.2, 0.6, 0.7, 0.3, 0.8])  # 0.5 already decides every image right
    assert choose_threshold(labels, np.stack([1 - separable, separable], 1), "binary-class", "val") == 0.5
    assert choose_threshold(labels[:2], probs[:2], "binary-class", "youden") == 0.5  # one class: J undefined
    tied = np.array([0.24, 0.3, 0.63, 0.7, 0.77, 0.8])  # 4 of 6 right at 0.27, 0.665 and 0.785: the nearest 0.5
    assert choose_threshold([0, 1, 0, 1, 0, 1], np.stack([1 - tied, tied], 1), "binary-class", "val") == \
        pytest.approx(0.665)
    per_label = choose_threshold(np.stack([labels, 1 - labels], 1), np.stack([p1, 1 - p1], 1),
                                 "multi-label, binary-class", "val")
    assert per_label == pytest.approx([0.375, 0.625])


def test_the_threshold_is_chosen_on_validation_only(tmp_path):
    """Flipping every test label changes the test metrics but not the threshold the run chose."""
    original = write_synthetic_npz(tmp_path / "data.npz")
    with np.load(original) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test_labels"] = 1 - arrays["test_labels"]
    flipped = tmp_path / "flipped.npz"
    np.savez_compressed(flipped, **arrays)
    first = train(make_config(data_file=str(original), threshold="val", out=str(tmp_path / "a"), **TINY), progress=False)
    second = train(make_config(data_file=str(flipped), threshold="val", out=str(tmp_path / "b"), **TINY), progress=False)
    assert first["test"]["acc"] != second["test"]["acc"]
    assert first["threshold"] == second["threshold"]
    assert first["threshold"]["rule"] == "val" and first["threshold"]["chosen_on"] == "validation"


def test_the_threshold_is_recorded_and_decides_the_headline_metrics(youden_run):
    metrics = json.loads((youden_run / "metrics.json").read_text())
    value = metrics["threshold"]["value"]
    assert metrics["threshold"]["rule"] == "youden" and 0 < value < 1 and value != 0.5
    val_labels, val_probs = probs_of(youden_run, "val")
    assert value == choose_threshold(val_labels, val_probs, "binary-class", "youden")
    labels, probs = probs_of(youden_run, "test")
    assert metrics["test"] == compute_metrics(labels, probs, "binary-class", value)
    assert metrics["at_threshold_0.5"]["test"] == compute_metrics(labels, probs, "binary-class")
    assert metrics["test"]["confusion"] != metrics["at_threshold_0.5"]["test"]["confusion"]  # it decided otherwise
    assert load_run(youden_run).threshold == value


def test_evaluate_predict_and_the_noise_study_decide_at_the_runs_threshold(youden_run, tmp_path):
    run_dir = Path(shutil.copytree(youden_run, tmp_path / "run"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    value = metrics["threshold"]["value"]

    result = evaluate_run(run_dir)
    assert result["threshold"]["value"] == value
    assert result["test"] == metrics["test"] and result["ideal_test"] == metrics["test"]

    assert main(["noise-study", str(run_dir), "--backend", "fake_manila", "--scales", "0", "--mitigation", "none",
                 "--quiet"]) == 0
    with open(run_dir / "noise-study" / "results.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["acc"]) == pytest.approx(metrics["test"]["acc"]) == pytest.approx(float(row["ideal_acc"]))

    labels, probs = probs_of(run_dir, "test")
    at_run, at_half = decisions(probs, "binary-class", value), decisions(probs, "binary-class")
    assert (at_run != at_half).any()
    for i, image in enumerate(load_run(run_dir).dataset.test.images):
        Image.fromarray(image[0]).save(tmp_path / f"case{i:03d}.png")
    rows = predict(run_dir, [tmp_path / f"case{i:03d}.png" for i in range(len(labels))])["rows"]
    names = list(load_run(run_dir).dataset.label_names)
    assert [row["class"] for row in rows] == [names[d] for d in at_run]


@pytest.mark.parametrize("threshold", ["val", "youden", "0.3"])
def test_a_threshold_on_a_multi_class_task_is_one_line_and_writes_nothing(tmp_path, capsys, threshold):
    data = write_synthetic_npz(tmp_path / "three.npz", num_classes=3)
    assert main(["train", "--data-file", str(data), "--threshold", threshold, "--out", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert "multi-class" in err and "--threshold" in err
    assert main(["compare", "--data-file", str(data), "--threshold", threshold, "--models", "hybrid",
                 "--seeds", "0", "--out", str(tmp_path / "cmp")]) == 2
    assert "multi-class" in one_line_error(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("value", ["1.5", "0", "best"])
def test_a_bad_threshold_is_one_line(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--dataset", "synthetic", "--threshold", value, "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert f"'{value}' is not a number in (0, 1), 'val' or 'youden'" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_class_weights_with_balanced_sampling_is_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--class-weights", "--balanced-sampling",
                 "--out", str(tmp_path / "run")]) == 2
    assert "choose one" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_runs_from_before_thresholds_load_deciding_at_0_5(tiny_run, tmp_path):
    old = Path(shutil.copytree(tiny_run, tmp_path / "old"))
    record = json.loads((old / "config.json").read_text())
    del record["schema"]  # written before config.json recorded its format version (version 1)
    for key in ("threshold", "balanced_sampling"):
        del record["config"][key]
    (old / "config.json").write_text(json.dumps(record))
    metrics = json.loads((old / "metrics.json").read_text())
    for key in ("threshold", "at_threshold_0.5"):
        del metrics[key]
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert read_record(old)["config"]["threshold"] == 0.5
    run = load_run(old)
    assert run.threshold == 0.5 and run.threshold_record()["rule"] == "fixed"
    assert evaluate_run(old)["test"] == metrics["test"]


def test_balanced_sampling_draws_every_class_equally_from_the_generator():
    labels = np.array([0] * 90 + [1] * 10)
    first = epoch_order(labels, torch.Generator().manual_seed(3), balanced=True)
    assert torch.equal(first, epoch_order(labels, torch.Generator().manual_seed(3), balanced=True))
    draws = torch.cat([epoch_order(labels, torch.Generator().manual_seed(s), balanced=True) for s in range(50)])
    share = float((torch.from_numpy(labels)[draws] == 1).float().mean())
    assert len(first) == 100 and abs(share - 0.5) < 0.03  # a permutation would give 0.10
    assert sorted(epoch_order(labels, torch.Generator().manual_seed(3), balanced=False).tolist()) == list(range(100))


def test_balanced_sampling_resumes_to_the_same_metrics(tmp_path):
    data = write_synthetic_npz(tmp_path / "data.npz")
    options = {"data_file": str(data), "balanced_sampling": True, "limit": 48, "epochs": 3, "batch_size": 16}
    whole = train(make_config(**options, out=str(tmp_path / "whole")), progress=False)
    plain = train(make_config(**{**options, "balanced_sampling": False}, out=str(tmp_path / "plain")), progress=False)
    assert plain["test"] != whole["test"]  # the draws change training

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make_config(**options, out=str(tmp_path / "cut")), progress=False, on_epoch=stop_after_two)
    resumed = resume(tmp_path / "cut", progress=False)
    assert resumed["test"] == whole["test"] and resumed["val"] == whole["val"]


def test_explain_draws_the_class_the_runs_threshold_decides(tiny_run_copy, tmp_path, monkeypatch):
    """Grad-CAM of what predict says: with the threshold moved past an image's P(class 1), the decided
    class is the other one than the most probable, and explain must follow the decision."""
    import json

    from PIL import Image

    from qmedimg.model import predict_probs
    from qmedimg.rundir import load_run
    from qmedimg.workflows import predict as module

    run = load_run(tiny_run_copy)
    images = run.dataset.test.images
    p1 = predict_probs(run.model, images)[:, 1]
    i = int(abs(p1 - 0.5).argmin())  # the least certain image: moving the threshold past it flips the decision
    threshold = p1[i] + 1e-6 if p1[i] > 0.5 else p1[i] - 1e-6
    metrics = json.loads((tiny_run_copy / "metrics.json").read_text())
    metrics["threshold"] = {"value": float(threshold), "rule": "fixed"}
    (tiny_run_copy / "metrics.json").write_text(json.dumps(metrics))
    decided = run.dataset.label_names[int(p1[i] > threshold)]
    assert decided != run.dataset.label_names[int(p1[i] > 0.5)]
    Image.fromarray(images[i, 0]).save(tmp_path / "case.png")
    titles = []
    monkeypatch.setattr(module, "plot_gradcam", lambda array, heat, target, title: titles.append(title))
    module.explain(tiny_run_copy, [tmp_path / "case.png"], tmp_path / "explain")
    assert titles[0].startswith(f"case.png: {decided} (p = ")
