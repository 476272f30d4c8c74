"""Aer simulation of a device, with what Aer's own EstimatorV2 leaves out.

Example::

    from qiskit_ibm_runtime.fake_provider import FakeBrisbane
    from qmedimg.backends.device_estimator import DeviceEstimator
    estimator = DeviceEstimator(FakeBrisbane(), noise_scale=1.0, shots=None)
    evs = estimator.run([(isa_circuit, [[o] for o in mapped_observables], values)]).result()[0].data.evs

Measured facts this module is built on (``shared/QISKIT_NOTES.md``): Aer's EstimatorV2 computes exact
expectation values but ignores readout error, its ``precision`` adds Gaussian noise instead of
sampling shots, a 127-qubit noise model costs ~5 s per call, and it binds parameterized controlled
rotations (cp, crz, …) wrongly (qiskit-aer #2323/#2403). So :class:`DeviceEstimator`

- simulates only the circuit's active qubits, with a noise model restricted to them (built once per
  circuit: calls after the first cost ~0.1 s, not 5 s);
- includes the device's readout error: exactly, by mapping each measured Pauli factor
  P_q -> a_q·I + b_q·P_q (a_q = p(0|1) - p(1|0), b_q = 1 - p(0|1) - p(1|0)), or, with ``shots``,
  by sampling bitstrings from Aer's SamplerV2 (real shot noise, readout flips included);
- scales the calibration by ``noise_scale``: gate and readout error rates × s, T1/T2 ÷ s
  (0 = ideal: no noise model at all);
- mitigates on request: ``readout`` inverts each qubit's calibrated confusion matrix (exact values:
  the inverse map is applied exactly; shots: the unbiased per-shot estimator
  ∏ ((-1)^x_q - a_q) / b_q), ``zne`` folds 2-qubit gates (qiskit-mitigation's ``GateFoldingPass``)
  and extrapolates to zero noise, ``twirls`` averages Pauli-twirled copies of the circuit;
- unrolls parameterized controlled rotations and drops a parameterized global phase (Aer's
  run-time parameter binding fails on it) before Aer sees the circuit;
- runs exact values through ``AerSimulator`` directly, the rows split into one experiment per core
  (Aer runs all rows of one experiment on one core), padded to equal sizes (Aer 0.18.2 crashes
  on unequal ones under runtime binding at 8 qubits); a noisy circuit wider than
  ``DENSITY_MATRIX_MAX_QUBITS`` active qubits runs on Aer's ``statevector`` method instead, its
  value the mean of ``trajectories`` seeded shots, each with its noise sampled (readout error is
  still applied exactly);
- offers :meth:`DeviceEstimator.gradient_rows` for noise-aware training: the weights' loss gradient
  summed over the batch before simulation (exact values are linear in the density matrix): for a
  batch of 32 on ``sel``, 288 rows and 48 rows of five chained passes instead of 1,824 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit.circuit import Delay, QuantumCircuit
from qiskit.circuit.library import HGate, SdgGate
from qiskit.primitives import PrimitiveResult
from qiskit.primitives.containers import EstimatorPub
from qiskit.providers import BackendV2
from qiskit.quantum_info import DensityMatrix, Pauli, SparsePauliOp
from qiskit.transpiler import PassManager
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, RelaxationNoisePass
from qiskit_aer.primitives import SamplerV2 as AerSampler

from qmedimg.backends.noise import calibration, cut_circuit, extrapolate, noise_model, readout_errors, trim_idle
from qmedimg.backends.options import ZneOptions
from qmedimg.cores import cores
from qmedimg.errors import QmedimgError
from qmedimg.quantum.gradients import SummedGradientEstimator, shift_offsets
from qmedimg.quantum.primitives import FinishedJob, pauli_terms, pub_result

DENSITY_MATRIX_MAX_QUBITS = 10
"""Noisy values come from Aer's density matrix up to this many active qubits (exact; 16·4^n bytes),
from Aer statevector trajectories above (measured: ``benchmarks/noisy_eval.py --qubits``)."""
DEFAULT_TRAJECTORIES = 1000
"""Noise trajectories per row above :data:`DENSITY_MATRIX_MAX_QUBITS` (the issue's floor: a value's
statistical error is then about 0.03 or less)."""
_AER_SAFE = ["rx", "ry", "rz", "p", "u", "rzz", "rxx", "ryy", "rzx"]


@dataclass
class _Prepared:
    """One circuit, ready: trimmed variants per (noise factor, twirl), noise model, readout map."""

    variants: list[list[QuantumCircuit]]  # [factor][twirl]
    qubits: list[int]  # physical index of each simulated qubit
    noise: NoiseModel | None
    readout: np.ndarray | None  # (k, 2) [p(1|0), p(0|1)], None when ideal

    @property
    def method(self) -> str:
        """How exact values are simulated: ``statevector`` without noise, ``density_matrix`` under noise up
        to ``DENSITY_MATRIX_MAX_QUBITS`` active qubits, ``trajectories`` above."""
        if self.noise is None:
            return "statevector"
        return "density_matrix" if len(self.qubits) <= DENSITY_MATRIX_MAX_QUBITS else "trajectories"


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


class DeviceEstimator(SummedGradientEstimator):
    """Aer estimator for a device (or, with ``device=None``, the ideal statevector).

    Args:
        device: a ``BackendV2`` with a calibrated ``target`` (any fake device), or None (noiseless).
        noise_scale: multiply the calibrated error rates (0 = ideal, 1 = as calibrated).
        shots: None for exact expectation values; otherwise shots per parameter row.
        seed: seeds shot sampling, gate-folding choices and twirls (repeatable runs).
        readout_mitigation: invert the calibrated readout confusion matrices.
        zne: :class:`~qmedimg.backends.options.ZneOptions`, or None.
        twirls: average this many Pauli-twirled copies of each circuit (None = off).
        trajectories: noise trajectories (Aer statevector shots) per row for the values of circuits
            wider than ``DENSITY_MATRIX_MAX_QUBITS`` active qubits (their mean is unbiased; seeded by ``seed``).
    The ``precision`` of a PUB is ignored: exact values are exact (or averaged trajectories), sampled
    ones use ``shots``.
    """

    def __init__(self, device: BackendV2 | None = None, *, noise_scale: float = 1.0, shots: int | None = None,
                 seed: int | None = None, readout_mitigation: bool = False, zne: ZneOptions | None = None,
                 twirls: int | None = None, trajectories: int = DEFAULT_TRAJECTORIES):
        super().__init__()
        self.device, self.noise_scale, self.shots, self.trajectories = device, noise_scale, shots, trajectories
        self.readout_mitigation, self.zne, self.twirls = readout_mitigation, zne, twirls
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._prepared: dict[int, tuple[QuantumCircuit, _Prepared]] = {}
        self._noise_models: dict[tuple[int, ...], tuple] = {}

    @property
    def noisy(self) -> bool:
        return self.device is not None and self.noise_scale > 0

    def run(self, pubs, *, precision: float | None = None):
        coerced = [EstimatorPub.coerce(pub, precision if precision is not None else 0.0) for pub in pubs]
        return FinishedJob(self._run, coerced)

    def _run(self, pubs: list[EstimatorPub]) -> PrimitiveResult:
        return PrimitiveResult([pub_result(pub, self._pauli_expectations) for pub in pubs],
                               metadata={"version": 2})

    def prepare(self, circuit: QuantumCircuit) -> _Prepared:
        """Trim, unroll, fold and twirl ``circuit`` once; later calls return the cached result."""
        hit = self._prepared.get(id(circuit))
        if hit is not None and hit[0] is circuit:
            return hit[1]
        small, qubits = trim_idle(circuit)
        small = TranslateParameterizedGates(_AER_SAFE)(small)
        small.global_phase = 0  # irrelevant to expectation values; a parameterized one breaks Aer's binding
        calibrated, noise, readout = self._noise(tuple(qubits))
        factors = self.zne.noise_factors if self.zne else (1.0,)
        variants = []
        for factor in factors:
            folded = small
            if factor != 1:
                from qiskit_mitigation.zne.gate_folding import GateFoldingPass

                folded = PassManager([GateFoldingPass(factor, method=self.zne.folding, seed=self.seed)]).run(small)
            copies = [folded]
            if self.twirls:
                from qiskit.circuit import pauli_twirl_2q_gates

                copies = pauli_twirl_2q_gates(folded, num_twirls=self.twirls, seed=self.seed)
            if calibrated is not None and any(inst.operation.name == "delay" for inst in folded.data):
                props = calibrated.qubit_properties
                relax = RelaxationNoisePass([p.t1 or np.inf for p in props], [p.t2 or np.inf for p in props],
                                            dt=calibrated.dt, op_types=Delay)
                copies = [relax(c) for c in copies]
            variants.append(copies)
        prepared = _Prepared(variants=variants, qubits=qubits, noise=noise, readout=readout)
        self._prepared[id(circuit)] = (circuit, prepared)
        return prepared

    def simulation(self, circuit: QuantumCircuit) -> dict:
        """How ``circuit`` is simulated: method, active qubits, trajectories per row. With ``shots``, a wide
        circuit runs on Aer's ``statevector`` (its noise sampled once per shot)."""
        prepared = self.prepare(circuit)
        wide = prepared.method == "trajectories"
        return {"method": "statevector" if wide and self.shots else prepared.method,
                "active_qubits": len(prepared.qubits),
                "trajectories": self.trajectories if wide and not self.shots else None}

    def _noise(self, qubits: tuple[int, ...]) -> tuple:
        """(calibration, Aer noise model, readout errors) of these physical qubits, built once per
        set of qubits (a forward circuit and its gradient circuit share them)."""
        if not self.noisy:
            return None, None, None
        if qubits not in self._noise_models:
            calibrated = calibration(self.device.target, list(qubits), self.noise_scale)
            self._noise_models[qubits] = (calibrated, noise_model(calibrated), readout_errors(calibrated))
        return self._noise_models[qubits]

    def _pauli_expectations(self, circuit: QuantumCircuit, values: np.ndarray, paulis: list[str]) -> np.ndarray:
        """<P> on the device for every Pauli label (little-endian, full circuit width) and row."""
        prepared = self.prepare(circuit)
        local = _localize(prepared, paulis)
        per_factor = []
        for copies in prepared.variants:
            runs = [self._sampled(c, prepared, values, local) if self.shots else self._exact(c, prepared, values, local)
                    for c in copies]
            per_factor.append(np.mean(runs, axis=0))
        if len(per_factor) == 1:
            return per_factor[0]
        return extrapolate(self.zne.noise_factors, np.stack(per_factor), self.zne.extrapolator)

    def _exact(self, circuit, prepared: _Prepared, values, local) -> np.ndarray:
        """Exact <P> per label and row: Aer's ``save_expectation_value`` (density matrix under noise)."""
        if len(values) == 0:
            return np.zeros((len(local), 0))
        labels, coeffs = self._measured(prepared, local)
        measured = circuit.copy()
        _save_expectations(measured, labels)
        if prepared.method == "trajectories":  # the mean over shots, each with its own sampled noise
            # not shot_branching_enable: faster, but its saved means are off by up to 0.15 here (Aer 0.18.2)
            simulator = AerSimulator(method="statevector", noise_model=prepared.noise, shots=self.trajectories,
                                     seed_simulator=int(self._rng.integers(2**31)))
        else:
            simulator = AerSimulator(method=prepared.method, noise_model=prepared.noise)
        table = aer_rows(simulator, measured, values)
        return coeffs @ np.array([[row[label] for label in labels] for row in table]).T

    def _measured(self, prepared: _Prepared, local) -> tuple[list[str], np.ndarray]:
        """What the device reports for each localized label, as a combination of the state's own
        Pauli expectations: ``(labels, coeffs)`` with <reported_i> = Σ_j coeffs[i, j]·<labels[j]>
        (readout error P_q -> a·I + b·P_q, unless readout mitigation undoes it)."""
        k = len(prepared.qubits)
        apply_readout = prepared.readout is not None and not self.readout_mitigation
        observables = []
        for factors in local:
            if factors is None:
                observables.append(SparsePauliOp("I" * k, 0.0))
                continue
            op = SparsePauliOp("I" * k)
            for q, letter in factors.items():
                term = SparsePauliOp.from_sparse_list([(letter, [q], 1.0)], k)
                if apply_readout:  # measured P_q = a·I + b·P_q
                    p10, p01 = prepared.readout[q]
                    term = SparsePauliOp("I" * k, p01 - p10) + (1 - p10 - p01) * term
                op = op.compose(term)
            observables.append(op.simplify())
        labels = sorted({label for op in observables for label in op.paulis.to_labels()})
        column = {label: i for i, label in enumerate(labels)}
        coeffs = np.zeros((len(observables), len(labels)))
        for o, op in enumerate(observables):
            for label, c in zip(op.paulis.to_labels(), op.coeffs):
                coeffs[o, column[label]] += c.real
        return labels, coeffs

    def gradient_rows(self, circuit: QuantumCircuit, values: np.ndarray, observables: list[dict],
                      per_row: np.ndarray, shared: np.ndarray) -> GradientRows | None:
        """Simulate what a loss gradient needs before the loss is known: every row (its values are
        the forward pass) and every row with each ``per_row`` column shifted by ±π/2, saving each
        row's state where the ``shared`` columns begin. Every column must be a gate angle with a
        ±π/2 shift rule; ``shared`` columns must be equal on every row.

        The shared columns' shifts need not run per row: exact values are linear in the density
        matrix, so :meth:`GradientRows.loss_gradient` sums the saved states per measured Pauli label,
        weighted by the loss gradient, and runs only those sums through the rest of the circuit.
        None when this does not apply (shots, ZNE, twirls, or a shared angle before a per-row one);
        then use one shifted row per sample."""
        if self.shots:
            return None
        prepared = self.prepare(circuit)
        if prepared.method == "trajectories" or len(prepared.variants) != 1 or len(prepared.variants[0]) != 1:
            return None
        params = list(circuit.parameters)
        shifted = {params[j].name for j in shared}
        varying = {params[j].name for j in per_row} | {
            p.name for j, p in enumerate(params) if p.name not in shifted and np.ptp(values[:, j]) > 0}
        parts = cut_circuit(prepared.variants[0][0], varying, shifted)
        if parts is None:
            return None
        before, after = parts
        paulis, per_pauli = pauli_terms(observables)
        labels, measured = self._measured(prepared, _localize(prepared, paulis))
        simulator = AerSimulator(method="density_matrix", noise_model=prepared.noise)
        whole = before.copy()
        whole.save_density_matrix(label="rho")
        whole.compose(after, inplace=True)
        _save_expectations(whole, labels)
        rows = len(values)
        shifted_rows = (values[:, None, None, :] + shift_offsets(per_row, values.shape[1])[None]).reshape(
            -1, values.shape[1])
        table = aer_rows(simulator, whole, np.concatenate([values, shifted_rows]))
        evs = np.array([[row[label] for label in labels] for row in table])  # (rows + shifted, labels)
        index = {p.name: j for j, p in enumerate(params)}
        return GradientRows(
            outputs=per_pauli @ measured @ evs[:rows].T,
            states=np.array([np.asarray(row["rho"]) for row in table[:rows]]),
            shifted=evs[rows:].reshape(rows, 2, len(per_row), len(labels)),
            to_labels=(per_pauli @ measured).T, labels=labels, after=after,
            after_columns=[index[p.name] for p in after.parameters],
            settings=(values[0] + shift_offsets(shared, values.shape[1])).reshape(-1, values.shape[1]),
            simulator=simulator)

    def _sampled(self, circuit, prepared: _Prepared, values, local) -> np.ndarray:
        out = np.zeros((len(local), len(values)))
        groups: list[tuple[dict, list[int]]] = []  # (basis per qubit, label indices): qubit-wise commuting
        for i, factors in enumerate(local):
            if factors is None:
                continue
            for basis, members in groups:
                if all(basis.get(q, letter) == letter for q, letter in factors.items()):
                    basis.update(factors)
                    members.append(i)
                    break
            else:
                groups.append((dict(factors), [i]))
        for basis, members in groups:
            measured = circuit.copy()
            for q, letter in basis.items():
                if letter == "Y":
                    measured.append(SdgGate(), [q])
                if letter in "XY":
                    measured.append(HGate(), [q])
            measured.measure_all()
            sampler = AerSampler(options={
                "backend_options": {"method": "statevector" if prepared.method == "trajectories" else prepared.method,
                                    "noise_model": prepared.noise},
                "run_options": {"seed_simulator": int(self._rng.integers(2**31))}})
            result = sampler.run([(measured, values, self.shots)]).result()[0]
            signs = 1.0 - 2.0 * result.data.meas.to_bool_array(order="little")  # (rows, shots, k): ±1
            for i in members:
                product = np.ones(signs.shape[:2])
                for q in local[i]:
                    s = signs[:, :, q]
                    if self.readout_mitigation and prepared.readout is not None:
                        p10, p01 = prepared.readout[q]
                        s = (s - (p01 - p10)) / (1 - p10 - p01)
                    product = product * s
                out[i] = product.mean(axis=1)
        return out


def _localize(prepared: _Prepared, paulis: list[str]) -> list[dict | None]:
    """Each full-width Pauli label as {simulated qubit: letter}; None when it is 0 exactly
    (an X or Y on a qubit the circuit never touches, which stays |0>)."""
    position = {q: i for i, q in enumerate(prepared.qubits)}
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


def _save_expectations(circuit: QuantumCircuit, labels: list[str]) -> None:
    for label in labels:
        circuit.save_expectation_value(Pauli(label), range(circuit.num_qubits), label=label)


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
