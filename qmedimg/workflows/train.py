"""Training: the loop, atomic checkpoints every epoch, resume, and the run's final metrics and plots.

Example::

    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import train
    metrics = train(make_config(dataset="breastmnist", out="runs/breast"))
    metrics["test"]["acc"], metrics["test"]["auc"]
    train(make_config(dataset="breastmnist", size=128, amp=True, out="runs/b128"), device="cuda")

``device`` (``auto``: CUDA when torch sees a GPU, else CPU) is where the CNN trains, recorded as
``"device"`` in config.json (beside ``versions``: not part of the config, a run resumes on any device)
and in metrics.json; the quantum head's estimator always runs on the CPU. metrics.json also records
``torch_threads``: the same seed ends with other float32 rounding on another number of threads.

The run directory's layout and loading it back live in :mod:`qmedimg.rundir`.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from qmedimg.data import Dataset, to_tensor
from qmedimg.data.datasets import SIZES
from qmedimg.cores import available_memory
from qmedimg.errors import QmedimgError
from qmedimg.files import (clear_torn_temporaries, holds_files, read_json, reporting_os_errors, write_csv, write_json,
                           writing_folder)
from qmedimg.metrics import bootstrap_intervals, compute_metrics, reliability
from qmedimg.quantum.gradients import check_trainable
from qmedimg.model import (CHECKPOINT_KEYS, head_usage, load_checkpoint, load_weights, predict_probs, save_atomic,
                           CHECKPOINT_SCHEMA, torch_device, training_memory)
from qmedimg.report.calibration import plot_reliability
from qmedimg.report.plots import plot_confusion, plot_learning_curves, plot_per_label
from qmedimg.rundir import (CONFIG_SCHEMA, TrainConfig, build_model, check_for_task, check_size, circuit_record,
                            config_and_data, decision_threshold, load_data, require_config, training_backend, versions)


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


def epoch_order(labels: np.ndarray, generator: torch.Generator, balanced: bool = False) -> torch.Tensor:
    """One epoch's training images, drawn from ``generator`` (checkpointed: a resumed run draws the same):
    a permutation, or with ``balanced`` as many draws with replacement, every class equally likely."""
    if not balanced:
        return torch.randperm(len(labels), generator=generator)
    weights = torch.from_numpy(1.0 / np.bincount(labels)[labels])  # an image: 1 / (images of its class)
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


@torch.no_grad()
def _update_average(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * model; integer buffers copied."""
    for mine, theirs in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
        if mine.dtype.is_floating_point:
            mine.lerp_(theirs, 1.0 - decay)
        else:
            mine.copy_(theirs)


