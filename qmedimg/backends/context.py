"""What the backends of one piece of work share, and for how long: the circuits they transpiled
(:class:`PreparedCircuit`, keyed by circuit *content*: :func:`fingerprint`), in a :class:`BackendContext` the
workflow creates and drops with the work, never in a module global.

Example::

    from qmedimg.backends import BackendContext, get_backend
    context = BackendContext()                      # lives as long as the study, the evaluation, ...
    base = get_backend("fake_brisbane", context=context)
    point = base.study.point(scale=2.0, mitigation="none", shots=None, opt_level=None, repeat=0)
    base.prepare(spec) is point.prepare(spec)       # the same ISA circuit: transpiled once
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from qmedimg.backends.devices import fake_device
from qmedimg.backends.noise import trim_idle


@dataclass(frozen=True)
class PreparedCircuit:
    """A circuit ready to send: the (ISA) circuit and the observables on its layout."""

    circuit: Any
    observables: list

    def __iter__(self):  # circuit, observables = backend.prepare(spec)
        return iter((self.circuit, self.observables))

    @cached_property
    def active(self) -> tuple[Any, list[int]]:
        """(the circuit without idle wires and barriers, the index each kept wire had): computed once."""
        return trim_idle(self.circuit)


@dataclass
class BackendContext:
    """What the backends of one piece of work share, for as long as it lasts: the circuits they transpiled. A
    workflow creates one and passes it to every backend it builds (``get_backend(..., context=)``;
    :meth:`~qmedimg.backends.base.Backend.with_overrides` keeps it); a backend built without one gets a fresh
    one of its own, so no transpiled circuit outlives the work that made it.

    Example::

        context = BackendContext()
        a = get_backend("fake_brisbane", context=context)
        b = get_backend("fake_brisbane", shots=1024, context=context)
        a.prepare(spec) is b.prepare(spec)          # True: transpiled once
        context.clear()                              # or drop the context with the work
    """

    prepared: dict[tuple, PreparedCircuit] = field(default_factory=dict)
    """(circuit content, observables, device, transpile options) -> the circuit transpiled for them."""
    devices: dict[str, Any] = field(default_factory=dict)
    """Fake device class name -> the device (its Target and calibration), loaded once."""

    def device(self, name: str):
        """The fake device ``name`` (e.g. FakeBrisbane), loaded the first time it is asked for (~0.3 s)."""
        if name not in self.devices:
            self.devices[name] = fake_device(name)
        return self.devices[name]

    def clear(self) -> None:
        """Forget every transpiled circuit and loaded device."""
        self.prepared.clear()
        self.devices.clear()


def fingerprint(circuit, observables=()) -> str:
    """A digest of a circuit's content (QPY) and observables: equal circuits share one transpilation."""
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    digest = hashlib.sha256(buffer.getvalue())
    for op in observables:
        digest.update(str(op.to_list()).encode())
    return digest.hexdigest()
