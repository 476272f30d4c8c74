"""qmedimg's noise-trajectory sampler (:mod:`qmedimg.backends.trajectories`) against Aer, with the very
``QuantumError`` objects of FakeBrisbane, FakeTorino and FakeFez:

* every channel kind those noise models hold, branch by branch: the branches' probabilities and matrices add
  up to Aer's channel exactly (1e-10, no statistics);
* the trajectory mean agrees with Aer's density matrix on small ``sel`` circuits of each device under
  strong noise, and with Aer's own statevector trajectories at 12 qubits under the device's noise, within
  the standard errors both report (|z| <= 5);
* what the sampler cannot sample exactly (channels in the circuit, 3-qubit gates, non-product two-qubit
  Kraus channels, non-trace-preserving ones, an error on a delay) is reported and refused, not approximated;
* a seed gives the same numbers again, another seed other numbers."""

import re
from functools import lru_cache

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Instruction
from qiskit.quantum_info import DensityMatrix, Kraus, Pauli, SuperOp, random_density_matrix
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, QuantumError, amplitude_damping_error, pauli_error, reset_error

from qmedimg.backends import get_backend
from qmedimg.backends.aer_rows import aer_rows, save_expectations
from qmedimg.backends.device_estimator import _AER_SAFE
from qmedimg.backends.devices import fake_device
from qmedimg.backends.noise import calibration, gate_errors, noise_model, trim_idle
from qmedimg.backends.trajectories import TrajectorySampler, UnsupportedNoise, branches
from qmedimg.quantum.circuits import load_circuit

Z_LIMIT = 5


@lru_cache(maxsize=None)
def device_target(name):
    return fake_device(get_backend(name).entry.device).target


def device_error(name, gate, physical, scale):
    """Aer's error on ``gate`` over ``physical`` qubits of device ``name``, its error rates × ``scale``."""
    return gate_errors(calibration(device_target(name), physical, scale))[(gate, tuple(range(len(physical))))]


# (device, gate, physical qubits, noise scale, terms, non-unitary operations in the terms). Reset-mixture
# qubits have T2 <= T1 (relaxation = {I, Z, reset}), Kraus qubits T1 < T2 (one rank-3 'kraus', the Pauli of
# the depolarizing term folded in); few terms = no depolarizing term (gate error <= relaxation infidelity);
# 135/45/15 terms = depolarizing at its maximum (no identity term).
CHANNELS = [
    ("fake_brisbane", "sx", (3,), 20, 12, {"reset"}),  # 1q reset mixture with depolarizing
    ("fake_brisbane", "sx", (0,), 20, 3, {"reset"}),  # ... without
    ("fake_torino", "sx", (0,), 20, 4, {"kraus"}),  # 1q Kraus with depolarizing
    ("fake_torino", "x", (0,), 50, 4, {"kraus"}),
    ("fake_fez", "sx", (87,), 20, 1, {"kraus"}),  # ... without
    ("fake_brisbane", "sx", (48,), 50, 1, {"kraus"}),
    ("fake_fez", "cz", (2, 3), 20, 144, {"reset"}),  # reset ⊗ reset with depolarizing
    ("fake_brisbane", "ecr", (8, 9), 50, 144, {"reset"}),
    ("fake_brisbane", "ecr", (15, 22), 20, 9, {"reset"}),  # ... without
    ("fake_torino", "cz", (15, 19), 20, 135, {"reset"}),
    ("fake_torino", "cz", (4, 16), 20, 16, {"kraus"}),  # Kraus ⊗ Kraus with depolarizing
    ("fake_brisbane", "ecr", (118, 119), 20, 1, {"kraus"}),  # ... without
    ("fake_torino", "cz", (85, 86), 20, 15, {"kraus"}),
    ("fake_torino", "cz", (0, 1), 20, 48, {"kraus", "reset"}),  # Kraus ⊗ reset with depolarizing
    ("fake_torino", "cz", (1, 0), 20, 48, {"kraus", "reset"}),  # reset ⊗ Kraus
    ("fake_brisbane", "ecr", (4, 15), 20, 3, {"kraus", "reset"}),  # ... without
    ("fake_brisbane", "ecr", (31, 32), 20, 3, {"kraus", "reset"}),
    ("fake_fez", "cz", (27, 28), 20, 45, {"kraus", "reset"}),
]