def check_memory(config: TrainConfig, dataset: Dataset) -> None:
    """Refuse, before anything is written, images too large to train on in this machine's memory (a
    training step's least peak, :func:`~qmedimg.model.training_memory`, above the memory free now)."""
    need, free = training_memory(config.batch_size, dataset.size, dataset.dims), available_memory()
    if need > free:
        side = "×".join([str(dataset.size)] * dataset.dims)
        fits = max(1, free // training_memory(1, dataset.size, dataset.dims))
        raise QmedimgError(f"{dataset.source}: {side} inputs need at least {need / 2**30:.1f} GiB per training "
                           f"step at batch size {config.batch_size}, {free / 2**30:.1f} GiB is free; resize the "
                           f"images (MedMNIST sizes: {', '.join(map(str, SIZES))})"
                           + (f" or pass --batch-size {fits} or less" if fits >= 2 else ""))


def training_device(config: TrainConfig, device: str | torch.device = "auto", resuming: Path | None = None
                    ) -> torch.device:
    """The device ``config`` trains on (:func:`~qmedimg.model.torch_device`), or one line why not: no
    GPU for ``cuda``, or ``amp`` (float16 autocast, CUDA only) anywhere else. A grid checks its cells
    with it before any trains."""
    device = torch_device(device)
    if config.amp and device.type != "cuda":
        fix = f"{resuming} was trained with --amp: resume it on a GPU" if resuming else "drop --amp or train on a GPU"
        raise QmedimgError(f"--amp needs --device cuda (float16 autocast on a GPU); the device here is {device.type}: "
                           f"{fix}")
    return device


def train(config: TrainConfig, *, progress: bool = True,
          on_epoch: Callable[[int, dict], None] | None = None, device: str | torch.device = "auto") -> dict:
    """Train a new run into ``config.out`` on ``device``; returns its metrics (also in ``metrics.json``).

    Everything is validated (device, data, circuit) before anything is written. An existing run
    directory is never overwritten: continue it with :func:`resume` instead.
    """
    device = training_device(config, device)
    out = Path(config.out)
    _refuse_existing(out)
    dataset = load_data(config)
    check_size(config, dataset)
    check_for_task(config, dataset)
    if device.type == "cpu":  # a GPU's memory is its own (torch says when it runs out)
        check_memory(config, dataset)
    backend = training_backend(config)
    model = build_model(config, dataset, backend, device=device)
    if config.quantum:
        check_trainable(model.spec)  # a circuit without a gradient fails here, not at the first step
    with writing_folder(out):  # one writer: a second train/resume of this folder is refused while this runs
        _refuse_existing(out)  # another process may have made the run since the check above
        return _start(out, config, dataset, model, backend, progress, on_epoch, device)


def _refuse_existing(out: Path) -> None:
    if holds_files(out):
        raise QmedimgError(f"{out}: already exists and is not empty; resume it with "
                           f"`qmedimg train --resume {out}` or choose another --out")


def _start(out: Path, config: TrainConfig, dataset: Dataset, model, backend, progress, on_epoch, device) -> dict:
    """Record a new run's config.json, then train it."""
    record = {
        "schema": CONFIG_SCHEMA, "config": config.model_dump(),  # its format version: artifact.migrate_record
        "dataset": dataset.info(),
        "circuit": None if model.spec is None else circuit_record(model.spec),  # its OpenQASM pinned
        "parameters": model.parameter_counts(),
        "versions": versions(),
        "device": str(device),
    }
    write_json(out / "config.json", record)
    return _fit(out, config, dataset, model, backend, None, progress, on_epoch, device)


def resume(run_dir: str | Path, *, progress: bool = True,
           on_epoch: Callable[[int, dict], None] | None = None, device: str | torch.device = "auto") -> dict:
    """Continue an interrupted run from its last checkpoint, on ``device`` (any: the checkpoint loads
    on the CPU first); same result as never stopping on the same device. A run interrupted before its
    first epoch ended (config.json, no checkpoint) starts again at epoch 1."""
    path = require_config(run_dir)
    with writing_folder(path):  # one writer: a second train/resume of this folder is refused while this runs
        config, dataset, circuit = config_and_data(path)
        device = training_device(config, device, resuming=path)
        backend = training_backend(config)
        model = build_model(config, dataset, backend, device=device, circuit=circuit)
        state = load_checkpoint(path, CHECKPOINT_KEYS) if (path / "checkpoint.pt").is_file() else None
        if state is not None:
            check_resumable(path / "checkpoint.pt", state)
        return _fit(path, config, dataset, model, backend, state, progress, on_epoch, device)


HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc")  # what the plots and CSV read
RESUME_FIELDS = {"epoch": int, "best": dict, "history": list, "train_seconds": (int, float), "trained_samples": int,
                 "wall_seconds": (int, float), "model": dict, "averaged": dict, "best_model": dict, "optimizer": dict,
                 "scheduler": dict, "generator": torch.Tensor, "torch_rng": torch.Tensor}


def check_resumable(file: Path, state: dict) -> None:
    """One line naming the first field of a checkpoint that a resume cannot use (damaged or edited), before
    anything is trained or written: each field of the type training saves, one history row per finished
    epoch with the keys the CSV and plots read, and the kept epoch's record."""
    for key, kind in RESUME_FIELDS.items():
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise QmedimgError(f"{file}: '{key}' holds a {type(state[key]).__name__}, not what training saves; restore "
                               "the checkpoint, or train the run again")
    epoch, history, best = state["epoch"], state["history"], state["best"]
    if epoch < 0 or len(history) != epoch or not all(isinstance(row, dict) and all(k in row for k in HISTORY_KEYS)
                                                     and row.keys() == history[0].keys() for row in history):
        raise QmedimgError(f"{file}: its history is not one row per finished epoch (epoch {epoch}, {len(history)} "
                           f"rows, each with {', '.join(HISTORY_KEYS)}); restore the checkpoint, or train the run again")
    if not all(type(best.get(k)) in (int, float) for k in ("epoch", "val_auc", "val_acc")) or \
            not 0 <= best["epoch"] <= epoch:
        raise QmedimgError(f"{file}: 'best' is not the record of a finished epoch ({best!r:.100}); restore the "
                           "checkpoint, or train the run again")


def _fit(out: Path, config: TrainConfig, dataset: Dataset, model: torch.nn.Module, backend, state: dict | None,
         progress: bool, on_epoch, device: torch.device) -> dict:
    # CUDA lacks deterministic kernels for a few ops (e.g. VGG-16's 7×7 adaptive pooling backward): warned, not refused
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
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
    averaged = build_model(config, dataset, backend, device=device,  # the moving average; evaluated and kept
                           circuit=getattr(model, "spec", None))
    model.amp = config.amp  # the trained copy only: evaluation runs in float32
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp)
    averaged.load_state_dict(model.state_dict())
    history: list[dict] = []
    best = {"epoch": 0, "val_auc": -1.0, "val_acc": -1.0}
    best_model = copy.deepcopy(averaged.state_dict())
    train_seconds, trained_samples, wall_before = 0.0, 0, 0.0
    start_epoch = 1
    if state is not None:
        load_weights(model, state["model"], out / "checkpoint.pt")
        load_weights(averaged, state["best_model"], out / "checkpoint.pt")  # checked now: the end of training loads it
        load_weights(averaged, state["averaged"], out / "checkpoint.pt")
        try:  # torch checks the contents: parameter groups, RNG state sizes, scaler fields
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and "cuda_rng" in state:  # dropout draws from the GPU's generator
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise QmedimgError(f"{out / 'checkpoint.pt'}: its optimizer, scheduler or random state cannot be restored "
                               f"({detail}); restore the checkpoint, or train the run again") from None
        history, best, best_model = state["history"], state["best"], state["best_model"]
        train_seconds, trained_samples = state["train_seconds"], state["trained_samples"]
        wall_before = state["wall_seconds"]
        start_epoch = state["epoch"] + 1

    images, labels = dataset.train.images, torch.from_numpy(dataset.train.labels)
    loss_of = training_loss(dataset, config, device)
    started = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=f"train {out.name}", unit="epoch",
               disable=not progress, initial=start_epoch - 1, total=config.epochs)
    for epoch in bar:
        model.train()
        tick = time.perf_counter()
        order = epoch_order(dataset.train.labels, generator, config.balanced_sampling)
        losses, correct = [], 0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = to_tensor(images[idx.numpy()])
            if config.augment:
                x = augment(x, generator)  # on the CPU, from the CPU generator: the same draws on every device
            x, y = x.to(device), labels[idx].to(device)
            logits = model(x)
            loss = loss_of(logits, y)
            if not math.isfinite(value := loss.item()):  # weights gone to inf/NaN: nothing after this step means anything
                raise _diverged(out, epoch, config, f"the loss is {value}")
            optimizer.zero_grad()
            scaler.scale(loss).backward()  # without --amp: loss.backward(), optimizer.step()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            _update_average(averaged, model, config.ema_decay)
            losses.append(value * len(idx))
            correct += _hits(logits, y)
            trained_samples += len(idx)
        train_seconds += time.perf_counter() - tick

        val_probs = predict_probs(averaged, dataset.val.images)
        if not np.isfinite(val_probs).all():
            raise _diverged(out, epoch, config, "the kept weights give NaN probabilities")
        val = compute_metrics(dataset.val.labels, val_probs, dataset.task)
        val_loss = _validation_loss(val_probs, dataset.val.labels, dataset.multi_label)
        row = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(order)),
               "train_acc": correct / max(1, len(order)), "val_loss": val_loss,
               "val_acc": val["acc"], "val_auc": val["auc"], "lr": scheduler.get_last_lr()[0],
               "seconds": round(time.perf_counter() - tick, 3)}
        history.append(row)
        if config.select == "last" or _selection_key(val["auc"], val["acc"]) > _selection_key(best["val_auc"],
                                                                                            best["val_acc"]):
            best = {"epoch": epoch, "val_auc": val["auc"], "val_acc": val["acc"]}  # validation only
            best_model = copy.deepcopy(averaged.state_dict())
        save_atomic({
            "epoch": epoch, "model": model.state_dict(), "averaged": averaged.state_dict(),
            "best_model": best_model, "best": best, "schema": CHECKPOINT_SCHEMA,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            **({"scaler": scaler.state_dict()} if config.amp else {}),
            "history": history, "train_seconds": train_seconds, "trained_samples": trained_samples,
            "wall_seconds": wall_before + time.perf_counter() - started,
        }, out / "checkpoint.pt")
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val['acc']:.3f}",
                        val_auc=f"{val['auc']:.3f}")
        if on_epoch is not None:
            on_epoch(epoch, row)
    bar.close()
    return _finish(out, config, dataset, model, best, best_model, history,
                   train_seconds, trained_samples, wall_before + time.perf_counter() - started, device)


