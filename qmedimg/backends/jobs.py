"""QPU jobs: what a request would cost (dry run, IBM's job limits) and the ledger that makes sure QPU
time is never spent twice.

Example::

    from qmedimg.backends.jobs import Ledger, plan, run_jobs
    plan(entry, values, num_observables, device, isa)    # jobs, rows, shots, QPU-time estimate
    ledger = Ledger.open(run_dir / "ledger-ibm_brisbane.json", identity, resume=False)
    evs, jobs = run_jobs(ledger, make_estimator, make_service, pubs, local=False)

The ledger (``ledger-<backend>.json`` in the run directory) records every job id *before* waiting for
it; re-running the same command collects those jobs instead of submitting again. What leaves the
machine: ISA circuits and numeric parameter arrays (each image's n head angles and the circuit's
trained weights), never pixels, file names or labels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from qmedimg.errors import QmedimgError
from qmedimg.files import write_json

LEDGER_VERSION = 1
SENT = ("ISA circuit and numeric parameter arrays only: per image the quantum head's input angles, plus the "
        "circuit's trained weights; no pixels, file names, labels or DICOM metadata")


def parameter_values(circuit, spec, angles: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N, P) values in ``circuit.parameters`` order: each image's head angles and the trained weights."""
    by_name = {p.name: ("x", i) for i, p in enumerate(spec.inputs)}
    by_name.update({p.name: ("w", i) for i, p in enumerate(spec.weights)})
    values = np.empty((len(angles), circuit.num_parameters))
    for j, p in enumerate(circuit.parameters):
        source, i = by_name[p.name]
        values[:, j] = angles[:, i] if source == "x" else weights[i]
    return values


# ------------------------------------------------------------------------------------------------
# Dry run: what would be sent, and roughly what it costs


# IBM's job validation limits (quantum.cloud.ibm.com/docs/guides/job-limits): at most 5 million executions
# (circuits after broadcasting × shots) and, to pass for sure, fewer than 10,000 two-qubit gates per job,
# gate-folding ZNE multiplying the count by its largest noise factor.
MAX_EXECUTIONS, MAX_TWO_QUBIT_GATES = 5_000_000, 10_000


def final_options(entry):
    """(Runtime's finalized EstimatorOptions, shots per row, ZNE noise factors) for an ``ibm`` entry."""
    from qiskit_ibm_runtime.executor_estimator.finalize_options import finalize_estimator_options
    from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions

    options = dict(entry.options)
    if entry.shots is not None:
        options["default_shots"] = entry.shots
    final = finalize_estimator_options(EstimatorOptions(**options))
    shots = final.default_shots or math.ceil(1 / final.default_precision**2)
    factors = final.resilience.zne.noise_factors
    if factors == "auto":
        from qiskit_ibm_runtime.options_models.zne import DEFAULT_NOISE_FACTORS as factors
    zne = list(factors) if final.resilience.zne_mitigation else [1]
    return final, shots, zne