@pytest.mark.parametrize("name, gate, physical, scale, terms, channels", CHANNELS,
                         ids=[f"{c[0]}-{c[1]}{c[2]}-x{c[3]}-{c[4]}terms" for c in CHANNELS])
def test_the_branches_of_every_device_channel_kind_add_up_to_aers_channel_exactly(
        name, gate, physical, scale, terms, channels):
    error = device_error(name, gate, physical, scale)
    inside = {inst.operation.name for circuit in error.circuits for inst in circuit.data}
    assert len(error.probabilities) == terms and inside & {"reset", "kraus"} == channels  # the kind meant
    assert_branches_are_the_channel(error, len(physical))


def test_pauli_letters_and_one_qubit_channels_land_on_the_qubits_aer_puts_them_on():
    # the devices' depolarizing terms are symmetric under swapping the pair; this error is not
    asymmetric = pauli_error([("II", 0.6), ("XZ", 0.25), ("IY", 0.15)]).compose(
        amplitude_damping_error(0.3), qargs=[1]).compose(reset_error(0.2), qargs=[0])
    assert_branches_are_the_channel(asymmetric, 2)


def assert_branches_are_the_channel(error, width):
    """All branches of ``error``, with their probabilities, are Aer's channel (to 1e-10)."""
    p, first, second = branches(error, width)
    assert first.shape == second.shape == (len(p), 2, 2) and len(p) >= len(error.probabilities)
    assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-12
    assert np.all(np.diff(p) <= 0)  # most probable first
    if width == 1:
        np.testing.assert_array_equal(second, np.broadcast_to(np.eye(2), second.shape))
    matrices = first if width == 1 else np.array([np.kron(b, a) for a, b in zip(first, second)])  # first qubit low
    superop = sum(pb * np.kron(m.conj(), m) for pb, m in zip(p, matrices))  # Qiskit's column-stacking SuperOp
    channel = error.to_quantumchannel()
    np.testing.assert_allclose(superop, SuperOp(channel).data, rtol=0, atol=1e-10)
    for seed in range(3):
        rho = random_density_matrix(2 ** width, seed=seed).data
        mixed = np.einsum("b,bij,jk,blk->il", p, matrices, rho, matrices.conj())
        np.testing.assert_allclose(mixed, DensityMatrix(rho).evolve(channel).data, rtol=0, atol=1e-10)


def device_circuit(name, qubits, scale, layers=2):
    """``sel`` on ``qubits`` transpiled for device ``name``, idle wires trimmed and parameterized gates made
    Aer-safe as in production; with its calibration at ``scale``."""
    backend = get_backend(name)
    small, active = trim_idle(backend.prepare(load_circuit("sel", qubits=qubits, layers=layers)).circuit)
    small = TranslateParameterizedGates(_AER_SAFE)(small)
    small.global_phase = 0
    return small, calibration(fake_device(backend.entry.device).target, active, scale)


def probe_labels(k):
    """Every single-qubit Z, an XY on qubits 0 and 1, a ZZ on qubits 0 and 2, the identity (little-endian)."""
    zs = ["I" * (k - 1 - q) + "Z" + "I" * q for q in range(k)]
    return zs + ["I" * (k - 2) + "XY", "I" * (k - 3) + "ZIZ", "I" * k]


def assert_within_errors(mean, stderr, reference, reference_stderr=0.0):
    assert np.all(np.isfinite(stderr)) and np.all(stderr > 0), stderr
    z = (mean - reference) / np.sqrt(stderr ** 2 + reference_stderr ** 2)
    assert np.abs(z).max() <= Z_LIMIT, f"|z| up to {np.abs(z).max():.1f}:\n{np.round(z, 2)}"


@pytest.mark.parametrize("name, qubits, scale", [("fake_brisbane", 6, 15), ("fake_torino", 5, 15),
                                                 ("fake_fez", 5, 15)])
