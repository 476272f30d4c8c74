"""Noise-aware training on qmedimg's trajectory sampler: unbiased stochastic gradients of noisy expectation
values, by adjoint sweeps over trajectories with their sampled noise in place
(:mod:`qmedimg.quantum.trajectory_adjoint`).

Example::

    from qmedimg.backends.trajectory_gradient import trajectory_gradient
    grad = trajectory_gradient(sampler, values, labels, label_weights, trajectories=16, seed=0)   # (rows, parameters)

Why the mean is unbiased: the sampler draws each trajectory's noise branches with probabilities that do not
depend on the state or on the angles, so each trajectory's value f_t(θ) satisfies E[f_t(θ)] = the noisy value for
every θ; differentiating under the expectation, E[∇f_t(θ)] = ∇(noisy value). Used by
:meth:`DeviceEstimator.gradient_rows <qmedimg.backends.device_estimator.DeviceEstimator.gradient_rows>` through
:class:`TrajectoryGradientRows`: the forward values of a batch from ``trajectories`` trajectories per row, the
gradient from as many fresh ones (independent draws, so the loss gradient evaluated at the forward values does
not correlate with the trajectories differentiated).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from qmedimg.backends.trajectories import TrajectorySampler, UnsupportedNoise, label_masks, linear_angle
from qmedimg.cores import cores
from qmedimg.quantum import trajectory_adjoint, trajectory_kernel
from qmedimg.quantum.split_state import to_complex

_PAULI = {"I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1, -1])}
GENERATORS = {"rz": _PAULI["Z"], "rx": _PAULI["X"], "ry": _PAULI["Y"], "p": _PAULI["Z"] - _PAULI["I"]}
"""Gates a gradient can go through: F(θ) = exp(-iθ·G/2) up to a global phase, so ∂F/∂θ = (-i/2)·G·F."""


@dataclass(frozen=True)
class _Derivatives:
    """Per step of a sampler's program: the column of the parameter its angle depends on (-1: none) and
    d(angle)/d(parameter) times the gate's generator; and the two-qubit structure the sweep walks."""

    pcol: np.ndarray
    gen: np.ndarray
    folds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def differentiable(sampler: TrajectorySampler) -> str | None:
    """None when :func:`trajectory_gradient` can run on ``sampler``, else why not (one line)."""
    if sampler.program is None:
        return sampler.unsupported
    try:
        _derivatives(sampler)
    except UnsupportedNoise as exc:
        return str(exc)
    return None


def _derivatives(sampler: TrajectorySampler) -> _Derivatives:
    program, circuit = sampler.program, sampler.circuit
    columns = {p: j for j, p in enumerate(circuit.parameters)}
    pcol = np.full(len(program.kind), -1, np.int64)
    gen = np.zeros((len(program.kind), 2, 2), complex)
    for step, index in program.parameterized:
        operation = circuit.data[index].operation
        slope, parameter = linear_angle(operation.params)
        if operation.name not in GENERATORS or parameter is None or program.kind[step] != trajectory_kernel.ONE_QUBIT:
            angles = ", ".join(str(p) for p in operation.params)
            raise UnsupportedNoise(f"'{operation.name}({angles})' is not a single-qubit rotation "
                                   "affine in one parameter: the trajectory gradient cannot go through it")
        pcol[step], gen[step] = columns[parameter], slope * GENERATORS[operation.name]
    return _Derivatives(pcol=pcol, gen=gen, folds=_folds(program))


