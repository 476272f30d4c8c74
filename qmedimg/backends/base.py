"""What every backend kind does: the one interface workflows use to run a quantum head.

A backend is one entry of ``backends.yaml``, built. Workflows (train, evaluate, noise study,
predict) never ask which kind it is; they ask it:

* :meth:`Backend.prepare` — the circuit and observables to send (transpiled for a device, with the
  layout applied to the observables), once per circuit *content* in its
  :class:`~qmedimg.backends.context.BackendContext`;
* :meth:`Backend.training_head` — the estimator, circuit, observables and precision a head trains on
  (refused where training would spend QPU time);
* :meth:`Backend.run_head` — a trained head's expectation values on a batch of input angles (on a
  QPU, with :class:`JobOptions`: job split, ledger, dry run);
* :meth:`Backend.describe` — what it is (:class:`BackendInfo`), for eval files, study rows and
  ``qmedimg backends``;
* :attr:`Backend.study` — what a noise study may vary on it (:class:`~qmedimg.backends.study_rules.StudyRules`).

One module per kind (:mod:`~qmedimg.backends.exact`, :mod:`~qmedimg.backends.aer`,
:mod:`~qmedimg.backends.fake`, :mod:`~qmedimg.backends.ibm`) overrides the protected hooks where it
differs (``_estimator``, ``_device``, ``_transpile``, ...); the registry
(:mod:`~qmedimg.backends.registry`) chooses the class from ``kind:`` once.

Example::

    from qmedimg.backends import BackendContext, HeadRequest, get_backend
    context = BackendContext()                       # the transpiled circuits of this piece of work
    backend = get_backend("fake_brisbane", context=context)
    result = backend.run_head(HeadRequest(spec, weights, angles))
    result.values                                   # (images, observables)
    backend.describe(spec).record()                 # what an eval file says about where it ran
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from qmedimg.backends.context import BackendContext, PreparedCircuit, fingerprint
from qmedimg.backends.listing import listing_row
from qmedimg.backends.options import with_keys
from qmedimg.backends.study_rules import StudyRules
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec, load_circuit
from qmedimg.quantum.qnn import QuantumHead


@dataclass
class HeadRequest:
    """A trained quantum head to run on a batch of input angles: all that every kind takes (a QPU's job
    options come apart, as :class:`JobOptions`)."""

    spec: CircuitSpec
    weights: np.ndarray
    """(W,) the trained circuit weights, in ``spec.weights`` order."""
    angles: np.ndarray
    """(N, n) each image's input angles: the only per-image numbers a backend receives."""
    progress: bool = False
    repeat: int = 0
    """Which repetition of the same request this is: on a QPU each is a submission of its own (a
    simulator's repeats differ by their seed, :meth:`~qmedimg.backends.study_rules.StudyRules.point`)."""


@dataclass(frozen=True)
class JobOptions:
    """How a backend that submits jobs (``ibm``) runs a head: where its job ledger lives, what identifies the
    request, and whether only to plan (``dry_run``) or only to collect what was submitted (``resume``). Only
    such a kind takes them: elsewhere :meth:`check` refuses a dry run or a resume, before any work is done.

    Example::

        JobOptions(dry_run=True).check(get_backend("fake_brisbane"))  # one line: --dry-run is for ibm backends
        jobs = JobOptions(ledger_dir=Path("runs/breast"), run_id=run.run_id(), dry_run=True)
        get_backend("ibm_brisbane").run_head(request, jobs).details["dry_run"]   # jobs, rows, QPU-time estimate
    """

    ledger_dir: Path | None = None
    """Where the job ledger ``ledger-<backend>.json`` is kept (the run directory)."""
    run_id: str = ""
    """A digest of what produced the angles and weights (config, checkpoint): part of a ledger's identity."""
    dry_run: bool = False
    """Say what would be sent and what it would cost; submit nothing (``--dry-run``)."""
    resume: bool = False
    """Collect the jobs the ledger holds, never submit again (``--collect-jobs``)."""

    def check(self, backend: Backend) -> None:
        """Refuse a dry run or a resume on a backend that submits no jobs, and jobs its backend cannot submit (a
        QPU without credentials): one line naming the flag or what is missing."""
        if backend._submits_jobs:
            backend._check_jobs(self)
            return
        if self.dry_run:
            raise QmedimgError(f"--dry-run is for ibm backends; '{backend.name}' ({backend.kind}) runs locally and "
                               "costs nothing: run it without --dry-run")
        if self.resume:
            raise QmedimgError(f"--collect-jobs is for ibm backends (it collects submitted jobs); '{backend.name}' "
                               f"({backend.kind}) runs locally: run it without --collect-jobs")


