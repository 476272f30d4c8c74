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
  ``DENSITY_MATRIX_MAX_QUBITS`` active qubits (or any, with ``simulator="trajectories"``) runs on
  qmedimg's trajectory sampler (:mod:`qmedimg.backends.trajectories`: the same channels, sampled; the
  value the mean of ``trajectories`` seeded trajectories, its standard error kept), or with
  ``simulator="aer"`` on Aer's ``statevector`` method (the mean of as many seeded shots, each with its
  noise sampled); readout error is still applied exactly;
- offers :meth:`DeviceEstimator.gradient_rows` for noise-aware training: on the density matrix, the
  weights' loss gradient summed over the batch before simulation (exact values are linear in the
  density matrix: for a batch of 32 on ``sel``, 288 rows and 48 rows of five chained passes instead of
  1,824 rows); on the sampler, adjoint sweeps over ``training_trajectories`` trajectories per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qiskit.circuit import Delay, QuantumCircuit
from qiskit.circuit.library import HGate, SdgGate
from qiskit.primitives import PrimitiveResult
from qiskit.primitives.containers import EstimatorPub
from qiskit.providers import BackendV2
from qiskit.transpiler import PassManager
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, RelaxationNoisePass
from qiskit_aer.primitives import SamplerV2 as AerSampler

from qmedimg.backends.aer_rows import aer_rows, localize, save_expectations
from qmedimg.backends.density_gradient import GradientRows
from qmedimg.backends.context import fingerprint
from qmedimg.backends.noise import (QubitsNoise, cut_circuit, extrapolate, extrapolation_covariance, qubits_noise,
                                    reported_paulis, trim_idle)
from qmedimg.backends.options import ZneOptions
from qmedimg.backends.trajectories import TrajectorySampler
from qmedimg.backends.trajectory_gradient import TrajectoryGradientRows, differentiable
from qmedimg.quantum.covariance import largest_error, mean_covariance
from qmedimg.quantum.gradients import SummedGradientEstimator, shift_offsets
from qmedimg.quantum.primitives import FinishedJob, pauli_terms, pub_result

DENSITY_MATRIX_MAX_QUBITS = 10
"""Noisy values come from Aer's density matrix up to this many active qubits (exact; 16·4^n bytes), from
noise trajectories above (qmedimg's sampler, or Aer's with ``simulator="aer"``: :data:`~.entries.SIMULATORS`)."""
GPU_DENSITY_MATRIX_MAX_QUBITS = 14
"""With ``aer_device="GPU"``: Aer's density matrix up to this many active qubits (4 GiB at 14; untested)."""
DEFAULT_TRAJECTORIES = 1000
"""Noise trajectories per row wherever values come from trajectories (a value's statistical error is then
about 0.03 or less; recorded per run as ``statistical_error``)."""
TRAINING_DENSITY_MATRIX_MAX_QUBITS = 4
"""With ``simulator="auto"``, noise-aware training differentiates Aer's density matrix up to this many active
qubits (exact; 130–180 samples/s at 4 qubits) and qmedimg's sampler above (at 6 qubits 447 against 2.9
samples/s: ``benchmarks/noise_aware_training.py``)."""
DEFAULT_TRAINING_TRAJECTORIES = 16
"""Trajectories per sample per training step on the sampler (forward values, and as many for the gradient)."""
_AER_SAFE = ["rx", "ry", "rz", "p", "u", "rzz", "rxx", "ryy", "rzx"]


def density_matrix_limit(aer_device: str) -> int:
    """The most active qubits Aer's density matrix simulates on ``aer_device`` (CPU or GPU)."""
    return GPU_DENSITY_MATRIX_MAX_QUBITS if aer_device == "GPU" else DENSITY_MATRIX_MAX_QUBITS


def uses_sampler(simulator: str, active_qubits: int, *, shots: int | None, aer_device: str) -> bool:
    """Whether a noisy head of ``active_qubits`` goes to qmedimg's trajectory sampler
    (:data:`~.entries.SIMULATORS`): never with shots or on a GPU (Aer's), always with ``trajectories``, above the
    density matrix's limit with ``auto``."""
    if shots or aer_device == "GPU" or simulator == "aer":
        return False
    return simulator == "trajectories" or active_qubits > density_matrix_limit(aer_device)


