"""MedMNIST-layout npz files, read safely and identified: their arrays without ever unpickling anything, and their
digests (the sha256 a run records; the MD5 MedMNIST publishes for its own files) in one pass over the file.

Example::

    from qmedimg.data.npz import digests, read_npz
    arrays, names = read_npz(Path("hospital.npz"))     # the six arrays, and label_names (or None)
    sha256, md5 = digests(Path("breastmnist.npz"))      # read once: ~2 ms for a 28×28 set's 0.5 MB

A MedMNIST-layout npz (:data:`LAYOUT`) holds numeric arrays only. An array of Python objects is refused by
name, never loaded: unpickling it could run code, so no option of qmedimg loads one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from qmedimg.errors import QmedimgError

SPLITS = ("train", "val", "test")
KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))
LAYOUT = ("a MedMNIST-layout npz holds uint8 arrays train_images, val_images, test_images ((N, H, W) gray, "
          "(N, H, W, 3) RGB or (N, D, H, W) volumes), integer arrays train_labels, val_labels, test_labels ((N, 1)) "
          "and optionally label_names (strings)")
"""What a data file must hold, said where one does not."""


def read_npz(path: Path, keys: tuple[str, ...] = KEYS,
             needs: str = f"a data file needs {', '.join(KEYS)}") -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    """Read ``keys`` (the six MedMNIST arrays) and the optional label_names from an npz, never unpickling;
    one line naming the file when it is missing, unreadable or lacks a key (``needs`` says what it needs),
    and the file and key when an array holds Python objects.

    Example::

        arrays, names = read_npz(Path("test.npz"), ("test_images", "test_labels"), "a test file needs both")
    """
    if not path.is_file():
        raise QmedimgError(f"data file {path} not found")
    problem = _not_a_zip(path)
    if problem:
        raise QmedimgError(f"{path} is not a readable npz archive: {problem}; {LAYOUT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise QmedimgError(f"{path} has no '{missing[0]}' array; {needs}")
            arrays = {key: _array(npz, key, path) for key in keys}
            names = _array(npz, "label_names", path) if "label_names" in npz.files else None
    except QmedimgError:
        raise
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        if "pickle" in reason:  # numpy's advice to unpickle is never passed on
            reason = "an array that is no plain numeric array"
        raise QmedimgError(f"{path} is not a readable npz archive ({reason}); {LAYOUT}") from None
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise QmedimgError(f"{path}: label_names must be a 1-D array of strings, not {names.dtype} {names.shape}")
        names = tuple(str(n) for n in names)
    return arrays, names


def _not_a_zip(path: Path) -> str | None:
    """What the file is when it is no zip archive (an npz is one), from its first bytes; None for a zip."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    if head.startswith(b"PK"):
        return None
    if head.startswith(b"\x93NUMPY"):
        return "it holds a single .npy array, not named arrays"
    if head[:1] == b"\x80":
        return "it is a Python pickle, which qmedimg never loads (unpickling can run code)"
    return "it is empty" if not head else "no zip archive of arrays (damaged, or another kind of file)"


def _array(npz, key: str, path: Path) -> np.ndarray:
    """``npz[key]``, or one line naming the file and the key when it holds Python objects (pickled)."""
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" not in str(exc) and "Object arrays" not in str(exc):
            raise
    raise QmedimgError(f"{path}: '{key}' holds Python objects, which qmedimg never loads (unpickling them could run "
                       f"code); {LAYOUT}")


def digests(path: Path) -> tuple[str, str]:
    """(sha256, MD5) of the file, read once: the sha256 a run records, the MD5 MedMNIST publishes for its files."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()
