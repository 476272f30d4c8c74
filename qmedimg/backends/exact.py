"""The ``exact`` kind: qmedimg's exact statevector estimator, the one noiseless training runs on.

Example (``backends.yaml``)::

    exact:
      kind: exact
      description: qmedimg's exact estimator
"""

from __future__ import annotations

from functools import cached_property
import torch

from qmedimg.backends.base import Backend
from qmedimg.backends.entries import ExactEntry
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec


class ExactBackend(Backend):
    """Exact expectation values (:class:`~qmedimg.quantum.exact.ExactEstimator`): what a head was trained
    on, so its values are the ideal ones."""

    kind = "exact"
    Entry = ExactEntry
    _exact = True
    _angles_dtype = torch.float32  # as in training, so the values equal the trained head's bit for bit

    def _head_kwargs(self, spec: CircuitSpec) -> dict:
        limit = self._estimator.options.max_qubits
        if spec.num_qubits > limit:
            raise QmedimgError(f"circuit '{spec.name}' has {spec.num_qubits} qubits; the exact estimator simulates "
                               f"at most {limit} (each row holds 2**n amplitudes): use a smaller --qubits")
        return super()._head_kwargs(spec)

    @cached_property
    def _estimator(self):
        from qmedimg.quantum.exact import ExactEstimator

        return ExactEstimator()
