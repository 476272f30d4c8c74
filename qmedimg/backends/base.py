"""What every backend kind does: the one interface workflows use to run a quantum head.

A backend is one entry of ``backends.yaml``, built. Workflows (train, evaluate, noise study,
predict) never ask which kind it is; they ask it:

* :meth:`Backend.prepare` — the circuit and observables to send (transpiled for a device, with the
  layout applied to the observables), cached by circuit *content*;
* :meth:`Backend.head_kwargs` / :meth:`Backend.training_head` — the estimator, circuit, observables
  and precision a head runs on (training refused where it would spend QPU time);
* :meth:`Backend.run_head` — a trained head's expectation values on a batch of input angles (on a
  QPU: job split, ledger, dry run);
* :meth:`Backend.check_request` — refuse what the kind cannot do (``--dry-run`` on a simulator)
  before any work is done;
* :meth:`Backend.record` / :meth:`Backend.describe` — what it is, for eval files, reports and
  ``qmedimg backends``;
* :meth:`Backend.study_point` — itself with one noise-study grid point's settings.

One module per kind (:mod:`~qmedimg.backends.exact`, :mod:`~qmedimg.backends.aer`,
:mod:`~qmedimg.backends.fake`, :mod:`~qmedimg.backends.ibm`) says only what differs; the registry
(:mod:`~qmedimg.backends.registry`) chooses the class from ``kind:`` once.

Example::

    from qmedimg.backends import HeadRequest, get_backend
    backend = get_backend("fake_brisbane")
    result = backend.run_head(HeadRequest(spec, weights, angles))
    result.values                                   # (images, observables)
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from qmedimg.backends.noise import trim_idle
from qmedimg.backends.options import with_keys
from qmedimg.cores import cores
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec, load_circuit
from qmedimg.quantum.qnn import QuantumHead

"""Cores this process may use: simulators run one experiment per core."""

@dataclass
class HeadRequest:
    """A trained quantum head to run on a batch of input angles."""

    spec: CircuitSpec
    weights: np.ndarray
    """(W,) the trained circuit weights, in ``spec.weights`` order."""
    angles: np.ndarray
    """(N, n) each image's input angles: the only per-image numbers a backend receives."""
    ledger_dir: Path | None = None
    """Where a QPU backend keeps its job ledger (the run directory)."""
    run_id: str = ""
    """A digest of what produced the angles and weights (config, checkpoint): part of a ledger's identity."""
    dry_run: bool = False
    resume: bool = False
    progress: bool = False
    repeat: int = 0
    """Which repetition of the same request this is: on a QPU each is a submission of its own (a
    simulator's repeats differ by their seed, :meth:`Backend.study_overrides`)."""


@dataclass
class HeadResult:
    """Expectation values (N, O), or None after a dry run; ``details`` go into eval files."""

    values: np.ndarray | None
    details: dict = field(default_factory=dict)


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


_PREPARED: dict[tuple, PreparedCircuit] = {}  # (circuit content, observables, device, options) -> prepared


def fingerprint(circuit, observables=()) -> str:
    """A digest of a circuit's content (QPY) and observables: equal circuits share one transpilation."""
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    digest = hashlib.sha256(buffer.getvalue())
    for op in observables:
        digest.update(str(op.to_list()).encode())
    return digest.hexdigest()


