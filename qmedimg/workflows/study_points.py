"""The noise study's cells: grid points of one trained run on one backend, and evaluating them,
wherever an executor runs them (this process or a Ray worker).

A cell carries only what is needed to redo its work elsewhere: the run's folder and digest, the
backend's registry entry as the driver read it, the points and the digest of their inputs. A process
loads each run, computes its head's inputs and builds each backend once, however many cells it runs.

Example::

    from qmedimg.workflows.study_points import run_study_cell
    rows = run_study_cell(cell)   # one results.csv row (a dict) per point of the cell
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qmedimg.backends import Backend, backend_for
from qmedimg.backends.jobs import request_id
from qmedimg.errors import QmedimgError
from qmedimg.executor import Executor, Resources
from qmedimg.metrics import compute_metrics
from qmedimg.model import head_angles, ideal_head_values, participation_ratio, probs_from_head
from qmedimg.rundir import load_run

KEY = ("run", "backend", "scale", "mitigation", "shots", "opt_level", "repeat")


@dataclass(frozen=True)
class Point:
    """One grid point for one run."""

    run: str
    backend: str
    scale: float | None
    mitigation: str
    shots: int | None
    opt_level: int
    repeat: int

    def key(self) -> tuple[str, ...]:
        return tuple(text(getattr(self, k)) for k in KEY)


def text(value) -> str:
    """A grid value as results.csv writes it: '' for None."""
    return "" if value is None else str(value)


def run_key(run: str | Path) -> str:
    """How results.csv names a run: its absolute path, however it was spelled on the command line (a
    relative one read back from an older file is taken relative to the current directory)."""
    return str(Path(run).resolve())


def point_backend(point: Point, base: Backend) -> Backend:
    return base.study_point(scale=point.scale, mitigation=point.mitigation, shots=point.shots,
                            opt_level=point.opt_level if point.opt_level >= 0 else None, repeat=point.repeat)


_here: dict[tuple, Any] = {}
"""What this process has loaded for the study's cells: runs (keyed by their digest), their head's
inputs and ideal values, built backends (keyed by their entry). Filled by the driver before its own
cells run, by each Ray worker for the cells it runs; emptied when a study ends in the driver."""


def _entry_key(entry) -> str:
    return request_id(entry=entry.model_dump(mode="json"))


def preload(runs, backends) -> None:
    """Let cells run in this process reuse runs and backends the caller has loaded (after ``forget``)."""
    forget()
    for run in runs:
        _here[("run", run_key(run.path), run.run_id())] = run
    for backend in backends:
        _here[("backend", backend.name, _entry_key(backend.entry))] = backend


def forget() -> None:
    """Drop everything this process keeps for cells (the driver calls it when a study ends)."""
    _here.clear()


@dataclass(frozen=True)
class StudyCell:
    """Some grid points of one run on one backend, picklable: evaluated wherever the executor sends it."""

    run: str
    run_id: str
    backend: str
    entry: Any  # the backend's registry entry as the driver read it: a worker builds the same backend
    registry: str | None
    points: tuple[Point, ...]
    inputs: tuple[str, ...]
    limit: int | None
    device: str

    @property
    def name(self) -> str:
        what = point_name(self.points[0]) if len(self.points) == 1 else f"{len(self.points)} points"
        return f"{Path(self.run).name} on {self.backend}: {what}"


def point_name(point: Point) -> str:
    """A grid point in a few words: 'fake_brisbane scale 1 readout+zne exact opt 1 repeat 0'."""
    return (f"{point.backend} scale {text(point.scale) or '-'} {point.mitigation} "
            f"{'shots ' + text(point.shots) if point.shots else 'exact'} opt {point.opt_level} repeat {point.repeat}")


def _head_inputs(cell: StudyCell) -> tuple:
    """(run, labels, angles, ideal values, ideal metrics, ideal effective dimension), once per process."""
    key = ("inputs", cell.run, cell.run_id, cell.limit)
    if key not in _here:
        run = _here.get(("run", cell.run, cell.run_id)) or load_run(cell.run, device=cell.device)
        if run.run_id() != cell.run_id:
            raise QmedimgError(f"{cell.run}: the run changed while the study was running; run the study again")
        images, labels = run.dataset.test.images[: cell.limit], run.dataset.test.labels[: cell.limit]
        angles = head_angles(run.model, images)
        ideal = ideal_head_values(run.model, angles)
        _here[key] = (run, labels, angles, ideal,
                      compute_metrics(labels, probs_from_head(run.model, ideal), run.dataset.task, run.threshold),
                      dimension(ideal))
    return _here[key]


def run_study_cell(cell: StudyCell) -> list[dict]:
    """Evaluate the cell's points: one results.csv row (a dict) per point."""
    run, labels, angles, ideal, ideal_metrics, ideal_dimension = _head_inputs(cell)
    key = ("backend", cell.backend, _entry_key(cell.entry))
    if key not in _here:
        _here[key] = backend_for(cell.backend, cell.entry, None if cell.registry is None else Path(cell.registry))
    rows = []
    for point, inputs in zip(cell.points, cell.inputs, strict=True):
        backend = point_backend(point, _here[key])
        start = time.perf_counter()
        values = backend.run_head(run.head_request(angles, repeat=point.repeat)).values
        wall = time.perf_counter() - start
        metrics = compute_metrics(labels, probs_from_head(run.model, values), run.dataset.task, run.threshold)
        report = backend.transpile_report(run.model.spec) or {}
        factors = backend.zne_factors() if "zne" in point.mitigation else []
        rows.append({
            "run": point.run, "circuit": run.model.spec.name, "trained_on": run.config.backend,
            "backend": point.backend, "device": backend.device_name, "scale": text(point.scale),
            "mitigation": point.mitigation, "shots": text(point.shots), "opt_level": point.opt_level,
            "repeat": point.repeat, "acc": metrics["acc"], "auc": metrics["auc"], "f1": metrics["f1"],
            "ideal_acc": ideal_metrics["acc"], "ideal_auc": ideal_metrics["auc"],
            "effective_dimension": dimension(values), "ideal_effective_dimension": ideal_dimension,
            "head_outputs": values.shape[1],
            "mean_abs_expectation_error": float(np.abs(values - ideal).mean()),
            "two_qubit_gates": report.get("two_qubit_gates", ""), "depth": report.get("depth", ""),
            "estimated_fidelity": report.get("estimated_fidelity", ""),
            "zne_factors": ";".join(f"{f:g}" for f in factors),
            "shot_cost": "exact" if point.shots is None else point.shots * max(1, len(factors)),
            "wall_s": round(wall, 3), "inputs": inputs})
    return rows


