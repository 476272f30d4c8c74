"""The ``fake`` kind: an IBM device's calibration (``qiskit_ibm_runtime.fake_provider``) simulated by
Aer — density matrix, readout error, shots, noise scaling and local error mitigation.

Example (``backends.yaml``)::

    fake_brisbane:
      kind: fake
      device: FakeBrisbane
      noise_scale: 1.0              # 0 ideal, 2 = twice the error rates
      transpile: {optimization_level: 1}
      mitigation: {readout: true, zne: {noise_factors: [1, 3, 5]}}
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from qmedimg.backends.device import DeviceBackend
from qmedimg.backends.devices import fake_device, fake_device_name
from qmedimg.backends.options import Mitigation, Shots, Strict, TranspileOptions
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
        return DeviceEstimator(self.device, noise_scale=e.noise_scale, shots=e.shots, seed=e.seed,
                               readout_mitigation=m.readout, zne=m.zne, twirls=m.twirls)

    def warm_up(self, spec: CircuitSpec) -> None:
        self.estimator.prepare(self.prepare(spec).circuit)

    def noise_scale(self) -> float:
        return self.entry.noise_scale

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

    def study_overrides(self, *, scale, shots, opt_level, repeat) -> dict:
        return {**super().study_overrides(scale=scale, shots=shots, opt_level=opt_level, repeat=repeat),
                "noise_scale": scale, "seed": (self.entry.seed or 0) + repeat}
