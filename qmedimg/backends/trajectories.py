"""qmedimg's noise-trajectory sampler: noisy expectation values of circuits wider than Aer's density matrix
serves, from the very channels Aer's noise model holds (issue 21; design: ``docs/design/trajectory-sampler.md``).

Example::

    from qmedimg.backends.trajectories import TrajectorySampler
    sampler = TrajectorySampler(small_circuit, gate_errors(calibrated))   # noise.gate_errors: Aer's QuantumErrors
    if sampler.unsupported is None:
        mean, stderr, covariance = sampler.run(values, labels, coeffs, trajectories=1000, seed=0)

What it samples, and why the mean is unbiased. Each gate's ``QuantumError`` is a mixture of terms
(probability p_i); a term is a sequence of operations, each a unitary (a Pauli) or a channel given by Kraus
operators (``reset`` = {|0⟩⟨0|, |0⟩⟨1|}, ``kraus``), on one qubit each. A *branch* picks a term and one Kraus
operator of each of its channels; its matrix A_b is the product of what it picked, on each qubit. A branch is
drawn with the state-independent probability q_b = p_i·Π w_j, w_j = Tr(K_j†K_j)/2 (these sum to 1 because every
channel is trace preserving), and applied as M_b = A_b/√(Π w_j), so that Σ_b q_b M_b ρ M_b† = Σ_i p_i Σ A ρ A† —
the channel itself. States are not renormalised: the trajectory's value ⟨ψ|P|ψ⟩ carries the weight, and the
mean over trajectories is the density-matrix value exactly in expectation (the identity's value is 1, not
the estimate ‖ψ‖²). Being state-independent, draws can be made before simulation, trajectories share the
state until their first draw other than the most probable branch, and single-qubit work folds into 2×2
matrices (:mod:`qmedimg.quantum.trajectory_kernel`).

Anything the sampler cannot sample exactly is reported in :attr:`TrajectorySampler.unsupported` (a channel on
more than one qubit that is not a product, a non-trace-preserving one, an operation in the circuit that is not
a gate of ≤ 2 qubits, e.g. the relaxation channels Aer inserts for delays, an error on an instruction the
sampler does not know) and the caller hands the circuit to Aer: nothing is approximated.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from qiskit.circuit import Parameter, ParameterExpression, QuantumCircuit
from qiskit.quantum_info import Kraus, Operator

from qmedimg.cores import cores
from qmedimg.quantum import trajectory_kernel as kernel
from qmedimg.quantum.covariance import mean_covariance

_PAULI = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]),
          "Z": np.diag([1.0, -1.0])}
_RESET = [np.array([[1, 0], [0, 0]], complex), np.array([[0, 1], [0, 0]], complex)]
_IGNORED = {"barrier", "delay"}  # no operation on the state (a delay's relaxation is a channel in the circuit)
TOLERANCE = 1e-9


def memory_estimate(qubits: int, trajectories: int, two_qubit_gates: int | None = None,
                    locations: int | None = None) -> int:
    """Peak bytes of :meth:`TrajectorySampler.run` on one row: a state per two-qubit gate (the checkpoints) and
    per thread, and the draws (trajectories × noise locations). Without a circuit, sel-like counts are assumed
    (measured for sel 12 × 2 on FakeBrisbane: 57 two-qubit gates, 254 noise locations on 12 qubits)."""
    two_qubit_gates = 8 * qubits if two_qubit_gates is None else two_qubit_gates
    locations = 24 * qubits if locations is None else locations
    return 16 * 2**qubits * (two_qubit_gates + 1 + cores()) + 8 * trajectories * (locations + qubits)


class UnsupportedNoise(Exception):
    """A channel or operation the sampler cannot sample exactly (its message says which)."""


def branches(error, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The branches of one Aer ``QuantumError`` on ``width`` (1 or 2) qubits, most probable first:
    (probabilities (B,), matrices on its first qubit (B, 2, 2), on its second (B, 2, 2); identity when 1 qubit)."""
    probabilities = np.asarray(error.probabilities, dtype=float)
    if abs(probabilities.sum() - 1) > TOLERANCE or probabilities.min() < -TOLERANCE:
        raise UnsupportedNoise(f"error terms' probabilities sum to {probabilities.sum()}, not 1")
    rows_p, rows_a, rows_b = [], [], []
    for circuit, p in zip(error.circuits, probabilities):
        if p <= 0:
            continue
        choices = [[(np.eye(2, dtype=complex), 1.0)] for _ in range(width)]
        for inst in circuit.data:
            qubits = [circuit.find_bit(q).index for q in inst.qubits]
            for q, factor in _factors(inst.operation, qubits):
                choices[q] = [(k @ m, w * wk) for m, w in choices[q] for k, wk in factor]
        for ma, wa in choices[0]:
            for mb, wb in (choices[1] if width == 2 else [(np.eye(2, dtype=complex), 1.0)]):
                rows_p.append(p * wa * wb)
                rows_a.append(ma / np.sqrt(wa))
                rows_b.append(mb / np.sqrt(wb))
    order = np.argsort(-np.asarray(rows_p), kind="stable")
    return np.asarray(rows_p)[order], np.asarray(rows_a)[order], np.asarray(rows_b)[order]


