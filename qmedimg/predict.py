"""Use a trained model on real images: PNG/JPEG/DICOM in, class, probabilities and the quantum head's
expectation values out; Grad-CAM explanations and the head's feature space.

Example::

    from qmedimg.predict import predict, explain
    rows = predict("runs/breast", ["scan.dcm", "images/"], out="predictions.csv")
    rows[0]["class"], rows[0]["probabilities"], rows[0]["expectations"]
    explain("runs/breast", ["scan.png"], out="explain/")      # scan-gradcam.png + head_space.png

Images get exactly the run's preprocessing: grayscale or RGB as trained, resized to the run's size
(bicubic, as MedMNIST's own resizing), scaled to [-1, 1]. DICOM: the modality LUT (rescale slope and
intercept) and the VOI LUT / window are applied, MONOCHROME1 is inverted, then min-max to 8 bits.
What a QPU backend receives is only the head's input angles and the circuit's weights (see
:mod:`qmedimg.ibm`); pixels, file names and DICOM metadata never leave this module.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from qmedimg.errors import QmedimgError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


class ImageError(QmedimgError):
    """A file that cannot be turned into the run's input (reported, the batch goes on)."""


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM without pixel data (a report or structured document?)")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported; export one frame")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageError(f"{path}: DICOM pixel data cannot be decoded ({str(exc).splitlines()[0][:120]})") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # colour DICOM
        return pixels.astype(np.uint8)
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        values = values.max() - values
    low, high = values.min(), values.max()
    return np.round(255 * (values - low) / (high - low if high > low else 1)).astype(np.uint8)


def read_image(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file as the run's input: uint8 (channels, size, size)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        try:
            with Image.open(path) as image:
                image.load()
                array = np.asarray(image.convert("RGB") if image.mode in ("P", "CMYK", "YCbCr") else
                                   image.convert("L") if image.mode in ("LA", "I", "I;16", "F", "1") else
                                   image.convert("RGB") if image.mode == "RGBA" else image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: not a readable PNG/JPEG/DICOM image ({type(exc).__name__})") from None
    if array.ndim == 3 and channels == 1:
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise ImageError(f"{path}: a colour image, but the run was trained on 1-channel (grayscale) images")
        array = array[..., 0]
    if array.ndim == 2 and channels == 3:
        raise ImageError(f"{path}: a grayscale image, but the run was trained on 3-channel (RGB) images")
    image = Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.array(image)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Files given, and the files inside folders given (sorted; hidden files skipped)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif item.exists():
            files.append(item)
        else:
            raise QmedimgError(f"{item}: no such file or folder")
    return files


def predict(run_dir: str | Path, inputs: list[str | Path], *, backend: str | None = None,
            backends_file: str | Path | None = None, out: str | Path | None = None, batch_size: int = 256,
            progress: bool = False, dry_run: bool = False) -> dict:
    """Predict every image; returns {"rows": [...], "errors": [...], "path": csv or None}.

    Each row: ``file``, ``class`` (the dataset's label name), ``probabilities`` {name: p} and
    ``expectations`` (the quantum head's values; empty for classical heads)."""
    from tqdm import tqdm

    from qmedimg.evaluate import _head_on_backend, _ideal_head, _probs_from_head, head_angles
    from qmedimg.train import load_run

    run = load_run(run_dir)
    files = list_images(inputs)
    if not files:
        raise QmedimgError("no image files found in " + ", ".join(map(str, inputs)))
    channels, size = run.dataset.channels, run.config.size
    names = list(run.dataset.label_names)
    images, kept, errors = [], [], []
    for path in tqdm(files, desc="reading", unit="image", disable=not progress, leave=False):
        try:
            images.append(read_image(path, channels, size))
            kept.append(path)
        except ImageError as exc:
            errors.append(str(exc))
    result: dict = {"rows": [], "errors": errors, "path": None}
    if not images:
        return result
    batch = np.stack(images)
    if not run.config.quantum:
        if backend not in (None, "exact"):
            raise QmedimgError(f"{run.path}: this run has a classical head; --backend needs a quantum head")
        from qmedimg.evaluate import predict_probs

        probs, values = predict_probs(run.model, batch, batch_size), np.zeros((len(batch), 0))
    else:
        angles = head_angles(run.model, batch, batch_size)
        if backend in (None, "exact"):
            values = _ideal_head(run.model, angles)
        else:
            from qmedimg.backends import get_backend

            target = get_backend(backend, backends_file)
            if target.kind == "ibm":
                from qmedimg.evaluate import _head_on_ibm

                values, extra = _head_on_ibm(run, target, angles, dry_run=dry_run, resume=False, progress=progress)
                if dry_run:
                    result["dry_run"] = extra["dry_run"]
                    return result
            else:
                values = _head_on_backend(run.model, target, angles, progress)
        probs = _probs_from_head(run.model, values)
    for path, p, v in zip(kept, probs, values):
        result["rows"].append({"file": str(path), "class": names[int(p.argmax())],
                               "probabilities": {n: float(x) for n, x in zip(names, p)},
                               "expectations": [float(x) for x in v]})
    if out is not None:
        result["path"] = str(_write_csv(Path(out), result["rows"], names))
    return result


def _write_csv(path: Path, rows: list[dict], names: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max((len(r["expectations"]) for r in rows), default=0)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "class", *(f"p_{n}" for n in names), *(f"ev_{i}" for i in range(width))])
        for r in rows:
            writer.writerow([r["file"], r["class"], *(f"{r['probabilities'][n]:.6f}" for n in names),
                             *(f"{x:.6f}" for x in r["expectations"])])
    tmp.replace(path)
    return path


def explain(run_dir: str | Path, images: list[str | Path], out: str | Path) -> list[Path]:
    """Grad-CAM (captum's ``LayerGradCam`` on the backbone's last convolution, gradients through the
    quantum head) for the predicted class of each image, saved as ``<name>-gradcam.png`` (original |
    overlay); plus ``head_space.png``, the run's test-set head values pairwise, coloured by class."""
    from captum.attr import LayerGradCam, LayerAttribution

    from qmedimg.evaluate import to_tensor
    from qmedimg.report import plot_gradcam, plot_head_space
    from qmedimg.train import load_run

    run = load_run(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names = list(run.dataset.label_names)
    model = run.model
    convs = [m for m in getattr(model, "backbone", model).modules() if isinstance(m, torch.nn.Conv2d)]
    cam = LayerGradCam(model, convs[-1])
    for path in list_images(images):
        array = read_image(path, run.dataset.channels, run.config.size)
        x = to_tensor(array[None]).requires_grad_(True)
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0]
        predicted = int(probs.argmax())
        heat = cam.attribute(x, target=predicted, relu_attributions=True)
        heat = LayerAttribution.interpolate(heat, array.shape[1:], interpolate_mode="bilinear")[0, 0].detach().numpy()
        target = out / f"{path.stem}-gradcam.png"
        plot_gradcam(array, heat, target, f"{path.name}: {names[predicted]} (p = {float(probs[predicted]):.2f})")
        written.append(target)
    if run.config.quantum:
        from qmedimg.evaluate import _ideal_head, head_angles

        test = run.dataset.test
        values = _ideal_head(model, head_angles(model, test.images))
        plot_head_space(values, test.labels, names, out / "head_space.png")
        written.append(out / "head_space.png")
    return written
