"""The adjoint-differentiation gradient of the exact estimator: the same numbers as parameter shift
and finite differences on every circuit file and on every op kind the kernel has, through the
qiskit-ML gradient interface and through the torch layer; and the automatic choice of method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN

import qmedimg.quantum.exact as exact_module
from qmedimg.quantum.adjoint import AdjointGradient, default_gradient
from qmedimg.quantum.circuits import CIRCUITS_DIR, load_circuit
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.gradients import BatchedParamShiftGradient, column
from qmedimg.quantum.qnn import QuantumHead

CIRCUIT_NAMES = sorted(p.stem for p in CIRCUITS_DIR.glob("*.qasm"))


def every_op_kind() -> tuple[QuantumCircuit, list[SparsePauliOp]]:
    """Fused rotations with fixed and rx/ry/rz factors, a CNOT/CZ/S permutation with phases,
    parameterized diagonals (rzz, cp, crz), a dense fixed gate (cry), an affine angle shared by two
    gates; observables with X, Y and several weighted terms."""
    x, w = [Parameter(f"x{i}") for i in range(3)], [Parameter(f"w{i}") for i in range(6)]
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.ry(x[0], 0)
    qc.rx(x[1], 1)
    qc.u(x[2], w[0], 0.3, 2)
    qc.cx(0, 1)
    qc.cz(1, 2)
    qc.s(2)
    qc.rzz(w[1], 0, 2)
    qc.cp(w[2], 1, 2)
    qc.crz(0.5 * w[3] + 0.2, 2, 0)
    qc.cry(0.7, 0, 1)
    qc.rz(w[4], 1)
    qc.ry(2 * w[5] - x[0], 2)
    qc.rx(w[5], 0)
    observables = [SparsePauliOp("IIZ"), SparsePauliOp(["XIY", "ZZI"], [0.5, -1.5]), SparsePauliOp("IXI")]
    return qc, observables


def finite_differences(circuit, observables, values, eps=1e-6) -> np.ndarray:
    estimator = ExactEstimator()
    out = np.empty((len(observables), len(values), values.shape[1]))
    for j in range(values.shape[1]):
        up, down = values.copy(), values.copy()
        up[:, j] += eps
        down[:, j] -= eps
        evs = estimator.run([(circuit, column(observables), np.concatenate([up, down]))]).result()[0].data.evs
        out[:, :, j] = (evs[:, : len(values)] - evs[:, len(values):]) / (2 * eps)
    return out


@pytest.mark.parametrize("name", CIRCUIT_NAMES)
@pytest.mark.parametrize("qubits", [4, 6])
def test_adjoint_matches_parameter_shift_and_finite_differences_on_every_circuit_file(name, qubits):
    spec = load_circuit(name, qubits=qubits)
    values = np.random.default_rng(qubits).uniform(-np.pi, np.pi, (3, spec.circuit.num_parameters))
    adjoint = AdjointGradient(ExactEstimator(), method="adjoint").gradients(spec.circuit, spec.observables, values)
    shift = BatchedParamShiftGradient(ExactEstimator(), precision=0.0).gradients(spec.circuit, spec.observables, values)
    assert adjoint.shape == (len(spec.observables), 3, spec.circuit.num_parameters)
    np.testing.assert_allclose(adjoint, shift, atol=1e-12)
    np.testing.assert_allclose(adjoint, finite_differences(spec.circuit, spec.observables, values), atol=1e-6)


def test_adjoint_handles_every_op_kind_and_weighted_pauli_observables():
    circuit, observables = every_op_kind()
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (4, circuit.num_parameters))
    adjoint = AdjointGradient(ExactEstimator(), method="adjoint").gradients(circuit, observables, values)
    np.testing.assert_allclose(adjoint, finite_differences(circuit, observables, values), atol=1e-6)
    assert np.abs(adjoint).max() > 0.1  # not trivially zero


def test_vector_jacobian_is_the_cotangent_weighted_jacobian_and_returns_the_values():
    circuit, observables = every_op_kind()
    values = np.random.default_rng(2).uniform(-np.pi, np.pi, (5, circuit.num_parameters))
    cotangent = np.random.default_rng(3).normal(size=(len(observables), 5))
    gradient = AdjointGradient(ExactEstimator(), method="adjoint")
    outputs, vjp = gradient.vector_jacobian(circuit, column(observables).ravel().tolist(), values, cotangent)
    jacobian = finite_differences(circuit, observables, values)
    np.testing.assert_allclose(vjp, np.einsum("or,orp->rp", cotangent, jacobian), atol=1e-6)
    expected = ExactEstimator().run([(circuit, column(observables), values)]).result()[0].data.evs
    np.testing.assert_allclose(outputs, expected, atol=1e-12)


def test_auto_uses_adjoint_from_five_qubits_on_affine_circuits_and_parameter_shift_otherwise():
    gradient = AdjointGradient(ExactEstimator())
    assert all(gradient.uses_adjoint(load_circuit(name, qubits=5).circuit) for name in CIRCUIT_NAMES)
    assert not gradient.uses_adjoint(load_circuit("sel", qubits=4).circuit)  # older runs' numerics kept
    nonaffine = QuantumCircuit(5)
    theta = Parameter("t")
    nonaffine.ry(theta * theta, 0)
    assert not gradient.uses_adjoint(nonaffine)  # parameter shift's plan refuses it in one clear line
    assert not AdjointGradient(ExactEstimator(), method="parameter-shift").uses_adjoint(load_circuit("sel", qubits=8).circuit)


def test_qnns_get_the_adjoint_gradient_only_for_exact_values_of_the_exact_estimator():
    assert isinstance(default_gradient(ExactEstimator(), 0.0), AdjointGradient)
    assert not isinstance(default_gradient(ExactEstimator(), 0.01), AdjointGradient)


@pytest.mark.parametrize("keep_states", [True, False])
def test_torch_layer_gradients_through_adjoint_equal_the_parameter_shift_path(keep_states, monkeypatch):
    # the backward sweep starts from the states the forward pass kept, or simulates the rows again
    import qmedimg.quantum.adjoint as adjoint_module

    if not keep_states:
        monkeypatch.setattr(adjoint_module, "KEEP_STATES_BYTES", 0)
    spec = load_circuit("sel", qubits=6)
    grads = {}
    for method in ("adjoint", "parameter-shift"):
        torch.manual_seed(0)
        head = QuantumHead(spec, ExactEstimator())
        head.qnn.gradient.method = method
        x = (torch.rand(7, 6, generator=torch.Generator().manual_seed(1)) * 3).requires_grad_()
        out = head(x)
        (out * torch.arange(1.0, 7.0)).sum().backward()
        grads[method] = (out.detach(), x.grad, head.connector.weight.grad)
    for a, b in zip(grads["adjoint"], grads["parameter-shift"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert grads["adjoint"][2].abs().max() > 1e-3


def test_qiskit_ml_estimator_qnn_takes_the_adjoint_gradient():
    spec = load_circuit("ring", qubits=5, layers=1)
    qnn = EstimatorQNN(circuit=spec.circuit, estimator=ExactEstimator(), observables=list(spec.observables),
                       input_params=list(spec.inputs), weight_params=list(spec.weights), input_gradients=True,
                       gradient=AdjointGradient(ExactEstimator(), method="adjoint"), default_precision=0.0)
    rng = np.random.default_rng(4)
    x, w = rng.uniform(-2, 2, (3, len(spec.inputs))), rng.uniform(-2, 2, len(spec.weights))
    grad_in, grad_w = qnn.backward(x, w)
    order = [list(spec.circuit.parameters).index(p) for p in [*spec.inputs, *spec.weights]]
    values = np.empty((3, spec.circuit.num_parameters))
    values[:, order] = np.concatenate([x, np.tile(w, (3, 1))], axis=1)  # circuit order: by name
    reference = finite_differences(spec.circuit, spec.observables, values)[:, :, order].transpose(1, 0, 2)
    np.testing.assert_allclose(grad_in, reference[:, :, : len(spec.inputs)], atol=1e-6)
    np.testing.assert_allclose(grad_w, reference[:, :, len(spec.inputs):], atol=1e-6)


def test_wide_circuits_run_one_row_per_thread_with_the_same_values(monkeypatch):
    spec = load_circuit("ring", qubits=9, layers=1)
    values = np.random.default_rng(5).uniform(-np.pi, np.pi, (6, spec.circuit.num_parameters))
    pub = [(spec.circuit, column(spec.observables), values)]
    blocked = ExactEstimator().run(pub).result()[0].data.evs
    monkeypatch.setattr(exact_module, "ROW_PER_THREAD_FROM", 9)
    per_row = ExactEstimator().run(pub).result()[0].data.evs
    np.testing.assert_allclose(per_row, blocked, atol=1e-12)
    assert np.abs(blocked).max() > 0.1


@pytest.fixture
def cores_set():
    """``cores_set(n)``: use n cores for the rest of one test; the process's share is put back afterwards."""
    from contextlib import ExitStack

    from qmedimg.cores import using_cores

    with ExitStack() as stack:
        yield lambda count: stack.enter_context(using_cores(count))


