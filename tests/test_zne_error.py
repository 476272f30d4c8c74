"""The statistical error of a zero-noise-extrapolated value from noise trajectories: what the extrapolation does
to the trajectories' errors, drawn through the extrapolator itself (exponential) or exactly (linear), so that a
readout+zne row states the error its values really have."""

import numpy as np
import pytest

from qmedimg.backends import BackendContext, device_estimator, get_backend
from qmedimg.backends.noise import extrapolate, extrapolation_covariance
from qmedimg.quantum.circuits import load_circuit

FACTORS = [1.0, 3.0, 5.0]


def replicate_spread(truth: np.ndarray, sigma: np.ndarray, method: str, replicates: int = 6000) -> np.ndarray:
    """The standard deviation of extrapolate() over many independent trajectory draws of the values."""
    noise = np.random.default_rng(123).standard_normal((replicates,) + truth.shape)
    return np.stack([extrapolate(FACTORS, truth + sigma * e, method) for e in noise]).std(axis=0)


def extrapolation_error(truth: np.ndarray, sigma: np.ndarray, method: str) -> np.ndarray:
    """The stated standard error of each extrapolated value when the values (factors, values) carry independent
    errors ``sigma``: one row whose covariances are diagonal."""
    covariances = np.stack([np.diag(s**2) for s in sigma])[:, None]  # (factors, 1 row, values, values)
    return np.sqrt(np.diagonal(extrapolation_covariance(FACTORS, truth[:, :, None], covariances, method)[0]))


def test_an_exponential_extrapolations_error_is_the_spread_of_its_results_not_the_lines():
    amplitudes = np.array([0.6, 0.2, 0.08])
    truth = np.stack([amplitudes * np.exp(-0.45 * f) for f in FACTORS])  # (factors, values): decays to 0.006
    sigma = np.full_like(truth, 0.004)  # about what 1,000 trajectories give
    spread = replicate_spread(truth, sigma, "exponential")
    reported = extrapolation_error(truth, sigma, "exponential")
    np.testing.assert_allclose(reported, spread, rtol=0.25)  # 400 draws against 6,000: a heavy tail at 0.08
    # the first-order figure of the line's weights (what was reported before) misses the amplification y0/y_i
    weights = np.linalg.pinv(np.stack([np.ones(3), FACTORS], axis=1))[0]
    assert np.sqrt(np.sum(weights**2)) * 0.004 < 0.3 * spread.min()


def test_a_linear_extrapolations_error_is_exact():
    truth = np.stack([np.array([0.5, -0.1]) - 0.08 * f for f in FACTORS])
    sigma = np.array([[0.01, 0.02], [0.015, 0.01], [0.03, 0.005]])
    noise = np.random.default_rng(5).standard_normal((20000,) + truth.shape)
    results = np.stack([extrapolate(FACTORS, truth + sigma * e, "linear") for e in noise])
    np.testing.assert_allclose(extrapolation_error(truth, sigma, "linear"), results.std(axis=0), rtol=0.03)


@pytest.mark.parametrize("method", ["linear", "exponential"])
def test_errors_a_rows_values_share_at_each_factor_stay_shared_after_extrapolation(method):
    """Two values of one row from the same trajectories (correlation 0.9 at every factor): the stated covariance
    of their extrapolations is what replicate extrapolations give, off the diagonal too."""
    truth = np.stack([np.array([0.6, 0.5]) * np.exp(-0.3 * f) for f in FACTORS])  # (factors, 2 values)
    sigma = np.array([0.004, 0.005])
    shared = 0.9 * np.outer(sigma, sigma) + 0.1 * np.diag(sigma**2)
    covariances = np.tile(shared, (3, 1, 1, 1))  # (factors, 1 row, 2, 2)
    stated = extrapolation_covariance(FACTORS, truth[:, :, None], covariances, method)[0]
    draws = np.random.default_rng(9).multivariate_normal(np.zeros(2), shared, size=(6000, 3))  # replicates, factors
    replicates = np.stack([extrapolate(FACTORS, truth + d, method) for d in draws])
    observed = np.cov(replicates.T)
    np.testing.assert_allclose(stated, observed, rtol=0.15)
    assert stated[0, 1] > 0.8 * np.sqrt(stated[0, 0] * stated[1, 1])


@pytest.mark.parametrize("simulator", ["auto", "aer"])  # qmedimg's sampler, Aer's statevector trajectories
def test_a_zne_value_on_trajectories_states_an_error_that_covers_its_spread_over_seeds(monkeypatch, simulator):
    monkeypatch.setattr(device_estimator, "DENSITY_MATRIX_MAX_QUBITS", 3)  # 4 active qubits: trajectories
    spec, context = load_circuit("sel", layers=2), BackendContext()
    backend = get_backend("fake_manila", context=context)
    circuit, observables = backend.prepare(spec)
    values = np.random.default_rng(7).uniform(-np.pi, np.pi, (4, circuit.num_parameters))
    pub = (circuit, [[o] for o in observables], values)
    runs, errors = [], []
    for seed in range(8):
        estimator = get_backend("fake_manila", noise_scale=3, seed=seed, trajectories=100, simulator=simulator,
                                mitigation={"readout": True, "zne": {"extrapolator": "exponential"}},
                                context=context).training_head(spec)["estimator"]
        runs.append(estimator.run([pub]).result()[0].data.evs)
        errors.append(estimator.simulation(circuit)["statistical_error"])
    spread = np.std(runs, axis=0, ddof=1)  # over 8 seeds, per value
    assert np.max(spread) <= 1.5 * np.median(errors)  # the largest error stated covers every value's spread
