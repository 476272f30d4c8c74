"""Use a trained model on real images: PNG/JPEG/DICOM in, class, probabilities and the quantum head's
expectation values out; Grad-CAM explanations and the head's feature space.

Example::

    from qmedimg.workflows.predict import predict, explain
    result = predict("runs/breast", ["scan.dcm", "images/"], out="predictions.csv")
    row = result["rows"][0]; row["class"], row["probabilities"], row["expectations"]
    explain("runs/breast", ["scan.png"], out="explain/")      # scan-gradcam.png + head_space.png
    predict("runs/breast", ["scan.png"], device="cpu")        # the CNN on the CPU even with a GPU

Images of any size are resized to the size the run was trained at (its data's, e.g. 64 for
``--size 64``).

Images get exactly the run's preprocessing (:mod:`qmedimg.data.images`). What a QPU backend receives
is only the head's input angles and the circuit's weights; pixels, file names and DICOM metadata
never leave this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qmedimg.backends import get_backend
from qmedimg.data import ImageError, list_images, read_image, to_tensor
from qmedimg.errors import QmedimgError
from qmedimg.files import reporting_os_errors, write_csv
from qmedimg.model import head_angles, ideal_head_values, model_device, predict_probs, probs_from_head, torch_device
from qmedimg.report.plots import plot_gradcam, plot_head_space
from qmedimg.rundir import load_run


def predict(run_dir: str | Path, inputs: list[str | Path], *, backend: str | None = None,
            backends_file: str | Path | None = None, out: str | Path | None = None, batch_size: int = 256,
            progress: bool = False, dry_run: bool = False, device: str = "auto") -> dict:
    """Predict every image; returns {"rows": [...], "errors": [...], "path": csv or None}.

    Each row: ``file``, ``class`` (the dataset's label name), ``probabilities`` {name: p} and
    ``expectations`` (the quantum head's values; empty for classical heads). ``backend`` runs the
    head on a registry entry (default exact); ``dry_run`` (ibm only) returns what would be sent;
    ``device``: where the CNN runs (``auto``: CUDA if torch sees a GPU)."""
    torch_device(device)  # a device this machine lacks is refused before the backend is built
    target = get_backend(backend or "exact", backends_file)
    target.check_request(dry_run=dry_run)
    run = load_run(run_dir, device=device)
    run.check_backend(target)
    files = list_images(inputs)
    if not files:
        raise QmedimgError("no image files found in " + ", ".join(map(str, inputs)))
    channels, size = run.dataset.channels, run.dataset.size  # the size it trained at (a data file's own)
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
        probs, values = predict_probs(run.model, batch, batch_size), np.zeros((len(batch), 0))
    else:
        angles = head_angles(run.model, batch, batch_size)
        head = target.run_head(run.head_request(angles, dry_run=dry_run, progress=progress))
        if dry_run:
            result["dry_run"] = head.details["dry_run"]
            return result
        values = head.values
        probs = probs_from_head(run.model, values)
    for path, p, v in zip(kept, probs, values):
        result["rows"].append({"file": str(path), "class": names[int(p.argmax())],
                               "probabilities": {n: float(x) for n, x in zip(names, p)},
                               "expectations": [float(x) for x in v]})
    if out is not None:
        result["path"] = str(_write_csv(Path(out), result["rows"], names))
    return result


def _write_csv(path: Path, rows: list[dict], names: list[str]) -> Path:
    with reporting_os_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    width = max((len(r["expectations"]) for r in rows), default=0)
    header = ["file", "class", *(f"p_{n}" for n in names), *(f"ev_{i}" for i in range(width))]
    return write_csv(path, [[r["file"], r["class"], *(f"{r['probabilities'][n]:.6f}" for n in names),
                             *(f"{x:.6f}" for x in r["expectations"])] for r in rows], header=header)


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
    overlay); plus ``head_space.png``, the run's test-set head values pairwise, coloured by class.
    Inputs sharing a stem (``a/scan.png``, ``b/scan.png``) get distinct files, numbered in input
    order: ``scan-gradcam.png``, ``scan-2-gradcam.png``. Images are resized to the run's size; the
    network runs on ``device``."""
    from captum.attr import LayerGradCam, LayerAttribution

    run = load_run(run_dir, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names = list(run.dataset.label_names)
    model = run.model
    convs = [m for m in getattr(model, "backbone", model).modules() if isinstance(m, torch.nn.Conv2d)]
    cam = LayerGradCam(model, convs[-1])
    used: set[str] = set()
    for path in list_images(images):
        array = read_image(path, run.dataset.channels, run.dataset.size)
        x = to_tensor(array[None]).to(model_device(model)).requires_grad_(True)
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0]
        predicted = int(probs.argmax())
        heat = cam.attribute(x, target=predicted, relu_attributions=True)
        heat = LayerAttribution.interpolate(heat, array.shape[1:], interpolate_mode="bilinear")[0, 0].detach().cpu().numpy()
        target = out / _unique_name(path.stem, used)
        plot_gradcam(array, heat, target, f"{path.name}: {names[predicted]} (p = {float(probs[predicted]):.2f})")
        written.append(target)
    if run.config.quantum:
        test = run.dataset.test
        values = ideal_head_values(model, head_angles(model, test.images))
        plot_head_space(values, test.labels, names, out / "head_space.png")
        written.append(out / "head_space.png")
    return written
