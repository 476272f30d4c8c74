"""A run directory: the config that defines a run, building its network, and loading it back.

Example::

    from qmedimg.rundir import load_run, make_config
    config = make_config(dataset="breastmnist", out="runs/breast")       # validated, one-line errors
    run = load_run("runs/breast")                                        # config, model, metrics: no data read
    run.model.spec.name, run.metrics["test"]["acc"], run.dataset.label_names
    run.dataset.test.images                                              # the data file, read (and checked) now
    run = load_run("runs/breast", device="cuda")                         # the network on a GPU

A run directory holds ``config.json`` (the resolved config, dataset, circuit and versions),
``checkpoint.pt`` (rewritten atomically every epoch; loads with ``torch.load(weights_only=True)``),
``history.csv``, ``metrics.json``, ``learning_curves.png``, ``confusion.png`` and ``calibration.png``; evaluations add
``eval-<backend>.json`` and, on a QPU, ``ledger-<backend>.json``. The folder alone is the model: a run loads,
predicts and explains from config.json (what it records of its data: :mod:`qmedimg.artifact`) and
checkpoint.pt without its training data, which is read only when a split is asked for.

A binary run decides at its threshold on P(class 1) (``Run.threshold``): ``--threshold`` as given, or
chosen by a rule on the validation split when training ends. metrics.json records it (``threshold``:
value, rule), the train/val/test metrics at it, and val/test at 0.5 (``at_threshold_0.5``); evaluate,
predict and the noise study decide at it. Runs from before it decide at 0.5.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from qmedimg.artifact import (CONFIG_SCHEMA, RecordedData, circuit_record, migrate_record, named_classes,  # noqa: F401
                              recorded_sha256, versions)  # CONFIG_SCHEMA, circuit_record, versions: train's record
from qmedimg.backends import Backend, HeadRequest, JobOptions, get_backend
from qmedimg.backends.jobs import request_id
from qmedimg.backends.registry import exact_backend
from qmedimg.data import Dataset, load_dataset
from qmedimg.data.datasets import MULTI_LABEL, SIZES
from qmedimg.errors import QmedimgError
from qmedimg.files import read_json
from qmedimg.metrics import THRESHOLD_RULES, choose_threshold
from qmedimg.model import HybridNet, head_weights, load_checkpoint, load_weights, predict_probs, torch_device, with_readout
from qmedimg.quantum.circuits import CircuitSpec, circuit_from_qasm, load_circuit


class TrainConfig(BaseModel):
    """Everything that defines a training run; validated once, stored in ``config.json`` (a field added later
    and missing from an older file means that run's behaviour: :func:`~qmedimg.artifact.migrate_record`)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(None, description="MedMNIST flag (e.g. breastmnist) or 'synthetic'")
    data_file: str | None = Field(None, description="a MedMNIST-layout .npz instead of a flag")
    data_root: str | None = Field(None, description="where MedMNIST files live (default ~/.medmnist)")
    size: Literal[28, 64, 128, 224] = 28
    classes: list[int] | None = None
    class_names: list[str] | None = Field(None, description="a data_file run's class (label) names in order, for "
                                          "plots, predictions and config.json (default: the file's, or 0, 1, ...)")
    limit: PositiveInt | None = None
    circuit: str = "sel"
    qubits: PositiveInt | None = Field(None, description="circuit width (template default: 4)")
    layers: PositiveInt | None = None
    model: Literal["hybrid", "resnet18", "vgg16"] = Field("hybrid", description="hybrid network or a classical baseline")
    head: Literal["quantum", "classical", "linear"] = "quantum"
    backbone: Literal["compact", "hqcnn"] = "hqcnn"
    angle_map: Literal["tanh", "batchnorm", "batchnorm-half"] = Field(
        "tanh", description="features -> head angles: π·tanh, or batch-normalised (no affine) then π·tanh "
        "or (π/2)·tanh")
    readout: Literal["circuit", "z+zz", "z+zz-all"] = Field(
        "circuit", description="head outputs: the circuit file's observables, or Z on every qubit plus ZZ on "
        "ring neighbours / on every pair")
    stem: Literal["3x3", "imagenet"] | None = Field(
        None, description="resnet18's first layers: 3x3 stride 1 without max-pool (MedMNIST v2's 28×28 "
        "adaptation) or ImageNet's 7x7 stride 2 and max-pool; default 3x3 at 28, imagenet from 64 (None for "
        "other models)")
    epochs: PositiveInt = 60
    batch_size: PositiveInt = 32
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(1e-2, ge=0, allow_inf_nan=False, description="AdamW decay of weight matrices and kernels")
    warmup_epochs: int = Field(3, ge=0, description="linear warm-up before the per-step cosine decay")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.99, ge=0, lt=1, description="weights evaluated and kept: an exponential moving average (0 = off)")
    select: Literal["last", "best-val"] = Field(
        "last", description="checkpoint kept: the last epoch, or the best validation AUC (then ACC)")
    dropout: float = Field(0.0, ge=0, lt=1)
    class_weights: bool = False
    balanced_sampling: bool = Field(False, description="draw training images with every class equally likely "
                                    "(seeded, with replacement; the draws resume with the checkpoint)")
    threshold: float | Literal["val", "youden"] = Field(
        0.5, description="binary tasks: P(class 1) above which the run says class 1 — a number in (0, 1), or "
        "chosen on the validation split at the end of training: 'val' (best accuracy) or 'youden' (best "
        "sensitivity + specificity); multi-label: the same per label")
    augment: bool = False  # flips/rotations/shifts: off by default, they hurt on BreastMNIST's validation split
    amp: bool = Field(False, description="train the CNN under float16 autocast (CUDA only); the head stays float32")
    backend: str = Field("exact", description="registry entry the quantum head trains on (noise-aware training)")
    noise_scale: float | None = Field(None, ge=0, le=1000, allow_inf_nan=False,
                                      description="override the backend's noise_scale")
    backends_file: str | None = None
    seed: int = Field(0, ge=0, lt=2**32, description="numpy and torch take seeds >= 0 (and below 2**32 everywhere)")
    out: str

    @property
    def quantum(self) -> bool:
        """Whether the network has a quantum head."""
        return self.model == "hybrid" and self.head == "quantum"

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        if isinstance(value, str) and value in THRESHOLD_RULES:  # a list or dict is unhashable
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if isinstance(value, bool) or number is None or not 0 < number < 1:
            raise ValueError(f"threshold must be a number in (0, 1) or a rule: {', '.join(THRESHOLD_RULES)}")
        return number

    @model_validator(mode="after")
    def _one_balancing(self):
        if self.class_weights and self.balanced_sampling:
            raise ValueError("class_weights and balanced_sampling both correct the class balance: choose one")
        return self

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dataset is None) == (self.data_file is None):
            raise ValueError("give exactly one of dataset (a MedMNIST flag) or data_file (an .npz)")
        if self.class_names is not None and self.data_file is None:
            raise ValueError(f"class_names is for data_file runs: {self.dataset} names its own classes")
        if self.model != "resnet18" and self.stem is not None:
            raise ValueError(f"stem is for model resnet18 only, not {self.model}")
        if self.model == "resnet18" and self.stem is None:
            self.stem = "3x3" if self.size == 28 else "imagenet"
        return self


