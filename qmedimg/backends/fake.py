"""The ``fake`` kind: an IBM device's calibration (``qiskit_ibm_runtime.fake_provider``) simulated by
Aer — density matrix, readout error, shots, noise scaling and local error mitigation.

Example (``backends.yaml``)::

    fake_brisbane:
      kind: fake
      device: FakeBrisbane          # or calibration: calibrations/ibm_brisbane-20260105-0912.json (a snapshot)
      noise_scale: 1.0              # 0 ideal, 2 = twice the error rates
      simulator: auto               # auto | aer | trajectories (how noisy heads are simulated)
      trajectories: 1000            # noise trajectories per image when they are
      training_trajectories: 16     # per sample and step, in noise-aware training on the sampler
      transpile: {optimization_level: 1}
      mitigation: {readout: true, zne: {noise_factors: [1, 3, 5]}}
"""

from __future__ import annotations

from functools import cached_property
from qmedimg.backends.device import DeviceBackend, DeviceStudy
from qmedimg.backends.device_estimator import density_matrix_limit, uses_sampler
from qmedimg.backends.entries import FakeEntry
from qmedimg.backends.noise import VALUE_ERROR, ZNE_ERROR
from qmedimg.backends.trajectories import memory_estimate
from qmedimg.cores import cores
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec


class FakeStudy(DeviceStudy):
    """A noise study on a fake device: noise scales, mitigation (the entry's own ZNE settings), a seed of its own
    for each repeat, and the cross-check of a point on Aer."""

    noise_scalable = True

    def simulation_memory(self, qubits: int, noisy: bool) -> tuple[int, str]:
        """qmedimg's trajectory sampler where the entry's ``simulator`` sends a noisy head to it, else Aer's
        density matrix up to its limit on the entry's ``aer_device`` (:meth:`DeviceStudy.simulation_memory`)."""
        e = self.backend.entry
        if noisy and uses_sampler(e.simulator, qubits, shots=e.shots, aer_device=e.aer_device):
            return (memory_estimate(qubits, e.trajectories),
                    f"trajectory sampler, {e.trajectories} trajectories, {cores()} threads")
        if noisy and e.aer_device == "GPU" and qubits <= density_matrix_limit("GPU"):
            return 16 * 4**qubits, "density matrix on the GPU"
        return super().simulation_memory(qubits, noisy)

    def mitigation_overrides(self, mitigation: str) -> dict:
        zne = self.backend.entry.mitigation.zne  # the entry's own ZNE settings, when it has them
        return {"mitigation": {"readout": "readout" in mitigation,
                               "zne": (zne.model_dump() if zne is not None else {}) if "zne" in mitigation else None}}

    def result_inputs(self, mitigation: str) -> dict:
        """How a row's statistical errors are computed (:data:`~.noise.VALUE_ERROR`) and, with ZNE, how they go
        through the extrapolation (:data:`~.noise.ZNE_ERROR`): a row whose errors were computed otherwise (too
        small, or without each image's covariance) is computed again."""
        return {"value_error": VALUE_ERROR, **({"zne_error": ZNE_ERROR} if "zne" in mitigation else {})}

    def reference_overrides(self) -> dict | None:
        """``simulator: aer`` unless the entry already simulates on Aer only."""
        return {"simulator": "aer"} if self.backend.entry.simulator != "aer" else None

    def point_overrides(self, *, scale, shots, opt_level, repeat) -> dict:
        return {**super().point_overrides(scale=scale, shots=shots, opt_level=opt_level, repeat=repeat),
                "noise_scale": scale, "seed": (self.backend.entry.seed or 0) + repeat}


class FakeBackend(DeviceBackend):
    """A fake device on :class:`~qmedimg.backends.device_estimator.DeviceEstimator`."""

    kind = "fake"
    Entry = FakeEntry
    _simulates = True
    _study_rules = FakeStudy

    @cached_property
    def _device(self):
        """The fake device, or the device of the entry's calibration snapshot (loaded once per file content in the
        :class:`~qmedimg.backends.context.BackendContext`)."""
        if self.entry.calibration is not None:
            return self._context.snapshot(self.entry.calibration, self.entry.calibration_sha256)
        return self._context.device(self.entry.device)

    def _transpile_key(self) -> tuple:
        """Two snapshots of one device share its name, not their calibration: the snapshot's digest tells them apart."""
        return (*super()._transpile_key(), self.entry.calibration_sha256)

    def _calibration_record(self) -> dict:
        """When the device was calibrated, and for a snapshot entry which file (and content) it was."""
        from qmedimg.backends.snapshots import calibration_date

        record = {"calibration_date": calibration_date(self._device)}
        if self.entry.calibration is not None:
            record["calibration"] = {"file": self.entry.calibration, "sha256": self.entry.calibration_sha256,
                                     "taken_at": self._device.taken_at}
        return record

    @cached_property
    def _estimator(self):
        from qmedimg.backends.device_estimator import DeviceEstimator

        e, m = self.entry, self.entry.mitigation
        if e.aer_device == "GPU":
            from qiskit_aer import AerSimulator

            if "GPU" not in AerSimulator().available_devices():
                raise QmedimgError(f"backend '{self.name}': aer_device GPU needs qiskit-aer-gpu and a CUDA GPU, and "
                                   "this Aer simulates on the CPU only; install qiskit-aer-gpu in place of qiskit-aer "
                                   "(see docs/backends.md, 'Aer on a GPU') or set aer_device: CPU")
        return DeviceEstimator(self._device, noise_scale=e.noise_scale, shots=e.shots, seed=e.seed,
                               readout_mitigation=m.readout, zne=m.zne, twirls=m.twirls,
                               trajectories=e.trajectories, simulator=e.simulator,
                               training_trajectories=e.training_trajectories, aer_device=e.aer_device,
                               noise_cache=self._context.noise)

    def warm_up(self, spec: CircuitSpec) -> None:
        self._estimator.prepare(self.prepare(spec).circuit)

    def _noise_scale(self) -> float:
        return self.entry.noise_scale

    def _mitigation(self) -> dict:
        return self.entry.mitigation.model_dump()

    def _zne_factors(self) -> list[float]:
        zne = self.entry.mitigation.zne
        return list(zne.noise_factors) if zne is not None else [1.0]

    def _simulation(self, spec: CircuitSpec) -> dict:
        """How the head is simulated (density matrix or trajectories)."""
        return self._estimator.simulation(self.prepare(spec).circuit)
