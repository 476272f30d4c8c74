"""QPU jobs: what a request would cost (dry run, IBM's job limits) and the ledger that makes sure QPU
time is never spent twice.

Example::

    from qmedimg.backends.jobs import Ledger, plan, run_jobs
    plan(entry, values, num_observables, device, isa)    # jobs, rows, shots, QPU-time estimate
    ledger = Ledger.open(run_dir / "ledger-ibm_brisbane.json", identity, resume=False)
    evs, jobs = run_jobs(ledger, make_estimator, make_service, pubs, local=False)

The ledger (``ledger-<backend>.json`` in the run directory) is a write-ahead log: each job's intent and
tag are on disk before it is submitted, its id the moment Runtime returns it; re-running the same
command collects those jobs (finding an unrecorded one by its tag) instead of submitting again, and
only one process at a time may use a ledger (``<ledger>.lock``). What leaves the
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

from qmedimg.backends.context import fingerprint
from qmedimg.errors import QmedimgError
from qmedimg.backends.ledger_file import LEDGER_VERSION, LEGACY, read_ledger, same_request
from qmedimg.files import exclusive, write_json

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


def circuit_digest(circuit) -> str:
    """A digest of an (ISA) circuit's content as OpenQASM 3: equal in every process (unlike QPY, which
    holds the circuit's generated name); the transpile cache's :func:`~qmedimg.backends.context.fingerprint`,
    shortened."""
    return fingerprint(circuit)[:16]


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
            stored = read_ledger(path)
            if same_request(stored, identity):
                ledger.data = stored
                return ledger
            finished = stored["jobs"] and all(j.get("status") == "done" for j in stored["jobs"])
            if not finished or resume:
                theirs = stored["identity"]
                diff = [k for k in identity if theirs.get(k, LEGACY.get(k)) != identity[k]]
                raise QmedimgError(
                    f"{path} holds jobs of another request (differs in: {', '.join(diff) or 'format'}); "
                    "re-run with the options that made it, or move the file away to start a new request")
            os.replace(path, aside(path, stored))  # a finished request is kept, under its own name
        mine = {"version": LEDGER_VERSION, "identity": identity}
        for kept in (aside(path, mine), aside(path, {**mine, "version": 1})):
            if kept.is_file() and same_request(read_ledger(kept), identity):
                os.replace(kept, path)  # this request ran before and was kept aside: collect it, never resubmit
                ledger.data = read_ledger(path)
                return ledger
        if resume:
            raise QmedimgError(f"--collect-jobs: no ledger at {path}; nothing was submitted for this run and backend")
        return ledger

    @property
    def jobs(self) -> list[dict]:
        return self.data["jobs"]

    def save(self) -> None:
        write_json(self.path, self.data)  # atomic and fsynced: a crash leaves the old or the new ledger

    def reload(self) -> None:
        """Adopt the ledger on disk if it holds this request (another process may have written it
        since :meth:`open`)."""
        if self.path.is_file():
            try:
                stored = read_ledger(self.path)  # checked (and completed) as open() checks it
            except QmedimgError:
                return
            if same_request(stored, self.identity):
                self.data = stored


def aside(path: Path, stored: dict) -> Path:
    """Where a finished request's ledger is kept when another request takes ``path``: named by its request
    and (from version 2) the digest of its whole identity, so two splits of one request never collide."""
    identity = stored["identity"]
    name = str(identity.get("request", "old"))
    if stored.get("version", 1) >= 2:
        name += "-" + request_id(identity=identity)[:8]
    return path.with_name(f"{path.stem}.{name}.json")


def run_jobs(ledger: Ledger, estimator_factory, service_factory, pubs: list[tuple], local: bool,
             progress: bool = True, before_submit=None) -> tuple[np.ndarray, list[dict]]:
    """Submit each PUB as one job (skipping those the ledger already holds), collect values; returns
    (O, N) values stacked over jobs and the job records. ``pubs`` are (circuit, observables column,
    values (rows, P), first row index).

    The ledger is a write-ahead log, held by one process at a time (:func:`ledger_lock`): each job's
    intent (status ``submitting``, a tag unique to the request, job and attempt) is on disk before it is
    submitted with that tag, and its id the moment Runtime returns it. An intent without an id (killed
    between the two) is resolved by looking the tag up on IBM Quantum: found, it is collected; only if
    not found is it submitted. An error while waiting keeps the job (``waiting``, collected by the next
    run); only a job Runtime reports as ERROR/CANCELLED is resubmitted, by the next run.
    ``before_submit(ledger)``, when given, runs under the lock before anything is submitted (the
    calibration snapshot: :func:`~qmedimg.backends.prediction.keep_snapshot`). Each finished job keeps
    Runtime's standard errors (``stds``) beside its values."""
    with ledger_lock(ledger.path):
        ledger.reload()  # under the lock the file is the truth: another process may have written it
        return _run_locked(ledger, estimator_factory, service_factory, pubs, local, progress, before_submit)


