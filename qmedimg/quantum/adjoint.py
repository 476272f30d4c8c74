"""Adjoint differentiation for the exact estimator: every gradient of a sample from one forward
simulation and one backward sweep, whatever the number of parameters.

Parameter shift costs 1 + 2·(angles) simulations per sample (169 at 12 qubits, 2 layers); the
adjoint method (the one PennyLane's ``lightning.qubit`` and qiskit-torch-module use) costs about
three. :class:`AdjointGradient` is a qiskit-machine-learning ``BaseEstimatorGradient`` (so
``EstimatorQNN(gradient=AdjointGradient(ExactEstimator()))`` works) and a
:class:`~qmedimg.quantum.gradients.BatchedParamShiftGradient`, whose
:meth:`~AdjointGradient.forward_and_vjp` the torch connector uses: with the loss gradient known, one
sweep per sample gives the whole vector-Jacobian product, however many outputs there are.

It chooses per circuit (``method="auto"``): the adjoint sweep from :data:`ADJOINT_FROM` qubits
wherever every gate angle is affine in the parameters (every circuit in ``circuits/``), parameter
shift otherwise. Below 5 qubits the adjoint sweep is also faster (fwd+bwd of the torch layer at B=32
per CPU-second, sel / ring / fqa at 4 qubits: parameter shift 17,700 / 16,100 / 8,400, adjoint
61,900 / 67,700 / 48,300), but there the head is a few percent of a training step and parameter shift
keeps the float32 rounding of every run trained before: a 60-epoch run amplifies last-bit differences
(BreastMNIST seed 0: test ACC 0.8782 vs 0.8718 with the adjoint sweep), so an older run resumed or
re-trained gives the same metrics. ``method="adjoint"`` takes it anyway. Wall-clock figures against
PennyLane: ``benchmarks/wide.py``.
:func:`default_gradient` is what :class:`~qmedimg.quantum.qnn.FastEstimatorQNN`
takes when given no gradient.

Example::

    from qmedimg.quantum.adjoint import AdjointGradient
    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator

    spec = load_circuit("sel", qubits=12)
    grad = AdjointGradient(ExactEstimator())
    g = grad.gradients(spec.circuit, spec.observables, values)      # (observables, rows, parameters)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from qiskit.circuit import Parameter, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.primitives.containers import ObservablesArray
from qiskit.quantum_info import SparsePauliOp

from qmedimg.quantum.adjoint_kernel import adjoint_rows, simulate_rows
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.gradients import BatchedParamShiftGradient, column
from qmedimg.quantum.kernel import announce_compile, cos_sin_half
from qmedimg.quantum.primitives import pauli_terms

ADJOINT_FROM = 5
"""``method="auto"`` differentiates circuits of at least this many qubits by the adjoint sweep."""
KEEP_STATES_BYTES = 1 << 28
"""In training, the forward pass keeps each row's final state for the backward sweep when the
batch's states fit in this many bytes (256 MiB: 16 qubits × B=256); otherwise the sweep simulates
the row again."""
Method = Literal["auto", "adjoint", "parameter-shift"]


class AdjointGradient(BatchedParamShiftGradient):
    """Gradients of :class:`ExactEstimator` values by adjoint differentiation (exact, precision 0).

    ``method``: ``"auto"`` (adjoint from :data:`ADJOINT_FROM` qubits where every gate angle is
    affine, parameter shift otherwise),
    ``"adjoint"`` or ``"parameter-shift"``. Circuits with a non-affine gate angle always use
    parameter shift. Agrees with parameter shift to ~1e-14 (tests: every circuit in ``circuits/``).
    """

    def __init__(self, estimator: ExactEstimator, method: Method = "auto"):
        if not isinstance(estimator, ExactEstimator):
            raise TypeError("AdjointGradient differentiates ExactEstimator values only")
        if method not in ("auto", "adjoint", "parameter-shift"):
            raise ValueError(f"method must be auto, adjoint or parameter-shift, not {method!r}")
        super().__init__(estimator, precision=0.0)
        self.method = method

    def uses_adjoint(self, circuit: QuantumCircuit) -> bool:
        """Whether gradients of ``circuit`` come from the adjoint sweep (else parameter shift)."""
        if self.method == "parameter-shift" or not self._estimator.program(circuit).affine:
            return False
        return self.method == "adjoint" or circuit.num_qubits >= ADJOINT_FROM

    @property
    def sums_loss_gradient(self) -> bool:
        """Always: the connector hands the loss gradient to :meth:`forward_and_vjp`."""
        return True

    def vector_jacobian(self, circuit: QuantumCircuit, observables: list[dict], values: np.ndarray,
                        cotangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(<O_o> per row, shape (O, rows); Σ_o cotangent[o, row]·∂<O_o>(row)/∂θ, shape (rows, P)),
        from one forward simulation and one adjoint sweep per row."""
        program, coeffs, simulation = self._simulation(circuit, observables, values)
        weights = np.asarray(cotangent, dtype=float).T @ coeffs  # (rows, labels)
        pauli_values, grad_angles = simulate_rows(*simulation, weights, threads=self._estimator.threads)
        return coeffs @ pauli_values.T, grad_angles @ program.jacobian

    def _simulation(self, circuit: QuantumCircuit, observables: list[dict], values: np.ndarray):
        """(compiled circuit, <O> = coeffs @ <P> coefficients, the arguments of :func:`simulate_rows`
        before the weights) for these rows of parameter values."""
        program = self._estimator.program(circuit)
        values = np.asarray(values, dtype=float).reshape(-1, circuit.num_parameters)
        labels, coeffs = pauli_terms(observables)
        masks, phases = self._estimator.pauli_tables(tuple(labels), program.num_qubits)
        angles = program.angles(values)
        cos, sin = cos_sin_half(angles)
        announce_compile(adjoint_rows)
        return program, coeffs, (program.tables, angles, cos, sin, masks, phases)

    def gradients(
        self,
        circuit: QuantumCircuit,
        observables: Sequence[SparsePauliOp] | ObservablesArray,
        values: np.ndarray,
        parameters: Sequence[Parameter] | None = None,
    ) -> np.ndarray:
        """d<O_o>/dθ_j for every observable, row of ``values`` and requested parameter: shape
        (O, rows, len(parameters)). One adjoint sweep per row and observable."""
        if not self.uses_adjoint(circuit):
            return super().gradients(circuit, observables, values, parameters)
        if not isinstance(observables, ObservablesArray):
            observables = column(observables)
        flat = observables.ravel().tolist()
        values = np.asarray(values, dtype=float).reshape(-1, circuit.num_parameters)
        rows, n_obs = len(values), len(flat)
        tiled = np.repeat(values, n_obs, axis=0)  # row-major (row, observable)
        one_hot = np.tile(np.eye(n_obs), (rows, 1)).T  # (O, rows * O)
        _, grad = self.vector_jacobian(circuit, flat, tiled, one_hot)
        grad = grad.reshape(rows, n_obs, -1).transpose(1, 0, 2)
        if parameters is not None:
            order = {p: j for j, p in enumerate(circuit.parameters)}
            grad = grad[:, :, [order[p] for p in parameters]]
        return grad

    def forward_and_vjp(self, circuit: QuantumCircuit, observables: ObservablesArray, values: np.ndarray,
                        num_inputs: int):
        """The values <O_o>(row), shape (O, rows), and ``vjp(cotangent (O, rows))`` -> (gradient of
        the first ``num_inputs`` parameters per row, of the rest summed over rows): the contract of
        :meth:`BatchedParamShiftGradient.forward_and_vjp`. None where :meth:`uses_adjoint` says
        parameter shift: then the connector takes the Jacobian from :meth:`gradients` as before."""
        if not self.uses_adjoint(circuit):
            return None
        program, coeffs, simulation = self._simulation(circuit, observables.ravel().tolist(), values)
        rows = simulation[1].shape[0]
        # the final states, kept for the backward sweep so each row is simulated once per step
        keep = rows * 16 << program.num_qubits <= KEEP_STATES_BYTES
        states = np.empty((rows, 1 << program.num_qubits), np.complex128) if keep else None
        pauli_values, _ = simulate_rows(*simulation, None, states, threads=self._estimator.threads)

        def vjp(cotangent):
            weights = np.asarray(cotangent, dtype=float).T @ coeffs
            grad = simulate_rows(*simulation, weights, states, threads=self._estimator.threads)[1] @ program.jacobian
            return grad[:, :num_inputs], grad[:, num_inputs:].sum(axis=0)

        return coeffs @ pauli_values.T, vjp


def default_gradient(estimator: BaseEstimatorV2, precision: float) -> BatchedParamShiftGradient:
    """The gradient a QNN gets by default: :class:`AdjointGradient` (``auto``) for exact values of
    the :class:`ExactEstimator`, :class:`BatchedParamShiftGradient` for every other estimator."""
    if isinstance(estimator, ExactEstimator) and precision == 0:
        return AdjointGradient(estimator)
    return BatchedParamShiftGradient(estimator, precision=precision)
