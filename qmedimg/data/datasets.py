"""Datasets: MedMNIST 2D flags, your own MedMNIST-layout npz files, and a synthetic toy set.

Everything comes back as a `Dataset` of three `Split`s holding uint8 images (N, C, H, W) or, for the
3D sets and npz files of volumes, uint8 volumes (N, 1, D, H, W) (`Dataset.dims` says which),
and int64 labels (N,). All user mistakes raise `QmedimgError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from qmedimg.data.npz import KEYS, SPLITS, digests, read_npz  # noqa: F401 (KEYS, read_npz: read here too)
from qmedimg.data.synthetic import SYNTHETIC_LABELS, VOLUME_LABELS, synthetic_images, synthetic_volumes
from qmedimg.errors import QmedimgError

SIZES = (28, 64, 128, 224)
VOLUME_SIZES = (28, 64)  # MedMNIST 3D: 28³ and MedMNIST+'s 64³
MULTI_LABEL = "multi-label, binary-class"  # MedMNIST's task name for ChestMNIST-like data
DOWNLOAD_TIMEOUT = 20  # seconds of network silence before a download attempt gives up
MIN_SIDE = 4  # the smallest image/volume side the CNN backbones take (two 2× max-pools down to one pixel)
MAX_LABEL = 2**53  # the largest class label read: every integer up to it is exact in float64 and in int64


@dataclass(frozen=True, eq=False)
class Split:
    images: np.ndarray  # uint8, (N, C, H, W); volumes: (N, 1, D, H, W)
    labels: np.ndarray  # int64, (N,); multi-label: (N, K) of 0/1


class LabelSpace:
    """What a data set's ``label_names`` and ``task`` say of the network's outputs: shared by a loaded
    :class:`Dataset` and a run's record of one (:class:`qmedimg.artifact.RecordedData`)."""

    label_names: tuple[str, ...]
    task: str

    @property
    def num_classes(self) -> int:
        """Classes, or labels of a multi-label dataset: the network's outputs."""
        return len(self.label_names)

    @property
    def multi_label(self) -> bool:
        """Labels (N, K) of 0/1, one sigmoid output each (MedMNIST's "multi-label, binary-class")."""
        return self.task == MULTI_LABEL


@dataclass(frozen=True, eq=False)
class Dataset(LabelSpace):
    name: str
    task: str  # "binary-class", "multi-class" or "multi-label, binary-class"
    label_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    source: str  # path of the npz read, or "synthetic"
    sha256: str  # of that npz ("" for synthetic)
    md5_matches_medmnist: bool | None = None  # for a file named like a MedMNIST set: is it MedMNIST's published one?

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def size(self) -> int:
        """The side of its (square) images or (cubic) volumes."""
        return int(self.train.images.shape[-1])

    @property
    def dims(self) -> int:
        """2 for images (N, C, H, W), 3 for volumes (N, 1, D, H, W): what the model and readers ask."""
        return int(self.train.images.ndim - 2)

    def info(self) -> dict:
        """A JSON-able summary (for run records and `qmedimg data info`)."""
        splits = {name: getattr(self, name) for name in SPLITS}
        return {
            "name": self.name, "task": self.task, "label_names": list(self.label_names),
            "num_classes": self.num_classes, "channels": self.channels, "size": self.size, "dims": self.dims,
            "splits": {name: len(s.labels) for name, s in splits.items()},
            "class_counts": {name: (s.labels.sum(axis=0).tolist() if self.multi_label else
                                    np.bincount(s.labels, minlength=self.num_classes).tolist())
                             for name, s in splits.items()},  # multi-label: positives per label
            "source": self.source, "sha256": self.sha256,
            **({} if self.md5_matches_medmnist is None else {"md5_matches_medmnist": self.md5_matches_medmnist}),
        }


