"""Generated, learnable data in MedMNIST's layout, for demos and tests: 2D images (a blob, a ring, bars)
and 3D volumes (a blob, a shell, bars), at random places with noise, uint8 like MedMNIST's files.

Example::

    from qmedimg.data.synthetic import synthetic_images, synthetic_volumes
    arrays = synthetic_images((96, 32, 32), size=28, channels=1, num_classes=2, seed=0)   # train/val/test
    arrays["train_images"].shape                                           # (96, 28, 28)
    synthetic_volumes((16, 8, 8), size=28, num_classes=2, seed=0)["val_images"].shape   # (8, 28, 28, 28)

Most users write a file with :func:`qmedimg.data.write_synthetic_npz` instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qmedimg.errors import QmedimgError

SPLITS = ("train", "val", "test")
SYNTHETIC_LABELS = ("blob", "ring", "horizontal bar", "vertical bar")  # synthetic_images' classes
VOLUME_LABELS = ("blob", "shell", "bar along axis 0", "bar along axis 1")  # synthetic_volumes' classes


def synthetic_images(counts: Sequence[int], size: int, channels: int, num_classes: int,
                     seed: int) -> dict[str, np.ndarray]:
    """MedMNIST-layout arrays: class 0 blob, 1 ring, 2 horizontal bar, 3 vertical bar; random places, noise."""
    if not 2 <= num_classes <= len(SYNTHETIC_LABELS):
        raise QmedimgError(f"synthetic num_classes={num_classes}; choose 2..{len(SYNTHETIC_LABELS)}")
    if channels not in (1, 3) or size < 8 or min(counts) < 0:
        raise QmedimgError(f"synthetic data needs channels 1 or 3, size >= 8 and split sizes >= 0; "
                           f"got channels={channels} size={size} splits={tuple(counts)}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    tint = np.array([1.0, 0.8, 0.6])  # RGB images are tinted, not gray copies
    arrays = {}
    for split, n in zip(SPLITS, counts):
        labels = rng.permutation(np.arange(n) % num_classes)
        images = np.empty((n, size, size, channels) if channels == 3 else (n, size, size), dtype=np.uint8)
        for i, label in enumerate(labels):
            cy, cx, r = *rng.uniform(0.3, 0.7, 2), rng.uniform(0.15, 0.25)
            dy, dx = yy - cy, xx - cx
            dist = np.hypot(dy, dx)
            if label == 0:
                shape = np.exp(-((dist / (0.6 * r)) ** 2))
            elif label == 1:
                shape = np.exp(-(((dist - r) / 0.05) ** 2))
            else:  # a bar through the centre, horizontal (2) or vertical (3)
                across, along = (dy, dx) if label == 2 else (dx, dy)
                shape = np.exp(-((across / 0.05) ** 2)) * (np.abs(along) < r)
            img = 20 + 200 * shape + rng.normal(0, 20, shape.shape)
            images[i] = np.clip(img[..., None] * tint if channels == 3 else img, 0, 255)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.uint8)[:, None]
    return arrays


def synthetic_volumes(counts: Sequence[int], size: int, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    """MedMNIST-layout arrays of volumes (N, size, size, size) uint8 and labels (N, 1): class 0 a solid
    blob, 1 a hollow shell, 2 and 3 a bar along the first or second axis (``VOLUME_LABELS``); random
    centres and radii, Gaussian noise. Learnable in one epoch of a small 3D CNN."""
    if not 2 <= num_classes <= len(VOLUME_LABELS):
        raise QmedimgError(f"synthetic volumes: num_classes={num_classes}; choose 2..{len(VOLUME_LABELS)}")
    if size < 8 or min(counts) < 0:
        raise QmedimgError(f"synthetic volumes need size >= 8 and split sizes >= 0; got size={size} "
                           f"splits={tuple(counts)}")
    rng = np.random.default_rng(seed)
    grid = np.mgrid[0:size, 0:size, 0:size] / (size - 1)  # (3, S, S, S)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        labels = rng.permutation(np.arange(n) % num_classes)
        volumes = np.empty((n, size, size, size), dtype=np.uint8)
        for i, label in enumerate(labels):
            centre, r = rng.uniform(0.35, 0.65, 3), rng.uniform(0.18, 0.26)
            offset = grid - centre[:, None, None, None]
            dist = np.sqrt((offset**2).sum(0))
            if label == 0:
                shape = np.exp(-((dist / (0.6 * r)) ** 2))
            elif label == 1:
                shape = np.exp(-(((dist - r) / 0.06) ** 2))
            else:  # a bar through the centre along axis 0 (2) or axis 1 (3)
                along = label - 2
                across = np.sqrt(sum(offset[a] ** 2 for a in range(3) if a != along))
                shape = np.exp(-((across / 0.06) ** 2)) * (np.abs(offset[along]) < r)
            volumes[i] = np.clip(20 + 200 * shape + rng.normal(0, 20, shape.shape), 0, 255)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = volumes, labels.astype(np.uint8)[:, None]
    return arrays
