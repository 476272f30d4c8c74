"""A device's calibration as Aer noise, restricted to the qubits a circuit uses; the circuit surgery
that goes with it (idle wires dropped, a circuit cut where shared angles begin); and zero-noise
extrapolation.

Example::

    from qmedimg.backends.noise import calibration, noise_model, trim_idle
    small, physical = trim_idle(isa_circuit)                 # active wires only, their physical indices
    calibrated = calibration(device.target, physical, scale=2.0)   # error rates x 2, T1/T2 / 2
    model = noise_model(calibrated)                          # depolarizing + relaxation + readout
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from qiskit.circuit import Delay, QuantumCircuit
from qiskit.converters import circuit_to_dag, dag_to_circuit
from qiskit.providers import QubitProperties
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import InstructionProperties, Target
from qiskit_aer.noise import NoiseModel
from qiskit_aer.noise.device.models import basic_device_gate_errors, basic_device_readout_errors

from qmedimg.quantum.covariance import covariance_root


def trim_idle(circuit: QuantumCircuit) -> tuple[QuantumCircuit, list[int]]:
    """Drop barriers and every wire that does nothing but wait (idle or delays only).

    Returns the small circuit and, for each of its qubits, the index it had in ``circuit``
    (for an ISA circuit: the physical qubit)."""
    dag = circuit_to_dag(circuit)
    dag.remove_all_ops_named("barrier")
    idle = set(dag.idle_wires(ignore=["delay"]))
    for node in list(dag.op_nodes(Delay)):
        if set(node.qargs) <= idle:
            dag.remove_op_node(node)
    idle_qubits = [q for q in dag.qubits if q in idle]
    active = [circuit.find_bit(q).index for q in dag.qubits if q not in idle]
    dag.remove_qubits(*idle_qubits)
    return dag_to_circuit(dag), active


def calibration(target: Target, qubits: Sequence[int], scale: float) -> Target:
    """The device's calibration restricted to ``qubits`` (renumbered 0..k-1), error rates × scale."""
    index = {p: i for i, p in enumerate(qubits)}
    props = []
    for p in qubits:
        q = target.qubit_properties[p] if target.qubit_properties else None
        t1, t2 = (q.t1, q.t2) if q is not None else (None, None)
        props.append(QubitProperties(t1=t1 / scale if t1 else None, t2=t2 / scale if t2 else None,
                                     frequency=q.frequency if q is not None else None))
    sub = Target(num_qubits=len(qubits), dt=target.dt, qubit_properties=props)
    for name, instructions in target.items():
        kept = {}
        for qargs, ip in (instructions or {}).items():
            if qargs is None or not all(q in index for q in qargs):
                continue
            error = None if ip is None or ip.error is None else min(ip.error * scale, 0.5 if name == "measure" else 1.0)
            kept[tuple(index[q] for q in qargs)] = InstructionProperties(
                duration=None if ip is None else ip.duration, error=error)
        if kept:
            sub.add_instruction(target.operation_from_name(name), kept, name=name)
    return sub


def readout_errors(calibrated: Target) -> np.ndarray:
    """(k, 2) array of [p(1|0), p(0|1)] per qubit of a :func:`calibration`."""
    out = np.zeros((calibrated.num_qubits, 2))
    for q, error in basic_device_readout_errors(target=calibrated):
        probs = np.asarray(error.probabilities)
        out[q[0]] = probs[0, 1], probs[1, 0]
    return out


def gate_errors(calibrated: Target) -> dict:
    """``{(instruction name, qubits): QuantumError}`` of a :func:`calibration`: depolarizing + thermal
    relaxation per gate, exactly the errors :func:`noise_model` puts in Aer's model."""
    return {(name, tuple(q)): error for name, q, error in basic_device_gate_errors(target=calibrated)}


@dataclass
class QubitsNoise:
    """The noise of some of a device's qubits at one noise scale, as the simulators here take it: the
    :func:`calibration` restricted to them, Aer's :func:`noise_model`, :func:`readout_errors`, :func:`gate_errors`,
    and ``branches``: the trajectory sampler's branches of each gate error, filled as samplers compile
    (:class:`~qmedimg.backends.trajectories.TrajectorySampler`)."""

    device: Any
    calibrated: Target
    model: NoiseModel
    readout: np.ndarray
    errors: dict
    branches: dict = field(default_factory=dict)


