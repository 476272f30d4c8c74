"""What a noise or width study may vary on a backend, and how: the grid's axes (noise scales, optimization
levels, mitigation, shots, repeats), the backend at one grid point, the reference simulator a point is
cross-checked on and the memory a head's simulation takes. Each kind says its own rules in a subclass next to
its backend (:attr:`~qmedimg.backends.base.Backend.study` returns them); the studies ask these, never the kind.

Example::

    from qmedimg.backends import get_backend
    rules = get_backend("fake_brisbane").study
    rules.noise_scalable, rules.transpiles            # True, True: sweep noise scales and optimization levels
    point = rules.point(scale=2.0, mitigation="readout+zne", shots=None, opt_level=3, repeat=0)
    point.entry.noise_scale                            # 2.0: a new backend, the base is unchanged
"""

from __future__ import annotations

from typing import ClassVar

from qmedimg.cores import cores
from qmedimg.errors import QmedimgError


class StudyRules:
    """The rules of a noiseless kind without a device (``exact``, and any kind that says nothing else): no noise
    scale, no optimization levels, no mitigation; values at a number of shots differ between repeats.
    ``backend``: the :class:`~qmedimg.backends.base.Backend` they are the rules of."""

    noise_scalable: ClassVar[bool] = False
    """Whether ``noise_scale`` applies (a noise study sweeps it)."""

    def __init__(self, backend):
        self.backend = backend

    @property
    def transpiles(self) -> bool:
        """Whether circuits are transpiled for a device (a noise study sweeps optimization levels)."""
        return self.backend.describe().transpiles

    def sampled(self, shots: int | None) -> bool:
        """Whether values at these shots differ between repeats (exact values repeat exactly)."""
        return shots is not None

    def mitigation_overrides(self, mitigation: str) -> dict:
        """Entry keys for a noise-study mitigation ('none', 'readout', 'zne', 'readout+zne'); refused in one line
        where the backend has none."""
        if mitigation != "none":
            backend = self.backend
            raise QmedimgError(f"--mitigation {mitigation}: backend '{backend.name}' is {backend.kind} (noiseless); "
                               "mitigation needs a fake or ibm backend")
        return {}

    def result_inputs(self, mitigation: str) -> dict:
        """What a point's row depends on besides its run, images and entry (part of its ``inputs`` digest, so
        a row computed otherwise is never reused): nothing here."""
        return {}

    def reference_overrides(self) -> dict | None:
        """Entry keys that run the same point on Aer, the reference simulator, when this backend may simulate
        it otherwise (qmedimg's trajectory sampler); None when there is nothing to cross-check."""
        return None

    def point_overrides(self, *, scale: float | None, shots: int | None, opt_level: int | None,
                        repeat: int) -> dict:
        """Entry keys for one grid point (besides mitigation)."""
        return {}

    def point(self, *, scale: float | None, mitigation: str, shots: int | None, opt_level: int | None,
              repeat: int):
        """The backend with one grid point's settings (a new backend in the same context; this one is unchanged)."""
        overrides = self.point_overrides(scale=scale, shots=shots, opt_level=opt_level, repeat=repeat)
        overrides.update(self.mitigation_overrides(mitigation))
        return self.backend.with_overrides(**overrides)

    def simulation_memory(self, qubits: int, noisy: bool) -> tuple[int, str]:
        """(peak bytes, how) of simulating a head on ``qubits`` active qubits here: one statevector
        (16·2^n bytes) per core. Kinds with other methods say theirs."""
        return 16 * 2**qubits * cores(), f"statevector, {cores()} parallel experiments"