def make_config(**fields) -> TrainConfig:
    """``TrainConfig(**fields)`` with pydantic's errors turned into one line."""
    try:
        return TrainConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        where = where if where.isprintable() else repr(where)  # a key with a newline in a damaged config.json
        raise QmedimgError(f"{where}: {err['msg']} (got {err.get('input')!r})") from None


@dataclass
class Run:
    """A trained run loaded back: its config, data (as config.json records it; its splits are read from the data
    file, checked unchanged since training, when first asked for), kept model and recorded metrics."""

    path: Path
    config: TrainConfig
    dataset: RecordedData
    model: HybridNet
    metrics: dict
    epoch: int | None = None  # the last finished epoch its checkpoint holds
    digest: str | None = field(default=None, repr=False)
    chosen: dict | None = field(default=None, repr=False)

    @property
    def threshold(self) -> float | list[float] | None:
        """Where a probability becomes a "yes" in this run's decisions (binary: on P(class 1); multi-label:
        per label; unused by multi-class, which decides by the most probable class): ``threshold_record``'s
        value. Pass it to :func:`~qmedimg.metrics.compute_metrics` and :func:`~qmedimg.metrics.decisions`."""
        return self.threshold_record()["value"]

    def threshold_record(self) -> dict:
        """{"value", "rule"} as metrics.json records it at the end of training. A run trained before
        thresholds existed decides at 0.5 (``CONFIG_BEFORE_FIELD``); an interrupted run whose rule has not been
        applied yet gets it applied now to its kept weights' validation probabilities, once per loaded run."""
        if self.chosen is None:
            self.chosen = self.metrics.get("threshold") or decision_threshold(
                self.config, self.dataset, lambda: predict_probs(self.model, self.dataset.val.images))
        return self.chosen

    def check_backend(self, backend: Backend) -> None:
        """A classical-head run has nothing to put on a backend but the exact one."""
        if not self.config.quantum and not backend.describe().exact:
            raise QmedimgError(f"{self.path}: this run has a classical head; --backend needs a run trained with "
                               "--head quantum")

    def run_id(self) -> str:
        """A digest of what produced this run's head inputs and weights (:func:`run_digest`), once per loaded run."""
        self.digest = self.digest or run_digest(self.path)
        return self.digest

    def head_request(self, angles: np.ndarray, *, progress: bool = False, repeat: int = 0) -> HeadRequest:
        """The trained quantum head on ``angles``, as a backend takes it; ``repeat``: which repetition of the
        same request (a noise study's repeats)."""
        return HeadRequest(self.model.spec, head_weights(self.model), angles, progress=progress, repeat=repeat)

    def job_options(self, *, dry_run: bool = False, resume: bool = False) -> JobOptions:
        """A QPU backend's job options for this run: its ledger in the run directory, named by :meth:`run_id`."""
        return JobOptions(ledger_dir=self.path, run_id=self.run_id(), dry_run=dry_run, resume=resume)