def qubits_noise(device, scale: float, qubits: tuple[int, ...], cache: dict) -> QubitsNoise:
    """The :class:`QubitsNoise` of ``qubits`` of ``device`` at ``scale``, built once per (device, scale, qubits) in
    ``cache``: a :class:`~qmedimg.backends.context.BackendContext`'s ``noise``, which a study's point backends share
    (a point and its mitigated variants, the folded circuits of ZNE: Aer's gate errors cost ~0.3 s to build and
    their sampler branches ~0.2 s to compile for a 127-qubit device, each time)."""
    key = (id(device), float(scale), tuple(qubits))
    hit = cache.get(key)
    if hit is None or hit.device is not device:  # the device is held by the entry: an id is never reused under it
        calibrated = calibration(device.target, list(qubits), scale)
        errors = gate_errors(calibrated)
        hit = cache[key] = QubitsNoise(device, calibrated, noise_model(calibrated, errors), readout_errors(calibrated),
                                       errors)
    return hit


def reported_paulis(local: list[dict | None], k: int, readout: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """What a device reports for each Pauli (``local``: {qubit: letter} on ``k`` simulated qubits, None = 0
    exactly) as a combination of the state's own Pauli expectations: ``(labels, coeffs)`` with <reported_i> =
    Σ_j coeffs[i, j]·<labels[j]>. With ``readout`` ((k, 2) [p(1|0), p(0|1)]), each measured factor becomes
    P_q -> a·I + b·P_q (a = p(0|1) - p(1|0), b = 1 - p(1|0) - p(0|1)); None: as the state holds them."""
    observables = []
    for factors in local:
        if factors is None:
            observables.append(SparsePauliOp("I" * k, 0.0))
            continue
        op = SparsePauliOp("I" * k)
        for q, letter in factors.items():
            term = SparsePauliOp.from_sparse_list([(letter, [q], 1.0)], k)
            if readout is not None:  # measured P_q = a·I + b·P_q
                p10, p01 = readout[q]
                term = SparsePauliOp("I" * k, p01 - p10) + (1 - p10 - p01) * term
            op = op.compose(term)
        observables.append(op.simplify())
    labels = sorted({label for op in observables for label in op.paulis.to_labels()})
    column = {label: i for i, label in enumerate(labels)}
    coeffs = np.zeros((len(observables), len(labels)))
    for o, op in enumerate(observables):
        for label, c in zip(op.paulis.to_labels(), op.coeffs):
            coeffs[o, column[label]] += c.real
    return labels, coeffs


def noise_model(calibrated: Target, errors: dict | None = None) -> NoiseModel:
    """Aer noise model of a :func:`calibration` (as ``NoiseModel.from_backend`` builds it: the
    :func:`gate_errors`, readout error)."""
    model = NoiseModel(basis_gates=list(calibrated.operation_names))
    for q, error in basic_device_readout_errors(target=calibrated):
        model.add_readout_error(error, q)
    for (name, q), error in (gate_errors(calibrated) if errors is None else errors).items():
        model.add_quantum_error(error, name, q)
    return model


def extrapolate(factors: Sequence[float], values: np.ndarray, method: str) -> np.ndarray:
    """Zero-noise value from ``values[i]`` measured at ``factors[i]`` (axis 0).

    linear: least-squares line; exponential: y = A·exp(-c·λ) fitted on log|y|, where a sign
    change or |y| < 1e-6 makes that point's fit linear instead."""
    x = np.asarray(factors, dtype=float)
    y = np.asarray(values, dtype=float)
    flat = y.reshape(len(x), -1)
    design = np.stack([np.ones_like(x), x], axis=1)
    linear = np.linalg.lstsq(design, flat, rcond=None)[0][0]
    if method == "linear":
        return linear.reshape(y.shape[1:])
    same_sign = np.all(np.sign(flat) == np.sign(flat[:1]), axis=0) & np.all(np.abs(flat) > 1e-6, axis=0)
    logs = np.log(np.where(same_sign, np.abs(flat), 1.0))
    intercept = np.linalg.lstsq(design, logs, rcond=None)[0][0]
    exponential = np.sign(flat[0]) * np.exp(intercept)
    return np.where(same_sign, exponential, linear).reshape(y.shape[1:])


VALUE_ERROR = "each image's covariance of its values"
"""How a row simulated by noise trajectories states its statistical errors: each image's covariance of its values
over the trajectories, carried into ACC and AUC (``metrics.statistical_spread``); a study keys its rows by it
(before 5 December 2026 every value was given its row's largest standard error, independently)."""
ZNE_ERROR = "covariance drawn through the extrapolator"
"""How :func:`extrapolation_covariance` computes a ZNE value's statistical error (a study keys its ZNE rows by it)."""
ZNE_ERROR_DRAWS = 400
"""Copies of the per-factor values :func:`extrapolation_covariance` draws for a nonlinear extrapolator."""


def extrapolation_covariance(factors: Sequence[float], values: np.ndarray, covariances: np.ndarray, method: str,
                             *, draws: int = ZNE_ERROR_DRAWS, seed: int = 0) -> np.ndarray:
    """The covariance (rows, P, P) of :func:`extrapolate`'s result when ``values`` (factors, P, rows) carry
    ``covariances`` (factors, rows, P, P): each row's P values at one factor come from the same noise
    trajectories, so their errors are correlated; different factors are independent. Linear: exact,
    Σ c_i²·Σ_i (c: the line's weights at 0). Exponential: its fit on log|y| amplifies a value's error by
    y₀/y_i and flips to the line where a drawn value changes sign, so no fixed weights hold: ``draws`` copies
    of the values, each with a N(0, Σ_i) draw added per row (seeded by ``seed``), go through
    :func:`extrapolate`, and their covariance is the answer. For a value whose per-factor values are within a
    few errors of zero that spread has a heavy tail (a fit on log|y| of a small |y|): the error is large, and
    it is meant to be."""
    x = np.asarray(factors, dtype=float)
    values, covariances = np.asarray(values, dtype=float), np.asarray(covariances, dtype=float)
    if method == "linear":
        weights = np.linalg.pinv(np.stack([np.ones_like(x), x], axis=1))[0]
        return np.tensordot(weights**2, covariances, axes=1)
    if not np.all(np.isfinite(covariances)):
        return np.full(covariances.shape[1:], np.inf)
    roots = covariance_root(covariances)
    noise = np.random.default_rng(seed).standard_normal(covariances.shape[:-1] + (draws,))  # (factors, rows, P, draws)
    drawn = extrapolate(x, values[..., None] + np.einsum("frpq,frqd->fprd", roots, noise), method)  # (P, rows, draws)
    centered = drawn - drawn.mean(axis=-1, keepdims=True)
    return np.einsum("prd,qrd->rpq", centered, centered) / (draws - 1)


def cut_circuit(circuit: QuantumCircuit, varying: set[str],
                shifted: set[str]) -> tuple[QuantumCircuit, QuantumCircuit] | None:
    """``circuit`` as ``before`` then ``after``: ``before`` holds every gate whose angle uses a
    ``varying`` parameter and everything those gates depend on; None if that includes a ``shifted`` one."""
    dag = circuit_to_dag(circuit)

    def uses(node, names):
        return any(p.name in names for value in node.op.params if hasattr(value, "parameters")
                   for p in value.parameters)

    first = set()
    for node in dag.topological_op_nodes():
        if uses(node, varying):
            first.add(node)
            first.update(a for a in dag.ancestors(node) if hasattr(a, "op"))
    if any(uses(node, shifted) for node in first):
        return None
    before, after = circuit.copy_empty_like(), circuit.copy_empty_like()
    for node in dag.topological_op_nodes():
        (before if node in first else after).append(node.op, node.qargs, node.cargs)
    return before, after
