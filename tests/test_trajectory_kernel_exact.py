"""The trajectory kernel's arithmetic, exactly: its split-state passes (:mod:`qmedimg.quantum.split_state`: the
vectorized blocks, the gathered low-qubit pairs, the Walsh–Hadamard butterflies) against the complex ones and
dense matrices, and every trajectory of a 7-qubit noisy circuit (fusion, closed tails, the dominant path's
matrices reused where a trajectory drew nothing else) against a plain dense simulation with the same draws."""

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import Pauli
from qiskit_aer.noise import amplitude_damping_error, depolarizing_error, thermal_relaxation_error
from scipy.stats import unitary_group

from qmedimg.backends.trajectories import TrajectorySampler, label_masks
from qmedimg.quantum import trajectory_kernel as kernel
from qmedimg.quantum.split_state import apply_2x2_split, apply_4x4_split, to_complex, walsh_hadamard

N = 7  # bits 3..6 take the vectorized blocks, 0..2 the gathered path


def split(psi):
    return np.ascontiguousarray(np.stack([psi.real, psi.imag]))


@pytest.mark.parametrize("a", range(N))
def test_split_passes_equal_the_complex_ones_on_every_pair_and_qubit(a):
    rng = np.random.default_rng(a)
    psi = rng.normal(size=2**N) + 1j * rng.normal(size=2**N)
    for b in (b for b in range(N) if b != a):
        u = unitary_group.rvs(4, random_state=10 * a + b) * 1.3  # any complex 4×4, not only unitaries
        want, got = psi.copy(), split(psi)
        kernel.apply_4x4(want, a, b, u, 2**N)
        apply_4x4_split(got, a, b, u, 2**N)
        np.testing.assert_allclose(to_complex(got), want, rtol=0, atol=1e-12, err_msg=f"pair ({a}, {b})")
    m = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    want, got = psi.copy(), split(psi)
    kernel.apply_2x2(want, a, m, 2**N)
    apply_2x2_split(got, a, m, 2**N)
    np.testing.assert_allclose(to_complex(got), want, rtol=0, atol=1e-12)


def test_walsh_hadamard_is_the_dense_transform():
    values = np.random.default_rng(0).normal(size=2**N)
    hadamard = np.ones((1, 1))
    for _ in range(N):
        hadamard = np.kron(np.array([[1, 1], [1, -1]]), hadamard)
    got = values.copy()
    walsh_hadamard(got)
    np.testing.assert_allclose(got, hadamard @ values, rtol=0, atol=1e-12)


def noisy_circuit():
    """7 qubits: pairs repeated (fusion, a SWAP), every qubit's tail, pairs on low and high bits; non-unital noise
    different on the two qubits of a pair, strong enough that most trajectories draw several other branches."""
    t = Parameter("t")
    qc = QuantumCircuit(N)
    for q in range(N):
        qc.ry(t * (q + 1) / 3, q)
    for a, b in [(0, 1), (1, 0), (0, 1), (5, 6), (2, 5), (3, 4), (3, 4), (6, 0), (1, 4), (2, 3), (4, 6), (0, 5)]:
        qc.cx(a, b)
        qc.sx(b)
        qc.rx(t, a)
    qc.x(2)
    two = depolarizing_error(0.08, 2).compose(amplitude_damping_error(0.12).tensor(amplitude_damping_error(0.03)))
    one = thermal_relaxation_error(50, 30, 8)
    errors = {(inst.operation.name, tuple(qc.find_bit(q).index for q in inst.qubits)): two if len(inst.qubits) == 2
              else one for inst in qc.data}
    return qc, errors


def apply_dense(psi, matrix, qubits):
    """``matrix`` on ``qubits`` (Qiskit's order) of a little-endian state, by a dense operator."""
    tensor = psi.reshape([2] * N)
    axes = [N - 1 - q for q in qubits]  # little-endian: qubit q is axis N-1-q
    k = len(qubits)
    op = matrix.reshape([2] * (2 * k))  # (out_{k-1} .. out_0, in_{k-1} .. in_0)
    in_axes = list(range(2 * k - 1, k - 1, -1))  # in_0 .. in_{k-1}
    moved = np.tensordot(op, tensor, axes=(in_axes, axes))  # out axes first, reversed order
    return np.moveaxis(moved, list(range(k)), [axes[k - 1 - i] for i in range(k)]).reshape(-1)


def reference_trajectory(program, gates, uniforms, labels):
    """The label values of one trajectory, gate by gate on a dense complex state with the draws ``uniforms``."""
    psi = np.zeros(2**N, complex)
    psi[0] = 1
    for s in range(len(program.kind)):
        two = program.kind[s] == kernel.TWO_QUBIT
        qubits = [program.qa[s], program.qb[s]] if two else [program.qa[s]]
        psi = apply_dense(psi, gates[s] if two else gates[s, :2, :2], qubits)
        ell = program.loc[s]
        if ell >= 0:
            j = program.offset[ell] + kernel.draw_branch(uniforms[ell], program.cum, program.offset[ell],
                                                         program.count[ell])
            psi = apply_dense(psi, program.op_a[j], [program.qa[s]])
            if two:
                psi = apply_dense(psi, program.op_b[j], [program.qb[s]])
    return np.array([np.vdot(psi, Pauli(label).to_matrix() @ psi).real for label in labels])


@pytest.mark.parametrize("fuse", [True, False])
def test_every_trajectory_equals_a_dense_simulation_with_the_same_draws(fuse):
    qc, errors = noisy_circuit()
    sampler = TrajectorySampler(qc, errors, fuse=fuse)
    program = sampler.program
    assert program.defer.any() == fuse
    labels = ["IIIIIIZ", "ZIIIIII", "IIZZIII", "ZZZZZZZ", "IIIIIXY", "YIIZIIX"]
    gates = sampler.row_gates(np.array([[0.7]]))[0]
    trajectories = 60
    uniforms = np.random.default_rng(5).random((trajectories, len(program.offset)))
    departed = (uniforms >= program.cum[program.offset]).sum(axis=1)
    assert np.median(departed) >= 3  # several other branches per trajectory: the memo is exercised
    for masks in (label_masks(labels[:4]), label_masks(labels)):  # Z strings only (the transform), and not
        xmask, zmask, ny, _ = masks
        steps, two_qubit = len(program.kind), int(np.sum(program.kind == kernel.TWO_QUBIT))
        checkpoints = np.empty((two_qubit + 1, 2, 2**N))
        pending_at = np.empty((len(program.offset), N, 2, 2), complex)
        checkpoint_at = np.zeros(len(program.offset), np.int64)
        memo = kernel.dominant_memo(N, steps)
        dominant = np.empty(len(xmask))
        kernel.dominant_path(N, program.kind, program.qa, program.qb, gates, program.loc, program.offset, program.op_a,
                             program.op_b, program.defer, program.take, program.swap, checkpoints, pending_at,
                             checkpoint_at, memo, xmask, zmask, ny, dominant)
        out = np.empty((trajectories, len(xmask)))
        kernel.run_trajectories(0, trajectories, N, program.kind, program.qa, program.qb, gates, program.loc,
                                program.step_of, program.offset, program.count, program.cum, program.op_a,
                                program.op_b, program.defer, program.take, program.swap, checkpoints, pending_at,
                                checkpoint_at, memo, uniforms, xmask, zmask, ny, out, fuse)
        chosen = labels[:len(xmask)]
        for t in range(trajectories):
            want = reference_trajectory(program, gates, uniforms[t], chosen)
            got = dominant if np.isnan(out[t]).all() else out[t]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10, err_msg=f"trajectory {t}")