@dataclass
class HeadResult:
    """Expectation values (N, O), or None after a dry run; ``details`` go into eval files, ``arrays`` (one row per
    image, e.g. an ``ibm`` run's ``predicted_values``; where values are means over noise trajectories,
    ``value_covariance`` (N, O, O), each image's covariance of its values) into the per-image file."""

    values: np.ndarray | None
    details: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


class Backend:
    """One registry entry, built. What a workflow may ask of it is its twelve public members: ``kind``, ``Entry``
    (the entry's schema), ``name``, ``entry``, :attr:`spends_qpu_time`, :meth:`prepare`, :meth:`warm_up`,
    :meth:`training_head`, :meth:`run_head`, :meth:`describe`, :attr:`study` and :meth:`with_overrides`.

    A kind sets ``kind`` and ``Entry`` and overrides the protected hooks where it differs: ``_estimator`` (the
    only one a kind must give), ``_device``, ``_precision``, ``_transpile_key``/``_transpile``, ``_head_kwargs``,
    the traits ``_exact``, ``_transpiles``, ``_submits_jobs`` (with ``_check_jobs``), ``_simulates``,
    ``_angles_dtype``, how it describes itself (``_transpile_report``, ``_mitigation``, ``_zne_factors``,
    ``_simulation``, ``_calibration_record``, ``_check``) and its study rules (``_study_rules``).

    Example::

        backend = get_backend("fake_brisbane")          # FakeBackend("fake_brisbane")
        model = HybridNet(..., spec=spec, head_on=backend.training_head(spec))
        values = backend.run_head(HeadRequest(spec, weights, angles)).values
    """

    kind: ClassVar[str]
    Entry: ClassVar[type[BaseModel]]
    _exact: ClassVar[bool] = False
    """Whether its values are the trained head's exact ones (then nothing is compared against ideal)."""
    _transpiles: ClassVar[bool] = False
    """Whether circuits are transpiled for a device."""
    _submits_jobs: ClassVar[bool] = False
    """Whether it submits jobs, and so takes :class:`JobOptions`' dry run and resume."""
    _simulates: ClassVar[bool] = False
    """Whether its eval files say how the head was simulated (``simulation``)."""
    _angles_dtype: ClassVar[torch.dtype | None] = None
    """The dtype the head's input angles are cast to before they are bound (None: as given)."""
    _study_rules: ClassVar[type[StudyRules]] = StudyRules
    """Its kind's noise-study rules (:attr:`study`)."""

    def __init__(self, name: str, entry: BaseModel, registry: Path | None = None, *,
                 context: BackendContext | None = None):
        self.name, self.entry = name, entry
        self._registry = registry
        self._context = context if context is not None else BackendContext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def spends_qpu_time(self) -> bool:
        """Whether running anything here costs QPU time (a real IBM device)."""
        return False

    # -- preparing and running a head ---------------------------------------------------------
    def prepare(self, spec: CircuitSpec) -> PreparedCircuit:
        """The circuit and observables to send; transpiled once per (circuit content, observables, device and
        options) in this backend's :class:`~qmedimg.backends.context.BackendContext`, whichever of its backends
        asks."""
        key = self._transpile_key()
        if key is None:
            return PreparedCircuit(spec.circuit, list(spec.observables))
        key = (fingerprint(spec.circuit, spec.observables), *key)
        prepared = self._context.prepared
        if key not in prepared:
            prepared[key] = self._transpile(spec)
        return prepared[key]

    def warm_up(self, spec: CircuitSpec) -> None:
        """Do the one-time set-up for ``spec`` now (device, transpilation, noise model), so it can be
        timed apart from the evaluation."""
        self.prepare(spec)

    def training_head(self, spec: CircuitSpec) -> dict:
        """Keyword arguments of :class:`~qmedimg.quantum.qnn.QuantumHead` for a head trained here: the estimator,
        the prepared circuit and observables, the precision (refused where training would cost QPU time).

        Example::

            head = QuantumHead(spec, **get_backend("fake_manila").training_head(spec))
        """
        return self._head_kwargs(spec)

    def run_head(self, request: HeadRequest, jobs: JobOptions | None = None, chunk: int = 512) -> HeadResult:
        """(N, O) expectation values of the trained head, through the same ``TorchConnector`` layer as
        training, on this backend's (ISA) circuit, ``chunk`` images at a time. ``jobs``: a QPU's job options
        (:class:`JobOptions`), refused here if they ask for a dry run or a resume."""
        from tqdm import tqdm

        if jobs is not None:
            jobs.check(self)
        head = QuantumHead(request.spec, **self._head_kwargs(request.spec))
        head.connector.weight.data.copy_(torch.from_numpy(np.asarray(request.weights)))
        angles, out, covariances = torch.from_numpy(np.asarray(request.angles)), [], []
        with torch.no_grad():
            for start in tqdm(range(0, len(angles), chunk), desc=self.name, unit="chunk",
                              disable=not request.progress, leave=False):
                batch = angles[start : start + chunk]
                out.append(head(batch if self._angles_dtype is None else batch.to(self._angles_dtype)).double().numpy())
                covariances.append(head.qnn.value_covariance)
        values = np.concatenate(out) if out else np.zeros((0, len(request.spec.observables)))
        sampled = bool(covariances) and all(c is not None for c in covariances)
        return HeadResult(values, arrays={"value_covariance": np.concatenate(covariances)} if sampled else {})

    # -- describing itself --------------------------------------------------------------------
    def describe(self, spec: CircuitSpec | None = None) -> BackendInfo:
        """What this backend is (:class:`BackendInfo`), with ``spec``'s transpilation and simulation when given.

        Example::

            get_backend("fake_brisbane_mitigated").describe(spec).record()   # what an eval file says
            get_backend("ibm_brisbane").describe().row()                     # a `qmedimg backends` row (no connection)
        """
        return BackendInfo(self, spec)

    @cached_property
    def study(self) -> StudyRules:
        """What a noise or width study may vary here, and this backend at one grid point
        (:class:`~qmedimg.backends.study_rules.StudyRules`)."""
        return self._study_rules(self)

    def with_overrides(self, **overrides) -> Backend:
        """This entry with some keys replaced (validated as if they were in the file): a new backend in the same
        :class:`~qmedimg.backends.context.BackendContext`; this one is unchanged."""
        return type(self)(self.name, with_keys(self.entry, overrides, self.name), self._registry,
                          context=self._context)

    # -- hooks a kind overrides ---------------------------------------------------------------
    @cached_property
    def _device(self):
        """The ``BackendV2`` circuits are transpiled for (None when nothing is transpiled)."""
        return None

    @property
    def _device_name(self) -> str:
        """The device's name (the kind's, for kinds without one)."""
        return self._device.name if self._device is not None else self.kind

    @property
    def _precision(self) -> float | None:
        """What the QNN asks the estimator for: exact values (0.0) unless the kind samples by itself."""
        return 0.0

    @cached_property
    def _estimator(self):
        """The V2 estimator the head runs on."""
        raise NotImplementedError

    def _check_jobs(self, jobs: JobOptions) -> None:
        """Refuse, before any work, job options this kind (one with ``_submits_jobs``) cannot honour."""

    def _transpile_key(self) -> tuple | None:
        """What, besides the circuit, decides its transpiled form (None: sent as written)."""
        return None

    def _transpile(self, spec: CircuitSpec) -> PreparedCircuit:
        """The circuit transpiled for this backend (only called when :meth:`_transpile_key` is not None)."""
        raise NotImplementedError

    def _head_kwargs(self, spec: CircuitSpec) -> dict:
        """Keyword arguments of :class:`~qmedimg.quantum.qnn.QuantumHead` for a head that runs here."""
        prepared = self.prepare(spec)
        return {"estimator": self._estimator, "circuit": prepared.circuit, "observables": prepared.observables,
                "precision": self._precision}

    def _transpile_report(self, spec: CircuitSpec) -> dict | None:
        """Physical qubits, depth, 2-qubit gates and estimated fidelity; None when nothing is transpiled."""
        return None

    def _mitigation(self) -> dict | None:
        """The error mitigation applied, as recorded in eval files."""
        return None

    def _zne_factors(self) -> list[float]:
        """The noise factors each value is extrapolated from ([1] without ZNE)."""
        return [1.0]

    def _simulation(self, spec: CircuitSpec) -> dict | None:
        """How ``spec`` is simulated here (kinds with ``_simulates``)."""
        return None

    def _calibration_record(self) -> dict:
        """What eval files say about the device's calibration (``calibration_date``; a snapshot's ``calibration``
        file, digest and time taken); {} where there is none to tell."""
        return {}

    def _check(self) -> list[str]:
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
            evs = self._estimator.run([pub], precision=self._precision).result()[0].data.evs
            timings.append(time.perf_counter() - start)
        lines.append(f"ran sel (4 rows): first call {timings[0]:.2f} s, next {timings[1]:.2f} s; "
                     f"<Z0> of row 0 = {float(np.asarray(evs)[0, 0]):+.4f}")
        lines.append("ok")
        return lines

    def _check_device(self, spec: CircuitSpec) -> list[str]:
        return []