def test_trajectory_means_agree_with_aers_density_matrix_under_strong_device_noise(name, qubits, scale):
    small, calibrated = device_circuit(name, qubits, scale)
    errors = gate_errors(calibrated)
    sampler = TrajectorySampler(small, errors)
    assert sampler.unsupported is None
    k = small.num_qubits
    labels = probe_labels(k)
    identity = len(labels) - 1
    coeffs = np.vstack([np.eye(len(labels)), 0.5 * np.eye(len(labels))[0] - 0.3 * np.eye(len(labels))[k]
                        + 0.2 * np.eye(len(labels))[identity]])  # the labels, and one combination of them
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (2, small.num_parameters))
    mean, stderr, _ = sampler.run(values, labels, coeffs, trajectories=20000, seed=3)
    assert mean.shape == stderr.shape == (len(coeffs), 2)

    measured = small.copy()
    save_expectations(measured, labels)
    table = aer_rows(AerSimulator(method="density_matrix", noise_model=noise_model(calibrated, errors)), measured,
                     values)
    exact = coeffs @ np.array([[row[label] for label in labels] for row in table]).T
    np.testing.assert_array_equal(mean[identity], 1.0)  # the identity is 1 exactly, not a weighted estimate
    assert np.all(stderr[identity] == 0)
    rest = np.arange(len(coeffs)) != identity
    assert_within_errors(mean[rest], stderr[rest], exact[rest])
    noiseless = coeffs @ np.array([[row[label] for label in labels]
                                   for row in aer_rows(AerSimulator(method="statevector"), measured, values)]).T
    assert np.abs(exact - noiseless).max() > 20 * stderr.max()  # noise a biased sampler could not hide in


def test_at_12_qubits_under_device_noise_the_sampler_agrees_with_aers_statevector_trajectories():
    small, calibrated = device_circuit("fake_brisbane", 12, 1)
    assert small.num_qubits == 12
    errors = gate_errors(calibrated)
    sampler = TrajectorySampler(small, errors)
    assert sampler.unsupported is None
    labels = probe_labels(12)
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (2, small.num_parameters))
    mean, stderr, _ = sampler.run(values, labels, np.eye(len(labels)), trajectories=4000, seed=5)

    measured = small.copy()
    save_expectations(measured, labels, pershot=True)
    simulator = AerSimulator(method="statevector", noise_model=noise_model(calibrated, errors), shots=400,
                             seed_simulator=7)
    per_shot = np.array([[row[label] for label in labels] for row in aer_rows(simulator, measured, values)])
    aer_mean = per_shot.mean(axis=2).T  # (labels, rows)
    aer_stderr = (per_shot.std(axis=2, ddof=1) / np.sqrt(per_shot.shape[2])).T
    np.testing.assert_array_equal(mean[-1], 1.0)
    assert_within_errors(mean[:-1], stderr[:-1], aer_mean[:-1], aer_stderr[:-1])


def noisy_pair(*extra):
    """sx on qubit 0, cz on (0, 1), then ``extra`` instructions [(name, qubits)]."""
    qc = QuantumCircuit(max([2] + [max(q) + 1 for _, q in extra]))
    qc.sx(0)
    qc.cz(0, 1)
    for name, qubits in extra:
        if name == "kraus":
            qc.append(Kraus(amplitude_damping_error(0.2).to_quantumchannel()).to_instruction(), qubits)
        elif name == "delay":
            qc.delay(100, qubits[0])
        else:
            getattr(qc, name)(*qubits)
    return qc


def non_product_two_qubit_kraus():
    """|11> decays to |00> as one event: a two-qubit channel that is no product of one-qubit ones."""
    gamma = 0.3
    k0 = np.diag([1, 1, 1, np.sqrt(1 - gamma)]).astype(complex)
    k1 = np.zeros((4, 4), complex)
    k1[0, 3] = np.sqrt(gamma)
    return QuantumError(Kraus([k0, k1]))