def make_cells(todo: list[Point], base: dict[str, Backend], inputs: dict, limit, cuts: dict, run_ids: dict,
           executor: Executor, resources: Resources, device: str) -> tuple[list[StudyCell], list[StudyCell]]:
    """The points to compute as cells: (for ``executor``, for this process). One point a cell when cells
    run here; on workers, each run × backend's points dealt round-robin into one batch per worker (a
    worker loads a run and transpiles once per batch; Ray's per-task overhead is paid per batch). Points
    on a real QPU always go to this process."""
    remote, here = [], []
    groups: dict[tuple, list[Point]] = {}
    for point in todo:
        groups.setdefault((point.run, point.backend), []).append(point)
    workers = 1 if executor.in_process else executor.workers(resources)
    for (run, name), points in groups.items():
        backend = base[name]
        on_qpu = backend.spends_qpu_time
        batches = ([[p] for p in points] if on_qpu or executor.in_process else
                   [points[i::workers] for i in range(min(workers, len(points)))])
        for batch in batches:
            cell = StudyCell(run, run_ids[run], name, backend.entry,
                             None if backend.registry is None else str(backend.registry), tuple(batch),
                             tuple(inputs[p] for p in batch), cuts[run], device)
            (here if on_qpu else remote).append(cell)
    return remote, here


def dimension(values: np.ndarray) -> float | str:
    """The effective dimension of head outputs (images, outputs): blank for a single image (no spread)."""
    return round(participation_ratio(values), 4) if len(values) > 1 else ""
