"""Use a trained model on real images: PNG/JPEG/DICOM in (volumes: .npy/.npz/NIfTI), class, probabilities
and the quantum head's expectation values out; Grad-CAM explanations and the head's feature space.

Example::

    from qmedimg.workflows.predict import predict, explain
    result = predict("runs/breast", ["scan.dcm", "images/"], out="predictions.csv")
    row = result["rows"][0]; row["class"], row["probabilities"], row["expectations"]
    explain("runs/breast", ["scan.png"], out="explain/")      # scan-gradcam.png + head_space.png
    predict("runs/breast", ["scan.png"], device="cpu")        # the CNN on the CPU even with a GPU

Images of any size are resized to the size the run was trained at (its data's, e.g. 64 for
``--size 64``).

A run trained on volumes (the 3D sets) reads ``.npy``/``.npz`` volumes and NIfTI ``.nii``/``.nii.gz``
files, resized trilinearly to its size³ (:mod:`qmedimg.data.volumes`); a 2D image given to it, a volume
given to a 2D run, or an array of another dimensionality is reported and skipped like an unreadable file.

Both need only the run directory (config.json and checkpoint.pt), not the data the run trained on: a
hospital can use a model it receives without the training set (only ``head_space.png`` plots the run's
test split, and is left out, with a line on stderr, when that data is not here).

Images get exactly the run's preprocessing (:mod:`qmedimg.data.images`). What a QPU backend receives
is only the head's input angles and the circuit's weights; pixels, file names and DICOM metadata
never leave this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qmedimg.artifact import RecordedData
from qmedimg.backends import JobOptions, get_backend
from qmedimg.data import Dataset, ImageError, list_images, read_image, to_tensor
from qmedimg.data.volumes import is_volume_file, load_volume_array, read_volume
from qmedimg.errors import QmedimgError
from qmedimg.files import reporting_os_errors, write_csv
from qmedimg.inference import Inference
from qmedimg.model import model_device, torch_device
from qmedimg.report.plots import plot_gradcam, plot_gradcam_volume, plot_head_space
from qmedimg.rundir import load_run
from qmedimg.workflows.per_image import per_image, write_per_image


def predict(run_dir: str | Path, inputs: list[str | Path], *, backend: str | None = None,
            backends_file: str | Path | None = None, out: str | Path | None = None, batch_size: int = 256,
            progress: bool = False, dry_run: bool = False, device: str = "auto") -> dict:
    """Predict every image; returns {"rows": [...], "errors": [...], "path": csv or None}; with ``out``, also
    ``per_image``: the same name in ``.npz`` beside the CSV (:mod:`qmedimg.workflows.per_image`: probabilities,
    decisions and head values keyed by input order, and the ``files``' names).

    Each row: ``file``, ``class`` (the dataset's label name, decided at the run's threshold on binary
    tasks: ``Run.threshold``, chosen on validation when trained with a rule), ``probabilities`` {name: p} and
    ``expectations`` (the quantum head's values; empty for classical heads). ``backend`` runs the
    head on a registry entry (default exact); ``dry_run`` (ibm only) returns what would be sent;
    ``device``: where the CNN runs (``auto``: CUDA if torch sees a GPU)."""
    torch_device(device)  # a device this machine lacks is refused before the backend is built
    target = get_backend(backend or "exact", backends_file)
    JobOptions(dry_run=dry_run).check(target)  # refused on a kind that submits no jobs, before any work
    run = load_run(run_dir, device=device)
    run.check_backend(target)
    files = list_images(inputs)
    if not files:
        raise QmedimgError("no image files found in " + ", ".join(map(str, inputs)))
    names = list(run.dataset.label_names)
    images, kept, errors = [], [], []
    for path in tqdm(files, desc="reading", unit="image", disable=not progress, leave=False):
        try:
            images.append(read_input(path, run.dataset))  # at the size it trained at (a data file's own)
            kept.append(path)
        except ImageError as exc:
            errors.append(str(exc))
    result: dict = {"rows": [], "errors": errors, "path": None}
    if not images:
        return result
    seen = Inference(run, np.stack(images), batch_size)
    head = seen.on(target, jobs=run.job_options(dry_run=dry_run), progress=progress)
    if dry_run:
        result["dry_run"] = head.details["dry_run"]
        return result
    probs, values, decided = head.probs, head.values, head.decisions  # at the run's threshold
    if "prediction" in head.details:  # an ibm backend: the same circuits on the calibration snapshot
        result["prediction"] = head.details["prediction"]
    for path, p, v, d in zip(kept, probs, values, decided):
        result["rows"].append({"file": str(path), "class": _decision_text(d, names),
                               "probabilities": {n: float(x) for n, x in zip(names, p)},
                               "expectations": [float(x) for x in v]})
    if out is not None:
        result["path"] = str(_write_csv(Path(out), result["rows"], names))
        arrays = per_image(seen, head, values=True)
        arrays["files"] = np.asarray([str(path) for path in kept])
        beside = Path(out).with_suffix(".npz")  # never the CSV itself (an --out named .npz)
        beside = beside if beside != Path(out) else beside.with_name(f"{beside.stem}-per-image.npz")
        result["per_image"] = str(write_per_image(beside, arrays))
    return result


def _decision_text(decision: np.ndarray, names: list[str]) -> str:
    """A decision as a row says it: the class's name; multi-label, the labels decided "yes" ('; '-joined;
    'none' if none)."""
    if np.ndim(decision) == 0:
        return names[int(decision)]
    return "; ".join(n for n, yes in zip(names, decision) if yes) or "none"


def _write_csv(path: Path, rows: list[dict], names: list[str]) -> Path:
    with reporting_os_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    width = max((len(r["expectations"]) for r in rows), default=0)
    header = ["file", "class", *(f"p_{n}" for n in names), *(f"ev_{i}" for i in range(width))]
    return write_csv(path, [[r["file"], r["class"], *(f"{r['probabilities'][n]:.6f}" for n in names),
                             *(f"{x:.6f}" for x in r["expectations"])] for r in rows], header=header)


def read_input(path: Path, dataset: Dataset | RecordedData) -> np.ndarray:
    """One input file as the run's data: an image (C, size, size) for a 2D run, a volume (1, size, size,
    size) for a run on volumes; :class:`ImageError` (the file is reported and skipped) for a file of the
    other kind or one that cannot be read."""
    if dataset.dims == 3:
        return read_volume(path, dataset.size)
    if is_volume_file(path):
        shape = load_volume_array(path).shape
        what = f"a volume {tuple(shape)}" if len(shape) == 3 else f"a {len(shape)}-D array {tuple(shape)}"
        raise ImageError(f"{path}: holds {what}, but the run was trained on 2D images; give PNG/JPEG/TIFF/DICOM "
                         "images")
    return read_image(path, dataset.channels, dataset.size)


def _head_space_split(data: RecordedData, nothing_else: bool):
    """The run's test split for head_space.png, or None (why: on stderr) for a multi-label run, whose images have
    no one class to colour, or when the run's data cannot be read; one line when that leaves nothing to draw."""
    try:
        if not data.multi_label:
            return data.test
        why = "it colours the test images by their class, and a multi-label run's have none"
    except QmedimgError as exc:
        why = f"it plots the run's test split, and {exc}"
    if nothing_else:
        raise QmedimgError(f"nothing to explain: no images given, and head_space.png is not drawn: {why}")
    print(f"qmedimg: head_space.png left out: {why}", file=sys.stderr)
    return None


