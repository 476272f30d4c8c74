"""MedMNIST+ sizes end to end: a synthetic ``breastmnist_64.npz`` in a data root, reached through the
real flags (``--dataset breastmnist --size 64 --data-root DIR``), through train, evaluate (exact, Aer,
a fake device), the noise study, compare, predict (images of other sizes resized to the run's) and
explain, for the hybrid and ResNet-18; every model builds and runs a forward pass at 128 and 224; a
size a model cannot take, or a file of another size, is refused in one line with nothing written."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qmedimg.cli import main
from qmedimg.data import datasets, load_dataset, write_synthetic_npz
from qmedimg.model import predict_probs
from qmedimg.rundir import build_model, load_data, load_run, make_config, read_record
from study_checks import check_noise_study
from support import one_line_error, snapshot

SPLITS = {"n_train": 32, "n_val": 16, "n_test": 16}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A MedMNIST data root holding only ``breastmnist_64.npz`` (MedMNIST+'s name for the 64×64 file)."""
    root = tmp_path_factory.mktemp("medmnist_plus")
    write_synthetic_npz(root / "breastmnist_64.npz", size=64, seed=3, **SPLITS)
    return root


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    def refuse(*args):
        pytest.fail(f"tried to download MedMNIST {args[:3]}")

    monkeypatch.setattr(datasets, "_download", refuse)
    monkeypatch.setattr(datasets, "published_md5", lambda name: None)  # generated files stand in for MedMNIST's


def data_argv(root: Path, size: int = 64) -> list[str]:
    return ["--dataset", "breastmnist", "--size", str(size), "--data-root", str(root)]


@pytest.fixture(scope="module", params=["hybrid", "resnet18"])
def run64(request, data_root, tmp_path_factory) -> Path:
    """A 1-epoch run at 64×64 trained through the command line, per model."""
    out = tmp_path_factory.mktemp("runs") / request.param
    model = [] if request.param == "hybrid" else ["--model", request.param]
    assert main(["train", *data_argv(data_root), *model, "--epochs", "1", "--batch-size", "16", "--out", str(out),
                 "--quiet"]) == 0
    return out


# ---------------------------------------------------------------------------------------- end to end


def test_a_64_pixel_run_records_its_size_and_its_network_takes_64_pixel_images(run64):
    record = json.loads((run64 / "config.json").read_text())
    assert record["config"]["size"] == 64 and record["dataset"]["size"] == 64
    assert record["dataset"]["source"].endswith("breastmnist_64.npz")
    run = load_run(run64)
    assert run.dataset.test.images.shape[1:] == (1, 64, 64)
    assert json.loads((run64 / "metrics.json").read_text())["test"]["acc"] >= 0  # evaluated at the end of training


def test_evaluate_a_64_pixel_run_on_exact_aer_and_a_fake_device(run64, tmp_path, capsys):
    run = Path(shutil.copytree(run64, tmp_path / "run"))
    quantum = json.loads((run / "config.json").read_text())["config"]["model"] == "hybrid"
    backends = ["exact", "aer", "fake_manila"] if quantum else ["exact"]  # a CNN without a circuit: exact only
    for backend in backends:
        assert main(["evaluate", str(run), "--backend", backend, "--test-limit", "4", "--quiet"]) == 0, backend
        result = json.loads(next(run.glob(f"eval-{backend}*.json")).read_text())
        assert result["images"] == 4 and 0 <= result["test"]["acc"] <= 1
    capsys.readouterr()


def test_predict_resizes_images_of_any_size_to_the_runs_size(run64, tmp_path, capsys):
    run = load_run(run64)
    image = run.dataset.test.images[0, 0]  # 64×64 uint8
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a_same_size.png")
    large = Image.fromarray(image).resize((150, 150), Image.Resampling.NEAREST)
    large.save(folder / "b_large.png")
    large.resize((64, 64), Image.Resampling.BICUBIC).save(folder / "c_large_resized_here.png")
    Image.fromarray(image).resize((28, 28), Image.Resampling.BICUBIC).save(folder / "d_small.png")
    out = tmp_path / "p.csv"
    assert main(["predict", str(run64), str(folder), "--out", str(out), "--quiet"]) == 0
    with open(out, newline="") as handle:
        rows = {Path(r["file"]).stem: r for r in csv.DictReader(handle)}
    assert len(rows) == 4
    p = {stem: float([v for k, v in r.items() if k.startswith("p_")][1]) for stem, r in rows.items()}  # class 1
    # a 64×64 file is the test image itself: the same probability as the network gives the split's image
    assert p["a_same_size"] == pytest.approx(float(predict_probs(run.model, run.dataset.test.images[:1])[0, 1]),
                                             abs=1e-6)
    # a 150×150 file is resized to 64 (bicubic) before the network sees it: as if it had been resized beforehand
    assert p["b_large"] == pytest.approx(p["c_large_resized_here"], abs=1e-6)
    capsys.readouterr()


def test_explain_a_64_pixel_run(run64, tmp_path, capsys):
    image = load_run(run64).dataset.test.images[0, 0]
    Image.fromarray(image).resize((100, 100)).save(tmp_path / "scan.png")
    out = tmp_path / "explain"
    assert main(["explain", str(run64), str(tmp_path / "scan.png"), "--out", str(out)]) == 0
    assert (out / "scan-gradcam.png").is_file()
    quantum = json.loads((run64 / "config.json").read_text())["config"]["model"] == "hybrid"
    assert (out / "head_space.png").is_file() == quantum
    capsys.readouterr()


