"""The ``ibm`` kind: a real IBM QPU through Qiskit Runtime, or the same code path offline in Runtime's
local testing mode (``local: FakeXxx``).

Example (``backends.yaml``)::

    ibm_brisbane:
      kind: ibm
      device: ibm_brisbane
      mode: batch
      shots: 4096
      options: {resilience_level: 1}

On a QPU the head runs as jobs of at most ``max_rows_per_job`` images (lowered to respect IBM's job
limits); every job id goes to the run's ledger before waiting (:mod:`~qmedimg.backends.jobs`), so a
re-run collects instead of resubmitting. ``--dry-run`` says what would be sent and what it would
cost, submitting nothing. Runtime's local mode simulates every qubit of the device, so circuits are
laid out on physical qubits 0..k-1 and idle wires dropped first.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from qmedimg.backends import jobs as qpu_jobs
from qmedimg.backends import runtime
from qmedimg.backends.base import HeadRequest, HeadResult, JobOptions
from qmedimg.backends.context import PreparedCircuit
from qmedimg.backends.device import DeviceBackend, DeviceStudy
from qmedimg.backends.devices import fake_device_name, two_qubit_gate
from qmedimg.backends.options import Shots, Strict, TranspileOptions
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec
from qmedimg.quantum.gradients import column


class IbmEntry(Strict):
    kind: Literal["ibm"]
    description: str = ""
    device: str = Field(description="the QPU's name, e.g. ibm_brisbane")
    channel: Literal["ibm_quantum_platform", "ibm_cloud"] = "ibm_quantum_platform"
    instance: str | None = None
    mode: Literal["batch", "session", "job"] = "batch"
    local: str | None = Field(None, description="a fake device: run in Runtime's local testing mode")
    shots: Shots | None = 4096
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    options: dict[str, Any] = Field(default_factory=dict, description="Qiskit Runtime EstimatorOptions")
    max_rows_per_job: PositiveInt = Field(1000, description="at most this many images per Runtime job "
                                          "(lowered further to respect IBM's job limits)")
    timeout_s: float = Field(15.0, gt=0, description="give up reaching IBM Quantum after this long")

    @field_validator("local")
    @classmethod
    def _local(cls, value):
        return None if value is None else fake_device_name(value)

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict) -> dict:
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions

        EstimatorOptions(**options)  # raises a ValidationError naming the bad option
        return options


class IbmStudy(DeviceStudy):
    """A noise study on a QPU: every repeat differs; mitigation is Runtime's (resilience options)."""

    def sampled(self, shots: int | None) -> bool:
        return True  # a QPU never repeats exactly

    def mitigation_overrides(self, mitigation: str) -> dict:
        return {"options": {"resilience_level": 0,
                            "resilience": {"measure_mitigation": "readout" in mitigation,
                                           "zne_mitigation": "zne" in mitigation}}}