def load_dataset(dataset: str | None = None, *, data_file: str | Path | None = None,
                 data_root: str | Path | None = None, size: int = 28,
                 classes: Sequence[int] | None = None, limit: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load a dataset as channel-first uint8 images and int64 labels.

        >>> ds = load_dataset("breastmnist", data_root="/data/medmnist")   # reads breastmnist.npz
        >>> ds = load_dataset(data_file="hospital.npz", classes=[3, 7], limit=200)
        >>> ds = load_dataset("synthetic", seed=1)                          # no files needed
        >>> ds.train.images.shape, ds.label_names
        ((256, 1, 28, 28), ('blob', 'ring'))

    `dataset` is a MedMNIST 2D flag or "synthetic"; `data_file` is any npz with the six
    MedMNIST arrays (give exactly one). A missing MedMNIST file (`{root}/{flag}.npz`, or
    `{flag}_{size}.npz` for size > 28; root defaults to ~/.medmnist) is downloaded via medmnist.
    `classes` keeps those labels and renumbers them in the order given; `limit` keeps a seeded
    random subset of at most that many samples per split, in the original order.
    """
    if (dataset is None) == (data_file is None):
        raise QmedimgError("give exactly one of dataset (a MedMNIST flag or 'synthetic') or data_file (an npz path)")
    if data_file is not None:
        if data_root is not None:
            raise QmedimgError("data_root is only for MedMNIST flags; with data_file give the npz path itself")
        path = Path(data_file).expanduser()
        arrays, names = read_npz(path)
        ds = _build(path.stem, arrays, names, path)
        if size != 28 and size != ds.size:
            shape = f"{ds.size}³ volumes" if ds.dims == 3 else f"{ds.size}x{ds.size} images"
            raise QmedimgError(f"{path} holds {shape} but size={size} was requested")
    elif dataset.strip().lower() == "synthetic":
        _check_size(size)
        arrays = synthetic_images((256, 64, 64), size, 1, 2, seed)
        ds = _build("synthetic", arrays, SYNTHETIC_LABELS[:2], None)
    else:
        flag, path = _flag_file(dataset, data_root, size)
        labels = _medmnist_info()[flag]["label"]
        ds = _build(flag, read_npz(path)[0], tuple(labels[str(i)] for i in range(len(labels))), path, medmnist=True)
        if ds.size != size:  # e.g. a 28×28 file saved under MedMNIST+'s name for 64×64
            raise QmedimgError(f"{path} holds {ds.size}x{ds.size} images but its name says size {size} "
                               f"(MedMNIST names files {flag}.npz for 28, {flag}_{{size}}.npz for 64/128/224)")
    ds = _select(ds, classes, limit, seed)
    if ds.md5_matches_medmnist is False:  # said once the file is accepted, never before a refusal
        _warn_unpublished(ds.source, published_md5(Path(ds.source).name))
    return ds


def write_synthetic_npz(path: str | Path, *, n_train: int = 96, n_val: int = 32, n_test: int = 32,
                        size: int = 28, channels: int = 1, num_classes: int = 2, seed: int = 0,
                        volumes: bool = False) -> Path:
    """Write a learnable synthetic dataset as a MedMNIST-layout npz (with `label_names`); return its path.
    ``volumes=True``: gray volumes (N, size, size, size) as MedMNIST's 3D sets, class 0 a blob, 1 a shell,
    2/3 a bar along the first/second axis (:func:`qmedimg.data.synthetic.synthetic_volumes`)."""
    path = Path(path).expanduser()
    if volumes:
        if channels != 1:
            raise QmedimgError(f"synthetic volumes have 1 channel, not {channels}")
        arrays, names = synthetic_volumes((n_train, n_val, n_test), size, num_classes, seed), VOLUME_LABELS
    else:
        arrays = synthetic_images((n_train, n_val, n_test), size, channels, num_classes, seed)
        names = SYNTHETIC_LABELS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # an open file keeps numpy from appending ".npz" to the name
        np.savez_compressed(f, **arrays, label_names=np.array(names[:num_classes]))
    return path


def parse_classes(text: str) -> list[int]:
    """Parse a --classes value: "3,7" -> [3, 7]."""
    try:
        return [int(part) for part in text.split(",")]
    except (ValueError, AttributeError):
        raise QmedimgError(f"bad classes value {text!r}: expected comma-separated integer labels like '3,7'") from None


def _check_size(size, sizes: tuple[int, ...] = SIZES) -> None:
    if size not in sizes or isinstance(size, bool):
        what = " for 3D datasets" if sizes == VOLUME_SIZES else ""
        raise QmedimgError(f"size {size!r} is not available{what}; choose one of {', '.join(map(str, sizes))}")


def _medmnist_info() -> dict:
    """medmnist.INFO, read from medmnist/info.py directly: `import medmnist` pulls in torch (~5 s). Read anew on each
    call (about a millisecond): nothing is kept between calls."""
    if "medmnist" in sys.modules:
        return sys.modules["medmnist"].INFO
    spec = importlib.util.find_spec("medmnist")
    if spec is None or spec.origin is None:
        raise QmedimgError("the medmnist package is not installed; run: pip install medmnist")
    info_spec = importlib.util.spec_from_file_location("_qmedimg_medmnist_info", Path(spec.origin).with_name("info.py"))
    module = importlib.util.module_from_spec(info_spec)
    info_spec.loader.exec_module(module)
    return module.INFO


def _flag_file(dataset: str, data_root, size: int) -> tuple[str, Path]:
    """Validate a MedMNIST flag and return (flag, path of its npz), downloading it if missing."""
    info = _medmnist_info()
    flag = dataset.strip().lower()
    if flag not in info:
        raise QmedimgError(f"unknown dataset {dataset!r}; choose synthetic or one of: {', '.join(info)}")
    _check_size(size, VOLUME_SIZES if flag.endswith("3d") else SIZES)
    root = Path(data_root).expanduser() if data_root is not None else Path.home() / ".medmnist"
    suffix = "" if size == 28 else f"_{size}"
    path = root / f"{flag}{suffix}.npz"
    if not path.is_file() and not _download(info[flag]["python_class"], root, size, path):
        url, md5 = info[flag][f"url{suffix}"], info[flag][f"MD5{suffix}"]
        raise QmedimgError(f"{path} not found and could not be downloaded; put it there or pass --data-root DIR; "
                           f"download: {url} (MD5 {md5})")
    return flag, path


def _download(python_class: str, root: Path, size: int, path: Path) -> bool:
    """Try medmnist's own downloader; False (never an exception) if it fails."""
    old_timeout = socket.getdefaulttimeout()
    created = not root.exists()  # a folder made for a download that fails is removed again
    try:
        import medmnist
        root.mkdir(parents=True, exist_ok=True)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # medmnist/torchvision set no timeout of their own
        getattr(medmnist, python_class)(split="train", root=str(root), size=size, download=True)
        return path.is_file()
    except Exception:
        path.unlink(missing_ok=True)  # a partial download
        if created:
            shutil.rmtree(root, ignore_errors=True)
        return False
    finally:
        socket.setdefaulttimeout(old_timeout)


def _images(a: np.ndarray, where: str) -> np.ndarray:
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif a.ndim == 4 and a.shape[1] not in (1, 3):  # volumes (N, D, H, W), as MedMNIST's 3D sets
        a = a[:, None]
    elif a.ndim == 5 and a.shape[1] == 1:  # volumes (N, 1, D, H, W)
        pass
    elif not (a.ndim == 4 and a.shape[1] in (1, 3)):
        raise QmedimgError(f"{where} has shape {a.shape}; expected (N, H, W) gray or (N, H, W, 3) RGB images, "
                           "or (N, D, H, W) volumes")
    if a.dtype != np.uint8 and not whole_numbers(a, 255):
        raise QmedimgError(f"{where} has dtype {a.dtype} and values outside whole numbers 0..255; expected uint8")
    return np.ascontiguousarray(a, dtype=np.uint8)


def _labels(a: np.ndarray, where: str) -> np.ndarray:
    """Class labels (N,) from (N,) or (N, 1); or, for multi-label data (N, K) with K > 1, 0/1 per label."""
    if a.ndim == 2 and a.shape[1] > 1:
        if not whole_numbers(a, 1):
            bad = a[(a != 0) & (a != 1)].reshape(-1)[:1]
            raise QmedimgError(f"{where} has shape {a.shape}: multi-label data (one column per label) must hold 0 or 1, "
                               f"found {bad[0] if bad.size else a.dtype}")
        return a.astype(np.int64)
    a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
    if a.ndim != 1 or not whole_numbers(a, MAX_LABEL):  # beyond it a float or uint64 label wraps in int64
        raise QmedimgError(f"{where} has shape {a.shape} dtype {a.dtype}; expected integer labels >= 0 of shape (N, 1)")
    return a.astype(np.int64)


def whole_numbers(a: np.ndarray, high: float) -> bool:
    """True if `a` is numeric and every value is a whole number in 0..high (finite: inf == floor(inf))."""
    if a.dtype.kind not in "biuf":
        return False
    return a.size == 0 or bool(np.all(np.isfinite(a)) and np.all(a == np.floor(a)) and a.min() >= 0
                               and a.max() <= high)


def _build(name: str, arrays: dict, label_names: tuple[str, ...] | None, path: Path | None,
           medmnist: bool = False) -> Dataset:
    """Validate MedMNIST-layout arrays and make a Dataset (source/sha256 from `path`; ``medmnist``:
    `label_names` are the flag `name`'s classes in MedMNIST's INFO)."""
    where = str(path) if path is not None else name
    splits = {}
    for s in SPLITS:
        images = _images(arrays[f"{s}_images"], f"{where}: {s}_images")
        labels = _labels(arrays[f"{s}_labels"], f"{where}: {s}_labels")
        if len(images) != len(labels):
            raise QmedimgError(f"{where}: split '{s}' has {len(images)} images but {len(labels)} labels")
        splits[s] = Split(images, labels)
    shapes = {s: sp.images.shape[1:] for s, sp in splits.items()}
    if len(set(shapes.values())) > 1:
        raise QmedimgError(f"{where}: splits have different image shapes (C, H, W): {shapes}")
    sides = shapes["train"][1:]
    if len(set(sides)) != 1:
        kind = "volumes" if len(sides) == 3 else "images"
        raise QmedimgError(f"{where}: {kind} are {'x'.join(map(str, sides))}; expected {kind} of equal sides "
                           f"({'cubic' if len(sides) == 3 else 'square'})")
    if sides[0] < MIN_SIDE:
        kind = "volumes" if len(sides) == 3 else "images"
        raise QmedimgError(f"{where}: {kind} are {'x'.join(map(str, sides))}; qmedimg's networks pool them twice "
                           f"by 2 and need sides of at least {MIN_SIDE} (MedMNIST's are {', '.join(map(str, SIZES))})")
    widths = {sp.labels.shape[1] if sp.labels.ndim == 2 else 0 for sp in splits.values()}
    if len(widths) > 1:
        raise QmedimgError(f"{where}: splits disagree on the labels: one label per image in some, one column per "
                           "label (multi-label) in others")
    if widths != {0}:
        return _multi_label(name, splits, label_names, path, where)
    label_names = _check_labels(splits, label_names, where, name if medmnist else None)
    if len(label_names) < 2:
        raise QmedimgError(f"{where}: found {len(label_names)} class(es); a classification dataset needs at least 2")
    task = "binary-class" if len(label_names) == 2 else "multi-class"
    return Dataset(name, task, tuple(label_names), **splits, **_identity(path))


def _check_labels(splits: dict, label_names: tuple[str, ...] | None, where: str, flag: str | None) -> tuple[str, ...]:
    """The class names, after checking every split's labels against them, so that one stray label
    never silently makes a larger task. ``label_names`` (a MedMNIST flag's INFO, an npz's
    ``label_names``) declare the classes 0..K-1; without them the train split's labels are the
    classes and must be 0..K-1 without gaps. A label outside is one line naming the split, the
    value and the valid labels."""
    if label_names is None:
        present = [int(v) for v in np.unique(splits["train"].labels)]
        count = next((i for i, v in enumerate(present) if v != i), len(present))  # 0..count-1 all occur
        if count < len(present):
            missing = f"{count}" if present[count] == count + 1 else f"{count}..{present[count] - 1}"
            raise QmedimgError(f"{where}: train_labels holds label {present[count]} but no label {missing}: without a "
                               "label_names array the classes are the train split's labels, numbered 0..K-1 without "
                               f"gaps (valid labels here: {', '.join(map(str, range(count))) or 'none'}); fix the "
                               "labels or add a label_names array naming every class")
        label_names, declared = tuple(str(i) for i in range(count)), "the train split's labels"
        if count < 2:
            return label_names  # refused by the caller: too few classes to classify
        valid = ", ".join(label_names)
    else:
        declared = f"MedMNIST's classes for {flag}" if flag else f"its {len(label_names)} label_names"
        valid = ", ".join(f"{i}={n}" for i, n in enumerate(label_names))
    for s in SPLITS:
        labels = splits[s].labels
        outside = np.flatnonzero(labels >= len(label_names))
        if outside.size:
            first = int(outside[0])
            more = f", {outside.size - 1} more outside" if outside.size > 1 else ""
            raise QmedimgError(f"{where}: {s}_labels holds label {labels[first]} (index {first}{more}), outside "
                               f"{declared}; valid labels: {valid}")
    return tuple(label_names)


def _multi_label(name: str, splits: dict, label_names, path: Path | None, where: str) -> Dataset:
    """A multi-label dataset (MedMNIST's task "multi-label, binary-class", e.g. ChestMNIST's 14 findings)."""
    count = splits["train"].labels.shape[1]
    if label_names is None:
        label_names = tuple(str(i) for i in range(count))
    elif len(label_names) != count:
        raise QmedimgError(f"{where}: labels have {count} columns but there are {len(label_names)} label_names")
    return Dataset(name, MULTI_LABEL, tuple(label_names), **splits, **_identity(path))


def _identity(path: Path | None) -> dict:
    """Which file a dataset is: its path and sha256, and for a file named like a MedMNIST set whether its MD5 is
    the one MedMNIST publishes (:func:`load_dataset` warns when it is not)."""
    if path is None:
        return {"source": "synthetic", "sha256": ""}
    sha256, md5 = digests(path)
    published = published_md5(path.name)
    return {"source": str(path.resolve()), "sha256": sha256,
            "md5_matches_medmnist": None if published is None else md5 == published}


def published_md5(filename: str) -> str | None:
    """The MD5 MedMNIST publishes for a file of this name ('breastmnist.npz', 'breastmnist_64.npz'), or None for
    any other name (or without the medmnist package to ask)."""
    flag, _, size = filename.lower().removesuffix(".npz").partition("_")
    if not flag.endswith(("mnist", "mnist3d")):  # no MedMNIST name: its registry need not be read
        return None
    try:
        entry = _medmnist_info().get(flag)
    except QmedimgError:
        return None
    return entry.get(f"MD5_{size}" if size else "MD5") if entry and filename.lower().endswith(".npz") else None


class UnpublishedDataWarning(UserWarning):
    """A file named like a MedMNIST set (``breastmnist.npz``) whose MD5 is not the one MedMNIST publishes for it."""


def _warn_unpublished(path: str, published: str) -> None:
    """Say that the file is not MedMNIST's own: a Python warning, which Python's default filter shows once per file
    and process (and ``-W``/``warnings.filterwarnings`` can silence); the command line prints it as one line."""
    warnings.warn(f"{path} is named like a MedMNIST file but is not MedMNIST's (its MD5 is not the published "
                  f"{published}): results are not comparable with published MedMNIST figures",
                  UnpublishedDataWarning)  # raised here, so said once per file whoever loads it


def _select(ds: Dataset, classes: Sequence[int] | None, limit: int | None, seed: int) -> Dataset:
    """Apply the `classes` filter/relabelling, then the per-split `limit`."""
    splits = {s: getattr(ds, s) for s in SPLITS}
    names, task = ds.label_names, ds.task
    if classes is not None and task == MULTI_LABEL:  # keep those labels' columns, every image
        valid = f"valid labels for {ds.name}: " + ", ".join(f"{i}={n}" for i, n in enumerate(ds.label_names))
        wanted = list(classes)
        if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < ds.num_classes
               for c in wanted) or len(set(wanted)) != len(wanted) or len(wanted) < 2:
            raise QmedimgError(f"classes {wanted} must name at least 2 different labels; {valid}")
        splits = {s: Split(sp.images, sp.labels[:, wanted]) for s, sp in splits.items()}
        names, classes = tuple(ds.label_names[c] for c in wanted), None
    if classes is not None:
        valid = f"valid labels for {ds.name}: " + ", ".join(f"{i}={n}" for i, n in enumerate(ds.label_names))
        wanted = list(classes)
        for c in wanted:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < ds.num_classes:
                raise QmedimgError(f"class {c!r} does not exist; {valid}")
        if len(set(wanted)) != len(wanted) or len(wanted) < 2:
            raise QmedimgError(f"classes {wanted} must name at least 2 different labels; {valid}")
        relabel = np.full(ds.num_classes, -1, dtype=np.int64)
        relabel[wanted] = np.arange(len(wanted))
        for s, sp in splits.items():
            new = relabel[sp.labels]
            splits[s] = Split(sp.images[new >= 0], new[new >= 0])
        names = tuple(ds.label_names[c] for c in wanted)
        task = "binary-class" if len(wanted) == 2 else "multi-class"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit <= 0:
            raise QmedimgError(f"limit {limit!r} must be a positive number of samples per split")
        rng = np.random.default_rng(seed)
        for s, sp in splits.items():
            if len(sp.labels) > limit:
                keep = np.sort(rng.choice(len(sp.labels), size=limit, replace=False))
                splits[s] = Split(sp.images[keep], sp.labels[keep])
    return dataclasses.replace(ds, label_names=names, task=task, **splits)
