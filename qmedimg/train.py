"""Training: config, loop, atomic checkpoints, resume, and the run directory.

Example::

    from qmedimg.train import TrainConfig, train
    metrics = train(TrainConfig(dataset="breastmnist", out="runs/breast"))
    metrics["test"]["acc"], metrics["test"]["auc"]

A run directory holds ``config.json`` (the resolved config, dataset, circuit and versions),
``checkpoint.pt`` (rewritten atomically every epoch; loads with ``torch.load(weights_only=True)``),
``history.csv``, ``metrics.json``, ``learning_curves.png`` and ``confusion.png``.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from tqdm import tqdm

from qmedimg.circuits import load_circuit
from qmedimg.data import Dataset, load_dataset
from qmedimg.errors import QmedimgError
from qmedimg.evaluate import compute_metrics, predict_probs, require_run, to_tensor
from qmedimg.exact import ExactEstimator
from qmedimg.model import HybridNet
from qmedimg.report import plot_confusion, plot_learning_curves


class TrainConfig(BaseModel):
    """Everything that defines a training run; validated once, stored in ``config.json``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, description="MedMNIST flag (e.g. breastmnist) or 'synthetic'")
    data_file: str | None = Field(None, description="a MedMNIST-layout .npz instead of a flag")
    data_root: str | None = Field(None, description="where MedMNIST files live (default ~/.medmnist)")
    size: Literal[28, 64, 128, 224] = 28
    classes: list[int] | None = None
    limit: PositiveInt | None = None
    circuit: str = "sel"
    qubits: PositiveInt | None = Field(None, description="circuit width (template default: 4)")
    layers: PositiveInt | None = None
    model: Literal["hybrid", "resnet18", "vgg16"] = Field("hybrid", description="hybrid network or a classical baseline")
    head: Literal["quantum", "classical", "linear"] = "quantum"
    backbone: Literal["compact", "hqcnn"] = "hqcnn"
    epochs: PositiveInt = 60
    batch_size: PositiveInt = 32
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0, description="AdamW decay of weight matrices and kernels")
    warmup_epochs: int = Field(3, ge=0, description="linear warm-up before the per-step cosine decay")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.99, ge=0, lt=1, description="weights evaluated and kept: an exponential moving average (0 = off)")
    select: Literal["last", "best-val"] = Field(
        "last", description="checkpoint kept: the last epoch, or the best validation AUC (then ACC)")
    dropout: float = Field(0.0, ge=0, lt=1)
    class_weights: bool = False
    augment: bool = False  # flips/rotations/shifts: off by default, they hurt on BreastMNIST's validation split
    backend: str = Field("exact", description="registry entry the quantum head trains on (noise-aware training)")
    noise_scale: float | None = Field(None, ge=0, description="override the backend's noise_scale")
    backends_file: str | None = None
    seed: int = 0
    out: str

    @property
    def quantum(self) -> bool:
        """Whether the network has a quantum head."""
        return self.model == "hybrid" and self.head == "quantum"

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.data_file is None):
            raise ValueError("give exactly one of dataset (a MedMNIST flag) or data_file (an .npz)")
        return self


def make_config(**fields) -> TrainConfig:
    """``TrainConfig(**fields)`` with pydantic's errors turned into one line."""
    try:
        return TrainConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise QmedimgError(f"{where}: {err['msg']} (got {err.get('input')!r})") from None


@dataclass
class Run:
    """A trained run loaded back: its config, data, best model and recorded metrics."""

    path: Path
    config: TrainConfig
    dataset: Dataset
    model: HybridNet
    metrics: dict


def build_model(config: TrainConfig, dataset: Dataset, ideal: bool = False) -> HybridNet:
    """The run's network, weights drawn from ``config.seed``; the quantum head runs on the config's
    backend (its ISA circuit, layout-mapped observables), or on the exact estimator when ``ideal``."""
    if config.model != "hybrid":
        from qmedimg.model import BASELINE_SIZES, Baseline

        if config.size not in BASELINE_SIZES[config.model]:
            raise QmedimgError(f"{config.model} cannot take {config.size}×{config.size} images; it can take sizes "
                               f"{', '.join(map(str, BASELINE_SIZES[config.model]))} (--size)")
        torch.manual_seed(config.seed)
        return Baseline(config.model, dataset.channels, dataset.num_classes)
    spec = load_circuit(config.circuit, qubits=config.qubits, layers=config.layers)
    head_on: dict = {"estimator": ExactEstimator()}
    if config.backend != "exact" and config.quantum and not ideal:
        from qmedimg.backends import get_backend

        overrides = {"noise_scale": config.noise_scale} if config.noise_scale is not None else {}
        backend = get_backend(config.backend, config.backends_file, **overrides)
        if backend.kind == "ibm":
            raise QmedimgError(f"backend '{config.backend}' is an IBM QPU: training there would spend QPU time on "
                               "every batch; train on exact/aer/fake, then `qmedimg evaluate --backend`")
        circuit, observables = backend.prepare(spec)
        head_on = {"estimator": backend.estimator, "circuit": circuit, "observables": observables,
                   "precision": backend.precision}
    torch.manual_seed(config.seed)
    return HybridNet(
        channels=dataset.channels, num_classes=dataset.num_classes, spec=spec, head_on=head_on,
        backbone=config.backbone, head=config.head, dropout=config.dropout,
    )


