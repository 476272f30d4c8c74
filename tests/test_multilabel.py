"""Multi-label data (ChestMNIST and any npz whose labels are (N, K) of 0/1): sigmoid outputs, per-label
BCE, MedMNIST's multi-label ACC/AUC, a per-label table and plot, and every command on top."""

import json

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC

from qmedimg.cli import main
from qmedimg.data import MULTI_LABEL, load_dataset
from qmedimg.metrics import compute_metrics
from study_checks import check_noise_study
from support import one_line_error, snapshot

NAMES = ("top-left", "bottom-right", "top-right")


def multi_label_arrays(seed: int = 0, counts=(96, 32, 32), labels: int = 3) -> dict:
    """Learnable multi-label images: label k present = a bright square in corner k (any number of them)."""
    rng = np.random.default_rng(seed)
    corners = [(4, 4), (16, 16), (4, 16), (16, 4)][:labels]
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        present = (rng.random((n, labels)) < 0.4).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i in range(n):
            for k, (y, x) in enumerate(corners):
                if present[i, k]:
                    images[i, y : y + 8, x : x + 8] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, present
    return arrays


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("ml") / "findings.npz"
    np.savez(path, **multi_label_arrays(), label_names=np.array(NAMES))
    return path


@pytest.fixture(scope="module")
def run(npz, tmp_path_factory):
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import train

    out = tmp_path_factory.mktemp("mlrun") / "run"  # compare's short recipe: no moving average
    train(make_config(data_file=str(npz), epochs=30, batch_size=16, ema_decay=0.0, out=str(out)), progress=False)
    return out


def test_a_labels_matrix_makes_a_multi_label_dataset(npz):
    ds = load_dataset(data_file=npz)
    assert ds.task == MULTI_LABEL and ds.multi_label and ds.label_names == NAMES and ds.num_classes == 3
    assert ds.train.labels.shape == (96, 3) and ds.info()["class_counts"]["train"] == ds.train.labels.sum(0).tolist()
    picked = load_dataset(data_file=npz, classes=[2, 0])  # --classes keeps those labels' columns
    assert picked.label_names == ("top-right", "top-left") and len(picked.train.labels) == 96
    np.testing.assert_array_equal(picked.train.labels, ds.train.labels[:, [2, 0]])


def test_training_learns_every_label_and_reports_medmnists_metrics_per_label(run):
    from qmedimg.model import predict_probs
    from qmedimg.rundir import load_run

    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["auc"] > 0.8 and [row["label"] for row in test["per_label"]] == [0, 1, 2]
    assert all(row["auc"] > 0.7 for row in test["per_label"])
    loaded = load_run(run)
    probs = predict_probs(loaded.model, loaded.dataset.test.images)
    assert probs.shape == (32, 3) and not np.allclose(probs.sum(1), 1)  # one sigmoid per label, not a softmax
    labels = loaded.dataset.test.labels
    assert test["acc"] == pytest.approx(getACC(labels, probs, MULTI_LABEL))
    assert test["auc"] == pytest.approx(getAUC(labels, probs, MULTI_LABEL))
    assert (run / "per_label_auc.png").is_file() and (run / "confusion.png").is_file()
    assert np.asarray(test["confusion"]).shape == (3, 2, 2)


def test_class_weights_weigh_each_labels_positives_by_its_negatives():
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import training_loss

    arrays = multi_label_arrays()
    arrays["train_labels"][:, 0] = 0
    arrays["train_labels"][:8, 0] = 1  # label 0: 8 positives, 88 negatives
    ds = load_dataset(data_file=_save(arrays))
    logits, labels = torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]])
    plain = training_loss(ds, make_config(data_file="x.npz", label_smoothing=0.0, out="-"), "cpu")(logits, labels)
    weighted = training_loss(ds, make_config(data_file="x.npz", label_smoothing=0.0, class_weights=True, out="-"),
                             "cpu")(logits, labels)
    # BCE at logit 0 is log 2 per entry; the one positive of label 0 counts 88/8 = 11 times
    assert plain.item() == pytest.approx(np.log(2))
    assert weighted.item() == pytest.approx(np.log(2) * (6 - 1 + 11) / 6)


