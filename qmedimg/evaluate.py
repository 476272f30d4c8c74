"""Metrics (computed as MedMNIST's own ``Evaluator`` does) and evaluation of a trained run.

Example::

    from qmedimg.evaluate import evaluate_run
    result = evaluate_run("runs/breast")      # re-computes test metrics from the checkpoint
    result["test"]["acc"], result["test"]["auc"]
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from qmedimg.errors import QmedimgError


def compute_metrics(labels: np.ndarray, probs: np.ndarray, task: str) -> dict:
    """ACC/AUC exactly as MedMNIST computes them (its ``getACC``/``getAUC``), plus precision,
    recall and F1 as macro averages over classes (no class is privileged) and the confusion matrix."""
    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=float)
    predicted = probs.argmax(axis=1)
    classes = list(range(probs.shape[1]))
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="macro", labels=classes, zero_division=0
    )
    return {
        "acc": float(getACC(labels, probs, task)),
        "auc": float(getAUC(labels, probs, task)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "n": int(len(labels)),
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised to [-1, 1] (MedMNIST's Normalize(0.5, 0.5))."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of a model in eval mode, batch by batch."""
    model.eval()
    out = [
        torch.softmax(model(to_tensor(images[i : i + batch_size])), dim=1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).double().numpy()


@torch.no_grad()
def head_angles(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The quantum head's input angles (N, n) for ``images``: the only per-image numbers a backend sees."""
    model.eval()
    return torch.cat([model.angles(to_tensor(images[i : i + batch_size]))
                      for i in range(0, len(images), batch_size)]).double().numpy()


@torch.no_grad()
def _ideal_head(model, angles: np.ndarray) -> np.ndarray:
    """The trained head's exact expectation values (N, O), as in training."""
    return model.head(torch.from_numpy(angles).float()).double().numpy()


@torch.no_grad()
def _probs_from_head(model, head_values: np.ndarray) -> np.ndarray:
    logits = model.classifier(torch.from_numpy(head_values).float())
    return torch.softmax(logits, dim=1).double().numpy()


def _head_on_backend(model, backend, angles: np.ndarray, progress: bool, chunk: int = 512) -> np.ndarray:
    """(N, O) expectation values of the trained head on a local backend, through the same
    ``TorchConnector(FastEstimatorQNN)`` layer as training, on the backend's ISA circuit."""
    from tqdm import tqdm

    from qmedimg.model import QuantumHead

    spec = model.spec
    circuit, observables = backend.prepare(spec)
    head = QuantumHead(spec, backend.estimator, backend.precision, circuit=circuit, observables=observables)
    head.connector.weight.data.copy_(model.head.connector.weight.data)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(angles), chunk), desc=backend.name, unit="chunk", disable=not progress,
                          leave=False):
            out.append(head(torch.from_numpy(angles[start : start + chunk])).double().numpy())
    return np.concatenate(out)


def _head_on_ibm(run, backend, angles: np.ndarray, *, dry_run: bool, resume: bool, progress: bool) -> tuple:
    from qmedimg import ibm
    from qmedimg.execution import column

    spec, entry = run.model.spec, backend.entry
    circuit, observables = backend.prepare(spec)
    weights = run.model.head.connector.weight.detach().double().numpy()
    values = ibm.parameter_values(circuit, spec, angles, weights)
    if dry_run:
        return None, {"dry_run": ibm.plan(entry, values, len(observables), backend.device, circuit)}
    identity = {
        "run": ibm.request_id(config=json.loads((run.path / "config.json").read_text())["config"],
                              checkpoint=hashlib.sha256((run.path / "checkpoint.pt").read_bytes()).hexdigest()),
        "backend": backend.name, "device": backend.device_name,
        "request": ibm.request_id(values=values, circuit=circuit.num_qubits, options=entry.options,
                                  shots=entry.shots, transpile=entry.transpile.model_dump(),
                                  observables=[str(o) for o in observables]),
    }
    ledger = ibm.Ledger.open(run.path / f"ledger-{backend.name}.json", identity, resume=resume)
    size = ibm.rows_per_job(entry, circuit)
    pubs = [(circuit, column(observables), values[i : i + size], i) for i in range(0, len(values), size)]
    evs, jobs = ibm.run_jobs(ledger, lambda: backend.estimator, lambda: ibm.runtime_service(entry), pubs,
                             local=entry.local is not None, progress=progress)
    usage = [j["usage_s"] for j in jobs if j["usage_s"] is not None]
    return evs.T, {"jobs": [{k: j[k] for k in ("index", "rows", "job_id", "status", "usage_s")} for j in jobs],
                   "qpu_seconds": sum(usage) if usage else None, "ledger": str(ledger.path),
                   "local_testing_mode": entry.local is not None,
                   "sent": ibm.SENT}