def test_noise_study_and_compare_at_64_pixels(data_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *data_argv(data_root), "--models", "hybrid,resnet18", "--seeds", "0", "--epochs", "1",
                 "--batch-size", "16", "--out", str(out), "--quiet"]) == 0
    for label in ("hybrid", "resnet18"):
        assert json.loads((out / f"{label}-seed0" / "config.json").read_text())["config"]["size"] == 64
    table = (out / "comparison.md").read_text()
    assert "| hybrid |" in table and "| resnet18 |" in table
    study = tmp_path / "study"
    assert main(["noise-study", str(out / "hybrid-seed0"), "--backend", "fake_manila", "--scales", "1",
                 "--mitigation", "none", "--test-limit", "4", "--out", str(study), "--quiet"]) == 0
    # one whole row: 4 of the 64-pixel test images, noisy values unlike the ideal ones, metrics as recomputed
    check_noise_study(study, scales=[1], limit=4, labels=load_run(out / "hybrid-seed0").dataset.test.labels)
    capsys.readouterr()


# ------------------------------------------------------------------------------------ every model, size


MODELS = {"hybrid hqcnn": {}, "hybrid compact": {"backbone": "compact"}, "classical head": {"head": "classical"},
          "linear head": {"head": "linear"}, "resnet18": {"model": "resnet18"}, "vgg16": {"model": "vgg16"}}


@pytest.mark.parametrize("size", [128, 224])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_builds_and_classifies_two_images_at_large_sizes(name, size):
    config = make_config(dataset="synthetic", size=size, out="-", **MODELS[name])
    dataset = load_dataset("synthetic", limit=2)  # build_model reads channels and classes only
    model = build_model(config, dataset, device="cpu")
    with torch.no_grad():
        logits = model.eval()(torch.rand(2, 1, size, size) * 2 - 1)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------- ResNet-18's stem


def test_resnet18_keeps_medmnist_v2s_3x3_stem_at_28_and_takes_imagenets_from_64():
    dataset = load_dataset("synthetic", limit=2)
    small = build_model(make_config(dataset="synthetic", model="resnet18", out="-"), dataset, device="cpu")
    large = build_model(make_config(dataset="synthetic", model="resnet18", size=64, out="-"), dataset, device="cpu")
    assert small.net.conv1.kernel_size == (3, 3) and small.net.conv1.stride == (1, 1)
    assert isinstance(small.net.maxpool, torch.nn.Identity)
    assert large.net.conv1.kernel_size == (7, 7) and large.net.conv1.stride == (2, 2)
    assert isinstance(large.net.maxpool, torch.nn.MaxPool2d)
    assert make_config(dataset="synthetic", model="resnet18", size=64, stem="3x3", out="-").stem == "3x3"


def test_a_resnet18_run_made_before_the_stem_existed_still_loads_with_its_3x3_stem(data_root, tmp_path):
    out = tmp_path / "old"
    assert main(["train", *data_argv(data_root), "--model", "resnet18", "--epochs", "1", "--batch-size", "16",
                 "--out", str(out), "--quiet"]) == 0
    # what an older qmedimg wrote: a 3×3 stem at 64 and no "stem" key in config.json
    record = json.loads((out / "config.json").read_text())
    del record["config"]["stem"], record["schema"]  # (nor a format version: version 1)
    (out / "config.json").write_text(json.dumps(record))
    config = make_config(**{**record["config"], "stem": "3x3"})
    model = build_model(config, load_data(config), device="cpu")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["best_model"] = model.state_dict()
    torch.save(state, out / "checkpoint.pt")

    assert read_record(out)["config"]["stem"] == "3x3"  # what compare's reuse check compares
    run = load_run(out)
    assert run.model.net.conv1.kernel_size == (3, 3)
    probs = predict_probs(run.model, run.dataset.test.images)
    assert probs.shape == (16, 2) and np.allclose(probs.sum(1), 1)


def test_a_hybrid_run_made_before_the_stem_existed_gets_no_stem(tiny_run):
    assert read_record(tiny_run)["config"]["stem"] is None
    with pytest.raises(Exception, match="stem is for model resnet18 only"):
        make_config(dataset="synthetic", stem="imagenet", out="-")


# ------------------------------------------------------------------------------------------- refused


def test_a_size_a_model_cannot_take_is_one_line_and_writes_nothing(tmp_path, capsys):
    write_synthetic_npz(tmp_path / "breastmnist.npz", seed=4, **SPLITS)  # 28×28
    out = tmp_path / "vgg"
    assert main(["train", *data_argv(tmp_path, 28), "--model", "vgg16", "--out", str(out), "--quiet"]) == 2
    assert "vgg16 cannot take 28×28 images; it can take sizes 64, 128, 224 (--size)" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("size", [None, "28", "128"])
def test_a_data_file_of_another_size_is_refused_naming_the_size_to_give(tmp_path, capsys, size):
    path = write_synthetic_npz(tmp_path / "scans64.npz", size=64, **SPLITS)
    out = tmp_path / "run"
    argv = ["train", "--data-file", str(path), "--out", str(out), "--quiet"] + (["--size", size] if size else [])
    before = snapshot(tmp_path)
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert str(path) in err and "64" in err and not out.exists() and snapshot(tmp_path) == before
    if size != "128":
        assert "pass --size 64" in err


def test_a_medmnist_file_whose_images_are_not_the_size_its_name_says_is_refused(tmp_path, capsys):
    write_synthetic_npz(tmp_path / "breastmnist_128.npz", size=64, **SPLITS)  # 64×64 under the 128 name
    assert main(["train", *data_argv(tmp_path, 128), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "breastmnist_128.npz holds 64x64 images but its name says size 128" in err
    assert not (tmp_path / "run").exists()