def _stem(path: Path) -> str:
    """The file name without its suffix (both of ``.nii.gz``)."""
    return path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem


def _unique_name(stem: str, used: set[str]) -> str:
    """``<stem>-gradcam.png``, or ``<stem>-2-gradcam.png``, ``-3``... if an earlier input took it."""
    name, n = f"{stem}-gradcam.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}-gradcam.png"
    used.add(name)
    return name


def explain(run_dir: str | Path, images: list[str | Path], out: str | Path, *, device: str = "auto") -> list[Path]:
    """Grad-CAM (captum's ``LayerGradCam`` on the backbone's last convolution, gradients through the
    quantum head) for the predicted class of each image, saved as ``<stem>-gradcam.png`` (original |
    overlay); plus ``head_space.png``, the run's test-set head values pairwise, coloured by class (left
    out, with a line on stderr, when the run's data file is not here: the Grad-CAMs need only the run).
    Inputs sharing a stem (``a/scan.png``, ``b/scan.png``) get distinct files, numbered in input
    order: ``scan-gradcam.png``, ``scan-2-gradcam.png``. Images are resized to the run's size; the
    network runs on ``device``."""
    from captum.attr import LayerGradCam, LayerAttribution

    run = load_run(run_dir, device=device)
    out = Path(out)
    written = []
    names = list(run.dataset.label_names)
    model = run.model
    conv_type = torch.nn.Conv3d if run.dataset.dims == 3 else torch.nn.Conv2d
    convs = [m for m in getattr(model, "backbone", model).modules() if isinstance(m, conv_type)]
    cam = LayerGradCam(model, convs[-1])
    used: set[str] = set()
    arrays = [(path, read_input(path, run.dataset)) for path in list_images(images)]  # all read before any is drawn
    test = _head_space_split(run.dataset, nothing_else=not arrays) if run.config.quantum else None
    out.mkdir(parents=True, exist_ok=True)
    seen = Inference(run, np.stack([array for _, array in arrays])) if arrays else None
    for i, (path, array) in enumerate(arrays):
        x = to_tensor(array[None]).to(model_device(model)).requires_grad_(True)
        probs = seen.ideal_probs[i]
        # the class predict decides (the run's threshold); multi-label: the most probable finding
        predicted = int(probs.argmax() if run.dataset.multi_label else seen.decide(seen.ideal_probs[i : i + 1])[0])
        heat = cam.attribute(x, target=predicted, relu_attributions=True)
        mode = "trilinear" if run.dataset.dims == 3 else "bilinear"
        heat = LayerAttribution.interpolate(heat, array.shape[1:], interpolate_mode=mode)[0, 0].detach().cpu().numpy()
        target = out / _unique_name(_stem(path), used)
        title = f"{path.name}: {names[predicted]} (p = {float(probs[predicted]):.2f})"
        (plot_gradcam_volume if run.dataset.dims == 3 else plot_gradcam)(array, heat, target, title)
        written.append(target)
    if test is not None:
        plot_head_space(Inference(run, test.images).ideal, test.labels, names, out / "head_space.png")
        written.append(out / "head_space.png")
    return written
