"""A trained run as a model that needs only its folder (as a Hugging Face model folder carries its config
beside its weights): what ``config.json`` records beside the run's config — its data (:class:`RecordedData`),
its circuit with the OpenQASM text pinned (:func:`circuit_record`), the package versions (:func:`versions`)
— is enough to build the network and use it on new images without the data it trained on. That data is
read only when a split is asked for, and a test split of one's own (:func:`read_test_split`) stands in for
the run's when the training data is gone.

Example::

    from qmedimg.artifact import RecordedData, read_test_split
    data = RecordedData.from_record(record["dataset"], "runs/breast/config.json", load=lambda: ...)
    data.channels, data.size, data.dims, data.task, data.label_names     # from config.json, no file read
    data.test.images                                                     # now ``load()`` reads the data
    test = read_test_split("hospital-test.npz", data, classes=None)      # test_images and test_labels suffice

``config.json``'s ``"dataset"`` (:meth:`~qmedimg.data.Dataset.info`) has recorded the name, task, label
names, channels and size since the first runs, and ``dims`` since volumes: a record without ``dims`` is a
2D run's (``BEFORE_FIELD``). A record lacking another of them, or none at all, gives ``None``: the run's
data file is then read once for them (:func:`qmedimg.rundir.load_run`).

Both files state their format version, ``"schema"``: config.json's is :data:`CONFIG_SCHEMA` (a file without
one is version 1: every config.json written before the field), read through one migration,
:func:`migrate_record`, one step per version; checkpoint.pt's is :data:`qmedimg.model.CHECKPOINT_SCHEMA`, its
keys typed by :class:`Checkpoint`. A file of a newer schema than this qmedimg knows is refused in one line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import platform
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable, TypedDict

import numpy as np
import torch

from qmedimg.data import MULTI_LABEL, Dataset, Split
from qmedimg.data.datasets import LabelSpace, read_npz, whole_numbers
from qmedimg.errors import QmedimgError
from qmedimg.files import check_schema
from qmedimg.quantum.circuits import CircuitSpec

NEEDED = ("name", "task", "label_names", "channels", "size")  # what building and using the network reads
BEFORE_FIELD = {"dims": 2}  # runs recorded before volumes existed were all on 2D images
TASKS = ("binary-class", "multi-class", MULTI_LABEL)

CONFIG_SCHEMA = 2
"""config.json's format version, written as its ``"schema"``: 1 is every config.json written before the field,
2 the first to record it. Only version 1 gets ``CONFIG_BEFORE_FIELD``: a field missing from a newer file gets
TrainConfig's default, so a config field added later defaults to the behaviour from before it, or comes with a
new version and its step in :data:`MIGRATIONS`."""

# What a config field absent from a version-1 config.json means: the behaviour from before it existed
# (for every model, then for one model: ResNet-18 had the 3×3 stem at every size before ``stem``).
CONFIG_BEFORE_FIELD = {"angle_map": "tanh", "readout": "circuit", "amp": False, "stem": None, "threshold": 0.5,
                       "balanced_sampling": False}
CONFIG_BEFORE_FIELD_OF_MODEL = {"resnet18": {"stem": "3x3"}}


def migrate_record(record: dict, where: str | Path) -> dict:
    """config.json's contents (an object) as this qmedimg writes them (:data:`CONFIG_SCHEMA`): migrated one version
    at a time (:data:`MIGRATIONS`), a new dict; one line naming ``where`` when a newer qmedimg wrote it (or its
    ``"schema"`` is damaged). The file itself is never rewritten: a run's id digests its config as it is on disk.

    Example::

        migrate_record({"config": {"dataset": "synthetic", "out": "runs/a"}}, "runs/a/config.json")
        # {"config": {"angle_map": "tanh", ..., "dataset": "synthetic", "out": "runs/a"}, "schema": 2}
    """
    version = check_schema(where, record.get("schema", 1), CONFIG_SCHEMA)
    for step in range(version, CONFIG_SCHEMA):
        record = {**MIGRATIONS[step](record), "schema": step + 1}
    return record


def _fields_from_before(record: dict) -> dict:
    """Version 1 -> 2: the config fields a run predates mean the behaviour from before them
    (``CONFIG_BEFORE_FIELD``, then ``CONFIG_BEFORE_FIELD_OF_MODEL``); anything else is kept as it is."""
    config = record.get("config")
    if not isinstance(config, dict):  # damaged: said by the reader, which needs a "config" object
        return record
    model = config.get("model", "hybrid")
    before = CONFIG_BEFORE_FIELD_OF_MODEL.get(model, {}) if isinstance(model, str) else {}  # a list is unhashable
    return {**record, "config": {**CONFIG_BEFORE_FIELD, **before, **config}}


MIGRATIONS = {1: _fields_from_before}
"""Version N -> N + 1 of config.json, for each N below :data:`CONFIG_SCHEMA`: a function of the record."""


class _CheckpointCore(TypedDict):
    """The keys every checkpoint holds, and their types (:data:`qmedimg.model.CHECKPOINT_KEYS`)."""

    epoch: int  # the last finished epoch
    model: dict[str, torch.Tensor]  # the network's weights after it (a state_dict)
    averaged: dict[str, torch.Tensor]  # their moving average (``ema_decay``)
    best_model: dict[str, torch.Tensor]  # the weights kept (``select``): what evaluate, predict and explain load
    best: dict  # the kept epoch: {"epoch", "val_auc", "val_acc"}
    optimizer: dict  # AdamW's state_dict
    scheduler: dict  # the learning-rate schedule's state_dict
    generator: torch.Tensor  # the random state of the training images' order and augmentation
    torch_rng: torch.Tensor  # torch's global random state (dropout)
    history: list[dict]  # one row per finished epoch: epoch, train_loss, train_acc, val_loss, val_acc, val_auc
    train_seconds: float  # time in training steps, over all epochs
    trained_samples: int  # images trained on, over all epochs
    wall_seconds: float  # the run's wall-clock time so far


class Checkpoint(_CheckpointCore, total=False):
    """``checkpoint.pt``: what training saves after every epoch (``torch.save``, rewritten atomically) and
    :func:`qmedimg.model.load_checkpoint` reads (``torch.load(weights_only=True)``: tensors, numbers, text, lists
    and dicts, never code). Every checkpoint holds the keys of :data:`qmedimg.model.CHECKPOINT_KEYS` (typed in
    its base class); these three only some."""

    schema: int  # its format version (:data:`qmedimg.model.CHECKPOINT_SCHEMA`); none: 1, the same keys otherwise
    cuda_rng: torch.Tensor  # CUDA's random state, when trained on a GPU
    scaler: dict  # the float16 loss scaler's state_dict, when trained with ``amp``


@dataclass(frozen=True, eq=False)
class RecordedData(LabelSpace):
    """A run's data as its config.json records it, spelled as :class:`~qmedimg.data.Dataset` spells it
    (``name``, ``task``, ``label_names``, ``channels``, ``size``, ``dims``, ``num_classes``,
    ``multi_label``); its ``train``, ``val`` and ``test`` splits come from ``load()`` (the data file,
    checked unchanged since training) the first time one is asked for, and a failure to read them is
    one line, raised each time one is asked for."""

    name: str
    task: str
    label_names: tuple[str, ...]
    channels: int
    size: int
    dims: int
    source: str = ""  # the data file it trained on ("synthetic" for generated data)
    load: Callable[[], Dataset] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, dataset: Dataset) -> RecordedData:
        """A dataset already loaded, as its record would say it."""
        return cls(dataset.name, dataset.task, dataset.label_names, dataset.channels, dataset.size, dataset.dims,
                   dataset.source, load=lambda: dataset)

    @classmethod
    def from_record(cls, record, where: str | Path, load: Callable[[], Dataset]) -> RecordedData | None:
        """config.json's ``"dataset"`` object, checked; None when it predates a field the network needs (or is
        not an object), one line naming ``where`` and the field when a field is damaged."""
        if not isinstance(record, dict) or any(key not in record for key in NEEDED):
            return None
        record = {**BEFORE_FIELD, **record}
        names = record["label_names"]
        count = record.get("num_classes", len(names) if isinstance(names, list) else None)
        checks = {
            "name": isinstance(record["name"], str),
            "task": isinstance(record["task"], str) and record["task"] in TASKS,
            "label_names": isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)
            and (record["task"] != "binary-class" or len(names) == 2),
            "num_classes": type(count) is int and isinstance(names, list) and count == len(names),
            "channels": record["channels"] in (1, 3) and type(record["channels"]) is int,
            "size": type(record["size"]) is int and record["size"] > 0,
            "dims": record["dims"] in (2, 3) and type(record["dims"]) is int
            and (record["dims"] == 2 or record["channels"] == 1),
            "source": isinstance(record.get("source", ""), str),
        }
        bad = next((key for key, fine in checks.items() if not fine), None)
        if bad is not None:
            raise QmedimgError(f"{where}: dataset.{bad} is {str(record.get(bad))!r:.60}, not what the run's data "
                               "recorded; restore the file or train again")
        return cls(record["name"], record["task"], tuple(names), record["channels"], record["size"], record["dims"],
                   record.get("source", ""), load=load)

    @functools.cached_property
    def loaded(self) -> Dataset:
        """The data itself, read once (``load()``)."""
        if self.load is None:
            raise QmedimgError(f"{self.name}: only its record is here, no data to read its splits from")
        return self.load()

    @property
    def train(self) -> Split:
        return self.loaded.train

    @property
    def val(self) -> Split:
        return self.loaded.val

    @property
    def test(self) -> Split:
        return self.loaded.test


def named_classes(dataset: Dataset, names: list[str] | None) -> Dataset:
    """``dataset`` with its classes (a multi-label set's labels) named ``names``, in order: a run's ``class_names``,
    for a data file that names none (then they are "0", "1", ...) or other ones. config.json records them, and
    plots and predictions say them; ``dataset`` itself when ``names`` is None. One line, before anything is
    written, when they are not one distinct, non-empty name per class."""
    if names is None:
        return dataset
    one, kind = ("label", "labels") if dataset.multi_label else ("class", "classes")
    if len(set(names)) != len(names) or not all(name.strip() and name.isprintable() for name in names):
        raise QmedimgError(f"class_names {names!r:.100}: give distinct, non-empty names, one per {one}")
    if len(names) != dataset.num_classes:
        raise QmedimgError(f"class_names: {len(names)} names ({', '.join(names)}), but {dataset.source} has "
                           f"{dataset.num_classes} {kind} ({', '.join(dataset.label_names)}): give one name per "
                           f"{one}, in order")
    return dataclasses.replace(dataset, label_names=tuple(names))


def circuit_record(spec: CircuitSpec) -> dict:
    """What config.json records of a run's circuit, its OpenQASM text pinned (:func:`qmedimg.rundir.run_circuit`
    builds the run's circuit from it)."""
    return {"name": spec.name, "path": str(spec.path), "qubits": spec.num_qubits, "layers": spec.layers,
            "weights": len(spec.weights), "outputs": len(spec.observables), "qasm": spec.qasm,
            "sha256": hashlib.sha256(spec.qasm.encode()).hexdigest()}


def versions() -> dict:
    """The versions of Python and of the packages that produce a run's numbers (config.json's ``versions``)."""
    pkgs = ["qmedimg", "qiskit", "qiskit-aer", "qiskit-machine-learning", "qiskit-ibm-runtime",
            "torch", "medmnist", "numpy"]
    return {"python": platform.python_version(), **{p: version(p) for p in pkgs}}


def recorded_sha256(record: dict, where: str | Path) -> str | None:
    """The sha256 config.json records of the run's data file (None: none recorded), or one line if damaged."""
    recorded = record.get("dataset")
    recorded = recorded.get("sha256") if isinstance(recorded, dict) else None
    if recorded is not None and not isinstance(recorded, str):
        raise QmedimgError(f"{where}: dataset.sha256 is {recorded!r:.40}, not the data file's sha256 text; restore "
                           "the file or train again")
    return recorded


def _shape_text(shape: tuple[int, ...]) -> str:
    """An image's (C, H, W) or a volume's (1, D, H, W) shape as a sentence says it."""
    if len(shape) == 4:
        return f"{'×'.join(map(str, shape[1:]))} volumes"
    return f"{shape[1]}×{shape[2]} {'gray' if shape[0] == 1 else 'RGB'} images"


def read_test_split(path: str | Path, data: RecordedData, classes: list[int] | None = None) -> Split:
    """The test split of a MedMNIST-layout npz (``test_images`` and ``test_labels`` suffice; other arrays
    are not read), as the run's data: gray (N, H, W) or (N, H, W, 1), RGB (N, H, W, 3), volumes (N, D, H, W)
    — channel-first too — of the run's size, uint8 (or whole numbers 0..255); labels in the run's data file's
    numbering, the run's ``classes`` kept and renumbered as in training (every image of the split: a run's
    ``limit`` was for its own data). One line naming the file when it is not the run's kind: another image
    shape, channels or 2D/3D, another task, a label the run does not have, or other ``label_names``.
    """
    path = Path(path).expanduser()
    arrays, names = read_npz(path, ("test_images", "test_labels"),
                             "a test file needs test_images and test_labels (MedMNIST's layout)")
    images, labels = arrays["test_images"], arrays["test_labels"]
    images = _run_images(images, data, path)
    labels = _run_labels(labels, names, data, classes, path)
    if len(labels) != len(images):
        raise QmedimgError(f"{path}: the test split has {len(images)} images but {len(labels)} labels")
    if classes is not None and not data.multi_label:
        keep = labels >= 0
        images, labels = images[keep], labels[keep]
    if len(labels) == 0:
        raise QmedimgError(f"{path}: the test split holds no image of the run's classes ({', '.join(data.label_names)})")
    return Split(np.ascontiguousarray(images), labels)


def _run_images(images: np.ndarray, data: RecordedData, path: Path) -> np.ndarray:
    """``images`` channel-first uint8 if they are the run's kind, else one line naming the layouts it takes."""
    side = (data.size,) * data.dims
    if data.dims == 3:
        layouts = [(*side,), (1, *side)]
    else:
        layouts = [(*side,), (*side, 1), (1, *side)] if data.channels == 1 else [(*side, 3), (3, *side)]
    if images.shape[1:] not in layouts:
        taken = " or ".join(str(("N", *shape)).replace("'", "") for shape in layouts)
        raise QmedimgError(f"{path}: test_images have shape {images.shape}, but the run was trained on "
                           f"{_shape_text((data.channels, *side))}: {taken}")
    if images.ndim == data.dims + 1:
        images = images[:, None]
    elif images.shape[-1] == data.channels and images.shape[1] != data.channels:
        images = images.transpose(0, 3, 1, 2)
    if images.dtype != np.uint8 and not whole_numbers(images, 255):
        raise QmedimgError(f"{path}: test_images have dtype {images.dtype} and values outside whole numbers 0..255; "
                           "expected uint8")
    return images.astype(np.uint8, copy=False)


def _run_labels(labels: np.ndarray, names, data: RecordedData, classes: list[int] | None, path: Path) -> np.ndarray:
    """``labels`` as the run numbers them (-1: an image of a class the run left out), else one line."""
    task = f"the run is {data.task} ({', '.join(data.label_names)})"
    multi = labels.ndim == 2 and labels.shape[1] > 1
    labels = labels.reshape(-1) if labels.ndim == 2 and not multi else labels
    if multi != data.multi_label or labels.ndim != (2 if multi else 1):
        what = "one column per label (multi-label)" if multi else f"of shape {labels.shape}"
        raise QmedimgError(f"{path}: test_labels are {what}, but {task}")
    if not whole_numbers(labels, 1 if multi else 2**53):
        raise QmedimgError(f"{path}: test_labels of dtype {labels.dtype} are not whole numbers "
                           f"{'0 or 1' if multi else '>= 0'}; {task}")
    labels = labels.astype(np.int64)
    width = labels.shape[1] if multi else (len(names) if names is not None else None)
    outside = np.flatnonzero(labels >= width) if width is not None and not multi else []
    if len(outside):
        raise QmedimgError(f"{path}: test_labels hold label {labels[outside[0]]} (index {outside[0]}), outside its "
                           f"{width} label_names")
    if classes is not None and width is not None and max(classes) >= width:
        raise QmedimgError(f"{path}: the run kept classes {classes} of its data, but this file has {width}")
    if classes is not None:
        names = None if names is None else tuple(names[c] for c in classes)
        if multi:
            labels = labels[:, classes]
        else:
            relabel = np.full(max(int(labels.max(initial=0)), *classes) + 1, -1, dtype=np.int64)
            relabel[classes] = np.arange(len(classes))
            labels = relabel[labels]
    if names is not None and names != data.label_names:
        raise QmedimgError(f"{path}: label_names are {', '.join(names)}, but {task}")
    if multi and labels.shape[1] != data.num_classes:
        raise QmedimgError(f"{path}: test_labels have {labels.shape[1]} columns, but {task}")
    outside = np.flatnonzero(labels >= data.num_classes) if not multi else np.array([], dtype=int)
    if outside.size:
        raise QmedimgError(f"{path}: test_labels hold label {labels[outside[0]]} (index {outside[0]}), but {task}: "
                           f"labels 0..{data.num_classes - 1}")
    return labels