class BackendInfo:
    """What a backend is, from :meth:`Backend.describe`: for eval files (:meth:`record`), study rows and
    ``qmedimg backends`` (:meth:`row`, :meth:`check`). Each part is computed when first asked, once: listing an
    ``ibm`` entry never connects, and only :attr:`transpile` and :attr:`simulation` need the head's ``spec``.

    Example::

        info = get_backend("fake_brisbane_mitigated").describe(spec)
        info.device, info.zne_factors                     # 'fake_brisbane', [1.0, 3.0, 5.0]
        info.transpile["estimated_fidelity"]              # the calibration's estimate for spec's ISA circuit
        info.record()                                     # what eval-<backend>.json says about where it ran
    """

    def __init__(self, backend: Backend, spec: CircuitSpec | None = None):
        self._backend, self.spec = backend, spec
        self.name: str = backend.name
        self.kind: str = backend.kind
        self.registry: Path | None = backend._registry
        """The registry file the entry was read from (None: an entry built in code)."""
        self.exact: bool = backend._exact
        """Whether its values are the trained head's exact ones (then nothing is compared against ideal)."""
        self.transpiles: bool = backend._transpiles
        """Whether circuits are transpiled for a device (``qmedimg transpile`` has something to show)."""

    @cached_property
    def device(self) -> str:
        """The device's name (the kind's, for kinds without one); on a QPU, IBM's (it connects)."""
        return self._backend._device_name

    @cached_property
    def device_qubits(self) -> int | None:
        """How many qubits the device has (None without a device)."""
        device = self._backend._device
        return device.num_qubits if device is not None else None

    @property
    def shots(self) -> int | None:
        """Shots per parameter row (None: exact expectation values)."""
        return getattr(self._backend.entry, "shots", None)

    @property
    def noise_scale(self) -> float | None:
        """How the calibrated error rates are scaled (None where nothing is scaled)."""
        return getattr(self._backend.entry, "noise_scale", None)

    @cached_property
    def mitigation(self) -> dict | None:
        """The error mitigation applied, as recorded in eval files."""
        return self._backend._mitigation()

    @cached_property
    def zne_factors(self) -> list[float]:
        """The noise factors each value is extrapolated from ([1] without ZNE)."""
        return self._backend._zne_factors()

    @cached_property
    def transpile(self) -> dict | None:
        """``spec``'s transpile report: physical qubits, depth, 2-qubit gates, ops and estimated fidelity
        (None without ``spec`` or where nothing is transpiled)."""
        return self._backend._transpile_report(self.spec) if self.spec is not None else None

    @cached_property
    def simulation(self) -> dict | None:
        """How ``spec``'s head is simulated (method, simulator, active qubits, trajectories, statistical error),
        where the kind simulates noise; else None."""
        return self._backend._simulation(self.spec) if self.spec is not None else None

    @property
    def entry(self) -> dict:
        """The registry entry, every key (defaults filled in)."""
        return self._backend.entry.model_dump()

    def record(self) -> dict:
        """What an eval file says about where it ran."""
        record = {"backend": self.name, "kind": self.kind, "device": self.device, "shots": self.shots,
                  "noise_scale": self.noise_scale, "mitigation": self.mitigation, "transpile": self.transpile,
                  "backend_entry": self.entry, **self._backend._calibration_record()}
        return {**record, "simulation": self.simulation} if self._backend._simulates else record

    def row(self) -> dict:
        """Its row in ``qmedimg backends``: name, kind, device, qubits, 2-qubit gate, options, description
        (:func:`~qmedimg.backends.listing.listing_row`: from the entry alone)."""
        return listing_row(self.name, self._backend.entry)

    def check(self) -> list[str]:
        """What ``qmedimg backends check NAME`` prints: the entry built and the default circuit run once on it (on a
        QPU: credentials found and the device reached, nothing submitted)."""
        return self._backend._check()
