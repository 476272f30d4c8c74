"""The batched parameter-shift gradient, and the interface of estimators that sum a loss gradient.

qiskit-machine-learning's ``ParamShiftEstimatorGradient`` sends one single-row PUB per sample x
observable x shift. :class:`BatchedParamShiftGradient` (a ``BaseEstimatorGradient``) puts every
shifted row of a batch into ONE PUB and does the chain rule through affine gate angles as one
matrix product; it works with any V2 estimator (exact, Aer, noisy Aer, Runtime).

:class:`SummedGradientEstimator` is the declared hook for noise-aware training: an estimator that
can simulate, in the forward pass, what the batch-summed loss gradient needs
(:meth:`~SummedGradientEstimator.gradient_rows`); :meth:`BatchedParamShiftGradient.forward_and_vjp`
uses it when the estimator is one (the device simulator of the ``aer``/``fake`` backends).

Example::

    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator
    from qmedimg.quantum.gradients import BatchedParamShiftGradient

    spec = load_circuit("sel")
    grad = BatchedParamShiftGradient(ExactEstimator(), precision=0.0)
    g = grad.gradients(spec.circuit, spec.observables, values)    # (observables, rows, parameters)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.primitives.containers import ObservablesArray
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_machine_learning.gradients import BaseEstimatorGradient, EstimatorGradientResult

from qmedimg.errors import QmedimgError

# Gates whose generator has eigenvalues ±1/2: d<O>/dθ = (<O>(θ+π/2) - <O>(θ-π/2)) / 2.
SHIFT_GATES = ["rx", "ry", "rz", "p", "rxx", "ryy", "rzz", "rzx"]


def check_trainable(spec) -> None:
    """Refuse, in one line naming the circuit file, a circuit whose gate angles are not affine in its
    inputs and weights (e.g. ``ry(x0 * w0)``): its gradient cannot be computed by parameter shifts or the
    adjoint sweep, so it cannot be trained."""
    try:
        ShiftPlan.build(spec.circuit)
    except ValueError as exc:
        raise QmedimgError(f"{spec.path}: {exc}; such a circuit cannot be trained") from None


@dataclass(frozen=True)
class ShiftPlan:
    """A circuit rewritten so each gate angle is its own parameter ``g_k = A[k] . θ + b[k]``."""

    circuit: QuantumCircuit  # the rewritten circuit; its parameters are the g_k, in order
    jacobian: np.ndarray  # A, shape (G, P): d g_k / d θ_j (θ in original circuit.parameters order)
    offset: np.ndarray  # b, shape (G,)
    phase_only: np.ndarray  # (G,) bool: g_k's gate is diagonal with only permutations after it

    @classmethod
    def build(cls, circuit: QuantumCircuit) -> ShiftPlan:
        unrolled = TranslateParameterizedGates(SHIFT_GATES)(circuit)
        original = list(circuit.parameters)
        index = {p: j for j, p in enumerate(original)}
        rows, offsets = [], []
        out = unrolled.copy_empty_like()
        out.global_phase = 0  # no effect on expectation values; after transpiling it may hold parameters
        for inst in unrolled.data:
            params = []
            for value in inst.operation.params:
                if isinstance(value, ParameterExpression) and value.parameters:
                    row = np.zeros(len(original))
                    for p in value.parameters:
                        d = value.gradient(p)
                        if isinstance(d, ParameterExpression) and d.parameters:
                            raise ValueError(
                                f"gate angle '{value}' is not affine in its parameters; the "
                                "parameter-shift gradient needs angles like a*x + b*w + c"
                            )
                        row[index[p]] = complex(d).real
                    rows.append(row)
                    offsets.append(complex(value.bind({p: 0.0 for p in value.parameters})).real)
                    value = Parameter(f"g{len(rows) - 1:06d}")
                params.append(value)
            op = inst.operation.to_mutable() if params else inst.operation
            if params:
                op.params = params
            out.append(op, inst.qubits, inst.clbits)
        jacobian = np.array(rows).reshape(len(rows), len(original))
        return cls(out, jacobian, np.array(offsets), _phase_only_angles(out, len(rows)))


_DIAGONAL = {"rz", "p", "u1", "rzz", "cp", "crz", "cu1", "z", "s", "sdg", "t", "tdg", "cz", "ccz"}
_PERMUTATION = {"x", "cx", "swap", "ccx", "cswap", "id", "barrier", "measure"}


def _phase_only_angles(circuit: QuantumCircuit, count: int) -> np.ndarray:
    """Which gate angles only ever change phases of computational basis states: their gate is
    diagonal and, on every qubit it could reach, only diagonal or permutation gates follow.
    Probabilities, hence every Z-type expectation value, do not depend on them (an exact zero
    gradient; e.g. the final Rz of a strongly-entangling layer). Found by one backward walk."""
    mixed: set[int] = set()  # qubits that a later non-permutation gate acts on
    phase_only = np.zeros(count, dtype=bool)
    for inst in reversed(circuit.data):
        qubits = {circuit.find_bit(q).index for q in inst.qubits}
        name = inst.operation.name
        if name in _DIAGONAL:
            if not qubits & mixed:
                for value in inst.operation.params:
                    if isinstance(value, Parameter) and value.name.startswith("g"):
                        phase_only[int(value.name[1:])] = True
        elif name in _PERMUTATION:
            if qubits & mixed:
                mixed |= qubits
        else:
            mixed |= qubits
    return phase_only


class LossGradientRows(Protocol):
    """What :meth:`SummedGradientEstimator.gradient_rows` simulated, waiting for the loss gradient."""

    outputs: np.ndarray
    """(observables, rows): the forward values."""

    def loss_gradient(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``weights`` (observables, rows), the loss gradient w.r.t. the outputs -> (per-row gradient
        (rows, per-row angles), gradient of the shared angles summed over rows)."""