def ledger_lock(path: Path):
    """Hold ``<ledger>.lock`` (``flock``, non-blocking) for the block; a second process gets one line."""
    return exclusive(f"{path}.lock", f"another qmedimg process is using {path}; wait for it or stop it (its jobs "
                                     "stay in the ledger), then re-run")


def _run_locked(ledger, estimator_factory, service_factory, pubs, local, progress, before_submit=None):
    from tqdm import tqdm

    if not ledger.jobs:
        ledger.data["jobs"] = [{"index": i, "rows": [start, start + len(v)], "job_id": None, "status": "new",
                                "usage_s": None, "evs": None, "errors": []}
                               for i, (_, _, v, start) in enumerate(pubs)]
        ledger.save()
    check_rows(ledger, pubs)
    if before_submit is not None:
        before_submit(ledger)
    live: dict[int, object] = {}
    services: list = []  # created at most once, only when IBM's cloud must be asked

    def service():
        if not services:
            services.append(service_factory())
        return services[0]

    estimator = None
    for job, (circuit, observables, values, _) in zip(ledger.jobs, pubs):
        if job["evs"] is not None:
            continue
        if job["status"] == "submitting" and job["job_id"] is None and not local:
            found = _look_up(service(), job["tag"])  # killed between submit and id: did the job reach IBM?
            if found is not None:
                job.update(job_id=found.job_id(), status="submitted")
                ledger.save()
                live[job["index"]] = found
                continue
        elif local:
            # local testing mode: no service to look anything up in, and local jobs cost no QPU time, so
            # anything not done is simply run again
            pass
        elif job["job_id"] is not None and job["status"] != "failed":
            continue  # submitted earlier: collect below, never submit again
        if job["status"] == "failed" or (local and job["job_id"] is not None):
            job["attempt"] = job.get("attempt", 0) + 1
            job["previous_ids"] = [*job.get("previous_ids", []), *([job["job_id"]] if job["job_id"] else [])]
        if job["status"] != "submitting":
            job.update(job_id=None, status="submitting", tag=job_tag(ledger, job))
            ledger.save()  # the intent is on disk before anything is sent
        estimator = estimator or estimator_factory()
        _tag(estimator, job["tag"])
        submitted = estimator.run([(circuit, observables, values)])
        live[job["index"]] = submitted
        job.update(job_id=submitted.job_id(), status="submitted", submitted=time.strftime("%Y-%m-%dT%H:%M:%S"))
        ledger.save()  # the id is on disk before we wait
    bar = tqdm(ledger.jobs, desc="jobs", unit="job", disable=not progress, leave=False)
    for job in bar:
        if job["evs"] is not None:
            continue
        handle = live.get(job["index"])
        try:
            if handle is None:
                handle = service().job(job["job_id"])
            result = handle.result()
        except Exception as exc:  # reported per job; the ledger keeps the id (and the dashboard shows it)
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            job["status"] = "failed" if local or _failed(handle) else "waiting"
            job["errors"].append(f"{job['job_id']}: {first}")
            ledger.save()
            continue
        evs = np.asarray(result[0].data.evs, dtype=float)
        job.update(status="done", evs=evs.reshape(evs.shape[0], -1).tolist(), usage_s=_usage(handle),
                   stds=_stds(result, evs.shape))
        ledger.save()
    _report(ledger)
    return np.concatenate([_values(ledger, job, pub) for job, pub in zip(ledger.jobs, pubs)], axis=1), ledger.jobs