def _save(arrays: dict, name: str = "w.npz"):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / name
    np.savez(path, **arrays)
    return path


def test_chestmnist_reads_as_a_flag_with_its_fourteen_findings(tmp_path):
    arrays = multi_label_arrays(counts=(16, 8, 8), labels=3)
    for split in ("train", "val", "test"):
        arrays[f"{split}_labels"] = np.tile(arrays[f"{split}_labels"], (1, 5))[:, :14]
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    ds = load_dataset("chestmnist", data_root=tmp_path)
    assert ds.task == MULTI_LABEL and ds.num_classes == 14 and ds.label_names[0] == "atelectasis"


def test_evaluate_noise_study_compare_and_predict_take_a_multi_label_run(run, npz, tmp_path, capsys):
    import shutil

    from PIL import Image

    from qmedimg.rundir import load_run

    mine = tmp_path / "run"
    shutil.copytree(run, mine)
    assert main(["evaluate", str(mine), "--backend", "aer", "--test-limit", "16"]) == 0
    result = json.loads((mine / "eval-aer-limit16.json").read_text())
    assert len(result["test"]["per_label"]) == 3
    assert result["images"] == 16 and result["test"]["n"] == 16 and 0 <= result["test"]["auc"] <= 1
    assert main(["noise-study", str(mine), "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none",
                 "--test-limit", "16", "--quiet"]) == 0
    # 16 images with their 3 labels each; ideal at scale 0, noisy at 1; each row's ACC/AUC as recomputed
    check_noise_study(mine / "noise-study", scales=[0, 1], limit=16, labels=load_dataset(data_file=npz).test.labels)
    assert main(["compare", "--data-file", str(npz), "--models", "hybrid,classical", "--seeds", "0", "--epochs", "1",
                 "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    assert "| hybrid |" in (tmp_path / "cmp" / "comparison.md").read_text()
    image = load_run(mine).dataset.test.images[0, 0]
    Image.fromarray(image).save(tmp_path / "case.png")
    capsys.readouterr()
    from qmedimg.workflows.predict import predict

    row = predict(mine, [tmp_path / "case.png"])["rows"][0]
    above = [n for n, p in row["probabilities"].items() if p > 0.5]  # the findings above the threshold
    assert row["class"] == ("; ".join(above) or "none") and sum(row["probabilities"].values()) != pytest.approx(1)
    assert main(["predict", str(mine), str(tmp_path / "case.png")]) == 0
    assert f"case.png: {row['class']}   (" in capsys.readouterr().out


@pytest.mark.parametrize("bad, expected", [
    (2, "must hold 0 or 1, found 2"),
    (-1, "must hold 0 or 1, found -1"),
])
def test_a_label_outside_0_1_is_one_line_and_trains_nothing(tmp_path, capsys, bad, expected):
    arrays = multi_label_arrays(counts=(16, 8, 8))
    arrays["val_labels"] = arrays["val_labels"].astype(np.int64)
    arrays["val_labels"][3, 1] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    before = snapshot(tmp_path)
    assert main(["train", "--data-file", str(path), "--epochs", "1", "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys)
    assert f"{path}: val_labels has shape (8, 3): multi-label data" in err and expected in err
    assert snapshot(tmp_path) == before


def test_compute_metrics_multi_label_matches_medmnist_at_any_threshold():
    rng = np.random.default_rng(1)
    labels, probs = (rng.random((40, 4)) < 0.3).astype(int), rng.random((40, 4))
    for threshold in (0.5, 0.3):
        m = compute_metrics(labels, probs, MULTI_LABEL, threshold=threshold)
        assert m["acc"] == pytest.approx(getACC(labels, probs, MULTI_LABEL, threshold))
        assert m["auc"] == pytest.approx(getAUC(labels, probs, MULTI_LABEL))
        assert [row["acc"] for row in m["per_label"]] == pytest.approx(((probs > threshold) == labels).mean(0))
