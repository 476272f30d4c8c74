"""The 3D MedMNIST sets end to end, on small generated volumes (28³, a blob vs a shell): data, the 3D
model, train, evaluate on noisy backends, noise-study, compare with the 3D ResNet-18, predict on .npy,
.npz and NIfTI files, Grad-CAM slices, and bad input as one line."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qmedimg.cli import main
from qmedimg.data import load_dataset, write_synthetic_npz
from qmedimg.data.synthetic import synthetic_volumes
from qmedimg.data.volumes import read_volume
from qmedimg.errors import QmedimgError
from study_checks import check_noise_study

# learnable in seconds: the compact 3D backbone, 6 short epochs, no moving average (val AUC 1.0 at seeds 0, 1, 2)
LEARN = {"dataset": None, "backbone": "compact", "epochs": 6, "batch_size": 8, "warmup_epochs": 1, "ema_decay": 0.0}


@pytest.fixture(scope="module")
def volumes_npz(tmp_path_factory) -> Path:
    return write_synthetic_npz(tmp_path_factory.mktemp("vol") / "volumes.npz", n_train=48, n_val=16, n_test=16,
                               volumes=True)


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory, volumes_npz, trainer) -> tuple[dict, Path]:
    """A hybrid (compact 3D backbone + quantum head) trained on the volumes; read-only."""
    return trainer(tmp_path_factory.mktemp("vrun") / "run", data_file=str(volumes_npz), **LEARN)


@pytest.fixture
def volume_run_copy(volume_run, tmp_path) -> Path:
    return Path(shutil.copytree(volume_run[1], tmp_path / "run"))


def test_a_volume_npz_is_a_dataset_of_volumes(volumes_npz):
    ds = load_dataset(data_file=volumes_npz)
    assert (ds.dims, ds.size, ds.channels) == (3, 28, 1)
    assert ds.train.images.shape == (48, 1, 28, 28, 28) and ds.train.images.dtype == np.uint8
    assert ds.info()["dims"] == 3 and ds.label_names == ("blob", "shell")
    assert load_dataset(data_file=volumes_npz, limit=5).test.images.shape == (5, 1, 28, 28, 28)


def test_a_3d_flag_reads_its_medmnist_file(tmp_path, volumes_npz):
    shutil.copy(volumes_npz, tmp_path / "organmnist3d.npz")  # medmnist's file name for 28³
    ds = load_dataset("organmnist3d", data_root=tmp_path)
    assert ds.dims == 3 and ds.num_classes == 11 and ds.label_names[0] == "liver"  # names from medmnist.INFO
    with pytest.raises(QmedimgError, match=r"size 128 is not available for 3D datasets; choose one of 28, 64"):
        load_dataset("nodulemnist3d", data_root=tmp_path, size=128)


def test_non_cubic_volumes_are_refused_in_one_line(tmp_path, volumes_npz):
    arrays = dict(np.load(volumes_npz))
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = arrays[f"{split}_images"][:, :, :, :20]
    np.savez(tmp_path / "flat.npz", **arrays)
    with pytest.raises(QmedimgError, match=r"volumes are 28x28x20; expected volumes of equal sides \(cubic\)"):
        load_dataset(data_file=tmp_path / "flat.npz")


def test_the_hybrid_learns_volumes_with_a_3d_backbone(volume_run):
    metrics, run = volume_run
    from qmedimg.rundir import load_run

    model = load_run(run, device="cpu").model
    assert any(isinstance(m, torch.nn.Conv3d) for m in model.backbone.modules())
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert json.loads((run / "config.json").read_text())["dataset"]["dims"] == 3
    assert metrics["val"]["auc"] >= 0.9 and metrics["test"]["auc"] >= 0.8  # blob vs shell, 6 short epochs
    assert metrics["parameters"]["quantum"] == 24


def test_train_cli_default_backbone_and_resume_on_volumes(tmp_path, volumes_npz):
    out = tmp_path / "hqcnn"
    assert main(["train", "--data-file", str(volumes_npz), "--limit", "8", "--epochs", "1",
                 "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["backbone"] == "hqcnn" and record["dataset"]["dims"] == 3
    assert record["parameters"]["total"] > 100_000  # hqcnn in 3D (3×3×3 kernels): 104 K, vs 35 K in 2D
    record["config"]["epochs"] = 2  # as if it had been interrupted after epoch 1 of 2
    (out / "config.json").write_text(json.dumps(record))
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 2


@pytest.mark.parametrize("backend", ["aer", "fake_manila"])
def test_evaluate_a_volume_run_on_noisy_backends(volume_run_copy, backend):
    assert main(["evaluate", str(volume_run_copy), "--backend", backend, "--test-limit", "6", "--quiet"]) == 0
    result = json.loads(next(volume_run_copy.glob(f"eval-{backend}*.json")).read_text())
    assert result["images"] == 6 and result["test"]["n"] == 6
    assert result["test"]["auc"] >= 0.75  # the trained head still separates blob from shell under noise
    assert result["mean_abs_expectation_error"] < 0.2


def test_noise_study_on_a_volume_run_writes_ideal_values_at_scale_0_and_noisy_ones_at_1_on_limit_volumes(
        volume_run_copy, volumes_npz):
    assert main(["noise-study", str(volume_run_copy), "--backend", "fake_manila", "--scales", "0,1",
                 "--mitigation", "none", "--test-limit", "4", "--quiet"]) == 0
    study = volume_run_copy / "noise-study"
    labels = load_dataset(data_file=volumes_npz).test.labels
    check_noise_study(study, scales=[0, 1], limit=4, labels=labels)
    assert (study / "summary.md").is_file() and (study / "accuracy_vs_noise.png").stat().st_size > 0


def test_compare_hybrid_classical_and_3d_resnet18(tmp_path, volumes_npz):
    out = tmp_path / "cmp"
    assert main(["compare", "--data-file", str(volumes_npz), "--limit", "6", "--epochs", "1", "--seeds", "0",
                 "--models", "hybrid,classical,resnet18", "--out", str(out), "--quiet"]) == 0
    table = (out / "comparison.md").read_text()
    assert "resnet18" in table and "classical" in table
    resnet = next(p for p in out.rglob("config.json") if "resnet18" in str(p))
    params = json.loads(resnet.read_text())["parameters"]["total"]
    assert params > 33_000_000  # torchvision's r3d_18 (3D ResNet-18), not the 11 M 2D one


def test_vgg16_and_augment_on_volumes_are_refused(tmp_path, volumes_npz, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data-file", str(volumes_npz), "--models", "hybrid,vgg16",
                 "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert main(["train", "--data-file", str(volumes_npz), "--augment", "--out", str(tmp_path / "aug"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and not (tmp_path / "aug").exists()
    assert err[0] == ("qmedimg: error: vgg16 has no 3D version for volumes; on volumes use resnet18 (a 3D "
                      "ResNet-18) or the hybrid model")
    assert "--augment" in err[1] and "volumes" in err[1]


def _volume(seed: int = 0, side: int = 28) -> np.ndarray:
    """One generated volume (side³ uint8), as the 3D sets hold them."""
    return synthetic_volumes((1, 0, 0), side, 2, seed)["train_images"][0]


def test_nifti_npy_and_npz_give_the_same_volume_and_prediction(volume_run, tmp_path):
    import nibabel

    volume = _volume()
    volume[:4] = 255  # not symmetric: a wrong axis order would move these slices
    np.save(tmp_path / "a.npy", volume)
    np.savez(tmp_path / "b.npz", volume=volume)
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), tmp_path / "c.nii.gz")
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), np.eye(4)), tmp_path / "d.nii")
    read = [read_volume(tmp_path / name, 28) for name in ("a.npy", "b.npz", "c.nii.gz", "d.nii")]
    for other in read[1:]:
        np.testing.assert_array_equal(other, read[0])
    np.testing.assert_array_equal(read[0][0], volume)
    from qmedimg.workflows.predict import predict

    rows = predict(volume_run[1], [tmp_path], device="cpu")["rows"]
    assert len(rows) == 4
    for row in rows[1:]:
        assert row["probabilities"] == pytest.approx(rows[0]["probabilities"], abs=1e-6)


def test_volumes_are_resized_trilinearly_and_scaled_to_8_bits(tmp_path):
    import nibabel

    big = _volume(side=40)
    np.save(tmp_path / "big.npy", big)
    small = read_volume(tmp_path / "big.npy", 28)
    assert small.shape == (1, 28, 28, 28)
    expected = torch.nn.functional.interpolate(torch.from_numpy(big).float()[None, None], size=(28, 28, 28),
                                               mode="trilinear", align_corners=False)[0, 0].round().numpy()
    np.testing.assert_array_equal(small[0], expected.astype(np.uint8))
    hounsfield = (big.astype(np.int16) * 8 - 1000)  # CT-like, -1000..1040
    nibabel.save(nibabel.Nifti1Image(hounsfield.transpose(2, 1, 0), np.eye(4)), tmp_path / "ct.nii.gz")
    ct = read_volume(tmp_path / "ct.nii.gz", 40)[0]
    assert ct.min() == 0 and ct.max() == 255  # min-max over the volume
    hu = hounsfield.astype(float)
    np.testing.assert_allclose(ct, 255 * (hu - hu.min()) / np.ptp(hu), atol=0.5)


def test_predict_cli_on_a_volume_prints_the_class(volume_run, tmp_path, capsys):
    np.save(tmp_path / "scan.npy", _volume(seed=3))
    assert main(["predict", str(volume_run[1]), str(tmp_path / "scan.npy"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "scan.npy:" in out and ("blob" in out or "shell" in out)


@pytest.mark.parametrize("name, array, message", [
    ("slice.npy", np.zeros((28, 28), np.uint8), r"holds a 2D image \(28, 28\), but the run was trained on volumes"),
    ("stack.npy", np.zeros((2, 28, 28, 28), np.uint8), r"holds a 4-D array \(2, 28, 28, 28\); expected one volume"),
    ("broken.npy", None, r"not a readable \.npy array"),
    ("image.png", "png", r"a 2D image, but the run was trained on volumes"),
    ("notes.txt", "txt", r"not a volume file"),
    ("two.npz", "npz2", r"holds 2 arrays"),
    ("time.nii.gz", "nii4d", r"holds a 4-D array \(28, 28, 28, 3\)"),
])
def test_a_file_that_is_not_a_volume_is_one_line_and_nothing_is_written(volume_run, tmp_path, capsys, name, array,
                                                                         message):
    import nibabel
    from PIL import Image

    path = tmp_path / name
    if isinstance(array, np.ndarray):
        np.save(path, array)
    elif array is None:
        path.write_bytes(b"not numpy at all")
    elif array == "png":
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    elif array == "txt":
        path.write_text("hello")
    elif array == "npz2":
        np.savez(path, a=np.zeros((28,) * 3), b=np.zeros((28,) * 3))
    else:
        nibabel.save(nibabel.Nifti1Image(np.zeros((28, 28, 28, 3), np.int16), np.eye(4)), path)
    before = sorted(p.name for p in volume_run[1].iterdir())
    assert main(["predict", str(volume_run[1]), str(path), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("skipped: ") and name in err[0]
    assert __import__("re").search(message, err[0]), err[0]
    assert not (tmp_path / "p.csv").exists() and sorted(p.name for p in volume_run[1].iterdir()) == before


def test_a_volume_for_a_2d_run_is_one_line(tiny_run, tmp_path, capsys):
    np.save(tmp_path / "scan.npy", _volume())
    assert main(["predict", str(tiny_run), str(tmp_path / "scan.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[0]
    assert "holds a volume (28, 28, 28), but the run was trained on 2D images" in err


def test_explain_draws_three_middle_slices_of_the_3d_gradcam(volume_run, tmp_path):
    import nibabel
    from PIL import Image

    from qmedimg.workflows.predict import explain

    nibabel.save(nibabel.Nifti1Image(_volume().transpose(2, 1, 0), np.eye(4)), tmp_path / "scan.nii.gz")
    written = explain(volume_run[1], [tmp_path / "scan.nii.gz"], tmp_path / "explain", device="cpu")
    assert [p.name for p in written] == ["scan-gradcam.png", "head_space.png"]
    width, height = Image.open(written[0]).size
    assert width > height  # three slices side by side, image over overlay


def test_explain_with_a_2d_image_for_a_volume_run_writes_nothing(volume_run, tmp_path):
    from PIL import Image

    from qmedimg.workflows.predict import explain

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "slice.png")
    with pytest.raises(QmedimgError, match="a 2D image, but the run was trained on volumes"):
        explain(volume_run[1], [tmp_path / "slice.png"], tmp_path / "explain", device="cpu")
    assert not (tmp_path / "explain").exists()