def _folds(program) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(two-qubit steps in order, each one's previous two-qubit step on its first and on its second qubit, each
    qubit's last two-qubit step); -1 where there is none."""
    last = np.full(program.n, -1, np.int64)
    folds, prev_a, prev_b = [], [], []
    for s in np.flatnonzero(program.kind == trajectory_kernel.TWO_QUBIT):
        a, b = program.qa[s], program.qb[s]
        folds.append(s)
        prev_a.append(last[a])
        prev_b.append(last[b])
        last[a] = last[b] = s
    pending = np.bincount(program.qa[program.kind == trajectory_kernel.ONE_QUBIT], minlength=program.n)
    if 2 * pending.max(initial=0) + 1 > trajectory_adjoint.MAX_FACTORS:
        raise UnsupportedNoise(f"a qubit holds {pending.max()} single-qubit gates: more than the gradient kernel "
                               f"keeps ({trajectory_adjoint.MAX_FACTORS // 2})")
    return np.asarray(folds, np.int64), np.asarray(prev_a, np.int64), np.asarray(prev_b, np.int64), last


def trajectory_gradient(sampler: TrajectorySampler, values: np.ndarray, labels: list[str], label_weights: np.ndarray,
                        *, trajectories: int, seed: int | np.random.Generator | None) -> np.ndarray:
    """Per row of ``values``, the mean over ``trajectories`` fresh trajectories of ∇ Σ_l label_weights[row, l]·
    <labels[l]> with respect to the sampler circuit's parameters (its ``parameters`` order): (rows, parameters).
    Identity labels have value exactly 1 and contribute nothing."""
    derivatives = _derivatives(sampler)
    program = sampler.program
    values = np.atleast_2d(values)
    xmask, zmask, ny, _ = label_masks(labels)
    rng = np.random.default_rng(seed)
    grad = np.zeros((len(values) * trajectories, len(sampler.circuit.parameters)))
    uniforms = rng.random((len(grad), len(program.offset)))
    label_weights = np.ascontiguousarray(label_weights, dtype=float)

    gates = sampler.row_gates(values)

    def rows(chunk):
        locations = len(program.offset)
        checkpoints = np.empty((len(derivatives.folds[0]) + 1, 2, 1 << program.n))  # split, as dominant_path keeps them
        pending_at = np.empty((locations, program.n, 2, 2), np.complex128)
        checkpoint_at = np.zeros(locations, np.int64)
        memo = trajectory_kernel.dominant_memo(program.n, len(program.kind))  # (what the sweep does not use)
        dominant = np.empty(len(labels))
        for row in chunk:  # unfused: the sweep needs the state after every two-qubit gate
            trajectory_kernel.dominant_path(program.n, program.kind, program.qa, program.qb, gates[row], program.loc,
                                            program.offset, program.op_a, program.op_b, *program.unfused(),
                                            checkpoints, pending_at, checkpoint_at, memo, xmask, zmask, ny,
                                            dominant)
            states = to_complex(checkpoints)  # the sweep's passes are complex
            span = slice(row * trajectories, (row + 1) * trajectories)
            trajectory_adjoint.trajectory_gradients(
                0, trajectories, trajectories, program.n, program.kind, program.qa, program.qb, gates[row],
                program.loc, program.step_of, program.offset, program.count, program.cum, program.op_a, program.op_b,
                states, pending_at, checkpoint_at, *derivatives.folds, derivatives.pcol, derivatives.gen,
                uniforms[span], label_weights[row:row + 1], xmask, zmask, ny, grad[span])

    threads = max(1, min(cores(), len(values)))
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(rows, chunk) for chunk in np.array_split(np.arange(len(values)), threads)]:
            future.result()
    return grad.reshape(len(values), trajectories, -1).mean(axis=1)


@dataclass
class TrajectoryGradientRows:
    """Noise-aware training on the sampler: the forward values of a batch (``outputs``, (observables, rows)) and,
    once the loss gradient w.r.t. them is known, the gradient from fresh trajectories — the interface of
    :class:`~qmedimg.quantum.gradients.LossGradientRows`."""

    outputs: np.ndarray
    sampler: TrajectorySampler
    values: np.ndarray  # (rows, parameters of ``sampler.circuit``)
    labels: list[str]
    to_labels: np.ndarray  # (labels, observables)
    per_row: np.ndarray  # columns of ``sampler.circuit``'s parameters
    shared: np.ndarray
    trajectories: int
    seed: int

    def loss_gradient(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``weights`` (observables, rows) -> (per-row gradient (rows, per_row), shared gradient summed over rows)."""
        grad = trajectory_gradient(self.sampler, self.values, self.labels, (self.to_labels @ weights).T,
                                   trajectories=self.trajectories, seed=self.seed)
        return grad[:, self.per_row], grad[:, self.shared].sum(axis=0)