def test_split_rows_hands_every_row_to_exactly_one_chunk_on_the_kernel_threads(cores_set):
    import threading

    from qmedimg.quantum.adjoint_kernel import RowThreads, split_rows

    threads = RowThreads()

    def spans(rows, chunks):
        calls = []
        split_rows(lambda start, stop: calls.append((int(start), int(stop), threading.current_thread().name)), rows,
                   chunks, threads)
        return sorted(call[:2] for call in calls), {call[2].split("_")[0] for call in calls}

    cores_set(3)  # three chunks however many cores this machine has
    assert spans(10, 3) == ([(0, 3), (3, 6), (6, 10)], {"qmedimg-kernel"})  # threaded: the last chunk the largest
    assert spans(10, 50)[0] == [(0, 3), (3, 6), (6, 10)]  # at most a chunk per core
    assert spans(2, 3)[0] == [(0, 1), (1, 2)]  # at most a chunk per row
    assert spans(10, 1) == ([(0, 10)], {threading.current_thread().name.split("_")[0]})  # one chunk: this thread


def test_an_exact_estimators_row_threads_end_when_it_is_closed_or_forgotten(cores_set):
    """The threads a PUB's rows are split over belong to the estimator that splits them: a ``with`` block
    (close()) ends them when it ends, and an estimator dropped without one takes them with it."""
    import gc
    import threading

    cores_set(3)
    spec = load_circuit("ring", qubits=4, layers=1)
    values = np.random.default_rng(3).uniform(-np.pi, np.pi, (800, spec.circuit.num_parameters))  # 3 chunks
    pub = [(spec.circuit, column(spec.observables), values)]

    def started_by(run) -> list[threading.Thread]:
        before = set(threading.enumerate())
        run()
        return [t for t in threading.enumerate() if t not in before and t.name.startswith("qmedimg-kernel")]

    with ExactEstimator() as estimator:
        closed = started_by(lambda: estimator.run(pub).result())
        assert closed and all(t.is_alive() for t in closed)
    assert not any(t.is_alive() for t in closed)
    forgotten = ExactEstimator()
    dropped = started_by(lambda: forgotten.run(pub).result())
    assert dropped
    del forgotten
    gc.collect()
    for thread in dropped:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in dropped)