@dataclass
class _Prepared:
    """One circuit, ready: trimmed variants per (noise factor, twirl), noise model, readout map, and how
    its exact values are simulated (``method`` on ``simulator``)."""

    variants: list[list[QuantumCircuit]]  # [factor][twirl]
    qubits: list[int]  # physical index of each simulated qubit
    noise: NoiseModel | None
    readout: np.ndarray | None  # (k, 2) [p(1|0), p(0|1)], None when ideal
    method: str = "statevector"  # statevector (ideal) | density_matrix | trajectories
    simulator: str = "aer"  # aer | qmedimg (the trajectory sampler)
    samplers: list[list[TrajectorySampler]] | None = None  # [factor][twirl], when simulator is qmedimg
    handed_to_aer: str | None = None  # why the sampler did not take a circuit it was asked to
    training_sampler: TrajectorySampler | None = None  # built for noise-aware training (``auto``, see gradient_rows)


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
        trajectories: noise trajectories per row for the values of circuits simulated by trajectories
            (their mean is unbiased; seeded by ``seed``).
        simulator: one of :data:`~.entries.SIMULATORS`.
        training_trajectories: trajectories per row for :meth:`gradient_rows` on the sampler.
        aer_device: ``CPU``, or ``GPU`` (qiskit-aer-gpu; then Aer simulates every width: density matrix up to
            :data:`GPU_DENSITY_MATRIX_MAX_QUBITS` active qubits, statevector trajectories above).
        noise_cache: where the noise of each set of qubits is kept (:func:`~.noise.qubits_noise`; default: its own).
    The ``precision`` of a PUB is ignored: exact values are exact (or averaged trajectories), sampled
    ones use ``shots``.
    """

    def __init__(self, device: BackendV2 | None = None, *, noise_scale: float = 1.0, shots: int | None = None,
                 seed: int | None = None, readout_mitigation: bool = False, zne: ZneOptions | None = None,
                 twirls: int | None = None, trajectories: int = DEFAULT_TRAJECTORIES, simulator: str = "auto",
                 training_trajectories: int = DEFAULT_TRAINING_TRAJECTORIES, aer_device: str = "CPU",
                 noise_cache: dict | None = None):
        super().__init__()
        self.device, self.noise_scale, self.shots, self.trajectories = device, noise_scale, shots, trajectories
        self.simulator, self.training_trajectories, self.aer_device = simulator, training_trajectories, aer_device
        self.statistical_error: float | None = None  # the largest standard error of a value so far (after ZNE)
        self.readout_mitigation, self.zne, self.twirls = readout_mitigation, zne, twirls
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._prepared: dict[int, tuple[QuantumCircuit, _Prepared]] = {}  # by circuit object, then by content:
        self._by_content: dict[str, _Prepared] = {}  # a head's circuit and the copy its QNN holds are prepared once
        self._noise_cache = {} if noise_cache is None else noise_cache  # the caller's, to share (BackendContext.noise)

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
        content = fingerprint(circuit)  # its OpenQASM 3 text: parameters by name, as rows bind them
        if content in self._by_content:
            self._prepared[id(circuit)] = (circuit, self._by_content[content])
            return self._by_content[content]
        small, qubits = trim_idle(circuit)
        small = TranslateParameterizedGates(_AER_SAFE)(small)
        small.global_phase = 0  # irrelevant to expectation values; a parameterized one breaks Aer's binding
        noise = self._noise(tuple(qubits))
        calibrated = noise.calibrated if noise is not None else None
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
        prepared = _Prepared(variants=variants, qubits=qubits, noise=noise.model if noise else None,
                             readout=noise.readout if noise else None)
        self._choose_method(prepared, noise)
        self._prepared[id(circuit)] = (circuit, prepared)
        self._by_content[content] = prepared
        return prepared

    def _choose_method(self, prepared: _Prepared, noise: QubitsNoise | None) -> None:
        """Set how ``prepared`` is simulated (see :data:`~.entries.SIMULATORS`); shots are always Aer's."""
        if prepared.noise is None:
            return
        wide = len(prepared.qubits) > density_matrix_limit(self.aer_device)
        prepared.method = "trajectories" if wide else "density_matrix"
        if not uses_sampler(self.simulator, len(prepared.qubits), shots=self.shots, aer_device=self.aer_device):
            return
        prepared.method = "trajectories"
        samplers = [[TrajectorySampler(c, noise.errors, branches=noise.branches) for c in copies]
                    for copies in prepared.variants]
        reasons = [s.unsupported for copies in samplers for s in copies if s.unsupported]
        if reasons:  # never approximated: Aer takes the circuit
            prepared.handed_to_aer = reasons[0]
            prepared.method = "trajectories" if wide else "density_matrix"
        else:
            prepared.simulator, prepared.samplers = "qmedimg", samplers

    def simulation(self, circuit: QuantumCircuit) -> dict:
        """How ``circuit`` is simulated: method, active qubits, trajectories per row. With ``shots``, a wide
        circuit runs on Aer's ``statevector`` (its noise sampled once per shot)."""
        prepared = self.prepare(circuit)
        wide = prepared.method == "trajectories"
        record = {"method": "statevector" if wide and self.shots else prepared.method,
                  "simulator": prepared.simulator, "active_qubits": len(prepared.qubits),
                  "trajectories": self.trajectories if wide and not self.shots else None,
                  "statistical_error": self.statistical_error if wide and not self.shots else None}
        if prepared.handed_to_aer:
            record["handed_to_aer"] = prepared.handed_to_aer
        return record

    def _noise(self, qubits: tuple[int, ...]) -> QubitsNoise | None:
        """The noise of these physical qubits (:func:`~.noise.qubits_noise`), built once per set of qubits in the
        noise cache (a forward circuit and its gradient circuit share it, and so do the backends of one context)."""
        return qubits_noise(self.device, self.noise_scale, qubits, self._noise_cache) if self.noisy else None

    def _pauli_expectations(self, circuit: QuantumCircuit, values: np.ndarray,
                            paulis: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """<P> on the device for every Pauli label (little-endian, full circuit width) and row, (labels, rows);
        with noise trajectories, each row's covariance of its labels' values (rows, labels, labels), else None."""
        prepared = self.prepare(circuit)
        local = localize(prepared.qubits, paulis)
        means, covariances = [], []
        for f, copies in enumerate(prepared.variants):
            runs = [(self._sampled(c, prepared, values, local), None) if self.shots else
                    self._exact(c, prepared, values, local, prepared.samplers[f][t] if prepared.samplers else None)
                    for t, c in enumerate(copies)]
            means.append(np.mean([mean for mean, _ in runs], axis=0))
            if runs[0][1] is not None:  # the mean of independent copies: Σ covariances / copies²
                covariances.append(np.sum([covariance for _, covariance in runs], axis=0) / len(runs) ** 2)
        if len(means) == 1:
            value, covariance = means[0], covariances[0] if covariances else None
        else:
            factors, method = self.zne.noise_factors, self.zne.extrapolator
            value = extrapolate(factors, np.stack(means), method)
            covariance = extrapolation_covariance(factors, np.stack(means), np.stack(covariances),
                                                  method) if covariances else None
        if covariance is not None and covariance.size:
            self.statistical_error = max(self.statistical_error or 0.0, largest_error(covariance))
        return value, covariance

    def _exact(self, circuit, prepared: _Prepared, values, local,
               sampler: TrajectorySampler | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Exact <P> per label and row: Aer's ``save_expectation_value`` (density matrix under noise), or the
        mean over noise trajectories (qmedimg's sampler, or Aer's statevector shots, each with its noise); with
        each row's covariance of its values (None where exact)."""
        if len(values) == 0:
            return np.zeros((len(local), 0)), None
        labels, coeffs = self._measured(prepared, local)
        if sampler is not None:
            sampled = sampler.run(values, labels, coeffs, trajectories=self.trajectories,
                                  seed=int(self._rng.integers(2**31)))
            return sampled.mean, sampled.covariance
        measured = circuit.copy()
        trajectories = prepared.method == "trajectories"
        save_expectations(measured, labels, pershot=trajectories)
        if trajectories:  # the mean over shots, each with its own sampled noise
            # not shot_branching_enable: faster, but its saved means are off by up to 0.15 here (Aer 0.18.2)
            simulator = AerSimulator(method="statevector", noise_model=prepared.noise, shots=self.trajectories,
                                     device=self.aer_device,
                                     seed_simulator=int(self._rng.integers(2**31)))
        else:
            simulator = AerSimulator(method=prepared.method, noise_model=prepared.noise, device=self.aer_device)
        table = aer_rows(simulator, measured, values)
        if not trajectories:
            return coeffs @ np.array([[row[label] for label in labels] for row in table]).T, None
        per_shot = np.array([[row[label] for label in labels] for row in table])  # (rows, labels, shots)
        combined = np.einsum("ol,rls->ros", coeffs, per_shot)  # (rows, observables, shots)
        return combined.mean(axis=2).T, np.stack([mean_covariance(row.T) for row in combined])

    def _measured(self, prepared: _Prepared, local) -> tuple[list[str], np.ndarray]:
        """What the device reports for each localized label (:func:`~qmedimg.backends.noise.reported_paulis`):
        readout error applied unless readout mitigation undoes it."""
        readout = prepared.readout if not self.readout_mitigation else None
        return reported_paulis(local, len(prepared.qubits), readout)

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
        sampler = self._training_sampler(prepared)
        if sampler is not None:
            return self._trajectory_gradient_rows(circuit, prepared, sampler, values, observables, per_row, shared)
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
        labels, measured = self._measured(prepared, localize(prepared.qubits, paulis))
        simulator = AerSimulator(method="density_matrix", noise_model=prepared.noise, device=self.aer_device)
        whole = before.copy()
        whole.save_density_matrix(label="rho")
        whole.compose(after, inplace=True)
        save_expectations(whole, labels)
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

    def _training_sampler(self, prepared: _Prepared) -> TrajectorySampler | None:
        """The sampler noise-aware training runs on: the one values come from, or, with ``simulator="auto"``,
        one built for training above :data:`TRAINING_DENSITY_MATRIX_MAX_QUBITS` active qubits (the density
        matrix's gradient is exact but slower there). None (the density matrix, or one shifted row per sample)
        with shots, ZNE, twirls, or what the sampler cannot differentiate."""
        if self.shots or len(prepared.variants) != 1 or len(prepared.variants[0]) != 1 or prepared.noise is None:
            return None
        sampler = prepared.samplers[0][0] if prepared.samplers else prepared.training_sampler
        if sampler is None and self.simulator == "auto" and self.aer_device == "CPU" and (
                len(prepared.qubits) > TRAINING_DENSITY_MATRIX_MAX_QUBITS):
            noise = self._noise(tuple(prepared.qubits))
            sampler = TrajectorySampler(prepared.variants[0][0], noise.errors, branches=noise.branches)
            prepared.training_sampler = sampler
        return sampler if sampler is not None and differentiable(sampler) is None else None

    def _trajectory_gradient_rows(self, circuit, prepared: _Prepared, sampler: TrajectorySampler, values, observables,
                                  per_row, shared) -> TrajectoryGradientRows:
        """:meth:`gradient_rows` on the sampler: ``training_trajectories`` rows each, forward and gradient."""
        paulis, per_pauli = pauli_terms(observables)
        labels, measured = self._measured(prepared, localize(prepared.qubits, paulis))
        mean = sampler.run(values, labels, np.eye(len(labels)), trajectories=self.training_trajectories,
                           seed=int(self._rng.integers(2**31))).mean
        index = {p.name: j for j, p in enumerate(sampler.circuit.parameters)}
        names = [p.name for p in circuit.parameters]
        return TrajectoryGradientRows(
            outputs=per_pauli @ measured @ mean, sampler=sampler, values=values[:, [names.index(p.name)
                                                                                    for p in sampler.circuit.parameters]],
            labels=labels, to_labels=(per_pauli @ measured).T,
            per_row=np.array([index[names[j]] for j in per_row], int), shared=np.array([index[names[j]] for j in shared], int),
            trajectories=self.training_trajectories, seed=int(self._rng.integers(2**31)))

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
                                    "noise_model": prepared.noise, "device": self.aer_device},
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