def check_rows(ledger: Ledger, pubs: list[tuple]) -> None:
    """Refuse, before anything is submitted or used, a ledger whose jobs are not these payloads' rows:
    values are only ever paired with the images they were computed for."""
    wanted = [[start, start + len(values)] for _, _, values, start in pubs]
    held = [job.get("rows") for job in ledger.jobs]
    if held != wanted:
        raise QmedimgError(f"{ledger.path}: its jobs hold images {held} but this request splits them as {wanted} "
                           "(max_rows_per_job or the transpiled circuit changed?); re-run with the settings that "
                           "made it, or move the file away to start a new request")


def _values(ledger: Ledger, job: dict, pub: tuple) -> np.ndarray:
    """A finished job's (observables, rows) values, checked against the shape its payload asks for."""
    _, observables, values, _ = pub
    evs = np.asarray(job["evs"], dtype=float) if isinstance(job["evs"], list) else np.empty(0)
    shape = (observables.shape[0] if hasattr(observables, "shape") else len(observables), len(values))
    if evs.shape != shape:
        raise QmedimgError(f"{ledger.path}: job {job['index']} holds values of shape {evs.shape}, not the {shape} "
                           "its images need (the file was edited or damaged); move it away to start over")
    return evs


def job_tag(ledger: Ledger, job: dict) -> str:
    """The tag a job is submitted with: the request (with the whole identity's digest: another split of
    the same images is another request), the job's index and its attempt (a resubmission of a failed job
    gets a new tag, so looking up its intent never finds the failed one)."""
    whole = request_id(identity=ledger.identity)[:8]  # the split and the circuit too: no other request's tag
    return f"qmedimg-{ledger.identity.get('request', 'request')}-{whole}-{job['index']}-{job.get('attempt', 0)}"


def _tag(estimator, tag: str) -> None:
    """Tag the next job: the executor Estimator's ``options.environment.job_tags`` (EnvironmentOptions),
    which Runtime's ``QiskitRuntimeService.jobs(job_tags=...)`` filters on."""
    options = getattr(estimator, "options", None)
    if options is not None:  # an estimator without Runtime options (a test stand-in) is left untagged
        options.environment.job_tags = [tag]


def _look_up(service, tag: str):
    """The job submitted with ``tag`` (newest first), or None if IBM Quantum has none. A failing
    look-up raises: never submit when unsure whether the job already exists."""
    try:
        found = service.jobs(job_tags=[tag], limit=10, descending=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise QmedimgError(f"cannot look up job {tag} on IBM Quantum ({reason}); nothing was resubmitted: "
                           "re-run to try again") from None
    return found[0] if found else None


def _failed(handle) -> bool:
    """Whether Runtime reports the job as failed (status ERROR or CANCELLED), so that a re-run may
    resubmit it. A status that cannot be read (connection lost) is not a failure: the job is waited for
    again. A job object offering no ``status()`` (not a Runtime job) counts as failed, as it always did."""
    if handle is None:
        return False  # could not even fetch the job: transient
    if not callable(getattr(handle, "status", None)):
        return True
    try:
        status = handle.status()
    except Exception:
        return False
    return str(getattr(status, "name", status)).upper() in ("ERROR", "CANCELLED")


def _report(ledger: Ledger) -> None:
    jobs = ledger.jobs
    failed = [j for j in jobs if j["status"] == "failed"]
    waiting = [j for j in jobs if j["status"] == "waiting"]
    parts = []
    if failed:
        lines = "; ".join(j["errors"][-1] for j in failed)
        parts.append(f"{len(failed)} of {len(jobs)} jobs failed ({lines}); re-run to resubmit only the failed jobs")
    if waiting:
        lines = "; ".join(j["errors"][-1] for j in waiting)
        parts.append(f"{len(waiting)} of {len(jobs)} jobs could not be collected ({lines}); they stay on IBM "
                     "Quantum: re-run to collect them (nothing is resubmitted)")
    if parts:
        raise QmedimgError(f"{'; '.join(parts)}; the ledger {ledger.path} keeps the finished ones")


def _stds(result, shape) -> list | None:
    """Runtime's standard errors of a job's values, as (observables, rows) lists (None where it gives none)."""
    try:
        stds = np.asarray(result[0].data.stds, dtype=float).reshape(shape)
    except Exception:
        return None
    return stds.reshape(shape[0], -1).tolist() if np.all(np.isfinite(stds)) else None


def _usage(job) -> float | None:
    """QPU seconds a Runtime job used (None in local mode)."""
    try:
        usage = job.usage()
    except Exception:
        return None
    return float(usage) if isinstance(usage, (int, float)) else None
