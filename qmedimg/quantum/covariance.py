"""The statistical error of values that are means over samples (noise trajectories, shots), as each row's
covariance of its values: how it is estimated, drawn from and summed up. Numpy only.

Example::

    from qmedimg.quantum.covariance import covariance_root, largest_error, mean_covariance
    covariance = np.stack([mean_covariance(samples) for samples in per_row])   # (rows, O, O)
    drawn = values + np.einsum("nop,np->no", covariance_root(covariance), rng.standard_normal(values.shape))
    largest_error(covariance)                                                   # the largest standard error
"""

from __future__ import annotations

import numpy as np


def mean_covariance(samples: np.ndarray) -> np.ndarray:
    """The covariance of the mean of ``samples`` (draws, quantities): their sample covariance / draws (infinite
    with one draw). Summed by numpy's own loop, not BLAS: a BLAS product splits the sum over draws between its
    threads as it finds them free (the sampler calls it from several threads at once), so the same draws gave
    covariances that differed in their last digits from run to run."""
    if len(samples) < 2:
        return np.full((samples.shape[1],) * 2, np.inf)
    centered = samples - samples.mean(axis=0)
    return np.einsum("ti,tj->ij", centered, centered) / ((len(samples) - 1) * len(samples))


def covariance_root(covariance: np.ndarray) -> np.ndarray:
    """R with R·Rᵀ = ``covariance`` (…, P, P), stacked as it is: from its eigendecomposition, so a singular
    covariance (an identity label, outputs that move together) has one too (rounding's negative eigenvalues as 0).
    A draw from N(0, covariance) is R·z, z standard normal."""
    eigenvalues, vectors = np.linalg.eigh(np.asarray(covariance, dtype=float))
    return vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[..., None, :]


def largest_error(covariance: np.ndarray) -> float:
    """The largest standard error of one value, from each row's covariance of its values (rows, P, P); 0 with
    no rows."""
    return float(np.sqrt(np.max(np.diagonal(covariance, axis1=-2, axis2=-1)))) if np.size(covariance) else 0.0