def run_digest(path: Path) -> str:
    """:meth:`Run.run_id` of the run in ``path`` without loading it: a digest of its config and checkpoint."""
    checkpoint = hashlib.sha256((path / "checkpoint.pt").read_bytes()).hexdigest()
    return request_id(config=read_json(path / "config.json")["config"], checkpoint=checkpoint)


def decision_threshold(config: TrainConfig, dataset: Dataset, val_probs) -> dict:
    """The run's threshold as metrics.json records it: {"value", "rule"}, the rule applied to the
    validation split only (``val_probs()``: the kept weights' probabilities, asked for only then)."""
    if dataset.task not in ("binary-class", MULTI_LABEL):
        return {"value": None, "rule": "most probable class"}
    if isinstance(config.threshold, float):
        return {"value": config.threshold, "rule": "fixed"}
    value = choose_threshold(dataset.val.labels, val_probs(), dataset.task, config.threshold)
    return {"value": value, "rule": config.threshold, "chosen_on": "validation",
            "meaning": THRESHOLD_RULES[config.threshold]}


def check_for_task(config: TrainConfig, dataset: Dataset) -> None:
    """Options only some tasks take, refused in one line before anything is written: a decision
    threshold (binary: on P(class 1); multi-label: per label) on a multi-class task, which decides by
    the most probable class; balanced sampling on multi-label data, which has no one class per image."""
    if config.threshold != 0.5 and dataset.task not in ("binary-class", MULTI_LABEL):
        raise QmedimgError(f"threshold {config.threshold!r}: {dataset.name} is {dataset.task} "
                           f"({dataset.num_classes} classes, decided by the most probable one); a decision "
                           "threshold is for binary-class and multi-label tasks: drop --threshold")
    empty = [split for split in ("train", "val", "test") if len(getattr(dataset, split).labels) == 0]
    if empty:
        raise QmedimgError(f"{dataset.source}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} "
                           "empty; a run needs images in train (to learn), val (to select and set thresholds) and "
                           "test (to report)")
    if config.balanced_sampling and dataset.task == MULTI_LABEL:
        raise QmedimgError(f"balanced_sampling: {dataset.name} is multi-label (no one class per image to balance); "
                           "drop --balanced-sampling (--class-weights weights each label's positives)")


def training_backend(config: TrainConfig) -> Backend | None:
    """The registry backend a quantum head trains on (``config.backend``, its noise scale overridden),
    or None for a network without a quantum head."""
    if not config.quantum:
        return None
    overrides = {"noise_scale": config.noise_scale} if config.noise_scale is not None else {}
    return get_backend(config.backend, config.backends_file, **overrides)


def run_circuit(config: TrainConfig, record: dict | None = None) -> CircuitSpec:
    """A run's circuit: the OpenQASM its ``config.json`` (``record``) pinned, so editing the file never changes
    a trained run; for a new run or one from before pinning, the file ``config.circuit`` names, as it is now."""
    pinned = (record or {}).get("circuit") or {}
    if pinned.get("qasm"):
        return circuit_from_qasm(pinned["qasm"], name=pinned.get("name", config.circuit),
                                 path=pinned.get("path", config.circuit), layers=pinned.get("layers"))
    return load_circuit(config.circuit, qubits=config.qubits, layers=config.layers)


