"""The exact estimator and the batched gradient agree with Aer and with qiskit-ML's own path."""

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.circuit.random import random_circuit
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
from qiskit_machine_learning.neural_networks import EstimatorQNN

from qmedimg.quantum.circuits import circuit_names, load_circuit
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.gradients import BatchedParamShiftGradient
from qmedimg.quantum.qnn import FastEstimatorQNN

AER = AerEstimator(options={"default_precision": 0.0})
MIXED = [SparsePauliOp("XXYZ"), SparsePauliOp.from_list([("ZIIZ", 0.5), ("IYXI", -1.5)])]


def aer_safe(circuit: QuantumCircuit) -> QuantumCircuit:
    """Aer 0.18's EstimatorV2 binds parameterized controlled gates (cp, crz, …) wrongly; unroll them."""
    return TranslateParameterizedGates(["rx", "ry", "rz", "p", "u", "rzz", "rxx", "ryy", "rzx"])(circuit)


def qnn_for(spec, estimator, cls=FastEstimatorQNN, circuit=None, **kw):
    return cls(circuit=circuit if circuit is not None else spec.circuit, estimator=estimator,
               observables=list(spec.observables), input_params=list(spec.inputs),
               weight_params=list(spec.weights), input_gradients=True, default_precision=0.0, **kw)