def rows_per_job(entry, isa) -> int:
    """Images per job: the entry's ``max_rows_per_job``, lowered to respect IBM's job limits."""
    _, shots, zne = final_options(entry)
    two_qubit = sum(1 for inst in isa.data if inst.operation.num_qubits == 2) if isa is not None else 0
    limits = [entry.max_rows_per_job, MAX_EXECUTIONS // (shots * len(zne))]
    if two_qubit:
        limits.append(MAX_TWO_QUBIT_GATES // math.ceil(two_qubit * max(zne)) - 1)
    return max(1, min(limits))


def plan(entry, values: np.ndarray, num_observables: int, device=None, isa=None) -> dict:
    """Jobs, PUBs, rows, shots and a rough QPU-time estimate for ``values`` (no network)."""
    final, shots, zne_factors = final_options(entry)
    rows, per_job = len(values), rows_per_job(entry, isa)
    jobs = math.ceil(rows / per_job)
    twirl = final.twirling
    randomizations = twirl.num_randomizations if (twirl.enable_gates or twirl.enable_measure) else None
    trex = 2 if final.resilience.measure_mitigation else 1  # calibration circuits roughly double shots
    executions = rows * shots * len(zne_factors) * trex
    rep_delay = getattr(device, "default_rep_delay", None) or 250e-6
    circuit_time = _circuit_duration(isa, device)
    seconds = executions * (rep_delay + circuit_time) + 2.0 * jobs
    return {"jobs": jobs, "rows_per_job": per_job, "pubs_per_job": 1, "parameter_rows": rows,
            "observables": num_observables,
            "shots_per_row": shots, "twirling_randomizations": randomizations, "zne_noise_factors": zne_factors,
            "measure_mitigation": bool(final.resilience.measure_mitigation),
            "estimated_executions": executions, "estimated_qpu_seconds": round(seconds, 1),
            "estimate_note": "rough: executions × (rep_delay + circuit duration) + 2 s per job"}


def _circuit_duration(isa, device) -> float:
    """Longest qubit timeline of ``isa`` from the target's gate durations (seconds)."""
    target = getattr(device, "target", None)
    if isa is None or target is None:
        return 0.0
    clock = [0.0] * isa.num_qubits
    for inst in isa.data:
        qargs = tuple(isa.find_bit(q).index for q in inst.qubits)
        props = (target[inst.operation.name] or {}).get(qargs) if inst.operation.name in target else None
        start = max(clock[q] for q in qargs) if qargs else 0.0
        for q in qargs:
            clock[q] = start + (props.duration or 0.0 if props is not None else 0.0)
    measure = max((p.duration or 0.0 for p in (target["measure"] or {}).values() if p), default=0.0) \
        if "measure" in target else 0.0
    return max(clock, default=0.0) + measure


# ------------------------------------------------------------------------------------------------
# The ledger


def request_id(**parts) -> str:
    """A digest of everything that defines a request (run, backend, device, circuit, values, options)."""
    digest = hashlib.sha256()
    for key in sorted(parts):
        value = parts[key]
        digest.update(key.encode())
        digest.update(value.tobytes() if isinstance(value, np.ndarray) else json.dumps(value, sort_keys=True).encode())
    return digest.hexdigest()[:16]


class Ledger:
    """Jobs of one request, on disk: identity, and per job its rows, id, status, usage and values.

    A different request for the same run and backend moves a finished ledger aside
    (``ledger-<backend>.<request>.json``) and refuses while the old one still has jobs pending."""

    def __init__(self, path: Path, identity: dict):
        self.path, self.identity = Path(path), identity
        self.data = {"version": LEDGER_VERSION, "identity": identity, "sent": SENT, "jobs": []}

    @classmethod
    def open(cls, path: Path, identity: dict, *, resume: bool) -> Ledger:
        ledger = cls(path, identity)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                raise QmedimgError(f"{path}: unreadable ledger; move it away to start over (its job ids are "
                                   "listed on the IBM Quantum dashboard)") from None
            finished = stored.get("jobs") and all(j.get("status") == "done" for j in stored["jobs"])
            if stored.get("identity") != identity and finished and not resume:
                done = path.with_name(f"{path.stem}.{stored['identity'].get('request', 'old')}.json")
                os.replace(path, done)  # a finished request is kept, under its own name
                return ledger
            if stored.get("identity") != identity:
                theirs = stored.get("identity", {})
                diff = [k for k in identity if theirs.get(k) != identity[k]]
                raise QmedimgError(
                    f"{path} holds jobs of another request (differs in: {', '.join(diff) or 'format'}); "
                    "re-run with the options that made it, or move the file away to start a new request")
            ledger.data = stored
        elif resume:
            raise QmedimgError(f"--resume: no ledger at {path}; nothing was submitted for this run and backend")
        return ledger

    @property
    def jobs(self) -> list[dict]:
        return self.data["jobs"]

    def save(self) -> None:
        write_json(self.path, self.data)


def run_jobs(ledger: Ledger, estimator_factory, service_factory, pubs: list[tuple], local: bool,
             progress: bool = True) -> tuple[np.ndarray, list[dict]]:
    """Submit each PUB as one job (skipping those the ledger already holds), record ids before waiting,
    collect values; returns (O, N) values stacked over jobs and the job records.

    ``pubs`` are (circuit, observables column, values (rows, P), first row index)."""
    from tqdm import tqdm

    if not ledger.jobs:
        ledger.data["jobs"] = [{"index": i, "rows": [start, start + len(v)], "job_id": None, "status": "new",
                                "usage_s": None, "evs": None, "errors": []}
                               for i, (_, _, v, start) in enumerate(pubs)]
        ledger.save()
    live: dict[int, object] = {}
    estimator = None
    for job, (circuit, observables, values, _) in zip(ledger.jobs, pubs):
        if job["evs"] is not None:
            continue
        if job["job_id"] is not None and job["status"] != "failed" and not local:
            continue  # submitted earlier: collect below, never submit again
        estimator = estimator or estimator_factory()
        submitted = estimator.run([(circuit, observables, values)])
        job.update(job_id=submitted.job_id(), status="submitted", submitted=time.strftime("%Y-%m-%dT%H:%M:%S"))
        ledger.save()  # the id is on disk before we wait
        live[job["index"]] = submitted
    service = None
    bar = tqdm(ledger.jobs, desc="jobs", unit="job", disable=not progress, leave=False)
    for job in bar:
        if job["evs"] is not None:
            continue
        handle = live.get(job["index"])
        if handle is None:
            service = service or service_factory()
            handle = service.job(job["job_id"])
        try:
            result = handle.result()
        except Exception as exc:  # reported per job; the ledger keeps the id for the dashboard
            job["status"] = "failed"
            job["errors"].append(f"{job['job_id']}: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}")
            ledger.save()
            continue
        evs = np.asarray(result[0].data.evs, dtype=float)
        job.update(status="done", evs=evs.reshape(evs.shape[0], -1).tolist(), usage_s=_usage(handle))
        ledger.save()
    failed = [j for j in ledger.jobs if j["status"] == "failed"]
    if failed:
        lines = "; ".join(j["errors"][-1] for j in failed)
        raise QmedimgError(f"{len(failed)} of {len(ledger.jobs)} jobs failed ({lines}); the ledger {ledger.path} "
                           "keeps the finished ones: re-run to resubmit only the failed jobs")
    return np.concatenate([np.asarray(j["evs"]) for j in ledger.jobs], axis=1), ledger.jobs


def _usage(job) -> float | None:
    """QPU seconds a Runtime job used (None in local mode)."""
    try:
        usage = job.usage()
    except Exception:
        return None
    return float(usage) if isinstance(usage, (int, float)) else None
