"""Noise-aware training on Aer's density matrix: what :meth:`DeviceEstimator.gradient_rows
<qmedimg.backends.device_estimator.DeviceEstimator.gradient_rows>` simulated before the loss is known, and the
loss gradient from it (the shared angles' shifts run once per measured Pauli label on summed density
matrices, not once per row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import DensityMatrix, Pauli
from qiskit_aer import AerSimulator

from qmedimg.backends.aer_rows import aer_rows


@dataclass
class GradientRows:
    """What :meth:`DeviceEstimator.gradient_rows` simulated, waiting for the loss gradient."""

    outputs: np.ndarray  # (observables, rows): the forward pass
    states: np.ndarray  # (rows, d, d): each row's density matrix where the shared angles begin
    shifted: np.ndarray  # (rows, 2, per_row, labels): <label> with each per-row angle at +π/2, -π/2
    to_labels: np.ndarray  # (labels, observables): weights on observables -> weights on labels
    labels: list[str]
    after: QuantumCircuit  # the circuit from where the shared angles begin
    after_columns: list[int]  # its parameters, as columns of the full rows
    settings: np.ndarray  # (2·shared, columns): row 0 with each shared angle at +π/2, then -π/2
    simulator: AerSimulator

    def loss_gradient(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``weights`` (observables, rows) -> (per-row gradient (rows, per_row), shared gradient)."""
        label_weights = self.to_labels @ weights  # (labels, rows)
        per_row = np.einsum("bkl,lb->bk", (self.shifted[:, 0] - self.shifted[:, 1]) / 2, label_weights)
        if len(self.settings) == 0:
            return per_row, np.zeros(0)
        sums = np.einsum("lb,bij->lij", label_weights, self.states)
        dim = sums.shape[-1]
        starts, scales, run = [], [], []
        for label, sigma in zip(self.labels, sums):
            if set(label) == {"I"}:  # <I> = 1 whatever the shift
                continue
            shift = max(0.0, -dim * np.linalg.eigvalsh(sigma)[0]) * (1 + 1e-9) + 1e-300
            total = np.trace(sigma).real + shift  # σ = total·start - shift·I/dim, start a density matrix
            starts.append((sigma + shift * np.eye(dim) / dim) / total)
            scales.append((total, shift))
            run.append(label)
        chain = QuantumCircuit(self.after.num_qubits)  # one circuit: Aer's cost per experiment is ~10 ms
        for i, start in enumerate(starts + [np.eye(dim) / dim]):
            chain.set_density_matrix(DensityMatrix(start))
            chain.compose(self.after, inplace=True)
            for label in run if i == len(starts) else run[i:i + 1]:
                chain.save_expectation_value(Pauli(label), range(chain.num_qubits), label=f"{label}@{i}")
        table = aer_rows(self.simulator, chain, self.settings[:, self.after_columns])  # shared angles are after
        values = np.zeros(len(self.settings))
        for i, (label, (total, shift)) in enumerate(zip(run, scales)):
            values += np.array([total * row[f"{label}@{i}"] - shift * row[f"{label}@{len(starts)}"] for row in table])
        half = len(values) // 2
        return per_row, (values[:half] - values[half:]) / 2