def _factors(operation, qubits: list[int]) -> list[tuple[int, list[tuple[np.ndarray, float]]]]:
    """One operation inside an error term as [(qubit, [(Kraus operator, draw weight), ...])]; a unitary has
    one operator of weight 1."""
    name = operation.name
    if name == "pauli":
        label = operation.params[0] if isinstance(operation.params[0], str) else str(operation.params[0])
        return [(q, [(_PAULI[letter].astype(complex), 1.0)]) for q, letter in zip(qubits, reversed(label.lstrip("-i")))]
    if len(qubits) != 1:
        raise UnsupportedNoise(f"a {len(qubits)}-qubit '{name}' inside an error (only single-qubit channels and "
                               "Pauli products are sampled)")
    if name == "reset":
        operators = _RESET
    elif name == "kraus":
        operators = [np.asarray(k, dtype=complex) for k in Kraus(operation).data]
    else:
        try:
            matrix = Operator(operation).data
        except Exception as exc:  # noqa: BLE001 - anything without a matrix is not sampled
            raise UnsupportedNoise(f"operation '{name}' inside an error has no matrix ({exc})") from None
        if not np.allclose(matrix.conj().T @ matrix, np.eye(2), atol=TOLERANCE):
            raise UnsupportedNoise(f"operation '{name}' inside an error is not unitary")
        return [(qubits[0], [(matrix, 1.0)])]
    total = sum(k.conj().T @ k for k in operators)
    if not np.allclose(total, np.eye(2), atol=TOLERANCE):
        raise UnsupportedNoise(f"'{name}' inside an error is not trace preserving")
    weights = [float(np.trace(k.conj().T @ k).real) / 2 for k in operators]
    return [(qubits[0], [(k, w) for k, w in zip(operators, weights) if w > 0])]