def test_rows_split_across_threads_give_exactly_the_values_and_gradients_of_one_thread(cores_set, monkeypatch):
    """The per-row test above runs 6 rows × 9 qubits: one chunk, never a thread. These rows reach the threads
    of both kernels (128-row blocks: 2 blocks a chunk; one row a thread: 4,096 amplitudes a chunk), in 3
    chunks of unequal size; a chunk dropped, or run twice in place of another, changes rows."""
    from qmedimg.quantum.adjoint_kernel import RowThreads

    maps = []
    real = RowThreads.map

    def counting(self, call, parts):
        parts = list(parts)
        maps.append(len(parts))
        return real(self, call, parts)

    monkeypatch.setattr(RowThreads, "map", counting)
    monkeypatch.setattr(exact_module, "ROW_PER_THREAD_FROM", 9)
    rng = np.random.default_rng(7)
    narrow, wide = load_circuit("ring", qubits=4, layers=1), load_circuit("ring", qubits=9, layers=1)
    narrow_values = rng.uniform(-np.pi, np.pi, (800, narrow.circuit.num_parameters))  # 800 // 256 = 3 chunks
    wide_values = rng.uniform(-np.pi, np.pi, (24, wide.circuit.num_parameters))  # 24 · 512 / 4,096 = 3 chunks

    def everything(count):
        cores_set(count)
        maps.clear()
        out = [ExactEstimator().run([(spec.circuit, column(spec.observables), values)]).result()[0].data.evs
               for spec, values in ((narrow, narrow_values), (wide, wide_values))]
        out.append(AdjointGradient(ExactEstimator(), method="adjoint").gradients(wide.circuit, wide.observables,
                                                                                  wide_values))
        return out, list(maps)

    (threaded, chunks), (serial, none) = everything(3), everything(1)
    for split, whole in zip(threaded, serial, strict=True):
        np.testing.assert_array_equal(split, whole)
    assert chunks == [3, 3, 3] and none == []  # every kernel call went to the threads, in 3 chunks; then none
    assert np.abs(serial[0]).max() > 0.1 and np.abs(serial[1]).max() > 0.1 and np.abs(serial[2]).max() > 0.01
