"""What a QPU's measured values should have been: the device's calibration snapshot, taken before the first job
of a request is submitted and kept beside its job ledger; the same ISA circuit, layout, parameter values, shots
and (mapped) mitigation simulated on it by qmedimg's
:class:`~qmedimg.backends.device_estimator.DeviceEstimator`; and a test of whether measured and predicted values
agree within shot noise.

Example::

    from qmedimg.backends.prediction import keep_snapshot, predict_on, used_snapshot
    keep_snapshot(ledger, device)                  # under the ledger's lock, before anything is submitted
    snapshot, record = used_snapshot(ledger, pinned=None)            # the one kept (a resume reads it again)
    prediction = predict_on(snapshot, entry, circuit, observables, values, measured, measured_se)
    prediction.details["agreement"]["verdict"]     # 'agrees' | 'disagrees'

The snapshot is ``snapshot-<backend>-<digest>.json`` beside ``ledger-<backend>.json`` (the digest: the request's
whole identity, so a request kept aside keeps its snapshot); the ledger names it (``snapshot``) the moment it is
written, so a re-run of the same request (a resume, a kill -9, a run collecting finished jobs) predicts on the
same calibration and never takes another. An entry's ``snapshot: FILE`` pins the calibration predicted on
instead (the one taken at submission is still kept and recorded).

The agreement test: each value's standardized residual z = (measured − predicted) / √(se_m² + se_p²), with
se_m Runtime's standard error of the measured value (``stds``; where a ledger lacks them, the shot error below)
and se_p the shot error of the prediction: √((Σ_t c_t²/B_t² − v²)/shots) for an observable Σ_t c_t·P_t, B_t
the product of (1 − p(1|0) − p(0|1)) over the qubits P_t measures when readout is mitigated (1 otherwise; exact for
one Pauli term and symmetric readout error, covariances between terms ignored), times the ZNE extrapolation's
√Σw². Per observable: mean residual, mean z (and its two-sided p-value, z̄·√N standard normal) and χ² = Σz²
on N images; over all N·O values χ² with its p-value. Verdict: ``disagrees`` when that p-value is below
:data:`ALPHA`, else ``agrees``. The prediction's shots are seeded by :data:`PREDICTION_SEED`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qmedimg.backends.jobs import final_options, request_id
from qmedimg.errors import QmedimgError

PREDICTION_SEED = 0
"""Seeds the prediction's shot sampling and ZNE folding: a re-run predicts the same values."""
ALPHA = 0.01
"""The agreement test's level: measured and predicted ``disagree`` when the χ² p-value is below it."""


@dataclass
class Prediction:
    """Predicted values (N, O) and the shot errors (N, O) of predicted and measured values, with what the eval
    file records (``details``: snapshot, how it was simulated, the agreement test)."""

    values: np.ndarray
    se: np.ndarray
    measured_se: np.ndarray
    details: dict


# ------------------------------------------------------------------------------------------------
# The snapshot, once per request


def snapshot_file(ledger) -> Path:
    """Where a request's snapshot is kept: beside its ledger, named by the backend and the request's identity."""
    backend = ledger.path.stem.removeprefix("ledger-")
    return ledger.path.with_name(f"snapshot-{backend}-{request_id(identity=ledger.identity)[:8]}.json")


def keep_snapshot(ledger, device, timeout_s: float | None = None) -> None:
    """Take ``device``'s calibration snapshot and name it in the ledger, unless the ledger already names one: call
    it under the ledger's lock, before anything is submitted (:func:`~qmedimg.backends.jobs.run_jobs`'s
    ``before_submit``), with ``timeout_s`` where asking the device goes to IBM Quantum. A ledger whose jobs were
    submitted before snapshots existed gets one now, said so."""
    from qmedimg.backends.snapshots import take_snapshot, write_snapshot

    if ledger.data.get("snapshot"):
        return
    if timeout_s is None:
        snapshot = take_snapshot(device)
    else:  # a QPU's properties() asks IBM Quantum
        from qmedimg.backends.runtime import with_timeout

        snapshot = with_timeout(lambda: take_snapshot(device), timeout_s,
                                f"taking {device.name}'s calibration snapshot")
    path = first = snapshot_file(ledger)
    for n in itertools.count(1):  # an earlier submission of this request (ledger kept aside, lost) keeps its own
        if not path.exists():
            break
        path = first.with_name(f"{first.stem}-{n}.json")
    path = write_snapshot(path, snapshot)  # on disk before the ledger names it
    late = any(job.get("job_id") for job in ledger.jobs)
    ledger.data["snapshot"] = {
        "file": path.name, "taken_at": snapshot.get("taken_at"), "device": snapshot.get("device"),
        "calibration_date": _calibration_date(snapshot),
        "taken": "after the jobs were submitted (the ledger predates snapshots)" if late
        else "before the first job was submitted"}
    ledger.save()


