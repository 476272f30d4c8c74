"""A trained run is a model that needs only its folder: a hospital that receives a run trained with
``--data-file scans.npz``, without scans.npz, predicts and explains with it exactly as with the data there,
and evaluates it on a test split of its own (``evaluate --data-file``) with exactly the metrics the run's own
data gives; without either, and with a test file of another kind, one line and nothing written. On 2D
images (a run that kept two of three classes), 3D volumes and multi-label findings."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qmedimg.cli import main
from qmedimg.data import write_synthetic_npz
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.predict import explain, predict
from support import one_line_error, snapshot

FINDINGS = ("top-left", "bottom-right", "top-right")


def _findings_npz(path: Path) -> Path:
    """Multi-label images (N, 28, 28): finding k present = a bright square in corner k."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("val", 16), ("test", 16)):
        present = (rng.random((n, 3)) < 0.4).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in zip(*np.nonzero(present)):
            y, x = [(4, 4), (16, 16), (4, 16)][k]
            images[i, y : y + 8, x : x + 8] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, present
    np.savez(path, **arrays, label_names=np.array(FINDINGS))
    return path


# each kind: its data file and how the run trains on it (one short epoch: the numbers, not the learning, matter)
KINDS = {
    "2d": (lambda p: write_synthetic_npz(p, n_train=48, n_val=24, n_test=24, num_classes=3),
           {"classes": [2, 0]}),  # keeps two of three classes, renumbered: a test file is read the same way
    "3d": (lambda p: write_synthetic_npz(p, n_train=16, n_val=8, n_test=8, volumes=True),
           {"backbone": "compact", "batch_size": 8}),
    "multi-label": (_findings_npz, {}),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trainer) -> dict[str, Path]:
    """Per kind, a folder holding scans.npz and run/, trained as `qmedimg train --data-file scans.npz` typed
    in that folder (the run records the path as given). Read-only: tests take ``site``, a copy."""
    folders = {}
    for kind, (write, fields) in KINDS.items():
        folder = tmp_path_factory.mktemp(kind)
        write(folder / "scans.npz")
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            trainer(folder / "run", dataset=None, data_file="scans.npz", limit=None, epochs=1, **fields)
        folders[kind] = folder
    return folders


@pytest.fixture(params=list(KINDS))
def site(request, trained, tmp_path, monkeypatch) -> Path:
    """This test's copy of one kind's folder (scans.npz, run/), the working directory: deleting its
    scans.npz is the run arriving without its training data."""
    folder = Path(shutil.copytree(trained[request.param], tmp_path / "site"))
    monkeypatch.chdir(folder)
    return folder


def _inputs(site: Path) -> list[Path]:
    """Three of the test split's images as files predict reads: PNGs, or .npy volumes."""
    with np.load(site / "scans.npz") as npz:
        images = npz["test_images"][:3]
    paths = []
    for i, image in enumerate(images):
        if image.ndim == 3:  # a volume
            np.save(site / f"case{i}.npy", image)
            paths.append(site / f"case{i}.npy")
        else:
            Image.fromarray(image).save(site / f"case{i}.png")
            paths.append(site / f"case{i}.png")
    return paths


def _test_copy(site: Path, name: str = "test-copy.npz", **replace) -> Path:
    """The data file's test split alone (and its label_names), as a hospital would hand it over."""
    with np.load(site / "scans.npz") as npz:
        arrays = {k: npz[k] for k in ("test_images", "test_labels", "label_names") if k in npz.files}
    np.savez(site / name, **{**arrays, **replace})
    return site / name