@dataclass
class TrajectoryProgram:
    """A circuit and its noise as the kernels' arrays (:mod:`qmedimg.quantum.trajectory_kernel`): one step per gate,
    one noise location per gate with an error, the locations' branches flattened."""

    n: int  # qubits
    kind: np.ndarray  # per step: ONE_QUBIT or TWO_QUBIT
    qa: np.ndarray  # per step: its (first) qubit
    qb: np.ndarray  # per step: its second qubit (= qa for one-qubit steps)
    gates: np.ndarray  # (steps, 4, 4); parameterized steps are refilled per row (``row_gates``)
    loc: np.ndarray  # per step: its noise location, -1 if none
    step_of: np.ndarray  # per location: its step
    offset: np.ndarray  # per location: its first branch in the flat arrays below
    count: np.ndarray  # per location: its branches
    cum: np.ndarray  # per branch: cumulative probability within its location (most probable first)
    op_a: np.ndarray  # per branch: the (weighted) matrix on the step's first qubit
    op_b: np.ndarray  # per branch: on its second qubit (identity for one-qubit errors)
    parameterized: list[tuple[int, int]]  # (step, index of the instruction in the circuit)
    defer: np.ndarray  # per step: a two-qubit step whose 4×4 is held for the next one on its pair (fusion)
    take: np.ndarray  # per step: the qubit under which the matrix it multiplies in is held, -1 if none
    swap: np.ndarray  # per step: that matrix is in the other qubit order

    def unfused(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(defer, take, swap) that fuse nothing: every two-qubit gate applied on its own (the gradient sweep)."""
        return np.zeros_like(self.defer), np.full_like(self.take, -1), np.zeros_like(self.swap)


class Sampled(NamedTuple):
    """What :meth:`TrajectorySampler.run` gives: each observable's mean over trajectories and its standard error
    (both (observables, rows)), and each row's covariance of those means ((rows, observables, observables):
    one row's observables come from the same trajectories, so their errors are correlated)."""

    mean: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray


class TrajectorySampler:
    """Noisy Pauli expectation values of one circuit by noise trajectories.

    Args:
        circuit: a circuit of gates on ≤ 2 qubits (parameters allowed), its qubits the simulated ones.
        errors: ``{(instruction name, qubits): QuantumError}`` — the noise model's local errors, applied after
            every matching instruction, as Aer applies them (:func:`qmedimg.backends.noise.gate_errors`).
        fuse: run two-qubit gates in a row on one pair as one pass, and each qubit's single-qubit gates after
            its last two-qubit gate in that gate's pass (the default; see :mod:`qmedimg.quantum.trajectory_kernel`).
        branches: ``{(instruction name, qubits): branches}`` of ``errors`` computed so far (:func:`branches`),
            filled here: samplers of the same errors share their work (:class:`~qmedimg.backends.noise.QubitsNoise`).
    ``unsupported`` is None when every channel can be sampled exactly, else why not (then use Aer)."""

    def __init__(self, circuit: QuantumCircuit, errors: dict, *, fuse: bool = True, branches: dict | None = None):
        self.circuit, self.fuse = circuit, fuse
        self.unsupported: str | None = None
        try:
            self.program = _compile(circuit, errors, {} if branches is None else branches)
            if not fuse:  # every two-qubit gate applied on its own (the same numbers; tests compare the two)
                self.program.defer, self.program.take, self.program.swap = self.program.unfused()
        except UnsupportedNoise as exc:
            self.program, self.unsupported = None, str(exc)

    def run(self, values: np.ndarray, labels: list[str], coeffs: np.ndarray, *, trajectories: int,
            seed: int | np.random.Generator | None) -> Sampled:
        """Observables Σ_j coeffs[o, j]·<labels[j]> for every row of ``values``: their means, standard errors and
        covariance (:class:`Sampled`). Labels are little-endian Pauli strings over the circuit's qubits.
        Each row draws from its own seed (taken from ``seed`` in row order), so the numbers do not depend on
        how rows and trajectories are spread over threads."""
        program = self.program
        if program is None:
            raise UnsupportedNoise(self.unsupported)
        values = np.atleast_2d(np.asarray(values, dtype=float)) if len(values) else np.zeros((0, 0))
        masks = label_masks(labels)
        row_seeds = np.random.default_rng(seed).integers(2**63, size=len(values))
        mean = np.zeros((len(coeffs), len(values)))
        covariance = np.zeros((len(values), len(coeffs), len(coeffs)))
        gates = self.row_gates(values)
        threads = max(1, cores())
        with ThreadPoolExecutor(threads) as pool:
            if len(values) >= threads:  # whole rows per thread
                chunks = [c for c in np.array_split(np.arange(len(values)), threads) if len(c)]
                for future in [pool.submit(self._rows, chunk, gates, row_seeds, trajectories, masks, coeffs, mean,
                                           covariance, None) for chunk in chunks]:
                    future.result()
            else:  # few rows: each row's trajectories spread over the threads
                for r in range(len(values)):
                    self._rows([r], gates, row_seeds, trajectories, masks, coeffs, mean, covariance, pool)
        stderr = np.sqrt(np.diagonal(covariance, axis1=1, axis2=2)).T if len(values) else np.zeros_like(mean)
        return Sampled(mean, stderr, covariance)

    def _rows(self, rows, gates, row_seeds, trajectories, masks, coeffs, mean, covariance, pool) -> None:
        """Simulate ``rows``: the dominant path, then the trajectories (over ``pool``'s threads if given)."""
        program = self.program
        xmask, zmask, ny, identity = masks
        locations = len(program.offset)
        checkpoints = np.empty((int(np.sum(program.kind == kernel.TWO_QUBIT)) + 1, 2, 1 << program.n))  # split
        pending_at = np.empty((locations, program.n, 2, 2), np.complex128)
        checkpoint_at = np.zeros(locations, np.int64)
        memo = kernel.dominant_memo(program.n, len(program.kind))
        dominant = np.empty(len(xmask))
        fusion = program.defer, program.take, program.swap
        for r in rows:
            kernel.dominant_path(program.n, program.kind, program.qa, program.qb, gates[r], program.loc, program.offset,
                                 program.op_a, program.op_b, *fusion, checkpoints, pending_at, checkpoint_at,
                                 memo, xmask, zmask, ny, dominant)
            uniforms = np.random.default_rng(row_seeds[r]).random((trajectories, locations))
            out = np.empty((trajectories, len(xmask)))

            def part(first, last):
                kernel.run_trajectories(first, last, program.n, program.kind, program.qa, program.qb, gates[r],
                                        program.loc, program.step_of, program.offset, program.count, program.cum,
                                        program.op_a, program.op_b, *fusion, checkpoints, pending_at, checkpoint_at,
                                        memo, uniforms, xmask, zmask, ny, out, self.fuse)

            if pool is None:
                part(0, trajectories)
            else:
                bounds = np.linspace(0, trajectories, cores() + 1).astype(int)
                for future in [pool.submit(part, bounds[i], bounds[i + 1]) for i in range(cores())]:
                    future.result()
            out = np.where(np.isnan(out[:, :1]), dominant[None, :], out)
            out[:, identity] = 1.0
            per_trajectory = out @ coeffs.T  # (trajectories, observables)
            mean[:, r] = per_trajectory.mean(axis=0)
            covariance[r] = mean_covariance(per_trajectory)

    def row_gates(self, values: np.ndarray) -> np.ndarray:
        """(rows, steps, 4, 4): the steps' matrices with each row's parameter values bound. Rotations by an angle
        affine in one parameter (every gate of a transpiled head) are computed for all rows at once."""
        program = self.program
        gates = np.repeat(program.gates[None], len(values), axis=0)
        slow = []
        for step, index in program.parameterized:
            operation = self.circuit.data[index].operation
            slope, parameter = linear_angle(operation.params)
            if operation.name not in _ROTATIONS or parameter is None:
                slow.append((step, index))
                continue
            offset = float(operation.params[0].bind({parameter: 0.0}).numeric())
            angles = slope * values[:, list(self.circuit.parameters).index(parameter)] + offset
            gates[:, step, :2, :2] = _ROTATIONS[operation.name](angles)
        for r, row in enumerate(values if slow else []):
            bound = self.circuit.assign_parameters(row)
            for step, index in slow:
                matrix = bound.data[index].operation.to_matrix()
                gates[r, step, :len(matrix), :len(matrix)] = matrix
        return gates


def linear_angle(params: list) -> tuple[float, Parameter | None]:
    """(d angle / d p, p) when a gate's one angle is a·p + b in one parameter p, else (0, None)."""
    if len(params) != 1 or not isinstance(params[0], ParameterExpression) or len(params[0].parameters) != 1:
        return 0.0, None
    (parameter,) = params[0].parameters
    slope = params[0].gradient(parameter)
    if isinstance(slope, ParameterExpression):
        try:
            slope = complex(slope)
        except TypeError:  # still depends on p: not affine
            return 0.0, None
    return float(np.real(slope)), parameter


def _rz(t):
    out = np.zeros((len(t), 2, 2), complex)
    out[:, 0, 0], out[:, 1, 1] = np.exp(-0.5j * t), np.exp(0.5j * t)
    return out


def _rx(t):
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.stack([np.stack([c, -1j * s], -1), np.stack([-1j * s, c], -1)], -2).astype(complex)


def _ry(t):
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).astype(complex)