def build_model(config: TrainConfig, dataset: Dataset | RecordedData, backend: Backend | None = None,
                device: str | torch.device = "auto", circuit: CircuitSpec | None = None) -> torch.nn.Module:
    """The run's network on ``device`` (:func:`~qmedimg.model.torch_device`), weights drawn from
    ``config.seed`` on the CPU (the same on every device); a quantum head runs on ``backend`` (its
    prepared circuit and estimator), the exact estimator when None. Pass one backend to every copy
    of a model: the circuit is transpiled and the noise model built once. ``circuit``: the run's circuit
    (:func:`run_circuit`; default: the file ``config.circuit`` names)."""
    device = torch_device(device)
    if config.augment and dataset.dims == 3:  # flips would swap OrganMNIST3D's left/right organ classes
        raise QmedimgError(f"--augment: {dataset.name} holds volumes; augmentation is for 2D images only "
                           "(a flip swaps left and right organs, e.g. OrganMNIST3D's kidney-left/kidney-right)")
    if config.model != "hybrid":
        from qmedimg.backbones import check_baseline
        from qmedimg.model import Baseline

        check_baseline(config.model, config.size, dataset.dims)
        torch.manual_seed(config.seed)
        return Baseline(config.model, dataset.channels, dataset.num_classes, stem=config.stem or "3x3",
                        multi_label=dataset.multi_label, dims=dataset.dims).to(device)
    spec = with_readout(circuit or run_circuit(config), config.readout)
    head_on = (backend or exact_backend()).training_head(spec) if config.quantum else None
    torch.manual_seed(config.seed)
    return HybridNet(
        channels=dataset.channels, num_classes=dataset.num_classes, spec=spec, head_on=head_on,
        backbone=config.backbone, head=config.head, dropout=config.dropout, angle_map=config.angle_map,
        multi_label=dataset.multi_label, dims=dataset.dims,
    ).to(device)


def load_data(config: TrainConfig) -> Dataset:
    """The run's dataset: source, size, classes and seeded limit as configured, named by ``class_names`` if given."""
    return named_classes(load_dataset(
        config.dataset, data_file=config.data_file, data_root=config.data_root, size=config.size,
        classes=config.classes, limit=config.limit, seed=config.seed,
    ), config.class_names)


def check_size(config: TrainConfig, dataset: Dataset) -> None:
    """A new run records the size it trains at: a data file of a MedMNIST size other than ``config.size``
    (given or the default 28) is refused in one line. (Runs made before this check, with a 64×64 file and
    size 28 recorded, still load: :func:`load_run` does not ask.)"""
    if dataset.size != config.size and dataset.size in SIZES:
        held = (f"{dataset.size}³ volumes" if dataset.dims == 3 else f"{dataset.size}×{dataset.size} images")
        raise QmedimgError(f"{dataset.source} holds {held} but the run's size is {config.size}; "
                           f"pass --size {dataset.size}")


def require_run(run_dir: str | Path) -> Path:
    """The run directory, or a one-line error if it holds no qmedimg run (or is a file: an exported run)."""
    path = Path(run_dir)
    if path.is_file():  # `qmedimg export`'s archive
        raise QmedimgError(f"{path}: a file, not a run directory; only predict and explain read an exported run as it "
                           f"is: unzip it into a directory first (unzip {path} -d DIR)")
    if not (path / "config.json").is_file() or not (path / "checkpoint.pt").is_file():
        raise QmedimgError(f"{path}: not a qmedimg run directory (needs config.json and checkpoint.pt, written by "
                           "`qmedimg train --out DIR`)")
    return path


def require_config(run_dir: str | Path) -> Path:
    """A run directory holding at least ``config.json``: a run interrupted before its first epoch has
    no checkpoint yet, and can still be resumed (it starts again at epoch 1)."""
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise QmedimgError(f"{path}: not a qmedimg run directory (no config.json; `qmedimg train --out DIR` "
                           "writes one)")
    return path


