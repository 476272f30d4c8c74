"""Noise-aware training on qmedimg's trajectory sampler: the adjoint-sweep gradient over trajectories is unbiased
for the gradient of the noisy (density-matrix) expectation, checked against Aer's density matrix with parameter
shifts on real device noise; and the torch head trained on the sampler takes it (forward values and gradients
of inputs and weights agree with the density-matrix path)."""

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Pauli
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer import AerSimulator

from qmedimg.backends import get_backend
from qmedimg.backends.aer_rows import aer_rows
from qmedimg.backends.device_estimator import _AER_SAFE
from qmedimg.backends.devices import fake_device
from qmedimg.backends.noise import calibration, gate_errors, noise_model, trim_idle
from qmedimg.backends.trajectories import TrajectorySampler
from qmedimg.backends.trajectory_gradient import differentiable, trajectory_gradient
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.qnn import QuantumHead


def _head_circuit(device: str, qubits: int, scale: float):
    """sel (1 layer) transpiled for ``device``: the sampler on its active qubits, Aer's density matrix as reference."""
    backend = get_backend(device)
    small, physical = trim_idle(backend.prepare(load_circuit("sel", qubits=qubits, layers=1)).circuit)
    small = TranslateParameterizedGates(_AER_SAFE)(small)
    small.global_phase = 0
    calibrated = calibration(fake_device(backend.entry.device).target, physical, scale)
    errors = gate_errors(calibrated)
    return small, TrajectorySampler(small, errors), AerSimulator(method="density_matrix",
                                                                 noise_model=noise_model(calibrated, errors))


def _shift_gradient(simulator, circuit, labels, weights, row):
    """Σ_l weights[l]·∂<labels[l]>/∂θ_j for every parameter j, by ±π/2 shifts on Aer's density matrix."""
    measured = circuit.copy()
    for label in labels:
        measured.save_expectation_value(Pauli(label), range(circuit.num_qubits), label=label)
    rows = []
    for j in range(circuit.num_parameters):
        for shift in (np.pi / 2, -np.pi / 2):
            shifted = row.copy()
            shifted[j] += shift
            rows.append(shifted)
    table = aer_rows(simulator, measured, np.array(rows))
    values = np.array([[entry[label] for label in labels] for entry in table]) @ weights
    return (values[0::2] - values[1::2]) / 2


@pytest.mark.parametrize("device, qubits, scale", [("fake_torino", 6, 2.0), ("fake_brisbane", 5, 4.0)])
def test_the_mean_trajectory_gradient_is_the_density_matrix_gradient(device, qubits, scale):
    circuit, sampler, simulator = _head_circuit(device, qubits, scale)
    assert sampler.unsupported is None and differentiable(sampler) is None
    rng = np.random.default_rng(1)
    row = rng.uniform(-np.pi, np.pi, circuit.num_parameters)
    k = circuit.num_qubits
    labels = ["I" * (k - 1 - i) + "Z" + "I" * i for i in range(k)] + ["I" * (k - 2) + "XY"]
    weights = rng.normal(size=len(labels))
    exact = _shift_gradient(simulator, circuit, labels, weights, row)
    batches = np.array([trajectory_gradient(sampler, row[None], labels, weights[None], trajectories=400,
                                            seed=100 + i)[0] for i in range(30)])
    mean, stderr = batches.mean(axis=0), batches.std(axis=0, ddof=1) / np.sqrt(len(batches))
    assert np.abs(exact).max() > 0.1  # the gradient is not washed out by the noise
    assert np.all(np.abs(mean - exact) <= 5 * stderr + 1e-9), np.max(np.abs(mean - exact) / (stderr + 1e-12))
    assert np.all(stderr[np.abs(exact) > 1e-3] > 0)  # each trajectory's gradient differs: it is sampled


def test_the_identity_label_has_no_gradient_and_the_same_seed_gives_the_same_gradient():
    circuit, sampler, _ = _head_circuit("fake_torino", 4, 5.0)
    row = np.random.default_rng(2).uniform(-np.pi, np.pi, (2, circuit.num_parameters))
    k = circuit.num_qubits
    identity = trajectory_gradient(sampler, row, ["I" * k], np.ones((2, 1)), trajectories=20, seed=0)
    assert np.all(identity == 0)  # its value is exactly 1, whatever the angles
    first = trajectory_gradient(sampler, row, ["I" * (k - 1) + "Z"], np.ones((2, 1)), trajectories=20, seed=3)
    again = trajectory_gradient(sampler, row, ["I" * (k - 1) + "Z"], np.ones((2, 1)), trajectories=20, seed=3)
    other = trajectory_gradient(sampler, row, ["I" * (k - 1) + "Z"], np.ones((2, 1)), trajectories=20, seed=4)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0