def _load_data(config: TrainConfig) -> Dataset:
    return load_dataset(
        config.dataset, data_file=config.data_file, data_root=config.data_root, size=config.size,
        classes=config.classes, limit=config.limit, seed=config.seed,
    )


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, small rotations and shifts, drawn from ``generator`` (repeatable)."""
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(15)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.1
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack((torch.stack((cos, -sin, shift[:, 0]), 1),
                         torch.stack((sin, cos, shift[:, 1]), 1)), 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


@torch.no_grad()
def _update_average(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * model; integer buffers copied."""
    for mine, theirs in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
        if mine.dtype.is_floating_point:
            mine.lerp_(theirs, 1.0 - decay)
        else:
            mine.copy_(theirs)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _versions() -> dict:
    pkgs = ["qmedimg", "qiskit", "qiskit-aer", "qiskit-machine-learning", "qiskit-ibm-runtime",
            "torch", "medmnist", "numpy"]
    return {"python": platform.python_version(), **{p: version(p) for p in pkgs}}


def train(config: TrainConfig, *, progress: bool = True,
          on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train a new run into ``config.out``; returns its metrics (also in ``metrics.json``).

    Everything is validated (data, circuit) before anything is written. An existing run
    directory is never overwritten: continue it with :func:`resume` instead.
    """
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise QmedimgError(f"{out}: already exists and is not empty; resume it with "
                           f"`qmedimg train --resume {out}` or choose another --out")
    dataset = _load_data(config)
    model = build_model(config, dataset)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "config": config.model_dump(),
        "dataset": dataset.info(),
        "circuit": None if model.spec is None else {
            "name": model.spec.name, "path": str(model.spec.path), "qubits": model.spec.num_qubits,
            "layers": model.spec.layers, "weights": len(model.spec.weights)},
        "parameters": model.parameter_counts(),
        "versions": _versions(),
    }
    (out / "config.json").write_text(json.dumps(record, indent=2))
    return _fit(out, config, dataset, model, None, progress, on_epoch)


def resume(run_dir: str | Path, *, progress: bool = True,
           on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Continue an interrupted run from its last checkpoint; same result as never stopping."""
    path = require_run(run_dir)
    config, dataset = _run_config_and_data(path)
    model = build_model(config, dataset)
    state = _load_checkpoint(path)
    return _fit(path, config, dataset, model, state, progress, on_epoch)


def _run_config_and_data(path: Path) -> tuple[TrainConfig, Dataset]:
    record = json.loads((path / "config.json").read_text())
    config = make_config(**record["config"])
    dataset = _load_data(config)
    recorded = record.get("dataset", {}).get("sha256")
    if recorded and dataset.sha256 != recorded:
        raise QmedimgError(f"{dataset.source}: the data file changed since the run was trained "
                           f"(sha256 {dataset.sha256[:12]} != recorded {recorded[:12]})")
    return config, dataset


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path / "checkpoint.pt", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise QmedimgError(f"{path / 'checkpoint.pt'}: cannot be read ({type(exc).__name__})") from None


def load_run(run_dir: str | Path) -> Run:
    """A finished (or interrupted) run with its best weights loaded, ready to evaluate; the quantum
    head runs on the exact estimator whatever backend it was trained on."""
    path = require_run(run_dir)
    config, dataset = _run_config_and_data(path)
    model = build_model(config, dataset, ideal=True)  # evaluation chooses its backend itself
    model.load_state_dict(_load_checkpoint(path)["best_model"])
    model.eval()
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Run(path, config, dataset, model, metrics)


def _fit(out: Path, config: TrainConfig, dataset: Dataset, model: HybridNet, state: dict | None,
         progress: bool, on_epoch) -> dict:
    torch.use_deterministic_algorithms(True)
    matrices = [p for p in model.parameters() if p.ndim > 1]  # no decay on biases and BatchNorm
    vectors = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": config.weight_decay},
                                   {"params": vectors, "weight_decay": 0.0}], lr=config.lr)
    steps = -(-len(dataset.train.labels) // config.batch_size)
    warmup, total = config.warmup_epochs * steps, config.epochs * steps

    def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 0, per step
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(config.seed)
    averaged = build_model(config, dataset)  # holds the moving average; evaluated and kept
    averaged.load_state_dict(model.state_dict())
    history: list[dict] = []
    best = {"epoch": 0, "val_auc": -1.0, "val_acc": -1.0}
    best_model = copy.deepcopy(averaged.state_dict())
    train_seconds, trained_samples, wall_before = 0.0, 0, 0.0
    start_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        averaged.load_state_dict(state["averaged"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best, best_model = state["history"], state["best"], state["best_model"]
        train_seconds, trained_samples = state["train_seconds"], state["trained_samples"]
        wall_before = state["wall_seconds"]
        start_epoch = state["epoch"] + 1

    images, labels = dataset.train.images, torch.from_numpy(dataset.train.labels)
    weight = None
    if config.class_weights:
        counts = np.bincount(dataset.train.labels, minlength=dataset.num_classes)
        weight = torch.tensor(len(labels) / (dataset.num_classes * np.maximum(counts, 1)),
                              dtype=torch.float32)
    started = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=f"train {out.name}", unit="epoch",
               disable=not progress, initial=start_epoch - 1, total=config.epochs)
    for epoch in bar:
        model.train()
        tick = time.perf_counter()
        order = torch.randperm(len(labels), generator=generator)
        losses, correct = [], 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = to_tensor(images[idx.numpy()])
            if config.augment:
                x = augment(x, generator)
            logits = model(x)
            loss = F.cross_entropy(logits, labels[idx], weight=weight,
                                   label_smoothing=config.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            _update_average(averaged, model, config.ema_decay)
            losses.append(loss.item() * len(idx))
            correct += int((logits.argmax(1) == labels[idx]).sum())
            trained_samples += len(idx)
        train_seconds += time.perf_counter() - tick

        val_probs = predict_probs(averaged, dataset.val.images)
        val = compute_metrics(dataset.val.labels, val_probs, dataset.task)
        val_loss = F.nll_loss(torch.log(torch.from_numpy(val_probs).clamp_min(1e-12)),
                              torch.from_numpy(dataset.val.labels)).item()
        row = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(order)),
               "train_acc": correct / max(1, len(order)), "val_loss": val_loss,
               "val_acc": val["acc"], "val_auc": val["auc"], "lr": scheduler.get_last_lr()[0],
               "seconds": round(time.perf_counter() - tick, 3)}
        history.append(row)
        if config.select == "last" or (val["auc"], val["acc"]) > (best["val_auc"], best["val_acc"]):
            best = {"epoch": epoch, "val_auc": val["auc"], "val_acc": val["acc"]}  # validation only
            best_model = copy.deepcopy(averaged.state_dict())
        _save_atomic({
            "epoch": epoch, "model": model.state_dict(), "averaged": averaged.state_dict(),
            "best_model": best_model, "best": best,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history, "train_seconds": train_seconds, "trained_samples": trained_samples,
            "wall_seconds": wall_before + time.perf_counter() - started,
        }, out / "checkpoint.pt")
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val['acc']:.3f}",
                        val_auc=f"{val['auc']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch, row)
    bar.close()
    return _finish(out, config, dataset, model, best, best_model, history,
                   train_seconds, trained_samples, wall_before + time.perf_counter() - started)