def read_record(path: Path) -> dict:
    """A run directory's ``config.json`` migrated to this qmedimg's schema (:func:`~qmedimg.artifact.migrate_record`:
    its ``"config"`` object is the run's TrainConfig, with the fields it predates filled in), or one line naming the
    file and field that are damaged, or saying that a newer qmedimg wrote it."""
    record = read_json(path / "config.json")
    record = migrate_record(record, path / "config.json") if isinstance(record, dict) else record
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise QmedimgError(f"{path / 'config.json'}: not a qmedimg run config (no \"config\" object); "
                           "the file is corrupt — restore or re-create it")
    try:
        config = make_config(**record["config"])  # every field valid, as when it was trained
    except QmedimgError as exc:
        raise QmedimgError(f"{path / 'config.json'}: config.{exc}; restore the file or train again") from None
    circuit = record.get("circuit")
    try:
        pinned = circuit if isinstance(circuit, dict) else {}
        if not isinstance(circuit, (dict, type(None))) or not isinstance(pinned.get("qasm", ""), str) \
                or not all(isinstance(pinned.get(key, ""), str) for key in ("name", "path")) \
                or type(pinned.get("layers")) not in (int, type(None)):
            raise QmedimgError("expected an object with its OpenQASM text in \"qasm\", text \"name\" and \"path\", and "
                               "\"layers\" a whole number or null")
        if (circuit or {}).get("qasm"):
            run_circuit(config, record)  # the pinned circuit builds (cached: loading it again costs nothing)
    except QmedimgError as exc:
        raise QmedimgError(f"{path / 'config.json'}: \"circuit\" is damaged ({exc}); restore the file or train "
                           "again") from None
    return record


def config_differences(run: Path, config: TrainConfig) -> list[str]:
    """'key: recorded -> now' for every config key (``out`` aside) in which the run directory ``run``
    differs from ``config`` (a key the record lacks counts as its default, so runs from before a new
    option still match), and 'circuit file: ...' when the circuit the run pinned is no longer what
    ``config.circuit`` renders to: a grid never reuses a run of another circuit under the same name."""
    record = read_record(run)
    recorded, wanted = record["config"], json.loads(json.dumps(config.model_dump()))
    fields, missing, out = TrainConfig.model_fields, object(), []
    for key in sorted((set(recorded) | set(wanted)) - {"out"}):
        default = fields[key].default if key in fields else missing
        old = recorded.get(key, json.loads(json.dumps(default)) if default is not missing else "(absent)")
        new = wanted.get(key, "(absent)")
        if old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    pinned = (record.get("circuit") or {}).get("qasm")
    if not out and pinned and config.model == "hybrid" and run_circuit(config).qasm != pinned:
        out.append(f"circuit file {config.circuit}: edited since the run was trained (the run keeps the circuit "
                   "it pinned)")
    return out


def checked_data(config: TrainConfig, recorded: str | None) -> Dataset:
    """The run's data (:func:`load_data`), refused if the data file changed since training (``recorded``: the
    sha256 config.json records)."""
    dataset = load_data(config)
    if recorded and dataset.sha256 != recorded:
        raise QmedimgError(f"{dataset.source}: the data file changed since the run was trained "
                           f"(sha256 {dataset.sha256[:12]} != recorded {recorded[:12]})")
    return dataset


def config_and_data(path: Path) -> tuple[TrainConfig, Dataset, CircuitSpec | None]:
    """A run directory's config, its data (refused if the data file changed since training) and its pinned
    circuit (:func:`run_circuit`; None for a baseline CNN), from one read of config.json."""
    record = read_record(path)
    config = make_config(**record["config"])
    dataset = checked_data(config, recorded_sha256(record, path / "config.json"))
    return config, dataset, run_circuit(config, record) if config.model == "hybrid" else None


def load_run(run_dir: str | Path, *, device: str | torch.device = "auto") -> Run:
    """A finished (or interrupted) run with its kept weights loaded, ready to evaluate, its network on
    ``device`` (``auto``: CUDA if there is a GPU) whatever device trained it; the quantum head runs on
    the exact estimator whatever backend it was trained on. Nothing but the run directory is read: the network
    is built from what config.json records of the data (a run recorded before that reads its data file once
    for it), and ``Run.dataset``'s splits are read, checked unchanged since training, when first asked for."""
    device = torch_device(device)
    path = require_run(run_dir)
    record = read_record(path)
    config = make_config(**record["config"])
    load = functools.partial(checked_data, config, recorded_sha256(record, path / "config.json"))
    dataset = RecordedData.from_record(record.get("dataset"), path / "config.json", load) or RecordedData.of(load())
    circuit = run_circuit(config, record) if config.model == "hybrid" else None
    model = build_model(config, dataset, device=device, circuit=circuit)  # evaluation chooses its backend itself
    state = load_checkpoint(path)
    load_weights(model, state["best_model"], path / "checkpoint.pt")
    model.eval()
    metrics_file = path / "metrics.json"
    metrics = read_json(metrics_file) if metrics_file.is_file() else {}
    epoch = state["epoch"] if type(state["epoch"]) is int else None  # metadata here: a damaged one is not asked for
    return Run(path, config, dataset, model, metrics, epoch=epoch)