def test_a_torch_head_trained_on_the_sampler_gets_the_density_matrix_gradients():
    spec = load_circuit("sel", qubits=4, layers=1)
    torch.manual_seed(0)
    angles0 = torch.rand(3, 4, dtype=torch.float64) * 2 - 1
    cotangent = torch.randn(3, 4, dtype=torch.float64)
    results = {}
    for simulator in ("aer", "trajectories"):  # Aer's density matrix (4 active qubits), qmedimg's sampler
        backend = get_backend("fake_brisbane", simulator=simulator, noise_scale=3, training_trajectories=4000)
        head = QuantumHead(spec, **backend.training_head(spec))  # its estimator, ISA circuit, observables, precision
        with torch.no_grad():
            head.connector.weight.copy_(torch.linspace(-1, 1, head.connector.weight.numel()))
        angles = angles0.clone().requires_grad_(True)
        out = head(angles)
        (out * cotangent).sum().backward()
        results[simulator] = (out.detach().numpy(), angles.grad.numpy(), head.connector.weight.grad.numpy())
    for ours, reference in zip(results["trajectories"], results["aer"]):
        np.testing.assert_allclose(ours, reference, atol=0.03)  # 4000 trajectories: errors ~0.01
    assert np.abs(results["aer"][2]).max() > 0.3  # ... on gradients that are not small


def test_angles_affine_in_a_parameter_get_the_chain_rule():
    from qiskit.circuit import Parameter, QuantumCircuit

    a, b = Parameter("a"), Parameter("b")
    circuit = QuantumCircuit(2)
    circuit.sx(0)
    circuit.rz(2 * a + 0.3, 0)
    circuit.sx(1)
    circuit.ry(-0.5 * b, 1)
    circuit.cz(0, 1)
    circuit.sx(0)
    circuit.rx(3 * a - 0.2, 0)
    circuit.p(-1.5 * b, 1)
    circuit.sx(1)
    target = fake_device(get_backend("fake_torino").entry.device).target
    pair = next(q for q in target["cz"] if q is not None)
    calibrated = calibration(target, list(pair), 20.0)
    errors = gate_errors(calibrated)
    sampler = TrajectorySampler(circuit, errors)
    assert differentiable(sampler) is None
    assert differentiable(TrajectorySampler(circuit.assign_parameters({b: 0.2}).compose(_squared(a)), errors))
    labels, weights = ["IZ", "ZI", "XY"], np.array([0.7, -1.1, 0.4])
    row = np.array([0.4, -1.3])
    simulator = AerSimulator(method="density_matrix", noise_model=noise_model(calibrated, errors))
    exact = _shift_gradient_chain(simulator, circuit, labels, weights, row)
    batches = np.array([trajectory_gradient(sampler, row[None], labels, weights[None], trajectories=500,
                                            seed=i)[0] for i in range(20)])
    mean, stderr = batches.mean(axis=0), batches.std(axis=0, ddof=1) / np.sqrt(len(batches))
    assert np.abs(exact).min() > 0.05
    assert np.all(np.abs(mean - exact) <= 5 * stderr), (mean, exact, stderr)


def _squared(a):
    from qiskit.circuit import QuantumCircuit

    extra = QuantumCircuit(2)
    extra.rz(a * a, 0)  # not affine: no chain rule through it
    return extra


def _shift_gradient_chain(simulator, circuit, labels, weights, row, step=1e-4):
    """Central finite differences of Aer's density-matrix values in the circuit's own parameters."""
    measured = circuit.copy()
    for label in labels:
        measured.save_expectation_value(Pauli(label), range(circuit.num_qubits), label=label)
    rows = []
    for j in range(len(row)):
        for sign in (1, -1):
            shifted = row.copy()
            shifted[j] += sign * step
            rows.append(shifted)
    table = aer_rows(simulator, measured, np.array(rows))
    values = np.array([[entry[label] for label in labels] for entry in table]) @ weights
    return (values[0::2] - values[1::2]) / (2 * step)
