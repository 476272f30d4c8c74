"""Paired bootstrap intervals for differences in accuracy between two evaluations of the same test
images (numpy only, seeded: the same inputs and seed give the same interval on any machine).

Two points of a study evaluated on the same images (say the ideally trained head's exact predictions
and the same head on a noisy device) differ image by image; their ACC difference is the mean of the
per-image differences of correctness (:func:`correct`: 1/0 per image, or the fraction of labels right
for a multi-label task, whose mean is MedMNIST's ACC). Resampling *images* (the same draw for both
points: paired) gives the interval of that difference on this test set; with several training seeds,
:func:`seeded_difference` resamples the *seeds*, then the images within each drawn seed, for the
interval of the mean over seeds (a two-level bootstrap: seed-to-seed spread and test-set sampling).
Intervals are percentile intervals (default 95 %, B = 2000 resamples, seed 0), recorded in the
:class:`Interval` they return.

Example::

    from qmedimg.report.intervals import correct, paired_difference, seeded_difference
    ideal, noisy = correct(labels, ideal_decisions), correct(labels, noisy_decisions)
    paired_difference(ideal, noisy)                    # Interval(estimate=0.031, low=0.006, high=0.056, ...)
    seeded_difference([(ideal_0, noisy_0), (ideal_1, noisy_1), (ideal_2, noisy_2)])   # a 3-seed mean
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES, LEVEL, SEED = 2000, 0.95, 0
CHUNK = 1 << 22  # resampled image indices drawn at a time (bounds memory for large test sets)


@dataclass(frozen=True)
class Interval:
    """A difference (mean of ``a - b``), its percentile interval, and how the interval was drawn."""

    estimate: float
    low: float
    high: float
    level: float
    resamples: int
    seed: int
    seeds: int  # training seeds the estimate averages (1: images resampled only)
    images: int  # test images per seed (the smallest, when they differ)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def all_zero(self) -> bool:
        """Every image scored the same in both: no difference at all on these images (interval [0, 0])."""
        return self.estimate == self.low == self.high == 0

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (e.g. × 100: points of ACC); a negative factor swaps the ends."""
        ends = sorted((self.low * factor, self.high * factor))
        return Interval(self.estimate * factor, ends[0], ends[1], self.level, self.resamples, self.seed,
                        self.seeds, self.images)


def correct(labels, decisions) -> np.ndarray:
    """Per-image correctness (float, one per image): 1/0 for binary and multi-class tasks (labels (N,) or
    (N, 1), decisions (N,)), the fraction of labels decided right for multi-label ones ((N, K) each)."""
    decisions = np.asarray(decisions)
    labels = np.asarray(labels).reshape(decisions.shape if decisions.ndim > 1 else (len(decisions),))
    hits = (labels == decisions).astype(float)
    return hits.reshape(len(hits), -1).mean(axis=1)


def _check(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired scores need two 1-d arrays of one length (the same images), got {a.shape} and "
                         f"{b.shape}")
    return a - b


def _bounds(replicates: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _image_means(diff: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` bootstrap means of ``diff`` (images drawn with replacement), in chunks."""
    n, out = len(diff), []
    per = max(1, CHUNK // n)
    for start in range(0, draws, per):
        idx = rng.integers(0, n, size=(min(per, draws - start), n))
        out.append(diff[idx].mean(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def paired_difference(a, b, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> Interval:
    """mean(a) − mean(b) over the same images (``a``, ``b``: per-image scores, e.g. :func:`correct`) with
    its paired bootstrap percentile interval: ``resamples`` draws of the images with replacement, the same
    draw for both, from ``np.random.default_rng(seed)``."""
    return seeded_difference([(a, b)], resamples=resamples, level=level, seed=seed)


def seeded_difference(pairs, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> Interval:
    """The mean over training seeds of mean(a_s) − mean(b_s) (``pairs``: one (a_s, b_s) per seed, each
    paired on its images), with a two-level bootstrap interval: each of ``resamples`` replicates draws as
    many seeds as there are, with replacement, then the images of each drawn seed with replacement (paired),
    and averages. One seed: the paired image bootstrap. Deterministic given ``seed``."""
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples >= 1, got {level} and {resamples}")
    diffs = [_check(a, b) for a, b in pairs]
    if not diffs:
        raise ValueError("no seed to compare")
    rng = np.random.default_rng(seed)
    k = len(diffs)
    drawn = rng.integers(0, k, size=(resamples, k)) if k > 1 else np.zeros((resamples, 1), dtype=int)
    totals = np.zeros(resamples)
    for s, diff in enumerate(diffs):  # every draw of seed s gets its own image resample
        rows = np.nonzero(drawn == s)[0]  # a replicate that drew s twice appears twice
        np.add.at(totals, rows, _image_means(diff, len(rows), rng))
    low, high = _bounds(totals / k, level)
    estimate = float(np.mean([d.mean() for d in diffs]))
    return Interval(estimate, low, high, level, resamples, seed, k, min(len(d) for d in diffs))