def used_snapshot(ledger, pinned: Path | None) -> tuple[dict, dict]:
    """(snapshot, record): the pinned file when given, else the one kept for this request (one line if it is
    missing or damaged)."""
    from qmedimg.backends.snapshots import read_snapshot_file

    kept = ledger.data.get("snapshot") or {}
    if pinned is not None:
        path, used = Path(pinned), "pinned by the entry's snapshot key"
    elif kept.get("file"):
        path, used = ledger.path.with_name(kept["file"]), "taken at submission"
    else:
        raise QmedimgError(f"{ledger.path}: names no calibration snapshot to predict on")
    if not path.is_file():
        raise QmedimgError(f"{path}: calibration snapshot not found ({used}); restore it, or pin another with the "
                           "entry's snapshot: FILE")
    snapshot, digest = read_snapshot_file(path)  # one read: the snapshot and the digest of the same bytes
    record = {"used": used, "file": str(path), "sha256": digest[:16],
              "device": snapshot.get("device"), "taken_at": snapshot.get("taken_at"),
              "calibration_date": _calibration_date(snapshot), "at_submission": kept or None}
    record["calibration_age_days"] = _age_days(record["calibration_date"], kept.get("taken_at") or record["taken_at"])
    return snapshot, record


def _calibration_date(snapshot: dict) -> str | None:
    """When the snapshot's calibration was measured (its properties' ``last_update_date``, in UTC), if it says."""
    from qmedimg.backends.snapshots import calibration_date, snapshot_device

    try:
        return calibration_date(snapshot_device(snapshot))
    except Exception:  # a date is a label here, never a reason to fail the evaluation
        date = (snapshot.get("properties") or {}).get("last_update_date")
        return str(date) if date is not None else None


def _age_days(calibrated: str | None, submitted: str | None) -> float | None:
    """Days from the calibration to the submission (None when either is unknown)."""
    def parse(text):
        try:
            when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)

    start, end = parse(calibrated) if calibrated else None, parse(submitted) if submitted else None
    return round((end - start).total_seconds() / 86400, 2) if start and end else None


# ------------------------------------------------------------------------------------------------
# The same circuits on the snapshot


def stored_stds(jobs: list[dict], observables: int) -> np.ndarray | None:
    """(observables, rows) standard errors over a ledger's finished jobs, or None if any job lacks them."""
    parts = [np.asarray(j.get("stds"), dtype=float) if isinstance(j.get("stds"), list) else None for j in jobs]
    if not parts or any(p is None or p.ndim != 2 or p.shape != (observables, j["rows"][1] - j["rows"][0])
                        for p, j in zip(parts, jobs)):
        return None
    return np.concatenate(parts, axis=1)


def simulated_options(entry) -> tuple[dict, dict]:
    """(DeviceEstimator keyword arguments, record): Runtime's finalized options for ``entry`` mapped as closely as
    qmedimg's simulator allows: shots as they are, TREX -> readout confusion-matrix inversion, ZNE -> 2-qubit gate
    folding at the same noise factors, the first extrapolator qmedimg has; what has no counterpart is named."""
    from qmedimg.backends.options import ZneOptions

    final, shots, factors = final_options(entry)
    resilience, twirling = final.resilience, final.twirling
    readout = bool(resilience.measure_mitigation)
    zne, notes = None, []
    if resilience.zne_mitigation:
        asked = resilience.zne.extrapolator
        asked = [asked] if isinstance(asked, str) else list(asked)
        extrapolator = next((e for e in asked if e in ("exponential", "linear")), "exponential")
        if asked[0] != extrapolator:
            notes.append(f"ZNE extrapolator {asked[0]}: simulated with {extrapolator}")
        if resilience.zne.amplifier != "gate_folding":
            notes.append(f"ZNE amplifier {resilience.zne.amplifier}: simulated with 2-qubit gate folding")
        zne = ZneOptions(noise_factors=[float(f) for f in factors], extrapolator=extrapolator, folding="random")
    if twirling.enable_gates:
        notes.append("gate twirling: not simulated (it turns coherent gate errors into Pauli errors; the snapshot's "
                     "noise model has none: depolarizing and thermal relaxation only)")
    if twirling.enable_measure:
        notes.append("measurement twirling: not simulated (with TREX it makes readout error symmetric for TREX's "
                     "own calibration to undo; the prediction inverts the calibrated asymmetric confusion matrix "
                     "directly)")
    if final.dynamical_decoupling.enable:
        notes.append("Runtime's dynamical decoupling: not simulated (transpile.dynamical_decoupling is in the ISA "
                     "circuit, and simulated)")
    record = {"shots": shots, "readout_mitigation": readout, "zne": zne.model_dump() if zne else None,
              "mapping": "; ".join(m for m, used in (
                  ("measure_mitigation (TREX) -> readout confusion-matrix inversion", readout),
                  ("zne_mitigation -> 2-qubit gate folding at the same noise factors", zne is not None)) if used)
              or "no mitigation: raw values", "not_simulated": notes,
              "seed": PREDICTION_SEED, "simulator": "qmedimg DeviceEstimator (Aer SamplerV2, the snapshot's noise)"}
    return {"shots": shots, "readout_mitigation": readout, "zne": zne}, record


