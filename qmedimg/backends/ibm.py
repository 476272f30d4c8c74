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
cost, submitting nothing; without IBM Quantum credentials it plans offline, on the device's fake twin
(``ibm_brisbane`` -> FakeBrisbane's calibration snapshot) and says so, while a real run still needs them.
Runtime's local mode simulates every qubit of the device, so circuits are laid out on physical qubits 0..k-1
and idle wires dropped first.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from qmedimg.backends import jobs as qpu_jobs
from qmedimg.backends import prediction, runtime
from qmedimg.backends.base import HeadRequest, HeadResult, JobOptions
from qmedimg.backends.context import PreparedCircuit
from qmedimg.backends.device import DeviceBackend, DeviceStudy
from qmedimg.backends.devices import fake_twin, two_qubit_gate
from qmedimg.backends.entries import IbmEntry
from qmedimg.backends.snapshots import calibration_date
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec
from qmedimg.quantum.gradients import column


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
        """The fake device in local mode; else the QPU, or without credentials the entry's pinned calibration
        ``snapshot`` where it has one, else the device's fake twin (:meth:`_twin`)."""
        if self.entry.local:
            return self._context.device(self.entry.local)
        if self._offline and self.entry.snapshot:
            return self._context.snapshot(self.entry.snapshot)
        return self._context.device(self._twin()) if self._offline else runtime.runtime_backend(self.entry)

    @cached_property
    def _offline(self) -> bool:
        """Whether this QPU entry finds no IBM Quantum credentials: then nothing is asked of IBM Quantum, a dry run
        plans on the device's fake twin, and a real run is refused."""
        return self.entry.local is None and not runtime.credentials_found(self.entry)

    def _twin(self) -> str:
        """The fake device an offline plan uses, or one line saying there is none and what to do."""
        twin = fake_twin(self.entry.device)
        if twin is None:
            raise QmedimgError(f"backend '{self.name}': no IBM Quantum credentials found, and {self.entry.device} has "
                               "no calibration snapshot in qiskit_ibm_runtime.fake_provider to plan on offline; set "
                               "QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE) or save an account to plan on the live "
                               "device, give the entry a calibration snapshot to plan on (snapshot: FILE, from `qmedimg "
                               "backends snapshot`), or plan on a similar device that has one (an entry with device: "
                               "ibm_brisbane, ibm_torino, ibm_fez, ...)")
        return twin

    def _calibration(self) -> str:
        """Whose calibration the circuits are transpiled and planned on (said in a dry run and a transpile report)."""
        if self.entry.local:
            return f"{self.entry.local}'s calibration snapshot (Runtime's local testing mode)"
        if self._offline and self.entry.snapshot:
            return (f"the calibration snapshot {self.entry.snapshot} (calibrated {calibration_date(self._device)}), "
                    f"not the live device {self.entry.device} (no IBM Quantum credentials found): an estimate")
        if self._offline:
            return (f"{self._twin()}'s calibration snapshot, not the live device {self.entry.device} (no IBM "
                    "Quantum credentials found): an estimate")
        return f"{self.entry.device}'s live calibration"

    def _calibration_record(self) -> dict:
        return self._calibration_facts

    @cached_property
    def _calibration_facts(self) -> dict:
        """The calibration date of the device the circuits are planned on: the fake device's in local mode, the fake
        twin's offline (``calibration_twin`` says so), the live device's otherwise (asked of IBM Quantum once per
        backend, under ``timeout_s``: every eval-file record of this backend says the same)."""
        if self.entry.local:
            return {"calibration_date": calibration_date(self._device)}
        if self._offline:
            return {"calibration_date": calibration_date(self._device),
                    **({"calibration_snapshot": self.entry.snapshot} if self.entry.snapshot else
                       {"calibration_twin": self._twin()})}
        return {"calibration_date": runtime.with_timeout(lambda: calibration_date(self._device), self.entry.timeout_s,
                                                         f"backend '{self.name}': reading the calibration date")}

    def _live(self) -> None:
        """Refuse, in one line, anything that needs IBM Quantum when no credentials are found."""
        if self._offline:
            raise QmedimgError(f"backend '{self.name}': {runtime.NO_CREDENTIALS}; a run on {self.entry.device} needs "
                               "them (--dry-run plans without them, on the device's calibration snapshot)")

    @property
    def _precision(self) -> float | None:
        return None  # the entry's shots (Runtime's default_shots) decide

    @cached_property
    def _estimator(self):
        self._live()  # a fake twin as a Runtime mode would run in local testing mode, posing as the QPU
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
            planned, on = qpu_jobs.plan(entry, values, len(observables), self._device, circuit), self._calibration()
            return HeadResult(None, {"dry_run": {**planned, "planned_on": on,  # said where the estimate is printed
                                                 "estimate_note": f"{planned['estimate_note']}; planned on {on}"}})
        self._live()
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
                                  local=entry.local is not None, progress=request.progress,
                                  before_submit=lambda held: prediction.keep_snapshot(
                                      held, self._device, None if entry.local else entry.timeout_s))
        usage = [j["usage_s"] for j in done if j["usage_s"] is not None]
        spent = sum(usage) if usage and entry.local is None else None  # local testing mode spends no QPU time
        planned = qpu_jobs.plan(entry, values, len(observables), self._device, circuit)["estimated_qpu_seconds"]
        predicted = self._predict(ledger, circuit, observables, values, evs, done)
        return HeadResult(evs.T, {
            "jobs": [{k: j[k] for k in ("index", "rows", "job_id", "status", "usage_s")} for j in done],
            "qpu_seconds": sum(usage) if usage else None, "ledger": str(ledger.path),
            "qpu_usage": {"qpu_seconds": spent, "estimated_qpu_seconds": planned,
                          "ratio": round(spent / planned, 3) if spent is not None and planned else None,
                          "estimate": "the dry run's (jobs.plan)"},
            "local_testing_mode": entry.local is not None, "sent": qpu_jobs.SENT, "prediction": predicted.details},
            {"predicted_values": predicted.values, "predicted_se": predicted.se, "measured_se": predicted.measured_se})

    def _predict(self, ledger, circuit, observables, values, evs, done) -> prediction.Prediction:
        """The measured values' prediction: the same ISA circuit, values, shots and mitigation on the calibration
        snapshot kept for this request, or on the entry's pinned ``snapshot`` (:mod:`~qmedimg.backends.prediction`)."""
        pinned = self.entry.snapshot  # resolved against the registry file's folder when the entry was read
        snapshot, record = prediction.used_snapshot(ledger, Path(pinned) if pinned else None)
        return prediction.predict_on(snapshot, record, self.entry, circuit, observables, values, evs.T,
                                     _transposed(prediction.stored_stds(done, len(observables))))

    def _check_jobs(self, jobs: JobOptions) -> None:
        if not jobs.dry_run:
            self._live()

    # -- describing ---------------------------------------------------------------------------
    def _transpile_report(self, spec: CircuitSpec) -> dict:
        return {**super()._transpile_report(spec), "calibration": self._calibration()}

    def _mitigation(self) -> dict:
        return self.entry.options

    def _zne_factors(self) -> list[float]:
        return qpu_jobs.final_options(self.entry)[2]

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


def _transposed(array):
    """(rows, observables) from (observables, rows); None stays None."""
    return None if array is None else array.T