class Backend:
    """One registry entry, built. Subclasses set ``kind`` and ``Entry`` (the entry's schema) and
    override what their kind does differently."""

    kind: ClassVar[str]
    Entry: ClassVar[type[BaseModel]]
    exact: ClassVar[bool] = False
    """Whether its values are the trained head's exact ones (then nothing is compared against ideal)."""
    noise_scalable: ClassVar[bool] = False
    """Whether ``noise_scale`` applies (a noise study sweeps it)."""
    transpiles: ClassVar[bool] = False
    """Whether circuits are transpiled for a device (a noise study sweeps optimization levels)."""
    angles_dtype: ClassVar[torch.dtype | None] = None
    """The dtype the head's input angles are cast to before they are bound (None: as given)."""

    def __init__(self, name: str, entry: BaseModel, registry: Path | None = None):
        self.name, self.entry, self.registry = name, entry, registry

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- what it runs on ----------------------------------------------------------------------
    @cached_property
    def device(self):
        """The ``BackendV2`` circuits are transpiled for (None when nothing is transpiled)."""
        return None

    @property
    def device_name(self) -> str:
        return self.device.name if self.device is not None else self.kind

    @property
    def precision(self) -> float | None:
        """What the QNN asks the estimator for: exact values (0.0) unless the kind samples by itself."""
        return 0.0

    @cached_property
    def estimator(self):
        """The V2 estimator the head runs on."""
        raise NotImplementedError

    @property
    def spends_qpu_time(self) -> bool:
        """Whether running anything here costs QPU time (a real IBM device)."""
        return False

    # -- preparing and running a head ---------------------------------------------------------
    def prepare(self, spec: CircuitSpec) -> PreparedCircuit:
        """The circuit and observables to send; transpiled once per (circuit content, observables,
        device and options), whichever ``Backend`` object asks."""
        key = self.transpile_key()
        if key is None:
            return PreparedCircuit(spec.circuit, list(spec.observables))
        key = (fingerprint(spec.circuit, spec.observables), *key)
        if key not in _PREPARED:
            _PREPARED[key] = self.transpile(spec)
        return _PREPARED[key]

    def transpile_key(self) -> tuple | None:
        """What, besides the circuit, decides its transpiled form (None: sent as written)."""
        return None

    def transpile(self, spec: CircuitSpec) -> PreparedCircuit:
        """The circuit transpiled for this backend (only called when :meth:`transpile_key` is not None)."""
        raise NotImplementedError

    def warm_up(self, spec: CircuitSpec) -> None:
        """Do the one-time set-up for ``spec`` now (device, transpilation, noise model), so it can be
        timed apart from the evaluation."""
        self.prepare(spec)

    def head_kwargs(self, spec: CircuitSpec) -> dict:
        """Keyword arguments of :class:`~qmedimg.quantum.qnn.QuantumHead` for a head that runs here:
        the estimator, the prepared circuit and observables, the precision."""
        prepared = self.prepare(spec)
        return {"estimator": self.estimator, "circuit": prepared.circuit, "observables": prepared.observables,
                "precision": self.precision}

    def training_head(self, spec: CircuitSpec) -> dict:
        """:meth:`head_kwargs` for a head trained here (refused where training would cost QPU time)."""
        return self.head_kwargs(spec)

    def check_request(self, *, dry_run: bool = False, resume: bool = False) -> None:
        """Refuse options this kind cannot honour, before any work is done."""
        if dry_run:
            raise QmedimgError(f"--dry-run is for ibm backends; '{self.name}' ({self.kind}) runs locally and "
                               "costs nothing: run it without --dry-run")
        if resume:
            raise QmedimgError(f"--collect-jobs is for ibm backends (it collects submitted jobs); '{self.name}' "
                               f"({self.kind}) runs locally: run it without --collect-jobs")

    def run_head(self, request: HeadRequest, chunk: int = 512) -> HeadResult:
        """(N, O) expectation values of the trained head, through the same ``TorchConnector`` layer as
        training, on this backend's (ISA) circuit, ``chunk`` images at a time."""
        from tqdm import tqdm

        self.check_request(dry_run=request.dry_run, resume=request.resume)
        head = QuantumHead(request.spec, **self.head_kwargs(request.spec))
        head.connector.weight.data.copy_(torch.from_numpy(np.asarray(request.weights)))
        angles, out = torch.from_numpy(np.asarray(request.angles)), []
        with torch.no_grad():
            for start in tqdm(range(0, len(angles), chunk), desc=self.name, unit="chunk",
                              disable=not request.progress, leave=False):
                batch = angles[start : start + chunk]
                out.append(head(batch if self.angles_dtype is None else batch.to(self.angles_dtype)).double().numpy())
        return HeadResult(np.concatenate(out) if out else np.zeros((0, len(request.spec.observables))))

    # -- describing itself --------------------------------------------------------------------
    def transpile_report(self, spec: CircuitSpec) -> dict | None:
        """Physical qubits, depth, 2-qubit gates and estimated fidelity; None when nothing is transpiled."""
        return None

    def simulation_memory(self, qubits: int, noisy: bool) -> tuple[int, str]:
        """(peak bytes, how) of simulating a head on ``qubits`` active qubits here: one statevector
        (16·2^n bytes) per core. Kinds with other methods say theirs."""
        return 16 * 2**qubits * cores(), f"statevector, {cores()} parallel experiments"

    def shots(self) -> int | None:
        """Shots per parameter row (None: exact expectation values)."""
        return getattr(self.entry, "shots", None)

    def mitigation(self) -> dict | None:
        """The error mitigation applied, as recorded in eval files."""
        return None

    def zne_factors(self) -> list[float]:
        """The noise factors each value is extrapolated from ([1] without ZNE)."""
        return [1.0]

    def record(self, spec: CircuitSpec | None) -> dict:
        """What an eval file says about where it ran."""
        return {"backend": self.name, "kind": self.kind, "device": self.device_name, "shots": self.shots(),
                "noise_scale": getattr(self.entry, "noise_scale", None), "mitigation": self.mitigation(),
                "transpile": self.transpile_report(spec) if spec is not None else None,
                "backend_entry": self.entry.model_dump()}

    def describe(self) -> dict:
        """One row for ``qmedimg backends``: kind, device, qubits, 2-qubit gate, options."""
        skip = {"kind", "description", "device"}
        options = " ".join(f"{k}={v}" for k, v in _flat(self.entry.model_dump(exclude_unset=True)).items()
                           if k not in skip)
        return {"name": self.name, "kind": self.kind, "device": "-", "qubits": "-", "2q gate": "-",
                "options": options, "description": self.entry.description}

    def check(self) -> list[str]:
        """Build the entry and run the default circuit once on it; lines to print."""
        entry = self.entry
        lines = [f"{self.name}: kind {self.kind}" + (f", {entry.description}" if entry.description else "")]
        spec = load_circuit("sel")
        lines += self._check_device(spec)
        prepared = self.prepare(spec)
        values = np.random.default_rng(0).uniform(-np.pi, np.pi, (4, prepared.circuit.num_parameters))
        pub = (prepared.circuit, [[o] for o in prepared.observables], values)
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            evs = self.estimator.run([pub], precision=self.precision).result()[0].data.evs
            timings.append(time.perf_counter() - start)
        lines.append(f"ran sel (4 rows): first call {timings[0]:.2f} s, next {timings[1]:.2f} s; "
                     f"<Z0> of row 0 = {float(np.asarray(evs)[0, 0]):+.4f}")
        lines.append("ok")
        return lines

    def _check_device(self, spec: CircuitSpec) -> list[str]:
        return []

    # -- noise study --------------------------------------------------------------------------
    def sampled(self, shots: int | None) -> bool:
        """Whether values at these shots differ between repeats (exact values repeat exactly)."""
        return shots is not None

    def mitigation_overrides(self, mitigation: str) -> dict:
        """Entry keys for a noise-study mitigation ('none', 'readout', 'zne', 'readout+zne')."""
        if mitigation != "none":
            raise QmedimgError(f"--mitigation {mitigation}: backend '{self.name}' is {self.kind} (noiseless); "
                               "mitigation needs a fake or ibm backend")
        return {}

    def reference_overrides(self) -> dict | None:
        """Entry keys that run the same point on Aer, the reference simulator, when this backend may simulate
        it otherwise (qmedimg's trajectory sampler); None when there is nothing to cross-check."""
        return None

    def study_overrides(self, *, scale: float | None, shots: int | None, opt_level: int | None,
                        repeat: int) -> dict:
        """Entry keys for one noise-study grid point (besides mitigation)."""
        return {}

    def study_point(self, *, scale: float | None, mitigation: str, shots: int | None, opt_level: int | None,
                    repeat: int) -> Backend:
        """This backend with one grid point's settings (a new backend; this one is unchanged)."""
        overrides = self.study_overrides(scale=scale, shots=shots, opt_level=opt_level, repeat=repeat)
        overrides.update(self.mitigation_overrides(mitigation))
        return self.with_overrides(**overrides)

    def with_overrides(self, **overrides) -> Backend:
        """This entry with some keys replaced (validated as if they were in the file)."""
        return type(self)(self.name, with_keys(self.entry, overrides, self.name), self.registry)


def _flat(data: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
