"""Fusion in qmedimg's trajectory sampler (:mod:`qmedimg.quantum.trajectory_kernel`): two-qubit gates in a row
on one pair (a routing SWAP's CNOTs, a ZNE-folded G·G†·G) run as one pass over the state, with the same numbers
as gate by gate, and both agree with Aer's density matrix — in either qubit order, with non-unital noise; so do a
qubit's single-qubit gates after its last two-qubit gate, which join that gate's pass."""

import numpy as np
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.transpiler import PassManager
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, amplitude_damping_error, depolarizing_error, thermal_relaxation_error

from qmedimg.backends.aer_rows import aer_rows, save_expectations
from qmedimg.backends.noise import gate_errors, noise_model
from qmedimg.backends.trajectories import TrajectorySampler
from qmedimg.quantum import trajectory_kernel as kernel
from test_trajectory_sampler import assert_within_errors, device_circuit, probe_labels


def run_both(circuit, errors, values, labels, trajectories=20000):
    """(fused sampler, its mean and standard error, the unfused mean and standard error), one seed."""
    fused = TrajectorySampler(circuit, errors)
    unfused = TrajectorySampler(circuit, errors, fuse=False)
    assert fused.unsupported is None and not unfused.program.defer.any()
    coeffs = np.eye(len(labels))
    return (fused, *fused.run(values, labels, coeffs, trajectories=trajectories, seed=3)[:2],
            *unfused.run(values, labels, coeffs, trajectories=trajectories, seed=3)[:2])


def density_matrix_values(circuit, model, values, labels):
    measured = circuit.copy()
    save_expectations(measured, labels)
    table = aer_rows(AerSimulator(method="density_matrix", noise_model=model), measured, values)
    return np.array([[row[label] for label in labels] for row in table]).T


def test_two_qubit_gates_in_a_row_on_one_pair_run_as_one_pass_with_the_numbers_of_gate_by_gate():
    t = Parameter("t")
    qc = QuantumCircuit(3)
    qc.ry(t, 0)
    qc.sx(1)
    qc.cx(0, 1)  # 2: a SWAP, its middle CNOT the other way round (held matrices change qubit order)
    qc.cx(1, 0)  # 3
    qc.sx(0)
    qc.cx(0, 1)  # 5: applies the three as one pass
    qc.cx(1, 2)  # 6: folded in the same order
    qc.cx(1, 2)  # 7
    qc.rx(t, 2)
    qc.cx(2, 1)  # 9: ... then the other way: 6, 7 and 9 are one pass
    qc.cx(0, 2)  # 10: another pair, applied alone
    # non-unital, different on the two qubits of a pair: a matrix in the wrong qubit order shows
    two = depolarizing_error(0.05, 2).compose(amplitude_damping_error(0.15).tensor(amplitude_damping_error(0.02)))
    one = thermal_relaxation_error(50, 30, 5)
    errors = {(inst.operation.name, tuple(qc.find_bit(q).index for q in inst.qubits)): two if len(inst.qubits) == 2
              else one for inst in qc.data}
    model = NoiseModel(basis_gates=["ry", "rx", "sx", "cx"])
    for (name, qubits), error in errors.items():
        model.add_quantum_error(error, name, list(qubits))
    labels = ["IIZ", "IZI", "ZII", "YIX", "ZZI", "ZIZ"]
    values = np.array([[0.3], [1.1]])

    sampler, mean, stderr, mean_unfused, stderr_unfused = run_both(qc, errors, values, labels)
    program = sampler.program
    np.testing.assert_array_equal(np.flatnonzero(program.defer), [2, 3, 6, 7])
    np.testing.assert_array_equal(program.take, [-1, -1, -1, 0, -1, 1, -1, 1, -1, 1, -1])
    np.testing.assert_array_equal(np.flatnonzero(program.swap), [3, 5, 9])
    np.testing.assert_allclose(mean, mean_unfused, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stderr, stderr_unfused, rtol=0, atol=1e-12)
    assert_within_errors(mean, stderr, density_matrix_values(qc, model, values, labels))