class IbmBackend(DeviceBackend):
    """A QPU through Qiskit Runtime's executor-based ``Estimator``, with a job ledger
    (:class:`~qmedimg.backends.base.JobOptions`)."""

    kind = "ibm"
    Entry = IbmEntry
    _submits_jobs = True  # a dry run and a resume are what this kind is for
    _study_rules = IbmStudy

    @cached_property
    def _device(self):
        return self._context.device(self.entry.local) if self.entry.local else runtime.runtime_backend(self.entry)

    @property
    def _precision(self) -> float | None:
        return None  # the entry's shots (Runtime's default_shots) decide

    @cached_property
    def _estimator(self):
        return runtime.runtime_estimator(self.entry, self._device)

    @property
    def spends_qpu_time(self) -> bool:
        return self.entry.local is None

    # -- preparing ----------------------------------------------------------------------------
    def _initial_layout(self, num_qubits: int) -> list[int] | None:
        layout = super()._initial_layout(num_qubits)
        if self.entry.local and layout is None:
            layout = list(range(num_qubits))  # local mode simulates physical qubits 0..k-1 only
        return layout

    def _transpile_key(self) -> tuple:
        return (*super()._transpile_key(), self.entry.local)

    def _transpile(self, spec: CircuitSpec) -> PreparedCircuit:
        prepared = super()._transpile(spec)
        if self.entry.local:
            return PreparedCircuit(*runtime.trim_for_local(prepared, self.name))
        return prepared

    def training_head(self, spec: CircuitSpec) -> dict:
        raise QmedimgError(f"backend '{self.name}' is an IBM QPU: training there would spend QPU time on "
                           "every batch; train on exact/aer/fake, then `qmedimg evaluate --backend`")

    # -- running ------------------------------------------------------------------------------
    def run_head(self, request: HeadRequest, jobs: JobOptions | None = None, chunk: int = 0) -> HeadResult:
        """Values of the head on the QPU (or local mode): split into jobs, ids in the run's ledger
        (``jobs.ledger_dir``) before waiting; with ``jobs.dry_run`` only the plan (jobs, rows,
        shots, QPU-time estimate)."""
        entry, spec, options = self.entry, request.spec, jobs or JobOptions()
        prepared = self.prepare(spec)
        circuit, observables = prepared.circuit, prepared.observables
        values = qpu_jobs.parameter_values(circuit, spec, request.angles, request.weights)
        if options.dry_run:
            return HeadResult(None, {"dry_run": qpu_jobs.plan(entry, values, len(observables), self._device, circuit)})
        if options.ledger_dir is None:
            raise QmedimgError(f"backend '{self.name}': a QPU run needs a run directory for its job ledger")
        size = qpu_jobs.rows_per_job(entry, circuit)
        pubs = [(circuit, column(observables), values[i : i + size], i) for i in range(0, len(values), size)]
        identity = {
            "run": options.run_id, "backend": self.name, "device": self._device_name,
            "request": qpu_jobs.request_id(values=values, circuit=circuit.num_qubits, options=entry.options,
                                       shots=entry.shots, transpile=entry.transpile.model_dump(),
                                       observables=[str(o) for o in observables],
                                       **({"repeat": request.repeat} if request.repeat else {})),
            # how the images are split into jobs (max_rows_per_job, IBM's limits on the ISA circuit), the
            # circuit sent, and which repetition of the same request this is (repeats are new submissions)
            "jobs": [[start, start + len(v)] for _, _, v, start in pubs],
            "isa": qpu_jobs.circuit_digest(circuit), "repeat": request.repeat,
        }
        ledger = qpu_jobs.Ledger.open(options.ledger_dir / f"ledger-{self.name}.json", identity, resume=options.resume)
        evs, done = qpu_jobs.run_jobs(ledger, lambda: self._estimator, lambda: runtime.runtime_service(entry), pubs,
                                  local=entry.local is not None, progress=request.progress)
        usage = [j["usage_s"] for j in done if j["usage_s"] is not None]
        return HeadResult(evs.T, {
            "jobs": [{k: j[k] for k in ("index", "rows", "job_id", "status", "usage_s")} for j in done],
            "qpu_seconds": sum(usage) if usage else None, "ledger": str(ledger.path),
            "local_testing_mode": entry.local is not None, "sent": qpu_jobs.SENT})

    # -- describing ---------------------------------------------------------------------------
    def _mitigation(self) -> dict:
        return self.entry.options

    def _zne_factors(self) -> list[float]:
        return qpu_jobs.final_options(self.entry)[2]

    def _row(self) -> dict:
        row = super()._row()
        if self.entry.local:
            return {**row, **self._device_row(self._context.device(self.entry.local))}
        return {**row, "device": self.entry.device}  # listing never connects

    def _check(self) -> list[str]:
        """For a QPU: credentials present and device reachable (each step under the entry's timeout);
        nothing submitted. In local mode: run the default circuit, as every kind does."""
        entry = self.entry
        if entry.local:
            return super()._check()
        lines = [f"{self.name}: kind {self.kind}" + (f", {entry.description}" if entry.description else "")]
        runtime.runtime_service(entry)
        lines.append(f"credentials: found (channel {entry.channel}); account reachable")
        device = self._device
        lines.append(f"device: {device.name}, {device.num_qubits} qubits, 2-qubit gate {two_qubit_gate(device)}")
        lines.append("ok (nothing submitted)")
        return lines