def _gradcams(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*-gradcam.png"))}


def test_predict_and_explain_need_only_the_run_directory(site, capsys):
    run, inputs = site / "run", _inputs(site)
    with_data = predict(run, inputs)["rows"]
    drawn = explain(run, inputs, site / "with")
    capsys.readouterr()
    (site / "scans.npz").unlink()  # the run arrives without its training data
    without = predict(run, inputs)["rows"]
    assert without == with_data  # every probability and head value exactly
    written = explain(run, inputs, site / "without")
    assert _gradcams(site / "without") == _gradcams(site / "with") and len(_gradcams(site / "with")) == 3
    assert [p.name for p in written] == [f"{p.stem}-gradcam.png" for p in inputs]  # no head_space.png: said why
    if "head_space.png" in [p.name for p in drawn]:  # (a multi-label run has none, its data there or not)
        err = capsys.readouterr().err  # the data file as the run recorded it
        assert "head_space.png left out: it plots the run's test split, and data file scans.npz not found" in err
    assert main(["predict", str(run), str(inputs[0])]) == 0


def test_evaluate_with_data_file_on_a_copy_of_the_test_split_gives_the_metrics_of_the_run_s_own_data(site):
    run = site / "run"
    assert main(["evaluate", str(run), "--quiet"]) == 0  # the run's own test split, its data file there
    own = json.loads((run / "eval-exact.json").read_text())
    copy = _test_copy(site)
    (site / "scans.npz").rename(site / "moved.npz")
    assert main(["evaluate", str(run), "--data-file", str(copy), "--quiet"]) == 0
    other = json.loads((run / "eval-exact-on-test-copy.json").read_text())
    for key in ("test", "ideal_test", "images", "threshold", "mean_abs_expectation_error", "run_id"):
        assert other[key] == own[key], key
    assert other["data_file"]["path"] == str(copy.resolve())
    moved = evaluate_run(run, data_file=site / "moved.npz")  # the whole data file, moved: its test split, the same
    assert moved["test"] == own["test"] and moved["path"].endswith("eval-exact-on-moved.json")


def test_evaluate_without_the_data_and_without_data_file_is_one_line_naming_the_file_and_data_file(site, capsys):
    run = site / "run"
    (site / "scans.npz").unlink()
    before = snapshot(run)
    assert main(["evaluate", str(run), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "data file scans.npz not found" in err and "--data-file TEST.npz" in err
    assert snapshot(run) == before


def _other_shape(site: Path) -> np.ndarray:
    """Test images of another kind than the run's: 32×32 for a 28×28 run, 2D slices for a run on volumes."""
    with np.load(site / "scans.npz") as npz:
        images = npz["test_images"]
    return images[:, 0] if images.ndim == 4 else np.pad(images, ((0, 0), (2, 2), (2, 2)))


def test_a_data_file_whose_images_have_another_shape_is_one_line_and_nothing_written(site, capsys):
    run = site / "run"
    wrong = _test_copy(site, "wrong.npz", test_images=_other_shape(site))
    (site / "scans.npz").unlink()
    before = snapshot(run)
    assert main(["evaluate", str(run), "--data-file", str(wrong), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "wrong.npz: test_images have shape" in err and "but the run was trained on" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("site", ["2d"], indirect=True)
@pytest.mark.parametrize("replace, expected", [
    ({"test_labels": np.ones((24, 3), dtype=np.uint8)}, "test_labels are one column per label (multi-label), but the "
                                                        "run is binary-class"),
    ({"test_labels": np.full(24, 5)}, "test_labels hold label 5"),
    ({"label_names": np.array(["a", "b", "c"])}, "label_names are c, a, but the run is binary-class"),
    ({"test_images": np.zeros((24, 28, 28, 3), dtype=np.uint8)}, "test_images have shape (24, 28, 28, 3)"),
    ({"test_images": np.full((24, 28, 28), 300)}, "values outside whole numbers 0..255"),
])
def test_a_data_file_of_another_task_or_labels_is_one_line_and_nothing_written(site, capsys, replace, expected):
    run = site / "run"
    wrong = _test_copy(site, "wrong.npz", **replace)
    before = snapshot(run)
    assert main(["evaluate", str(run), "--data-file", str(wrong), "--quiet"]) == 2
    assert expected in one_line_error(capsys)
    assert snapshot(run) == before


@pytest.mark.parametrize("site", ["2d"], indirect=True)
def test_an_old_run_without_dims_needs_no_data_and_one_without_channels_reads_its_data_file(site, capsys):
    run, inputs = site / "run", _inputs(site)
    expected = predict(run, inputs)["rows"]
    record = json.loads((run / "config.json").read_text())
    del record["dataset"]["dims"]  # recorded since volumes: before, every run was 2D
    (run / "config.json").write_text(json.dumps(record))
    (site / "scans.npz").rename(site / "away.npz")
    assert predict(run, inputs)["rows"] == expected
    del record["dataset"]["channels"]  # a record without what the network needs: the data file says it
    (run / "config.json").write_text(json.dumps(record))
    assert main(["predict", str(run), str(inputs[0])]) == 2
    assert "data file scans.npz not found" in one_line_error(capsys)
    (site / "away.npz").rename(site / "scans.npz")
    assert predict(run, inputs)["rows"] == expected


@pytest.mark.parametrize("site", ["2d"], indirect=True)
def test_a_damaged_data_record_is_one_line(site, capsys):
    run = site / "run"
    record = json.loads((run / "config.json").read_text())
    record["dataset"]["channels"] = "gray"
    (run / "config.json").write_text(json.dumps(record))
    assert main(["predict", str(run), str(_inputs(site)[0])]) == 2
    assert "config.json: dataset.channels is 'gray'" in one_line_error(capsys)


@pytest.mark.parametrize("site", ["2d"], indirect=True)
def test_explain_without_images_and_without_the_data_is_one_line(site, capsys):
    (site / "scans.npz").unlink()
    before = snapshot(site / "run")
    assert main(["explain", str(site / "run")]) == 2
    err = one_line_error(capsys)
    assert "nothing to explain" in err and "scans.npz not found" in err
    assert snapshot(site / "run") == before