class SummedGradientEstimator(BaseEstimatorV2):
    """A V2 estimator that can also simulate what a batch-summed loss gradient needs before the loss
    is known (exact noisy values are linear in the density matrix, so the shared angles' shifts need
    not run once per row). :class:`BatchedParamShiftGradient` uses it for noise-aware training."""

    @abstractmethod
    def gradient_rows(self, circuit: QuantumCircuit, values: np.ndarray, observables: list[dict],
                      per_row: np.ndarray, shared: np.ndarray) -> LossGradientRows | None:
        """Simulate every row of ``values`` (gate angles of ``circuit``) and every row with each
        ``per_row`` column shifted by ±π/2; ``shared`` columns are equal on every row and their
        shifts are summed over rows later. None when this estimator cannot do it for this circuit
        (then the caller sends one shifted row per sample)."""


def _z_type(observables: ObservablesArray) -> bool:
    """Whether every Pauli term of every observable is made of I and Z only."""
    return all(set(label) <= {"I", "Z"} for obs in observables.ravel().tolist() for label in obs)


def shift_offsets(active: np.ndarray, width: int) -> np.ndarray:
    """(2, len(active), width): +π/2 then -π/2 on each active column in turn."""
    shifts = np.zeros((2, active.size, width))
    shifts[0, np.arange(active.size), active] = np.pi / 2
    shifts[1, np.arange(active.size), active] = -np.pi / 2
    return shifts


def column(observables: Sequence[SparsePauliOp]) -> ObservablesArray:
    """Observables as a (O, 1) ObservablesArray: broadcast against (rows, P) values -> (O, rows).
    Coercing SparsePauliOps costs ~0.3 ms a call, so hot paths convert once and keep this."""
    return ObservablesArray.coerce([[o] for o in observables])


