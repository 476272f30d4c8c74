"""The one way a trained model is used on images: the CNN's head inputs (angles) once, then the head on
any backend, its probabilities and the run's decisions beside the exact head's. ``evaluate``, ``predict``,
``explain`` and the noise study's cells all go through it, so a decision means the same everywhere.

Example::

    from qmedimg.inference import Inference
    from qmedimg.rundir import load_run
    run = load_run("runs/breast")
    inference = Inference(run, images)                   # the CNN once: angles (N, n) for a quantum head
    outcome = inference.on(get_backend("fake_brisbane"))   # the head there: values, probs, decisions
    outcome.values, outcome.ideal, outcome.probs, outcome.decisions, outcome.error
    inference.ideal_probs                                # the exact (ideal) head's probabilities, computed once

A classical head has no angles: its probabilities come from the whole network, the same on every backend
(only the exact one takes it), and its head values are an (N, 0) array. What a backend receives is only the
angles and the circuit's weights (:meth:`~qmedimg.rundir.Run.head_request`); a backend that submits jobs also
takes the run's job options (:meth:`~qmedimg.rundir.Run.job_options`: its ledger, a dry run, a resume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qmedimg.backends import Backend, JobOptions
from qmedimg.cores import cores
from qmedimg.metrics import bootstrap_intervals, compute_metrics, decisions, statistical_spread
from qmedimg.model import head_angles, ideal_head_values, model_device, predict_probs, probs_from_head
from qmedimg.rundir import Run


@dataclass
class Outcome:
    """A trained model's head on one backend, for the images of an :class:`Inference`: the head's values
    (N, O) (None after a dry run), the exact head's (``ideal``), both as probabilities, the run's decisions
    (at its threshold), what the backend said (``details``: ledger, dry run, ...), where and how it ran as eval
    files record it (``record``: :meth:`~qmedimg.backends.BackendInfo.record`, taken after the head ran: a trajectory
    sampler's statistical error is known then) and the head's wall time."""

    values: np.ndarray | None
    ideal: np.ndarray | None
    probs: np.ndarray | None
    ideal_probs: np.ndarray | None
    decisions: np.ndarray | None
    details: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    wall_s: float = 0.0
    arrays: dict = field(default_factory=dict)
    """Per-image arrays the backend gave beside its values (an ``ibm`` run's ``predicted_values``, ``predicted_se``,
    ``measured_se``: :mod:`~qmedimg.backends.prediction`)."""

    @property
    def error(self) -> float:
        """The mean |head value − ideal value| over images and outputs (0 for a classical head)."""
        return float(np.abs(self.values - self.ideal).mean()) if self.values.size else 0.0


class Inference:
    """One trained run on one set of images (N, C, H, W) or volumes: the CNN part runs once, at creation
    (``angles``; a classical head's probabilities), timed in ``cnn_s``; :meth:`on` runs the head on a backend,
    as often as asked; the exact head's values (``ideal``) are computed once, when first needed."""

    def __init__(self, run: Run, images: np.ndarray, batch_size: int = 256):
        self.run, self.images, self.batch_size = run, images, batch_size
        start = time.perf_counter()
        self.angles = head_angles(run.model, images, batch_size) if run.config.quantum else None
        if self.angles is None:
            self.ideal_probs  # noqa: B018 (the whole network, now: the CNN's time)
        self.cnn_s = time.perf_counter() - start

    @property
    def task(self) -> str:
        return self.run.dataset.task

    @cached_property
    def ideal(self) -> np.ndarray:
        """(N, O) the trained head's exact values on the estimator it trained with ((N, 0): classical head)."""
        if self.angles is None:
            return np.zeros((len(self.images), 0))
        return ideal_head_values(self.run.model, self.angles)

    @cached_property
    def ideal_probs(self) -> np.ndarray:
        """(N, K) the run's probabilities with the exact head (a classical head's: the whole network's)."""
        if self.angles is None:
            return predict_probs(self.run.model, self.images, self.batch_size)
        return self.probs_of(self.ideal)

    def probs_of(self, values: np.ndarray) -> np.ndarray:
        """(N, K) probabilities from head values (N, O), through the run's classifier."""
        return probs_from_head(self.run.model, values)

    @property
    def threshold(self) -> float | list[float] | None:
        """The run's threshold, where :meth:`decide` says "yes" (binary: on P(class 1); multi-label: per label;
        None for multi-class, decided by the most probable class)."""
        return self.run.threshold

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The run's decisions on ``probs``: at its threshold (binary, multi-label), else the most probable class."""
        return decisions(probs, self.task, self.threshold)

    def on(self, backend: Backend, *, jobs: JobOptions | None = None, progress: bool = False,
           repeat: int = 0) -> Outcome:
        """The head on ``backend`` (an exact backend's values are the ideal ones; a classical head runs only on
        the exact one, :meth:`~qmedimg.rundir.Run.check_backend`); ``jobs``: a QPU backend's job options (default
        the run's, :meth:`~qmedimg.rundir.Run.job_options`: its ledger in the run, nothing dry or resumed);
        ``repeat``: which repetition of the same request.

        Example::

            inference.on(get_backend("ibm_brisbane"), jobs=run.job_options(dry_run=True)).details["dry_run"]
        """
        if self.angles is None:
            return Outcome(self.ideal, self.ideal, self.ideal_probs, self.ideal_probs, self.decide(self.ideal_probs),
                           record=backend.describe(None).record())
        start = time.perf_counter()
        request = self.run.head_request(self.angles, progress=progress, repeat=repeat)
        result = backend.run_head(request, jobs if jobs is not None else self.run.job_options())
        wall = time.perf_counter() - start
        record = backend.describe(self.run.model.spec).record()
        if result.values is None:  # a dry run: what would be sent
            return Outcome(None, None, None, None, None, result.details, record, wall)
        values = result.values
        ideal = values if backend.describe().exact and "ideal" not in self.__dict__ else self.ideal
        probs = self.probs_of(values)
        ideal_probs = probs if ideal is values else self.ideal_probs
        return Outcome(values, ideal, probs, ideal_probs, self.decide(probs), result.details, record, wall,
                       result.arrays)

    def evaluation(self, head: Outcome, labels: np.ndarray, limit: int | None = None) -> dict:
        """What an eval file records of ``head`` on these images with their ``labels``: the run's threshold, the
        metrics at it beside the exact head's with their bootstrap intervals over these images (``test_intervals``:
        :func:`~qmedimg.metrics.bootstrap_intervals`, its default draws, seed and level, recorded), the mean
        |Δ expectation|, where the network ran (device, torch threads) and which weights (the run's digest, the
        checkpoint's epoch, whether training had ended)."""
        run = self.run
        record = {
            "threshold": run.threshold_record(),  # the run's decision: chosen on validation at the end of training
            "test": compute_metrics(labels, head.probs, self.task, run.threshold),
            "test_intervals": bootstrap_intervals(labels, head.probs, self.task, run.threshold),
            "ideal_test": compute_metrics(labels, head.ideal_probs, self.task, run.threshold),
            "mean_abs_expectation_error": head.error,
            "images": int(len(labels)), "limit": limit, "torch_device": str(model_device(run.model)),
            "torch_threads": cores(),  # the thread count changes float32 rounding: compare equal ones
            "run_id": run.run_id(), "checkpoint_epoch": run.epoch, "training_finished": bool(run.metrics),
        }
        if "predicted_values" in head.arrays:
            record["qpu_vs_simulator"] = self.qpu_vs_simulator(head, labels)
        return record

    def qpu_vs_simulator(self, head: Outcome, labels: np.ndarray) -> dict:
        """The measured head (``head``, on a QPU) beside its prediction on the calibration snapshot
        (``head.arrays["predicted_values"]``) and the exact head: ACC and AUC of each with bootstrap intervals over
        these images (:func:`~qmedimg.metrics.bootstrap_intervals`), and measured − predicted ACC and AUC with a
        paired bootstrap interval (:func:`~qmedimg.report.paired.paired_bootstrap`: the same resample for both)."""
        from qmedimg.report.paired import paired_bootstrap

        task, threshold = self.task, self.run.threshold
        predicted = self.probs_of(head.arrays["predicted_values"])
        probs = {"ideal": head.ideal_probs, "predicted": predicted, "measured": head.probs}
        out = {}
        for name, p in probs.items():
            metrics = compute_metrics(labels, p, task, threshold)
            out[name] = {"acc": metrics.get("acc"), "auc": metrics.get("auc"),
                         "intervals": bootstrap_intervals(labels, p, task, threshold)}
        outputs = {name: {"labels": labels, "probs": p, "decision": self.decide(p)} for name, p in probs.items()}
        paired = paired_bootstrap([(outputs["measured"], outputs["predicted"])], task)
        out["measured_minus_predicted"] = {
            m: {"estimate": d.estimate, "low": d.low, "high": d.high, "level": d.level, "resamples": d.resamples,
                "seed": d.seed, "undefined": d.undefined, "excludes_zero": d.excludes_zero} for m, d in paired.items()}
        acc = out["measured"]["intervals"]["acc"]
        out["acc_difference_within_interval"] = bool(abs(paired["acc"].estimate) <= (acc[1] - acc[0]) / 2)
        out["decisions_changed"] = int((outputs["measured"]["decision"] != outputs["predicted"]["decision"]).sum())
        return out

    def statistical_error(self, head: Outcome, labels: np.ndarray) -> dict:
        """How far the statistical error of ``head``'s values (means over noise trajectories: each image's
        covariance of its values, ``head.arrays["value_covariance"]``) moves ACC and AUC on these images
        (:func:`~qmedimg.metrics.statistical_spread`); {} where the values are exact."""
        covariance = head.arrays.get("value_covariance")
        if covariance is None:
            return {}
        return statistical_spread(labels, head.values, covariance, self.probs_of, self.task, self.run.threshold)