def _diverged(out: Path, epoch: int, config: TrainConfig, what: str) -> QmedimgError:
    return QmedimgError(f"{out}: training diverged in epoch {epoch} ({what}); the checkpoint keeps epoch {epoch - 1}: "
                        f"train again with a lower --lr (this run's: {config.lr:g})")


def training_loss(dataset: Dataset, config: TrainConfig, device) -> Callable:
    """``loss(logits, labels)``: cross-entropy over the classes (``class_weights``: each class weighted
    by N / (classes · its count)); for multi-label data, binary cross-entropy per label, averaged
    (``class_weights``: each label's positives weighted by its negatives / positives, MedMNIST's
    ``pos_weight``). Label smoothing ε moves every target towards 1/2 (per label) or uniform (classes)."""
    train = dataset.train.labels
    if dataset.multi_label:
        positives = train.sum(axis=0)
        pos_weight = (torch.tensor((len(train) - positives) / np.maximum(positives, 1), dtype=torch.float32,
                                   device=device) if config.class_weights else None)
        smoothing = config.label_smoothing

        def multi_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            target = labels.float() * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)

        return multi_label_loss
    weight = None
    if config.class_weights:
        counts = np.bincount(train, minlength=dataset.num_classes)
        weight = torch.tensor(len(train) / (dataset.num_classes * np.maximum(counts, 1)), dtype=torch.float32,
                              device=device)
    return lambda logits, labels: F.cross_entropy(logits, labels, weight=weight,
                                                  label_smoothing=config.label_smoothing)


