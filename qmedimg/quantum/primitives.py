"""What qmedimg's own V2 estimators share: a PUB's result from Pauli expectation values, the
observables' Pauli terms, and a job that is already finished when ``run`` returns.

Example::

    from qmedimg.quantum.primitives import FinishedJob, pub_result
    result = pub_result(pub, lambda circuit, values, labels: (my_expectations(circuit, values, labels), None))
    job = FinishedJob(lambda: PrimitiveResult([result]))    # job.result() is ready
"""

from __future__ import annotations

import uuid

import numpy as np
from qiskit.primitives import BasePrimitiveJob
from qiskit.primitives.containers import DataBin, EstimatorPub, PrimitiveResult, PubResult
from qiskit.providers import JobStatus


def pub_result(pub: EstimatorPub, pauli_expectations, rng: np.random.Generator | None = None) -> PubResult:
    """An estimator PUB's result from ``pauli_expectations(circuit, values (rows, P), labels)`` -> (the values
    (L, rows), each row's covariance of them (rows, L, L), or None where they are exact; an estimator whose
    values are means over samples, e.g. noise trajectories, gives one). Observables are combined from their Pauli terms and
    broadcast against the parameter rows as the primitive contract says; with a covariance, ``stds`` are the
    values' standard errors and ``metadata["value_covariance"]`` holds each flat parameter row's covariance of
    the flat observables (rows, O, O). With ``rng``, a PUB precision > 0 adds N(0, precision) as Aer does."""
    circuit, bindings, observables = pub.circuit, pub.parameter_values, pub.observables
    rows = int(np.prod(bindings.shape))
    if circuit.num_parameters:
        values = parameter_rows(bindings, circuit).reshape(rows, circuit.num_parameters)
    else:
        values = np.zeros((rows, 0))
    flat_obs = observables.ravel().tolist()
    paulis, coeffs = pauli_terms(flat_obs)
    expectations, covariance = pauli_expectations(circuit, values, paulis)
    obs_evs = coeffs @ expectations  # (num observables, rows)
    precision = pub.precision if rng is not None else 0.0
    obs_stds, metadata = np.full(obs_evs.shape, precision), {}
    if covariance is not None:
        obs_covariance = np.einsum("op,rpq,kq->rok", coeffs, covariance, coeffs)
        obs_stds = np.sqrt(np.diagonal(obs_covariance, axis1=1, axis2=2)).T
        metadata["value_covariance"] = obs_covariance
    if observables.shape == (len(flat_obs),) + (1,) * len(bindings.shape):  # (O, 1, ...) column
        evs = obs_evs.reshape(observables.shape[:1] + bindings.shape)
        stds = obs_stds.reshape(evs.shape)
    else:
        bc_rows, bc_obs = np.broadcast_arrays(
            np.arange(rows).reshape(bindings.shape), np.arange(len(flat_obs)).reshape(observables.shape)
        )
        evs, stds = obs_evs[bc_obs, bc_rows], obs_stds[bc_obs, bc_rows]
    if precision > 0:
        evs = rng.normal(evs, precision)
    return PubResult(
        DataBin(evs=evs, stds=stds, shape=evs.shape),
        metadata={"target_precision": precision, "circuit_metadata": circuit.metadata, **metadata},
    )


def pauli_terms(observables: list[dict]) -> tuple[list[str], np.ndarray]:
    """Observables (``{pauli label: coeff}``, as an ObservablesArray holds them) as their sorted
    Pauli labels and real coefficients: <O_k> = Σ_i coeffs[k, i]·<labels[i]>."""
    paulis = sorted({p for obs in observables for p in obs})
    index = {p: i for i, p in enumerate(paulis)}
    coeffs = np.zeros((len(observables), len(paulis)))
    for k, obs in enumerate(observables):
        for p, c in obs.items():
            coeffs[k, index[p]] += np.real(c)
    return paulis, coeffs


def parameter_rows(bindings, circuit) -> np.ndarray:
    """Parameter values in ``circuit.parameters`` order (no copy when already in that order)."""
    if len(bindings.data) == 1:
        names, array = next(iter(bindings.data.items()))
        if list(names) == [p.name for p in circuit.parameters]:
            return np.asarray(array, dtype=float)
    return bindings.as_array(circuit.parameters)


class FinishedJob(BasePrimitiveJob[PrimitiveResult, JobStatus]):
    """A job computed in the calling thread when it is made (no thread start-up per call, ~0.3 ms);
    ``result()`` returns the value or raises the exception, as a threaded job would."""

    def __init__(self, function, *args, **kwargs):
        super().__init__(str(uuid.uuid4()))
        self._value, self._error = None, None
        try:
            self._value = function(*args, **kwargs)
        except Exception as exc:  # delivered by result()
            self._error = exc

    def result(self) -> PrimitiveResult:
        if self._error is not None:
            raise self._error
        return self._value

    def status(self) -> JobStatus:
        return JobStatus.DONE if self._error is None else JobStatus.ERROR

    def done(self) -> bool:
        return self._error is None

    def running(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def in_final_state(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False