def shot_error(values: np.ndarray, observables: list, device, shots: int, readout_mitigation: bool,
               zne_factors: list[float] | None) -> np.ndarray:
    """(O, N) shot standard errors of values (O, N) of ``observables`` measured with ``shots`` on ``device``'s
    calibration (the module says how)."""
    from qmedimg.backends.noise import calibration, readout_errors

    terms = [op.to_sparse_list() for op in observables]
    qubits = sorted({q for t in terms for _, qs, _ in t for q in qs})
    b = np.ones(max(qubits, default=0) + 1)
    if readout_mitigation and qubits:
        for q, (p10, p01) in zip(qubits, readout_errors(calibration(device.target, qubits, 1.0))):
            b[q] = max(1 - p10 - p01, 1e-3)
    gain = 1.0
    if zne_factors and len(zne_factors) > 1:
        x = np.asarray(zne_factors, dtype=float)
        gain = float(np.sqrt(np.sum(np.linalg.pinv(np.stack([np.ones_like(x), x], axis=1))[0] ** 2)))
    out = np.empty_like(np.asarray(values, dtype=float))
    for o, t in enumerate(terms):
        second = sum(abs(c) ** 2 / np.prod([b[q] for q in qs]) ** 2 for _, qs, c in t)
        out[o] = gain * np.sqrt(np.maximum(second - values[o] ** 2, 1e-6) / shots)
    return out


def predict_on(snapshot: dict, record: dict, entry, circuit, observables: list, values: np.ndarray,
               measured: np.ndarray, measured_se: np.ndarray | None) -> Prediction:
    """The head's values (N, O) predicted on ``snapshot`` for the ISA ``circuit`` and ``values`` the jobs sent
    (``record``: :func:`used_snapshot`'s), their shot errors, and the agreement with ``measured`` (N, O)."""
    from qmedimg.backends.device_estimator import DeviceEstimator
    from qmedimg.backends.snapshots import snapshot_device
    from qmedimg.quantum.gradients import column

    device = snapshot_device(snapshot)
    options, simulated = simulated_options(entry)
    estimator = DeviceEstimator(device, seed=PREDICTION_SEED, **options)
    evs = np.asarray(estimator.run([(circuit, column(observables), values)]).result()[0].data.evs, dtype=float)
    factors = list(options["zne"].noise_factors) if options["zne"] else None
    se = shot_error(evs, observables, device, options["shots"], options["readout_mitigation"], factors)
    if measured_se is None:  # a ledger from before Runtime's standard errors were kept
        measured_se = shot_error(measured.T, observables, device, options["shots"], options["readout_mitigation"],
                                 factors).T
        simulated["measured_se"] = "the shot error on the snapshot's calibration (the ledger holds no stds)"
    else:
        simulated["measured_se"] = "Runtime's standard errors (stds)"
    details = {"snapshot": record, "simulated_with": simulated,
               "agreement": agreement(measured, evs.T, measured_se, se.T)}
    return Prediction(evs.T, se.T, np.asarray(measured_se, dtype=float), details)


def agreement(measured: np.ndarray, predicted: np.ndarray, measured_se: np.ndarray, predicted_se: np.ndarray,
              alpha: float = ALPHA) -> dict:
    """Do measured and predicted values (N, O) agree within shot noise? Standardized residuals per observable and
    overall, a χ² test and the verdict (the module says how)."""
    from scipy.stats import chi2, norm

    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    z = (measured - predicted) / np.sqrt(np.asarray(measured_se) ** 2 + np.asarray(predicted_se) ** 2)
    n = z.shape[0]
    per = []
    for o in range(z.shape[1]):
        mean_z = float(z[:, o].mean()) if n else float("nan")
        per.append({"observable": o, "mean_residual": float((measured[:, o] - predicted[:, o]).mean()) if n else None,
                    "mean_z": mean_z, "mean_z_p": float(2 * norm.sf(abs(mean_z) * np.sqrt(n))) if n else None,
                    "chi2": float((z[:, o] ** 2).sum()), "dof": int(n),
                    "p": float(chi2.sf((z[:, o] ** 2).sum(), n)) if n else None})
    total, dof = float((z**2).sum()), int(z.size)
    p = float(chi2.sf(total, dof)) if dof else 1.0
    return {"test": "chi-square of standardized residuals (measured - predicted) / sqrt(se_m^2 + se_p^2)",
            "chi2": total, "dof": dof, "p": p, "mean_z": float(z.mean()) if dof else None, "alpha": alpha,
            "per_observable": per, "verdict": "disagrees" if p < alpha else "agrees"}