def _tag(overrides: dict) -> str:
    """'-shots4096-noise_scale2' for command-line overrides, so differently-run results sit side by side."""
    def text(value) -> str:
        if isinstance(value, dict):
            return "_".join(text(v) for _, v in sorted(value.items()))
        if isinstance(value, list):
            return "_".join(map(str, value))
        return str(value)

    items = []
    for key, value in sorted(overrides.items()):
        pairs = sorted(value.items()) if isinstance(value, dict) else [(key, value)]
        items += [f"-{k}{text(v)}" for k, v in pairs if v is not None]
    return "".join(items)


def evaluate_run(run_dir: str | Path, backend: str | None = None, *, backends_file: str | Path | None = None,
                 limit: int | None = None, dry_run: bool = False, resume: bool = False, progress: bool = False,
                 **overrides) -> dict:
    """Test metrics of a trained run on any registry backend; writes ``eval-<backend>[-overrides].json``.

    Example::

        evaluate_run("runs/breast")                                     # exact, as trained
        evaluate_run("runs/breast", "fake_brisbane", shots=4096)         # noisy device, sampled
        evaluate_run("runs/breast", "ibm_brisbane", dry_run=True)        # what a QPU run would send

    ``overrides`` replace the backend entry's keys (``shots``, ``noise_scale``, ``transpile={...}``).
    The result holds the same metrics as training, the ideal (exact) metrics on the same images,
    the mean |Δ expectation| against ideal, transpile statistics, mitigation, shots and wall time.
    """
    from qmedimg.backends import get_backend, transpile_report
    from qmedimg.train import load_run  # train owns the run directory layout

    name = backend or "exact"
    target = get_backend(name, backends_file, **{k: v for k, v in overrides.items() if v is not None})
    run = load_run(run_dir)
    if target.kind != "exact" and not run.config.quantum:
        raise QmedimgError(f"{run.path}: this run has a classical head; --backend needs a run trained with "
                           "--head quantum")
    test = run.dataset.test
    images, labels = test.images[:limit], test.labels[:limit]
    start = time.perf_counter()
    if target.kind in ("aer", "fake"):  # load the device, transpile, build the noise model: once, timed apart
        target.estimator.prepare(target.prepare(run.model.spec)[0])
    setup = time.perf_counter() - start
    angle_time, ideal, values, extra = 0.0, None, None, {}
    if run.config.quantum:
        start = time.perf_counter()
        angles = head_angles(run.model, images)
        angle_time = time.perf_counter() - start
        if target.kind != "exact":
            ideal = _ideal_head(run.model, angles)  # the reference: not timed
    start = time.perf_counter()
    if not run.config.quantum:
        probs = predict_probs(run.model, images)
    else:
        if target.kind == "exact":
            values = ideal = _ideal_head(run.model, angles)
        elif target.kind == "ibm":
            values, extra = _head_on_ibm(run, target, angles, dry_run=dry_run, resume=resume, progress=progress)
            if dry_run:
                extra.update(backend=target.name, device=target.device_name, images=len(images),
                             transpile=transpile_report(target, run.model.spec))
                return extra
        else:
            values = _head_on_backend(run.model, target, angles, progress)
        probs = _probs_from_head(run.model, values)
    wall = angle_time + time.perf_counter() - start
    ideal_probs = _probs_from_head(run.model, ideal) if ideal is not None else probs
    entry = target.entry
    result = {
        "backend": target.name, "kind": target.kind, "device": target.device_name,
        "test": compute_metrics(labels, probs, run.dataset.task),
        "ideal_test": compute_metrics(labels, ideal_probs, run.dataset.task),
        "mean_abs_expectation_error": float(np.abs(values - ideal).mean()) if ideal is not None else 0.0,
        "images": int(len(images)), "limit": limit,
        "shots": getattr(entry, "shots", None), "noise_scale": getattr(entry, "noise_scale", None),
        "mitigation": entry.mitigation.model_dump() if target.kind == "fake" else
        (entry.options if target.kind == "ibm" else None),
        "transpile": transpile_report(target, run.model.spec) if target.device is not None else None,
        "setup_s": round(setup, 3), "wall_time_s": round(wall, 3), "images_per_s": round(len(images) / wall, 1),
        "backend_entry": entry.model_dump(),
        **extra,
    }
    path = write_json(run.path / f"eval-{target.name}{_tag(overrides)}.json", result)
    result["path"] = str(path)
    return result


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as JSON atomically (a temporary file, then a rename): never half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return path


def require_run(run_dir: str | Path) -> Path:
    """The run directory, or a one-line error if it holds no qmedimg run."""
    path = Path(run_dir)
    if not (path / "config.json").is_file() or not (path / "checkpoint.pt").is_file():
        raise QmedimgError(
            f"{path}: not a qmedimg run directory (needs config.json and checkpoint.pt, "
            "written by `qmedimg train --out DIR`)"
        )
    return path