def _hits(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Correct decisions in a batch: images whose argmax class is right, or, multi-label (labels 2-D),
    the mean over labels of images whose 0/1 per label is right."""
    if labels.ndim == 2:
        return float(((logits > 0).long() == labels).float().mean(dim=1).sum())
    return int((logits.argmax(1) == labels).sum())


def _validation_loss(probs: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    """The validation loss of the kept (averaged) weights: negative log-likelihood of the true class,
    or binary cross-entropy per label for multi-label data."""
    p = torch.from_numpy(probs)
    if multi_label:
        return F.binary_cross_entropy(p.clamp(1e-12, 1 - 1e-12), torch.from_numpy(labels).double()).item()
    return F.nll_loss(torch.log(p.clamp_min(1e-12)), torch.from_numpy(labels)).item()


def _selection_key(auc: float, acc: float) -> tuple[float, float]:
    """What ``--select best-val`` maximises: validation AUC, then ACC. An undefined AUC (a class
    missing from the validation split: NaN, which no comparison prefers) counts as -1, below every
    defined one and equal to "no epoch yet", so ACC decides among such epochs."""
    return (auc if not math.isnan(auc) else -1.0), acc


def _finish(out, config, dataset, model, best, best_model, history, train_seconds,
            trained_samples, wall, device) -> dict:
    model.load_state_dict(best_model)
    model.amp = False  # the kept weights are evaluated in float32, as load_run does
    selection = {"last": "last epoch", "best-val": "best validation AUC, then ACC"}[config.select]
    if config.ema_decay:
        selection += f" (moving average of the weights, decay {config.ema_decay})"
    probs = {split: predict_probs(model, getattr(dataset, split).images) for split in ("train", "val", "test")}
    threshold = decision_threshold(config, dataset, lambda: probs["val"])  # chosen on the validation split only
    metrics = {"selected_epoch": best["epoch"], "selection": selection, "threshold": threshold}
    for split in ("train", "val", "test"):  # the run's own decisions, then the same at 0.5
        metrics[split] = compute_metrics(getattr(dataset, split).labels, probs[split], dataset.task, threshold["value"])
    if threshold["value"] is not None:
        metrics["at_threshold_0.5"] = {split: compute_metrics(getattr(dataset, split).labels, probs[split],
                                                              dataset.task) for split in ("val", "test")}
    metrics["test_intervals"] = bootstrap_intervals(dataset.test.labels, probs["test"], dataset.task,
                                                    threshold["value"])  # seeded; draws, seed, level recorded
    metrics.update({
        "parameters": model.parameter_counts(), "train_seconds": round(train_seconds, 2),
        "train_samples_per_s": round(trained_samples / max(train_seconds, 1e-9), 1),
        "wall_time_s": round(wall, 2), "seed": config.seed,
        "model": config.model, "head": config.head, "circuit": config.circuit, "backbone": config.backbone,
        "angle_map": config.angle_map, "readout": config.readout, "backend": config.backend, "dataset": dataset.name,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),  # float32 rounding depends on it (docs/ray.md)
    })
    usage = {split: head_usage(model, getattr(dataset, split).images) for split in ("val", "test")}
    if usage["test"] is not None:
        metrics["head_usage"] = usage
    write_json(out / "metrics.json", metrics)
    write_csv(out / "history.csv", [[h[k] for k in history[0]] for h in history], header=list(history[0]))
    with reporting_os_errors(out / "learning_curves.png"):
        plot_learning_curves(history, out / "learning_curves.png", best["epoch"])
    title = f"{dataset.name} test (epoch {best['epoch']})"
    with reporting_os_errors(out / "confusion.png"):
        plot_confusion(metrics["test"]["confusion"], list(dataset.label_names), out / "confusion.png", title)
    with reporting_os_errors(out / "calibration.png"):  # the reliability diagram; its ECE: metrics["test"]["ece"]
        plot_reliability(reliability(dataset.test.labels, probs["test"], dataset.task), out / "calibration.png", title)
    if dataset.multi_label:
        with reporting_os_errors(out / "per_label_auc.png"):
            plot_per_label(metrics["test"]["per_label"], list(dataset.label_names), out / "per_label_auc.png",
                           f"{dataset.name} test AUC per label (epoch {best['epoch']})")
    return metrics


def train_or_resume(config: TrainConfig, *, progress: bool = True, **options) -> dict:
    """The finished metrics of the run ``config`` defines: read if it finished, resumed if it was
    interrupted (even while writing its first file), trained otherwise. The caller has checked that a
    run directory already there was made with this config. What a grid cell runs: repeatable."""
    out = Path(config.out)
    if (out / "metrics.json").is_file():
        return read_json(out / "metrics.json")
    if (out / "config.json").is_file():
        return resume(out, progress=progress, **options)
    clear_torn_temporaries(out)
    return train(config, progress=progress, **options)
