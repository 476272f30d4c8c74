"""The per-image file: what ``evaluate``, ``predict``, ``compare`` and each noise-study point leave beside their
result, so that any metric can be recomputed, a ROC curve drawn or an interval computed, and one command checked
against another image by image. One compressed npz (numpy only, no pickled objects), keyed by image index.

Example::

    from qmedimg.workflows.per_image import read_per_image
    arrays = read_per_image("runs/breast/eval-exact.npz")
    arrays["index"], arrays["labels"], arrays["probs"], arrays["decision"]   # one row per test image
    compute_metrics(arrays["labels"], arrays["probs"], str(arrays["task"]), arrays["threshold"])

Keys (:func:`per_image`): ``index`` (the image's position: in the test split, or in ``predict``'s input order),
``labels`` (absent for ``predict``: it has none), ``probs`` (N, K) and ``decision`` (at the run's threshold),
``ideal_probs`` and ``ideal_decision`` (the exact head's, the same on the exact backend), ``threshold`` (NaN: none,
multi-class; one per label for a multi-label run) and ``task``; where given, ``values`` and ``ideal_values`` (the
head's values (N, O), (N, 0) for a classical head) and ``images_sha256`` (a digest of the images scored: two files
with the same one scored the same images, so they pair image by image). ``predict`` adds ``files``.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from qmedimg.errors import QmedimgError
from qmedimg.files import write_atomic
from qmedimg.metrics import decisions


def per_image(labels, probs, ideal_probs, task: str, threshold, *, values=None, ideal=None,
              images=None) -> dict[str, np.ndarray]:
    """A per-image file's arrays, keyed by image index: ``labels`` (None: unknown, left out), the probabilities of
    the head and of the exact head, both decided at ``threshold`` as the run decides (None: multi-class), the
    threshold and the task; with ``values``/``ideal`` the head values, with ``images`` the digest of the images
    (:func:`images_digest`)."""
    at = () if threshold is None else (threshold,)
    arrays = {"index": np.arange(len(probs)), "probs": np.asarray(probs), "decision": decisions(probs, task, *at),
              "ideal_probs": np.asarray(ideal_probs), "ideal_decision": decisions(ideal_probs, task, *at),
              "threshold": np.asarray(np.nan if threshold is None else threshold, dtype=float),
              "task": np.asarray(task)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    if values is not None:
        arrays["values"], arrays["ideal_values"] = np.asarray(values), np.asarray(ideal)
    if images is not None:
        arrays["images_sha256"] = np.asarray(images_digest(images))
    return arrays


def images_digest(images: np.ndarray) -> str:
    """The sha256 of an image array (its shape, dtype and bytes): equal for the same images in the same order."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.shape}{images.dtype.str}".encode())
    digest.update(images.tobytes())
    return digest.hexdigest()


def write_per_image(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write a per-image file (compressed npz) atomically: a temporary file, then ``os.replace``."""
    return write_atomic(Path(path), lambda handle: np.savez_compressed(handle, **arrays))


def read_per_image(path: str | Path) -> dict[str, np.ndarray]:
    """A per-image file's arrays, or one line naming a missing or damaged file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QmedimgError(f"{path}: cannot read the per-image outputs ({' '.join(str(exc).split())[:80]})") from None
