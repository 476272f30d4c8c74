"""What the backends of one piece of work share, and for how long: the circuits they transpiled
(:class:`PreparedCircuit`, keyed by circuit *content*: :func:`fingerprint`), the devices they load and the noise
they build from them, in a :class:`BackendContext` the workflow creates and drops with the work, never in a module
global.

Example::

    from qmedimg.backends import BackendContext, get_backend
    context = BackendContext()                      # lives as long as the study, the evaluation, ...
    base = get_backend("fake_brisbane", context=context)
    point = base.study.point(scale=2.0, mitigation="none", shots=None, opt_level=None, repeat=0)
    base.prepare(spec) is point.prepare(spec)       # the same ISA circuit: transpiled once
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from qmedimg.backends.devices import fake_device
from qmedimg.backends.noise import trim_idle
from qmedimg.errors import QmedimgError
from qmedimg.files import os_error


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
    snapshots: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(calibration snapshot file, SHA-256 of its content) -> the device rebuilt from it, loaded once."""
    noise: dict[tuple, Any] = field(default_factory=dict)
    """(device, noise scale, physical qubits) -> their calibration, Aer noise model, readout and gate errors and the
    sampler's branches of those errors (:func:`~qmedimg.backends.noise.qubits_noise`): built once for a point and its
    mitigated variants."""

    def device(self, name: str):
        """The fake device ``name`` (e.g. FakeBrisbane), loaded the first time it is asked for (~0.3 s)."""
        if name not in self.devices:
            self.devices[name] = fake_device(name)
        return self.devices[name]

    def snapshot(self, path: str | Path, sha256: str | None = None):
        """The device of the calibration snapshot file ``path``
        (:func:`~qmedimg.backends.snapshots.snapshot_device`), loaded once per file content: a file rewritten with
        another calibration is loaded anew. ``sha256``: the content the caller was validated against (a fake entry's
        ``calibration_sha256``); a file that changed since is one line."""
        from qmedimg.backends.snapshots import parse_snapshot, snapshot_device

        path = Path(path).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise os_error(path, exc, "cannot read calibration snapshot") from None
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise QmedimgError(f"{path}: the calibration snapshot changed since the registry was read (SHA-256 "
                               f"{digest[:12]}..., not {sha256[:12]}...); run the command again")
        key = (str(path.resolve()), digest)
        if key not in self.snapshots:
            self.snapshots[key] = snapshot_device(parse_snapshot(path, data))
        return self.snapshots[key]

    def clear(self) -> None:
        """Forget every transpiled circuit, loaded device and built noise."""
        self.prepared.clear()
        self.devices.clear()
        self.snapshots.clear()
        self.noise.clear()


def fingerprint(circuit, observables=()) -> str:
    """A digest of a circuit's content (its OpenQASM 3 text, so neither its name nor its parameters' identities)
    and observables: equal circuits share one transpilation, whichever load of the file made them."""
    from qiskit import qasm3

    digest = hashlib.sha256(qasm3.dumps(circuit).encode())
    for op in observables:
        digest.update(str(op.to_list()).encode())
    return digest.hexdigest()