def _phase(t):
    out = np.zeros((len(t), 2, 2), complex)
    out[:, 0, 0], out[:, 1, 1] = 1.0, np.exp(1j * t)
    return out


_ROTATIONS = {"rz": _rz, "rx": _rx, "ry": _ry, "p": _phase}
"""Qiskit's single-qubit rotations as (rows, 2, 2) matrices of an angle per row."""


def _compile(circuit: QuantumCircuit, errors: dict, branches_of: dict) -> TrajectoryProgram:
    """The program of ``circuit`` under ``errors``; ``branches_of``: each error's branches as computed so far (one
    error per (instruction, qubits), met once per gate it follows), filled here."""
    n = circuit.num_qubits
    kind, qa, qb, gates, location_of_step, step_of_location, parameterized = [], [], [], [], [], [], []
    probabilities, ops_a, ops_b, offset, count = [], [], [], [], []
    for index, inst in enumerate(circuit.data):
        operation = inst.operation
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if operation.name in _IGNORED:
            if operation.name == "delay" and (operation.name, qubits) in errors:  # Aer applies it; we would not
                raise UnsupportedNoise(f"an error on 'delay' on qubit(s) {qubits} (the sampler skips delays)")
            continue
        if len(qubits) > 2 or getattr(operation, "_directive", False) or inst.clbits:
            raise UnsupportedNoise(f"the circuit holds '{operation.name}' on {len(qubits)} qubit(s), not a gate the "
                                   "sampler runs (gates on 1 or 2 qubits)")
        matrix = np.zeros((4, 4), complex)
        if operation.is_parameterized():
            parameterized.append((len(kind), index))
        else:
            try:
                u = Operator(operation).data
            except Exception as exc:  # noqa: BLE001 - a channel or anything else without a matrix goes to Aer
                raise UnsupportedNoise(f"the circuit holds '{operation.name}', which has no matrix ({exc})") from None
            matrix[:len(u), :len(u)] = u
        error = errors.get((operation.name, qubits))
        if error is not None:
            key = (operation.name, qubits)
            if key not in branches_of:
                branches_of[key] = branches(error, len(qubits))
            p, a, b = branches_of[key]
            step_of_location.append(len(kind))
            offset.append(sum(count))
            count.append(len(p))
            probabilities.append(p)
            ops_a.append(a)
            ops_b.append(b)
        kind.append(kernel.TWO_QUBIT if len(qubits) == 2 else kernel.ONE_QUBIT)
        qa.append(qubits[0])
        qb.append(qubits[-1])
        gates.append(matrix)
        location_of_step.append(len(step_of_location) - 1 if error is not None else -1)
    defer, take, swap = _fusion(kind, qa, qb)
    cum = [np.minimum(np.cumsum(p) / p.sum(), 1.0) for p in probabilities]
    for c in cum:
        c[-1] = 1.0
    empty = np.zeros((0, 2, 2), complex)
    return TrajectoryProgram(
        n=n, kind=np.asarray(kind, np.int64), qa=np.asarray(qa, np.int64), qb=np.asarray(qb, np.int64),
        gates=np.asarray(gates, complex).reshape(-1, 4, 4),
        loc=np.asarray(location_of_step, np.int64), step_of=np.asarray(step_of_location, np.int64), offset=np.asarray(offset, np.int64), count=np.asarray(count, np.int64),
        cum=np.concatenate(cum) if cum else np.zeros(0), op_a=np.concatenate(ops_a) if ops_a else empty,
        op_b=np.concatenate(ops_b) if ops_b else empty, parameterized=parameterized, defer=defer, take=take, swap=swap)


