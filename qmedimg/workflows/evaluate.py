"""Evaluation of a trained run on any registry backend: test metrics next to the ideal (exact) ones
on the same images, written to ``eval-<backend>.json`` in the run directory (``--test-limit N``, when it
cuts the test split, writes ``eval-<backend>-limitN.json`` instead: a partial result never replaces
the full split's). Beside it, the same name in ``.npz``: each test image's probabilities, decisions and head
values, of the backend and of the exact head (:mod:`qmedimg.workflows.per_image`; the eval file names it as
``per_image``). The test split is the run's own data's, read and checked unchanged since training; when
that data file is gone (a model received without its training set), ``--data-file TEST.npz`` gives one
(:func:`~qmedimg.artifact.read_test_split`), written to ``eval-<backend>-on-TEST.json``.

Example::

    from qmedimg.workflows.evaluate import evaluate_run
    result = evaluate_run("runs/breast", "fake_brisbane", shots=4096)
    result["test"]["acc"], result["ideal_test"]["acc"], result["mean_abs_expectation_error"]
    evaluate_run("runs/breast", data_file="hospital-test.npz")    # another test split -> eval-exact-on-hospital-test.json
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from qmedimg.artifact import read_test_split
from qmedimg.backends import JobOptions, get_backend
from qmedimg.data import Split
from qmedimg.errors import QmedimgError
from qmedimg.files import write_json
from qmedimg.inference import Inference
from qmedimg.model import torch_device
from qmedimg.rundir import Run, load_run
from qmedimg.workflows.per_image import per_image, write_per_image


def _tag(overrides: dict) -> str:
    """'-shots4096-noise_scale2' for command-line overrides, so differently-run results sit side by
    side (``shots=None``, exact values, is '-shotsnone')."""
    def text(value) -> str:
        if isinstance(value, dict):
            return "_".join(text(v) for _, v in sorted(value.items()))
        if isinstance(value, list):
            return "_".join(map(str, value))
        return "none" if value is None else str(value)

    items = []
    for key, value in sorted(overrides.items()):
        pairs = sorted(value.items()) if isinstance(value, dict) else [(key, value)]
        items += [f"-{k}{text(v)}" for k, v in pairs if v is not None or k == "shots"]
    return "".join(items)


def evaluate_run(run_dir: str | Path, backend: str | None = None, *, backends_file: str | Path | None = None,
                 limit: int | None = None, data_file: str | Path | None = None, dry_run: bool = False, resume: bool = False, progress: bool = False,
                 device: str = "auto", **overrides) -> dict:
    """Test metrics of a trained run on any registry backend; writes ``eval-<backend>[-overrides][-limitN].json``
    (``-limitN`` when ``limit`` leaves out part of the test split, so it never overwrites the full one).

    Example::

        evaluate_run("runs/breast")                                     # exact, as trained
        evaluate_run("runs/breast", "fake_brisbane", shots=4096)         # noisy device, sampled
        evaluate_run("runs/breast", "fake_brisbane", shots=None)         # exact noisy values
        evaluate_run("runs/breast", "ibm_brisbane", dry_run=True)        # what a QPU run would send
        evaluate_run("runs/breast", data_file="test.npz")                # a test split of its own: eval-exact-on-test.json

    ``overrides`` replace the backend entry's keys (``shots``, ``noise_scale``, ``transpile={...}``).
    The result holds the same metrics as training, the ideal (exact) metrics on the same images,
    the mean |Δ expectation| against ideal, transpile statistics, mitigation, shots and wall time; where
    values are means over noise trajectories, ``test_statistical_error`` (ACC and AUC's, from each image's covariance of
    its values: :func:`~qmedimg.metrics.statistical_spread`).
    ``data_file``: a MedMNIST-layout npz whose test split (``test_images`` and ``test_labels`` suffice) is evaluated
    instead of the run's own, checked to be the run's kind (image shape, channels, 2D/3D, task, labels) and
    recorded (``data_file``: path and sha256); without it the run's own data file must be there (one line saying
    ``--data-file`` otherwise).
    ``dry_run`` and ``resume`` are for backends that submit jobs (ibm); elsewhere they are refused
    before anything runs or is written. ``device`` is where the CNN runs (``auto``: CUDA if torch sees a
    GPU); it is recorded as ``torch_device`` (``device`` there is the quantum backend's device).
    """
    torch_device(device)  # a device this machine lacks is refused before the backend is built
    target = get_backend(backend or "exact", backends_file, **overrides)
    JobOptions(dry_run=dry_run, resume=resume).check(target)  # refused on a kind that submits no jobs, before any work
    run = load_run(run_dir, device=device)
    run.check_backend(target)
    jobs = run.job_options(dry_run=dry_run, resume=resume)
    spec = run.model.spec if run.config.quantum else None
    test = _test_split(run, data_file)
    images, labels = test.images[:limit], test.labels[:limit]
    start = time.perf_counter()
    if spec is not None:  # load the device, transpile, build the noise model: once, timed apart
        target.warm_up(spec)
    setup = time.perf_counter() - start
    inference = Inference(run, images)
    head = inference.on(target, jobs=jobs, progress=progress)
    if dry_run:
        return {**head.details, "backend": target.name, "device": head.record["device"], "images": len(images),
                "transpile": head.record["transpile"]}
    wall = inference.cnn_s + head.wall_s
    sampled = inference.statistical_error(head, labels)  # {} unless the head's values carry a covariance
    spread = {"test_statistical_error": sampled} if sampled else {}
    outcome = {
        **head.record, **inference.evaluation(head, labels, limit),
        **({} if data_file is None else {"data_file": _file_record(Path(data_file).expanduser())}),
        "setup_s": round(setup, 3), "wall_time_s": round(wall, 3), "images_per_s": round(len(images) / wall, 1),
        **head.details, **spread,
    }
    cut = f"-limit{limit}" if limit is not None and len(images) < len(test.images) else ""
    on = "" if data_file is None else f"-on-{Path(data_file).stem}"  # never in place of the run's own test split's
    path = run.path / f"eval-{target.name}{_tag(overrides)}{on}{cut}.json"
    arrays = per_image(inference, head, labels, values=True, images=images)
    outcome["per_image"] = write_per_image(path.with_suffix(".npz"), arrays).name  # before the JSON that names it
    outcome["path"] = str(write_json(path, outcome))
    return outcome


def _test_split(run: Run, data_file: str | Path | None) -> Split:
    """The images evaluated: ``data_file``'s test split (checked against the run), else the run's own."""
    if data_file is not None:
        return read_test_split(data_file, run.dataset, run.config.classes)
    try:
        return run.dataset.test
    except QmedimgError as exc:
        raise QmedimgError(f"{exc}; evaluate reads the run's test split from it: to evaluate without it, pass "
                           "--data-file TEST.npz (a MedMNIST-layout npz; test_images and test_labels suffice)") from None


def _file_record(path: Path) -> dict:
    """Which test file was evaluated: its path and sha256."""
    with open(path, "rb") as f:
        return {"path": str(path.resolve()), "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
