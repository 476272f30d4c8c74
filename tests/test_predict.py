"""`qmedimg predict` and `explain` on real image files, as a hospital user would run them."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qmedimg.cli import main
from qmedimg.model import predict_probs
from qmedimg.workflows.predict import explain, predict
from qmedimg.data import read_image
from qmedimg.rundir import load_run


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The run's test images as PNG files, as a user would have them."""
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(load_run(tiny_run).dataset.test.images[:20]):
        Image.fromarray(image[0]).save(folder / f"case{i:03d}.png")
    return folder


def dicom(path, image, **extra):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    if image is not None:
        ds.Rows, ds.Columns = image.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 2, -100
        ds.PixelData = image.astype(np.uint16).tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_predictions_on_exported_pngs_equal_the_test_split_predictions(tiny_run, exported, tmp_path):
    run = load_run(tiny_run)
    expected = predict_probs(run.model, run.dataset.test.images[:20]).argmax(1)
    result = predict(tiny_run, [exported], out=tmp_path / "predictions.csv")
    names = list(run.dataset.label_names)
    assert [r["class"] for r in result["rows"]] == [names[k] for k in expected]
    assert all(len(r["expectations"]) == 4 and abs(sum(r["probabilities"].values()) - 1) < 1e-6
               for r in result["rows"])
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 20 and rows[0]["file"].endswith("case000.png") and "ev_3" in rows[0]


def test_a_dicom_is_predicted_and_unreadable_files_are_skipped_with_a_reason(tiny_run, exported, tmp_path, capsys):
    image = np.array(Image.open(exported / "case000.png"))
    folder = tmp_path / "mixed"
    folder.mkdir()
    dicom(folder / "scan.dcm", image)
    dicom(folder / "report.dcm", None)
    dicom(folder / "cine.dcm", np.stack([image, image]), NumberOfFrames=2, Rows=28, Columns=28,
          SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=16, HighBit=15,
          PixelRepresentation=0)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    rgb = np.stack([image, np.flipud(image), image], axis=-1)
    Image.fromarray(rgb).save(folder / "colour.png")
    read = read_image(folder / "scan.dcm", 1, 28)
    assert read.shape == (1, 28, 28) and read.dtype == np.uint8 and read.min() == 0 and read.max() == 255
    assert main(["predict", str(tiny_run), str(folder), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "1 predicted, 5 skipped" in captured.out
    for expected in ("report.dcm: DICOM without pixel data", "cine.dcm: multi-frame DICOM (2 frames)",
                     "notes.txt: not a readable", "broken.png: not a readable",
                     "colour.png: a colour image, but the run was trained on 1-channel"):
        assert expected in captured.err, expected
    assert "Doe" not in (tmp_path / "p.csv").read_text()  # no DICOM metadata in the output


def to_8_bits(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.round(255 * (values - values.min()) / (values.max() - values.min())).astype(np.uint8)


STORED = np.arange(28 * 28, dtype=np.uint16).reshape(28, 28)  # stored values 0..783, a ramp
SLOPE, INTERCEPT = 2, -100  # the helper's rescale: modality values -100..1466
CUBIC = np.round(65535 * (np.arange(1200) / 1199) ** 3).astype(np.uint16)  # a non-linear VOI LUT over 0..1199


def voi_lut_sequence(first_mapped: int, table: np.ndarray) -> list:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(table), first_mapped, 16])
    item.add_new("LUTData", "US", table.tolist())
    return [item]


def sigmoid(values, center=600, width=300):
    return 1 / (1 + np.exp(-4 * (values - center) / width))


# (header, what the display shows for given modality values): the rescale (modality LUT) comes first,
# then a non-linear VOI LUT or window, so skipping either step (or MONOCHROME1's inversion) changes the
# 8-bit image by far more than rounding; min-max scaling undoes a linear step, not these.
DICOM_WINDOWS = {
    "VOI LUT table": ({"VOILUTSequence": voi_lut_sequence(0, CUBIC)},
                      lambda v: CUBIC[np.clip(v, 0, len(CUBIC) - 1).astype(int)]),
    "sigmoid window": ({"WindowCenter": 600, "WindowWidth": 300, "VOILUTFunction": "SIGMOID"}, sigmoid),
    "sigmoid window, MONOCHROME1": ({"WindowCenter": 600, "WindowWidth": 300, "VOILUTFunction": "SIGMOID",
                                     "PhotometricInterpretation": "MONOCHROME1"}, lambda v: -sigmoid(v)),
}


@pytest.mark.parametrize("case", DICOM_WINDOWS)
@pytest.mark.filterwarnings("ignore:Applying a VOI LUT on a float input")  # exact here: whole rescaled values
def test_dicom_applies_rescale_then_a_non_linear_voi_lut_or_window(tmp_path, case):
    header, shown = DICOM_WINDOWS[case]
    expected = to_8_bits(shown(SLOPE * STORED.astype(float) + INTERCEPT))
    mistakes = {"no VOI LUT/window": to_8_bits(STORED), "no rescale": to_8_bits(shown(STORED.astype(float))),
                "inverted wrongly": 255 - expected}
    for name, wrong in mistakes.items():  # the check below tells each mistake apart
        assert np.abs(wrong.astype(int) - expected).max() > 40, name
    read = read_image(dicom(tmp_path / "scan.dcm", STORED, **header), 1, 28)
    assert read.shape == (1, 28, 28) and read.dtype == np.uint8
    assert np.abs(read[0].astype(int) - expected).max() <= 1


def test_nothing_predictable_or_no_run_fails_in_one_line(tiny_run, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["predict", str(tiny_run), str(tmp_path / "a.txt")]) == 2
    assert "nothing could be predicted" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(tmp_path / "a.txt")]) == 2
    err = capsys.readouterr().err
    assert "not a qmedimg run directory" in err and err.count("\n") == 1


def test_predict_on_a_noisy_backend_and_explain(tiny_run, exported, tmp_path):
    noisy = predict(tiny_run, [exported / "case000.png", exported / "case001.png"], backend="fake_manila")
    exact = predict(tiny_run, [exported / "case000.png", exported / "case001.png"])
    assert len(noisy["rows"]) == 2
    assert noisy["rows"][0]["expectations"] != exact["rows"][0]["expectations"]
    written = explain(tiny_run, [exported / "case000.png"], tmp_path / "explain")
    assert [p.name for p in written] == ["case000-gradcam.png", "head_space.png"]
    assert all(p.stat().st_size > 1000 for p in written)


def test_links_to_nothing_in_a_folder_are_reported_not_silently_dropped(tiny_run, exported, tmp_path):
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / "good.png").symlink_to(exported / "case000.png")
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")  # dangling
    (folder / "a.png").symlink_to(folder / "b.png")  # a loop
    (folder / "b.png").symlink_to(folder / "a.png")
    result = predict(tiny_run, [folder], out=tmp_path / "p.csv")
    assert [Path(r["file"]).name for r in result["rows"]] == ["good.png"]
    reported = sorted(Path(e.split(":")[0]).name for e in result["errors"])
    assert reported == ["a.png", "b.png", "gone.png"]
    assert all("a link to nothing" in e for e in result["errors"])
