"""The ``aer`` kind: Aer's noiseless statevector, exact values or sampled shots.

Example (``backends.yaml``)::

    aer:
      kind: aer
      shots: 4096      # omit for exact expectation values
      seed: 0
"""

from __future__ import annotations

from functools import cached_property
from qmedimg.backends.base import Backend
from qmedimg.backends.entries import AerEntry
from qmedimg.backends.study_rules import StudyRules
from qmedimg.quantum.circuits import CircuitSpec


class AerStudy(StudyRules):
    """A noise study on Aer's statevector: its shots, and a seed of its own for each repeat."""

    def point_overrides(self, *, scale, shots, opt_level, repeat) -> dict:
        return {"shots": shots, "seed": (self.backend.entry.seed or 0) + repeat}


class AerBackend(Backend):
    """Aer statevector simulation (:class:`~qmedimg.backends.device_estimator.DeviceEstimator` without
    a device)."""

    kind = "aer"
    Entry = AerEntry
    _study_rules = AerStudy

    @cached_property
    def _estimator(self):
        from qmedimg.backends.device_estimator import DeviceEstimator

        return DeviceEstimator(None, shots=self.entry.shots, seed=self.entry.seed)

    def warm_up(self, spec: CircuitSpec) -> None:
        self._estimator.prepare(self.prepare(spec).circuit)