def test_a_zne_folded_device_circuit_costs_one_pass_per_unfolded_gate_and_agrees_with_aer():
    from qiskit_mitigation.zne.gate_folding import GateFoldingPass  # what DeviceEstimator folds with

    small, calibrated = device_circuit("fake_brisbane", 4, 15, layers=1)
    folded = PassManager([GateFoldingPass(3.0, method="random", seed=0)]).run(small)
    two_qubit = [i.operation.num_qubits == 2 for i in small.data].count(True)
    errors = gate_errors(calibrated)
    labels = probe_labels(small.num_qubits)
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (2, small.num_parameters))

    sampler, mean, stderr, mean_unfused, stderr_unfused = run_both(folded, errors, values, labels)
    program = sampler.program
    passes = int(np.sum((program.kind == kernel.TWO_QUBIT) & ~program.defer))
    assert int(np.sum(program.kind == kernel.TWO_QUBIT)) == 3 * two_qubit
    assert passes <= two_qubit  # G·G†·G is one pass (and a SWAP's three gates, where routing added one)
    np.testing.assert_allclose(mean, mean_unfused, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stderr, stderr_unfused, rtol=0, atol=1e-12)
    identity = len(labels) - 1
    rest = np.arange(len(labels)) != identity
    exact = density_matrix_values(folded, noise_model(calibrated, errors), values, labels)
    assert_within_errors(mean[rest], stderr[rest], exact[rest])


def test_single_qubit_gates_after_a_qubits_last_two_qubit_gate_join_that_pass_with_the_same_numbers():
    t = Parameter("t")
    qc = QuantumCircuit(3)
    qc.ry(t, 0)
    qc.cx(0, 1)  # 1: qubit 0's last two-qubit gate
    qc.sx(0)  # 2: qubit 0's tail
    qc.cx(1, 2)  # 3: held for 5
    qc.rx(t, 1)
    qc.cx(2, 1)  # 5: the last of qubits 1 and 2, taking 3's matrix
    qc.sx(1)  # 6, 7: qubit 1's tail
    qc.rx(t, 1)
    qc.x(2)  # 8: qubit 2's tail
    two = depolarizing_error(0.05, 2).compose(amplitude_damping_error(0.15).tensor(amplitude_damping_error(0.02)))
    one = thermal_relaxation_error(50, 30, 5).compose(amplitude_damping_error(0.1))
    errors = {(inst.operation.name, tuple(qc.find_bit(q).index for q in inst.qubits)): two if len(inst.qubits) == 2
              else one for inst in qc.data}
    model = NoiseModel(basis_gates=["ry", "rx", "sx", "x", "cx"])
    for (name, qubits), error in errors.items():
        model.add_quantum_error(error, name, list(qubits))
    values = np.array([[0.4], [2.3]])

    sampler = TrajectorySampler(qc, errors)
    last, first, steps = kernel.single_qubit_tails(3, sampler.program.kind, sampler.program.qa, sampler.program.qb)
    np.testing.assert_array_equal(last, [1, 5, 5])
    np.testing.assert_array_equal(first, [0, 1, 3, 4])
    np.testing.assert_array_equal(steps, [2, 6, 7, 8])
    # Z strings (their values from one transform of the probabilities) and others (one pass per label)
    for labels in (["IIZ", "IZI", "ZII", "ZZI", "ZIZ", "ZZZ"], ["IIY", "IYI", "XIX", "YZZ", "ZYY"]):
        _, mean, stderr, mean_unfused, stderr_unfused = run_both(qc, errors, values, labels)
        np.testing.assert_allclose(mean, mean_unfused, rtol=0, atol=1e-12)
        np.testing.assert_allclose(stderr, stderr_unfused, rtol=0, atol=1e-12)
        assert_within_errors(mean, stderr, density_matrix_values(qc, model, values, labels))
