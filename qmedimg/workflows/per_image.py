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
head's values (N, O), (N, 0) for a classical head; on an ``ibm`` backend also the measured values' prediction on the
calibration snapshot, ``predicted_values``, and the shot standard errors ``predicted_se`` and ``measured_se``) and
``images_sha256`` (a digest of the images scored: two files with the same one scored the same images, so they pair
image by image). ``predict`` adds ``files``.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from qmedimg.errors import QmedimgError
from qmedimg.files import write_atomic
from qmedimg.inference import Inference, Outcome


def per_image(inference: Inference, head: Outcome | None = None, labels=None, *, values: bool = False,
              images=None) -> dict[str, np.ndarray]:
    """A per-image file's arrays, keyed by image index, for ``inference``'s images: ``labels`` (None: unknown, left
    out), the probabilities of ``head`` (an :class:`~qmedimg.inference.Outcome` of ``inference``; None: the exact
    head's) and of the exact head, with the run's decisions on both (:meth:`~qmedimg.inference.Inference.decide`,
    the one path's), the threshold and the task; with ``values`` the head values and what the backend adds per
    image (e.g. ``value_covariance`` where values are means over noise trajectories), with ``images`` the digest
    of the images (:func:`images_digest`)."""
    probs = inference.ideal_probs if head is None else head.probs
    ideal_probs = inference.ideal_probs if head is None else head.ideal_probs
    threshold = inference.threshold
    arrays = {"index": np.arange(len(probs)), "probs": np.asarray(probs),
              "decision": inference.decide(probs) if head is None else head.decisions,
              "ideal_probs": np.asarray(ideal_probs), "ideal_decision": inference.decide(ideal_probs),
              "threshold": np.asarray(np.nan if threshold is None else threshold, dtype=float),
              "task": np.asarray(inference.task)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    if values:
        arrays["values"] = np.asarray(inference.ideal if head is None else head.values)
        arrays["ideal_values"] = np.asarray(inference.ideal if head is None else head.ideal)
        if head is not None:  # a QPU run's prediction and shot errors (predicted_values, predicted_se, measured_se)
            arrays.update({k: np.asarray(v) for k, v in head.arrays.items()})
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