NOISY = {("sx", (0,)): amplitude_damping_error(0.1), ("cz", (0, 1)): pauli_error([("II", 0.9), ("XZ", 0.1)])}
NOT_TRACE_PRESERVING = QuantumError([(Instruction("kraus", 1, 0, [0.9 * np.eye(2, dtype=complex)]), 1.0)])
UNSUPPORTED = {  # (circuit, errors, a word the reason holds)
    "kraus in the circuit": (noisy_pair(("kraus", [1])), NOISY, "kraus"),
    "reset in the circuit": (noisy_pair(("reset", [1])), NOISY, "reset"),
    "3-qubit gate": (noisy_pair(("ccx", [0, 1, 2])), NOISY, "ccx"),
    "2-qubit non-product Kraus error": (noisy_pair(), {**NOISY, ("cz", (0, 1)): non_product_two_qubit_kraus()},
                                        "2-qubit 'kraus'"),
    "non-trace-preserving error": (noisy_pair(), {**NOISY, ("sx", (0,)): NOT_TRACE_PRESERVING}, "not trace preserving"),
    "error on a delay": (noisy_pair(("delay", [1])), {**NOISY, ("delay", (1,)): pauli_error([("X", 1.0)])}, "delay"),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_what_the_sampler_cannot_sample_exactly_is_named_and_refused(case):
    circuit, errors, word = UNSUPPORTED[case]
    sampler = TrajectorySampler(circuit, errors)
    assert isinstance(sampler.unsupported, str) and word in sampler.unsupported
    with pytest.raises(UnsupportedNoise, match=re.escape(word)):
        sampler.run(np.zeros((1, 0)), ["I" * circuit.num_qubits], np.eye(1), trajectories=10, seed=0)


def test_an_error_on_a_delay_is_one_aer_applies():
    # why a delay's error is refused rather than skipped: Aer applies it (here a certain X flip)
    qc = QuantumCircuit(1)
    qc.delay(100, 0)
    qc.save_expectation_value(Pauli("Z"), [0], label="z")
    model = NoiseModel()
    model.add_quantum_error(pauli_error([("X", 1.0)]), "delay", [0])
    assert AerSimulator(method="density_matrix", noise_model=model).run(qc).result().data(0)["z"] == pytest.approx(-1)


def test_a_seed_gives_the_same_numbers_and_another_seed_others():
    small, calibrated = device_circuit("fake_brisbane", 4, 20, layers=1)
    sampler = TrajectorySampler(small, gate_errors(calibrated))
    labels = probe_labels(small.num_qubits)
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (2, small.num_parameters))

    def run(seed):
        return sampler.run(values, labels, np.eye(len(labels)), trajectories=500, seed=seed)[:2]

    (first, first_err), (again, again_err), (other, _) = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_err, again_err)
    assert np.abs(first - other).max() > 0


def test_a_rows_stated_covariance_is_the_covariance_of_its_values_over_seeds():
    """A row's observables come from the same trajectories, so their errors are correlated: the covariance the
    sampler states (off the diagonal too) is the one its values show over many seeds."""
    small, calibrated = device_circuit("fake_brisbane", 4, 20, layers=1)
    sampler = TrajectorySampler(small, gate_errors(calibrated))
    labels = probe_labels(small.num_qubits)[:2]  # Z on qubits 0 and 1
    coeffs = np.array([[1.0, 0.0], [1.0, 0.3]])  # Z0, and Z0 + 0.3·Z1: errors mostly shared
    values = np.random.default_rng(2).uniform(-np.pi, np.pi, (1, small.num_parameters))
    runs = [sampler.run(values, labels, coeffs, trajectories=100, seed=seed) for seed in range(400)]
    observed = np.cov(np.array([run.mean[:, 0] for run in runs]).T)
    stated = np.mean([run.covariance[0] for run in runs], axis=0)
    np.testing.assert_allclose(np.diag(stated), np.array([run.stderr[:, 0] ** 2 for run in runs]).mean(axis=0))
    assert stated[0, 1] > 0.5 * np.sqrt(stated[0, 0] * stated[1, 1])  # strongly correlated: a diagonal would miss it
    np.testing.assert_allclose(observed, stated, rtol=0.2)  # 400 seeds: about 7 % spread on each entry