def _fusion(kind: list[int], qa: list[int], qb: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which two-qubit steps fuse with the next (see :class:`TrajectoryProgram`): step p holds its matrix for
    step s when s is the next two-qubit step on both of p's qubits and acts on the same pair."""
    defer, take, swap = np.zeros(len(kind), bool), np.full(len(kind), -1, np.int64), np.zeros(len(kind), bool)
    last: dict[int, int] = {}  # qubit -> its last two-qubit step
    for s, k in enumerate(kind):
        if k != kernel.TWO_QUBIT:
            continue
        a, b = qa[s], qb[s]
        p = last.get(a)
        if p is not None and last.get(b) == p:  # p was on {a, b} and nothing two-qubit touched either since
            defer[p], take[s], swap[s] = True, qa[p], qa[p] != a
        last[a] = last[b] = s
    return defer, take, swap


def label_masks(labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x mask, z mask, count of Y, is identity) per little-endian Pauli label."""
    xmask, zmask, ny = (np.zeros(len(labels), np.int64) for _ in range(3))
    for i, label in enumerate(labels):
        for q, letter in enumerate(reversed(label)):
            if letter in "XY":
                xmask[i] |= 1 << q
            if letter in "ZY":
                zmask[i] |= 1 << q
        ny[i] = label.count("Y")
    return xmask, zmask, ny, np.array([set(label) <= {"I"} for label in labels], bool)