class BatchedParamShiftGradient(BaseEstimatorGradient):
    """Parameter-shift gradient that sends all shifted rows of a batch as ONE PUB.

    Usable wherever qiskit-machine-learning takes a ``BaseEstimatorGradient``; any V2 estimator.

    Example::

        grad = BatchedParamShiftGradient(estimator)
        g = grad.gradients(circuit, observables, values)      # (num_observables, rows, P)
        job = grad.run([circuit] * 2, [obs_a, obs_b], values[:2])   # the standard interface
    """

    def __init__(self, estimator: BaseEstimatorV2, precision: float | None = None):
        super().__init__(estimator)
        self._precision = precision
        self._plans: dict[int, tuple[QuantumCircuit, ShiftPlan]] = {}

    @property
    def sums_loss_gradient(self) -> bool:
        """Whether :meth:`forward_and_vjp` can sum the weights' loss gradient before simulation."""
        return isinstance(self._estimator, SummedGradientEstimator)

    def plan(self, circuit: QuantumCircuit) -> ShiftPlan:
        """The cached :class:`ShiftPlan` of ``circuit`` (circuits must not change after first use)."""
        hit = self._plans.get(id(circuit))
        if hit is None or hit[0] is not circuit:
            hit = (circuit, ShiftPlan.build(circuit))
            self._plans[id(circuit)] = hit
        return hit[1]

    def gradients(
        self,
        circuit: QuantumCircuit,
        observables: Sequence[SparsePauliOp] | ObservablesArray,
        values: np.ndarray,
        parameters: Sequence[Parameter] | None = None,
    ) -> np.ndarray:
        """d<O_o>/dθ_j for every observable, row of ``values`` and requested parameter.

        One PUB: observables shape (O, 1) against (rows * 2G', G) shifted parameter rows, where
        G' counts the unique gate angles that depend on the requested parameters.
        Returns shape (O, rows, len(parameters)).
        """
        plan = self.plan(circuit)
        values = np.asarray(values, dtype=float).reshape(-1, circuit.num_parameters)
        order = {p: j for j, p in enumerate(circuit.parameters)}
        cols = [order[p] for p in parameters] if parameters is not None else list(range(len(order)))
        if not isinstance(observables, ObservablesArray):
            observables = column(observables)
        jac = plan.jacobian[:, cols]  # (G, J)
        needed = np.any(jac != 0, axis=1)
        if plan.phase_only.any() and _z_type(observables):
            needed &= ~plan.phase_only  # exactly zero for Z-type observables: not sent
        active = np.flatnonzero(needed)
        rows, n_obs = values.shape[0], observables.shape[0]
        if active.size == 0:
            return np.zeros((n_obs, rows, len(cols)))
        g = values @ plan.jacobian.T + plan.offset  # (rows, G)
        shifted = g[:, None, None, :] + shift_offsets(active, g.shape[1])[None]  # (rows, 2, G', G)
        pub = (plan.circuit, observables, shifted.reshape(-1, g.shape[1]))
        evs = self._estimator.run([pub], precision=self._precision).result()[0].data.evs
        evs = np.asarray(evs).reshape(n_obs, rows, 2, active.size)
        dg = (evs[:, :, 0] - evs[:, :, 1]) / 2  # (O, rows, G')
        return dg @ jac[active]  # chain rule to the requested parameters

    def forward_and_vjp(self, circuit: QuantumCircuit, observables: ObservablesArray, values: np.ndarray,
                        num_inputs: int):
        """With a :class:`SummedGradientEstimator` (the device simulator of ``aer``/``fake`` backends):
        the values <O_o>(row), shape (O, rows), and the loss gradient as a function of
        ``cotangent`` (O, rows) (the loss gradient w.r.t. those values): ``Σ_o cotangent[o, row]·
        ∂<O_o>(row)/∂θ_j``, per row for the first ``num_inputs`` parameters, summed over rows for the
        rest (the weights). One simulation, and the weights' shifts run once per measured Pauli
        label, not once per row. None otherwise, or if a gate angle mixes inputs and weights."""
        plan = self.plan(circuit)
        jac = plan.jacobian
        from_inputs, from_weights = np.any(jac[:, :num_inputs] != 0, axis=1), np.any(jac[:, num_inputs:] != 0, axis=1)
        if not self.sums_loss_gradient or np.any(from_inputs & from_weights):
            return None
        if plan.phase_only.any() and _z_type(observables):  # exactly zero: not sent
            from_inputs, from_weights = from_inputs & ~plan.phase_only, from_weights & ~plan.phase_only
        inputs, weights = np.flatnonzero(from_inputs), np.flatnonzero(from_weights)
        g = np.asarray(values, dtype=float).reshape(-1, circuit.num_parameters) @ jac.T + plan.offset
        rows = self._estimator.gradient_rows(plan.circuit, g, observables.ravel().tolist(), inputs, weights)
        if rows is None:
            return None

        def vjp(cotangent):
            grad_g_in, grad_g_w = rows.loss_gradient(cotangent)  # by gate angle
            return grad_g_in @ jac[inputs, :num_inputs], grad_g_w @ jac[weights, num_inputs:]

        return rows.outputs, vjp

    def _run(self, circuits, observables, parameter_values, parameters, **options):
        """Standard interface: jobs grouped by (circuit, parameters), one PUB per group."""
        groups: dict[tuple, list[int]] = {}
        for i, (c, p) in enumerate(zip(circuits, parameters, strict=True)):
            groups.setdefault((id(c), tuple(p)), []).append(i)
        gradients: list = [None] * len(circuits)
        for (_, params), idx in groups.items():
            circuit = circuits[idx[0]]
            # rows and observables are deduplicated, so EstimatorQNN's tiled (sample x observable)
            # jobs cost O x samples evaluations, as they should
            values, row_of = np.unique(
                np.asarray([parameter_values[i] for i in idx], dtype=float), axis=0, return_inverse=True
            )
            obs_ids: dict[int, int] = {}
            obs_list = []
            for i in idx:
                if id(observables[i]) not in obs_ids:
                    obs_ids[id(observables[i])] = len(obs_list)
                    obs_list.append(observables[i])
            grads = self.gradients(circuit, obs_list, values, list(params))  # (O, unique rows, J)
            for k, i in enumerate(idx):
                gradients[i] = grads[obs_ids[id(observables[i])], row_of.ravel()[k]]
        metadata = [{"parameters": p} for p in parameters]
        return EstimatorGradientResult(gradients=gradients, metadata=metadata, options=self._default_options)