class CountingEstimator(ExactEstimator):
    """An exact estimator that records how many PUBs and rows it was sent."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def run(self, pubs, *, precision=None):
        pubs = list(pubs)
        self.calls.append([np.asarray(p[2]).shape for p in pubs])
        return super().run(pubs, precision=precision)


@pytest.mark.parametrize("name", circuit_names())
def test_exact_values_match_aer_on_every_shipped_circuit(name):
    spec = load_circuit(name)
    rng = np.random.default_rng(1)
    values = rng.uniform(-np.pi, np.pi, (9, spec.circuit.num_parameters))
    obs = [[o] for o in list(spec.observables) + MIXED]
    exact = ExactEstimator().run([(spec.circuit, obs, values)]).result()[0].data.evs
    aer = AER.run([(aer_safe(spec.circuit), obs, values)]).result()[0].data.evs
    assert exact.shape == (len(obs), 9)
    np.testing.assert_allclose(exact, aer, atol=1e-6)


@pytest.mark.parametrize("name", circuit_names())
def test_fast_qnn_values_and_gradients_match_aer(name):
    spec = load_circuit(name)
    rng = np.random.default_rng(2)
    x = rng.uniform(-np.pi, np.pi, (5, len(spec.inputs)))
    w = rng.uniform(-np.pi, np.pi, len(spec.weights))
    fast = qnn_for(spec, ExactEstimator())
    aer = qnn_for(spec, AER, circuit=aer_safe(spec.circuit))
    np.testing.assert_allclose(fast.forward(x, w), aer.forward(x, w), atol=1e-6)
    for got, want in zip(fast.backward(x, w), aer.backward(x, w)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_batched_gradient_equals_qiskit_ml_param_shift():
    spec = load_circuit("sel", layers=1)
    circuit = aer_safe(spec.circuit)
    rng = np.random.default_rng(3)
    x, w = rng.uniform(-3, 3, (3, 4)), rng.uniform(-3, 3, 12)
    stock = qnn_for(spec, AER, cls=EstimatorQNN, circuit=circuit,
                    gradient=ParamShiftEstimatorGradient(AER))
    ours = qnn_for(spec, AER, circuit=circuit)
    for got, want in zip(ours.backward(x, w), stock.backward(x, w)):
        np.testing.assert_allclose(got, want, atol=1e-9)
    # the same gradient class inside qiskit-ML's unmodified EstimatorQNN (standard interface)
    plain = qnn_for(spec, AER, cls=EstimatorQNN, circuit=circuit,
                    gradient=BatchedParamShiftGradient(AER, precision=0.0))
    for got, want in zip(plain.backward(x, w), stock.backward(x, w)):
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_forward_and_backward_each_send_one_pub():
    # the batched parameter shift any estimator gets (the exact one differentiates by the adjoint method)
    spec = load_circuit("sel")
    est = CountingEstimator()
    layer = TorchConnector(qnn_for(spec, est, gradient=BatchedParamShiftGradient(est, precision=0.0)),
                           initial_weights=np.zeros(24))
    x = torch.rand(32, 4, requires_grad=True)
    layer(x).sum().backward()
    assert [len(c) for c in est.calls] == [1, 1]
    forward_rows, gradient_rows = est.calls[0][0], est.calls[1][0]
    assert forward_rows == (32, 28)
    # every sample x ±shift x gate angle in one PUB, except sel's 4 final Rz angles, which only
    # change phases: their gradient is exactly 0 for Z observables and is not computed
    assert gradient_rows[0] == 32 * 2 * (28 - 4)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_exact_estimator_is_exact_even_when_qiskit_ml_default_precision_would_add_noise():
    spec = load_circuit("ring")
    x, w = np.full((4, 4), 0.3), np.linspace(-1, 1, 24)
    qnn = qnn_for(spec, ExactEstimator())
    first, second = qnn.forward(x, w), qnn.forward(x, w)
    np.testing.assert_array_equal(first, second)
    binding = dict(zip([*spec.inputs, *spec.weights], np.concatenate([x[0], w])))
    sv = Statevector(spec.circuit.assign_parameters(binding))
    np.testing.assert_allclose(first[0], [sv.expectation_value(o).real for o in spec.observables],
                               atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_exact_estimator_on_random_circuits(seed):
    circuit = random_circuit(5, 6, max_operands=3, seed=seed)
    obs = SparsePauliOp.from_list([("XYZIZ", 1.0), ("ZZIIY", 0.25), ("IIIII", 0.5)])
    got = ExactEstimator().run([(circuit, obs)]).result()[0].data.evs
    assert got.shape == ()
    assert got == pytest.approx(Statevector(circuit).expectation_value(obs).real, abs=1e-10)


def test_broadcasting_shapes_and_nonaffine_angles_match_aer():
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2)
    qc.ry(a * b, 0)  # not affine: evaluated row by row
    qc.u(a, 2 * b + 0.3, -a, 1)
    qc.rx(b - 0.7, 0)
    qc.p(a, 1)
    qc.cp(b, 1, 0)
    qc.cx(0, 1)
    qc.rzz(a - b, 0, 1)
    values = np.random.default_rng(4).uniform(-2, 2, (3, 1, 2))
    obs = [SparsePauliOp("ZI"), SparsePauliOp("XY"), SparsePauliOp("YY")]  # shape (3,)
    got = ExactEstimator().run([(qc, obs, values)]).result()[0].data.evs
    want = AER.run([(aer_safe(qc), obs, values)]).result()[0].data.evs
    assert got.shape == want.shape == (3, 3)
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_gradient_refuses_nonaffine_angles():
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(1)
    qc.ry(a * b, 0)
    with pytest.raises(ValueError, match="not affine"):
        BatchedParamShiftGradient(ExactEstimator()).gradients(qc, [SparsePauliOp("Z")], [[0.1, 0.2]])


def test_backend_transpiles_once_and_maps_observables_to_the_layout():
    from qmedimg.backends import get_backend

    spec = load_circuit("sel")
    backend = get_backend("fake_manila", transpile={"initial_layout": [4, 3, 2, 1], "seed_transpiler": 7})
    isa, obs = backend.prepare(spec)
    again, _ = backend.prepare(spec)
    assert again is isa and isa.num_qubits == 5
    values = np.random.default_rng(5).uniform(-3, 3, (4, spec.circuit.num_parameters))
    logical = ExactEstimator().run([(spec.circuit, [[o] for o in spec.observables], values)])
    physical = AER.run([(isa, [[o] for o in obs], values)])  # stock Aer on the 5-qubit ISA circuit
    np.testing.assert_allclose(physical.result()[0].data.evs, logical.result()[0].data.evs, atol=1e-9)


def test_phase_only_angles_are_skipped_for_z_observables_only():
    x, w, v = Parameter("x"), Parameter("w"), Parameter("v")
    qc = QuantumCircuit(2)
    qc.ry(x, 0)
    qc.rz(w, 0)  # only permutations follow on its qubits: a pure phase for Z readouts
    qc.rz(v, 1)
    qc.cx(0, 1)
    qc.h(1)  # ... but this mixes qubit 1 after the cx, so v (and w, through the cx) may matter
    plan = BatchedParamShiftGradient(AER).plan(qc)
    assert plan.phase_only.tolist() == [False, False, False]
    tail = QuantumCircuit(2)
    tail.ry(x, 0)
    tail.rz(w, 0)
    tail.cx(0, 1)
    plan = BatchedParamShiftGradient(AER).plan(tail)
    assert plan.phase_only.tolist() == [False, True]
    values = np.array([[0.4, 1.1], [-0.3, 2.0]])
    for obs in ([SparsePauliOp("IZ"), SparsePauliOp("ZZ")], [SparsePauliOp("IX"), SparsePauliOp("ZY")]):
        ours = BatchedParamShiftGradient(AER, precision=0.0).gradients(tail, obs, values)
        stock = ParamShiftEstimatorGradient(AER).run(
            [tail] * 4, [o for o in obs for _ in range(2)], np.tile(values, (2, 1))).result()
        np.testing.assert_allclose(ours.reshape(4, 2), np.array(stock.gradients), atol=1e-9)