def _finish(out, config, dataset, model, best, best_model, history, train_seconds,
            trained_samples, wall) -> dict:
    model.load_state_dict(best_model)
    selection = {"last": "last epoch", "best-val": "best validation AUC, then ACC"}[config.select]
    if config.ema_decay:
        selection += f" (moving average of the weights, decay {config.ema_decay})"
    metrics = {"selected_epoch": best["epoch"], "selection": selection}
    for split in ("train", "val", "test"):
        part = getattr(dataset, split)
        metrics[split] = compute_metrics(part.labels, predict_probs(model, part.images), dataset.task)
    metrics.update({
        "parameters": model.parameter_counts(),
        "train_seconds": round(train_seconds, 2),
        "train_samples_per_s": round(trained_samples / max(train_seconds, 1e-9), 1),
        "wall_time_s": round(wall, 2),
        "seed": config.seed,
        "model": config.model, "head": config.head, "circuit": config.circuit, "backbone": config.backbone,
        "backend": config.backend,
        "dataset": dataset.name,
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(out / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_learning_curves(history, out / "learning_curves.png", best["epoch"])
    plot_confusion(metrics["test"]["confusion"], list(dataset.label_names), out / "confusion.png",
                   f"{dataset.name} test (epoch {best['epoch']})")
    return metrics
