"""Running circuits on Aer row by row: parameter rows split over the cores, Pauli labels saved and localized.

Example::

    from qmedimg.backends.aer_rows import aer_rows, save_expectations
    save_expectations(circuit, ["ZI", "IZ"])
    table = aer_rows(AerSimulator(method="density_matrix", noise_model=model), circuit, values)  # a dict per row
"""

from __future__ import annotations

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.quantum_info import Pauli
from qiskit_aer import AerSimulator

from qmedimg.cores import cores
from qmedimg.errors import QmedimgError


def localize(qubits: list[int], paulis: list[str]) -> list[dict | None]:
    """Each full-width Pauli label as {simulated qubit: letter}; None when it is 0 exactly
    (an X or Y on a qubit the circuit never touches, which stays |0>)."""
    position = {q: i for i, q in enumerate(qubits)}
    local = []
    for label in paulis:
        factors = {}
        for q, letter in enumerate(reversed(label)):
            if letter != "I":
                if q not in position:
                    if letter in "XY":
                        factors = None
                        break
                    continue
                factors[position[q]] = letter
        local.append(factors)
    return local


def save_expectations(circuit: QuantumCircuit, labels: list[str], pershot: bool = False) -> None:
    """Save <label> of every label (little-endian Pauli strings over the circuit's qubits), per shot if asked."""
    for label in labels:
        circuit.save_expectation_value(Pauli(label), range(circuit.num_qubits), label=label, pershot=pershot)


def aer_rows(simulator: AerSimulator, circuit: QuantumCircuit, values: np.ndarray) -> list[dict]:
    """``circuit`` run once per row of ``values`` (its parameters, in order): the saved data per row.
    The rows are split into one experiment per core (Aer runs experiments in parallel and all rows
    of one experiment on one core); a parameter-free circuit runs once and is repeated."""
    params = list(circuit.parameters)
    if not params:
        result = simulator.run(circuit).result()
    else:
        parts = max(1, min(cores(), len(values)))
        padded = np.concatenate([values, np.repeat(values[-1:], -len(values) % parts, axis=0)])
        chunks = np.split(padded, parts)  # equal sizes: Aer 0.18.2 crashes on unequal ones (8 qubits, noise)
        binds = [{p: chunk[:, j] for j, p in enumerate(params)} for chunk in chunks]
        result = simulator.run([circuit] * len(chunks), parameter_binds=binds, runtime_parameter_bind_enable=True,
                               max_parallel_experiments=len(chunks)).result()
    if not result.success:
        raise QmedimgError(f"Aer could not simulate the circuit: {result.status}")
    data = [r.data.to_dict() for r in result.results]
    return data * len(values) if not params else data[: len(values)]
