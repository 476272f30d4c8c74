"""The ``fake`` kind: an IBM device's calibration (``qiskit_ibm_runtime.fake_provider``) simulated by
Aer — density matrix, readout error, shots, noise scaling and local error mitigation.

Example (``backends.yaml``)::

    fake_brisbane:
      kind: fake
      device: FakeBrisbane
      noise_scale: 1.0              # 0 ideal, 2 = twice the error rates
      simulator: auto               # auto | aer | trajectories (how noisy heads are simulated)
      trajectories: 1000            # noise trajectories per image when they are
      training_trajectories: 16     # per sample and step, in noise-aware training on the sampler
      transpile: {optimization_level: 1}
      mitigation: {readout: true, zne: {noise_factors: [1, 3, 5]}}
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from qmedimg.backends.device import DeviceBackend
from qmedimg.backends.device_estimator import SIMULATORS, density_matrix_limit, uses_sampler
from qmedimg.backends.trajectories import memory_estimate
from qmedimg.backends.devices import fake_device, fake_device_name
from qmedimg.backends.options import Mitigation, Shots, Strict, TranspileOptions
from qmedimg.cores import cores
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec


class FakeEntry(Strict):
    kind: Literal["fake"]
    description: str = ""
    device: str
    noise_scale: float = Field(1.0, ge=0, le=1000, allow_inf_nan=False,
                               description="0 = ideal, 1 = as calibrated, 2 = twice the error rates (at most "
                               "1000: every error rate is saturated long before)")
    shots: Shots | None = None
    seed: int | None = 0
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    mitigation: Mitigation = Field(default_factory=Mitigation)
    simulator: Literal[SIMULATORS] = Field(
        "auto", description="auto: Aer's density matrix up to 10 active qubits, qmedimg's trajectory sampler "
        "above; aer: Aer only (density matrix, then Aer statevector trajectories); trajectories: qmedimg's "
        "sampler at every width")
    trajectories: int = Field(1000, ge=2, le=1_000_000, description="noise trajectories per image (2..1000000) "
                              "wherever values come from trajectories; the statistical error falls as 1/√N")
    training_trajectories: int = Field(16, ge=1, le=100_000, description="noise-aware training on the sampler: "
                                       "trajectories per sample and step for the forward values, and as many fresh "
                                       "ones for the gradient (unbiased for any count)")

    aer_device: Literal["CPU", "GPU"] = Field(
        "CPU", description="where Aer simulates: GPU needs qiskit-aer-gpu and a CUDA GPU (then Aer takes every "
        "width: density matrix up to 14 active qubits, statevector trajectories above)")

    @field_validator("aer_device")
    @classmethod
    def _gpu_is_aer(cls, value: str, info: ValidationInfo) -> str:
        if value == "GPU" and info.data.get("simulator") == "trajectories":
            raise ValueError("simulator 'trajectories' is qmedimg's sampler, which runs on the CPU; with aer_device "
                             "GPU use simulator: auto or aer")
        return value

    @field_validator("simulator")
    @classmethod
    def _sampler_without_shots(cls, value: str, info: ValidationInfo) -> str:
        if value == "trajectories" and info.data.get("shots") is not None:
            raise ValueError("simulator 'trajectories' computes exact expectation values (means over noise "
                             "trajectories) and cannot sample shots: remove 'shots' or use simulator: auto or aer")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return fake_device_name(value)


class FakeBackend(DeviceBackend):
    """A fake device on :class:`~qmedimg.backends.device_estimator.DeviceEstimator`."""

    kind = "fake"
    Entry = FakeEntry
    noise_scalable = True

    @cached_property
    def device(self):
        return fake_device(self.entry.device)

    @cached_property
    def estimator(self):
        from qmedimg.backends.device_estimator import DeviceEstimator

        e, m = self.entry, self.entry.mitigation
        if e.aer_device == "GPU":
            from qiskit_aer import AerSimulator

            if "GPU" not in AerSimulator().available_devices():
                raise QmedimgError(f"backend '{self.name}': aer_device GPU needs qiskit-aer-gpu and a CUDA GPU, and "
                                   "this Aer simulates on the CPU only; install qiskit-aer-gpu in place of qiskit-aer "
                                   "(see docs/backends.md, 'Aer on a GPU') or set aer_device: CPU")
        return DeviceEstimator(self.device, noise_scale=e.noise_scale, shots=e.shots, seed=e.seed,
                               readout_mitigation=m.readout, zne=m.zne, twirls=m.twirls,
                               trajectories=e.trajectories, simulator=e.simulator,
                               training_trajectories=e.training_trajectories, aer_device=e.aer_device)

    def warm_up(self, spec: CircuitSpec) -> None:
        self.estimator.prepare(self.prepare(spec).circuit)

    def noise_scale(self) -> float:
        return self.entry.noise_scale

    def simulation_memory(self, qubits: int, noisy: bool) -> tuple[int, str]:
        """qmedimg's trajectory sampler where the entry's ``simulator`` sends a noisy head to it, else Aer's
        density matrix up to its limit on the entry's ``aer_device`` (:meth:`DeviceBackend.simulation_memory`)."""
        e = self.entry
        if noisy and uses_sampler(e.simulator, qubits, shots=e.shots, aer_device=e.aer_device):
            return (memory_estimate(qubits, e.trajectories),
                    f"trajectory sampler, {e.trajectories} trajectories, {cores()} threads")
        if noisy and e.aer_device == "GPU" and qubits <= density_matrix_limit("GPU"):
            return 16 * 4**qubits, "density matrix on the GPU"
        return super().simulation_memory(qubits, noisy)

    def mitigation(self) -> dict:
        return self.entry.mitigation.model_dump()

    def zne_factors(self) -> list[float]:
        zne = self.entry.mitigation.zne
        return list(zne.noise_factors) if zne is not None else [1.0]

    def describe(self) -> dict:
        return {**super().describe(), **self.device_row(self.device)}

    def record(self, spec: CircuitSpec | None) -> dict:
        """:meth:`Backend.record` + how the head was simulated (density matrix or trajectories)."""
        simulation = self.estimator.simulation(self.prepare(spec).circuit) if spec is not None else None
        return {**super().record(spec), "simulation": simulation}

    def mitigation_overrides(self, mitigation: str) -> dict:
        zne = self.entry.mitigation.zne  # the entry's own ZNE settings, when it has them
        return {"mitigation": {"readout": "readout" in mitigation,
                               "zne": (zne.model_dump() if zne is not None else {}) if "zne" in mitigation else None}}

    def reference_overrides(self) -> dict | None:
        """``simulator: aer`` unless the entry already simulates on Aer only."""
        return {"simulator": "aer"} if self.entry.simulator != "aer" else None

    def study_overrides(self, *, scale, shots, opt_level, repeat) -> dict:
        return {**super().study_overrides(scale=scale, shots=shots, opt_level=opt_level, repeat=repeat),
                "noise_scale": scale, "seed": (self.entry.seed or 0) + repeat}
