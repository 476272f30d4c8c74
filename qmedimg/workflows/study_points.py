"""The noise study's cells: grid points of one trained run on one backend, and evaluating them,
wherever an executor runs them (this process or a Ray worker).

A cell carries only what is needed to redo its work elsewhere: the run's folder and digest, the
backend's registry entry as the driver read it, the points and the digest of their inputs. A
:class:`CellWorkspace` loads each run, computes its head's inputs (:class:`~qmedimg.inference.Inference`) and
builds each backend once (in one :class:`~qmedimg.backends.context.BackendContext`: a circuit is transpiled
once), however many cells it runs; the driver's lives as long as the study.

A study can cross-check its trajectory sampler against Aer (``--cross-check N``): a grid point
whose backend simulates noise with something else than Aer (:func:`cross_checkable`) is run again as
a point of its own, the same but for ``simulator: aer`` (:data:`CROSS_CHECK_SIMULATOR`), its row
marked in the ``cross_check`` column (part of :data:`KEY`) and keyed by its own entry.
:func:`choose_cross_checks` picks which, deterministically.

Every point says how its run's head was trained (``training``, part of :data:`KEY`: ``ideal`` on
noiseless values, ``noise-aware`` under a device's noise; :func:`training_of`), and every computed
point also leaves its per-image data, enough to recompute its metrics and to pair it with another point
on the same images: ``point-<point id>.npz`` next to results.csv (:func:`write_point`; the id is a
digest of the row's identity, :func:`point_id`), written atomically before its row is appended.

Example::

    from qmedimg.workflows.study_points import CellWorkspace, run_study_cell
    rows = run_study_cell(cell)   # one results.csv row (a dict) per point of the cell, in a workspace of its own
    workspace = CellWorkspace(runs, backends, context)   # the driver's: reuses what it loaded, for every cell here
    rows = workspace.run_cell(cell)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qmedimg.backends import Backend, BackendContext, backend_for
from qmedimg.backends.jobs import request_id
from qmedimg.errors import QmedimgError
from qmedimg.executor import Executor, Resources
from qmedimg.files import write_atomic
from qmedimg.inference import Inference
from qmedimg.metrics import compute_metrics
from qmedimg.quantum.covariance import largest_error
from qmedimg.model import participation_ratio
from qmedimg.report.study_intervals import row_intervals
from qmedimg.rundir import TrainConfig, load_run, training_backend
from qmedimg.workflows.per_image import per_image

KEY = ("run", "backend", "scale", "mitigation", "shots", "opt_level", "repeat", "cross_check", "training")
"""The columns that name a point in results.csv (with its ``inputs``, what identifies a row)."""
IDEAL, NOISE_AWARE = "ideal", "noise-aware"
"""The ``training`` column: how the run's head was trained (a results.csv from before the column reads ideal)."""
PER_IMAGE = "per_image"
"""The key of a row :func:`run_study_cell` returns that holds its per-image arrays (not a results.csv column:
the study writes them with :func:`write_point`, then appends the row)."""
CROSS_CHECK_SIMULATOR = "aer"
"""The label of a cross-check point in results.csv (its ``cross_check`` column): the point run again on Aer
(:meth:`~qmedimg.backends.study_rules.StudyRules.reference_overrides`)."""


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
    cross_check: str = ""  # the simulator this point is re-run on to check its grid point ('': a grid point)
    training: str = IDEAL  # how the run's head was trained (:func:`training_of`)

    def key(self) -> tuple[str, ...]:
        return tuple(text(getattr(self, k)) for k in KEY)

    def checked(self) -> Point:
        """The grid point a cross-check point re-runs (itself for a grid point)."""
        return replace(self, cross_check="")


def text(value) -> str:
    """A grid value as results.csv writes it: '' for None."""
    return "" if value is None else str(value)


def run_key(run: str | Path) -> str:
    """How results.csv names a run: its absolute path, however it was spelled on the command line (a
    relative one read back from an older file is taken relative to the current directory)."""
    return str(Path(run).resolve())


def training_of(config: TrainConfig) -> str:
    """``noise-aware`` for a head trained under noise (a noise-scalable entry at a scale above 0), else
    ``ideal`` (the default exact backend needs no registry; an entry no longer in it trained under noise)."""
    if config.backend == TrainConfig.model_fields["backend"].default:
        return IDEAL
    try:
        backend = training_backend(config)
    except QmedimgError:
        return NOISE_AWARE
    scale = config.noise_scale if config.noise_scale is not None else getattr(backend.entry, "noise_scale", 0)
    return NOISE_AWARE if backend is not None and backend.study.noise_scalable and scale > 0 else IDEAL


def point_id(row: dict) -> str:
    """The name of a row's per-image file: a digest of its identity (:data:`KEY` columns and ``inputs``), the
    same for a :class:`Point`'s row however often the study runs."""
    return request_id(point=[text(row[k]) for k in KEY], inputs=row["inputs"])


def point_file(folder: Path, row: dict) -> Path:
    """Where a study in ``folder`` keeps a row's per-image data: ``point-<point id>.npz``, next to its results.csv
    (files only: the study folder holds no subfolder)."""
    return Path(folder) / f"point-{point_id(row)}.npz"


def write_point(folder: Path, row: dict, arrays: dict) -> Path:
    """Write a row's per-image arrays (compressed) atomically: a temporary file, then ``os.replace``."""
    path = point_file(folder, row)
    return write_atomic(path, lambda handle: np.savez_compressed(handle, **arrays))


def read_point(folder: Path, row: dict) -> dict[str, np.ndarray]:
    """A row's per-image arrays (:func:`per_image`'s keys), or one line naming a missing or damaged file."""
    path = point_file(folder, row)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise QmedimgError(f"{path}: cannot read the point's per-image data ({' '.join(str(exc).split())[:80]}); "
                           "delete it and run the same command again to compute the point again") from None


def with_intervals(folder: Path, row: dict) -> dict:
    """``row`` with its interval columns (:func:`~qmedimg.report.study_intervals.row_intervals`) computed from its
    per-image file where they are blank (a row from before them) and the file is there and readable; else as it is."""
    if row.get("acc_lost", "") != "" or not point_file(folder, row).is_file():
        return row
    try:
        arrays = read_point(folder, row)
    except QmedimgError:  # damaged: computed again when the study next needs it
        return row
    return {**row, **row_intervals(arrays)} if "labels" in arrays else row


def point_backend(point: Point, base: Backend) -> Backend:
    """``base`` with the point's settings (and, for a cross-check, its simulator: the same seed otherwise)."""
    backend = base.study.point(scale=point.scale, mitigation=point.mitigation, shots=point.shots,
                               opt_level=point.opt_level if point.opt_level >= 0 else None, repeat=point.repeat)
    return backend.with_overrides(**base.study.reference_overrides()) if point.cross_check else backend


def defining_entry(backend: Backend) -> dict:
    """``backend``'s registry entry as what it computes depends on: every key but the description (prose)."""
    return {k: v for k, v in backend.entry.model_dump(mode="json").items() if k != "description"}


def point_inputs(point: Point, run_id: str, cut: int | None, base: Backend) -> str:
    """A point's ``inputs`` in results.csv: the digest of what its row is computed from: its run (``run_id``: config
    and checkpoint), the test images (``cut``: the limit, where it drops some), ``base``'s registry entry less its
    description (a cross-check's: the entry it runs on) and what the kind says a row also depends on
    (:meth:`~qmedimg.backends.study_rules.StudyRules.result_inputs`)."""
    backend = base.with_overrides(**base.study.reference_overrides()) if point.cross_check else base
    return request_id(run=run_id, limit=cut, backend=defining_entry(backend), **base.study.result_inputs(point.mitigation))


def cross_checks_of(points: list[Point], keys) -> list[Point]:
    """The cross-check points of the grid ``points`` named by ``keys`` (their :meth:`Point.key` without the run, as
    width-study spreads its choice over its cells' noise studies)."""
    keys = {tuple(key) for key in keys}
    return [replace(p, cross_check=CROSS_CHECK_SIMULATOR) for p in points if p.key()[1:] in keys]


def cross_checkable(backend: Backend) -> bool:
    """Whether points on ``backend`` can be cross-checked against Aer
    (:meth:`~qmedimg.backends.study_rules.StudyRules.reference_overrides`: e.g. a fake entry whose ``simulator:``
    is ``auto`` or ``trajectories``)."""
    return backend.study.reference_overrides() is not None


def choose_cross_checks(points: list[Point], widths: dict[str, tuple[int, int]], eligible: set[str],
                        n: int) -> list[Point]:
    """The ``n`` grid points to run again on Aer, as cross-check points, chosen deterministically among
    the points on ``eligible`` backends: first the noisy exact ones (noise scale > 0, no shots: the only
    ones a sampler can simulate, a noiseless point is a statevector and shots are always Aer's), among
    them the widest heads first (``widths``: (qubits, layers) of each point's run: ``auto`` samples only
    above 10 active qubits), then in grid order. All of them when there are fewer than ``n``."""
    candidates = [(i, p) for i, p in enumerate(points) if p.backend in eligible and not p.cross_check]
    sampled = lambda p: (p.scale is None or p.scale > 0) and p.shots is None  # noqa: E731
    order = sorted(candidates, key=lambda c: (not sampled(c[1]), *(-w for w in widths[c[1].run]), c[0]))
    return [replace(p, cross_check=CROSS_CHECK_SIMULATOR) for _, p in order[:max(n, 0)]]


def no_cross_check(backends: dict[str, Backend]) -> str:
    """Why no point of a grid on ``backends`` (by name) can be cross-checked against Aer."""
    return (f"no backend of the grid ({', '.join(backends)}) simulates noise with anything but Aer (a cross-check "
            "needs an entry with `simulator: auto` or `simulator: trajectories`: a fake device)")


def cross_check_pairs(rows: list[dict], columns=KEY) -> list[tuple[dict, dict]]:
    """(grid point's row, its cross-check's row) for every cross-check row of ``rows`` whose grid point
    has a row; rows match on ``columns`` but ``cross_check``."""
    match = [c for c in columns if c != "cross_check"]
    grid = {tuple(row[c] for c in match): row for row in rows if not row.get("cross_check")}
    return [(grid[key], row) for row in rows if row.get("cross_check")
            and (key := tuple(row[c] for c in match)) in grid]


def _entry_key(entry) -> str:
    return request_id(entry=entry.model_dump(mode="json"))


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
    """A grid point in a few words: 'fake_brisbane scale 1 readout+zne exact opt 1 repeat 0' (+ ' on aer'
    for a cross-check)."""
    return (f"{point.backend} scale {text(point.scale) or '-'} {point.mitigation} "
            f"{'shots ' + text(point.shots) if point.shots else 'exact'} opt {point.opt_level} repeat {point.repeat}"
            + (f" on {point.cross_check}" if point.cross_check else ""))


class CellWorkspace:
    """What one process keeps while it runs a study's cells: the runs it loaded (keyed by their digest), their
    :class:`~qmedimg.inference.Inference` on the test split (angles and ideal values, once per run and limit) and
    the backends it built (keyed by their entry) in one ``context`` (default: one of its own). The noise study's
    driver creates one with what it has loaded already and drops it when the study ends; a Ray task makes its own
    for the cell it runs (:func:`run_study_cell`)."""

    def __init__(self, runs=(), backends=(), context: BackendContext | None = None):
        self.runs = {(run_key(run.path), run.run_id()): run for run in runs}
        self.backends = {(backend.name, _entry_key(backend.entry)): backend for backend in backends}
        self.inputs: dict[tuple, tuple] = {}
        self.context = context if context is not None else BackendContext()

    def head_inputs(self, cell: StudyCell) -> tuple:
        """(inference on the cell's test images, labels, ideal metrics, ideal effective dimension), once per run
        and limit."""
        key = (cell.run, cell.run_id, cell.limit)
        if key not in self.inputs:
            run = self.runs.get((cell.run, cell.run_id)) or load_run(cell.run, device=cell.device)
            if run.run_id() != cell.run_id:
                raise QmedimgError(f"{cell.run}: the run changed while the study was running; run the study again")
            images, labels = run.dataset.test.images[: cell.limit], run.dataset.test.labels[: cell.limit]
            inference = Inference(run, images)
            self.inputs[key] = (inference, labels, compute_metrics(labels, inference.ideal_probs, inference.task,
                                                                   run.threshold), dimension(inference.ideal))
        return self.inputs[key]

    def backend(self, cell: StudyCell) -> Backend:
        """The cell's backend as the driver read its entry, built once."""
        key = (cell.backend, _entry_key(cell.entry))
        if key not in self.backends:
            self.backends[key] = backend_for(cell.backend, cell.entry,
                                             None if cell.registry is None else Path(cell.registry),
                                             context=self.context)
        return self.backends[key]

    def run_cell(self, cell: StudyCell) -> list[dict]:
        """Evaluate the cell's points: one results.csv row (a dict) per point, its per-image arrays under
        :data:`PER_IMAGE` (for :func:`write_point`)."""
        inference, labels, ideal_metrics, ideal_dimension = self.head_inputs(cell)
        base = self.backend(cell)
        return [_row(point, inputs, point_backend(point, base), inference, labels, ideal_metrics, ideal_dimension)
                for point, inputs in zip(cell.points, cell.inputs, strict=True)]


def run_study_cell(cell: StudyCell) -> list[dict]:
    """Evaluate one cell in a workspace of its own (what a Ray task runs): :meth:`CellWorkspace.run_cell`."""
    return CellWorkspace().run_cell(cell)


def _row(point: Point, inputs: str, backend: Backend, inference: Inference, labels, ideal_metrics: dict,
         ideal_dimension) -> dict:
    """One point's results.csv row, its per-image arrays under :data:`PER_IMAGE`."""
    run = inference.run
    head = inference.on(backend, repeat=point.repeat)
    metrics = compute_metrics(labels, head.probs, inference.task, run.threshold)
    report = head.record.get("transpile") or {}
    simulation = head.record.get("simulation") or {}  # kinds that simulate say how
    factors = backend.describe().zne_factors if "zne" in point.mitigation else []
    spread = inference.statistical_error(head, labels)
    error = largest_error(head.arrays["value_covariance"]) if spread else None
    arrays = per_image(inference, head, labels, values=True)  # the values too: a cross-check compares them
    return {
        "run": point.run, "circuit": run.model.spec.name, "trained_on": run.config.backend,
        "backend": point.backend, "device": head.record["device"], "scale": text(point.scale),
        "mitigation": point.mitigation, "shots": text(point.shots), "opt_level": point.opt_level,
        "repeat": point.repeat, "cross_check": point.cross_check, "training": point.training,
        "acc": metrics["acc"], "auc": metrics["auc"], "f1": metrics["f1"],
        "ideal_acc": ideal_metrics["acc"], "ideal_auc": ideal_metrics["auc"],
        "effective_dimension": dimension(head.values), "ideal_effective_dimension": ideal_dimension,
        "head_outputs": head.values.shape[1],
        "mean_abs_expectation_error": head.error,
        "two_qubit_gates": report.get("two_qubit_gates", ""), "depth": report.get("depth", ""),
        "estimated_fidelity": report.get("estimated_fidelity", ""),
        "zne_factors": ";".join(f"{f:g}" for f in factors),
        "shot_cost": "exact" if point.shots is None else point.shots * max(1, len(factors)),
        "simulation": simulation.get("method", ""), "simulator": simulation.get("simulator", ""),
        "trajectories": text(simulation.get("trajectories")),
        "statistical_error": text(error), "acc_statistical_error": text(spread.get("acc")),
        "auc_statistical_error": text(spread.get("auc")),
        "wall_s": round(head.wall_s, 3), "inputs": inputs,
        "calibration_date": head.record.get("calibration_date") or "",  # where the backend says (fake devices)
        **row_intervals(arrays), PER_IMAGE: arrays}


def make_cells(todo: list[Point], base: dict[str, Backend], inputs: dict, limit, cuts: dict, run_ids: dict,
           executor: Executor, resources: Resources, device: str) -> tuple[list[StudyCell], list[StudyCell]]:
    """The points to compute as cells: (for ``executor``, for this process). One point a cell when cells
    run here; on workers, each run × backend's points dealt round-robin into one batch per worker (a
    worker loads a run and transpiles once per batch; Ray's per-task overhead is paid per batch). Points
    on a real QPU always go to this process."""
    remote, here = [], []
    groups: dict[tuple, list[Point]] = {}
    for point in todo:  # cross-checks in groups of their own: after the grid's points
        groups.setdefault((point.run, point.backend, point.cross_check), []).append(point)
    workers = 1 if executor.in_process else executor.workers(resources)
    for (run, name, _), points in groups.items():
        backend = base[name]
        on_qpu, registry = backend.spends_qpu_time, backend.describe().registry
        batches = ([[p] for p in points] if on_qpu or executor.in_process else
                   [points[i::workers] for i in range(min(workers, len(points)))])
        for batch in batches:
            cell = StudyCell(run, run_ids[run], name, backend.entry, None if registry is None else str(registry),
                             tuple(batch), tuple(inputs[p] for p in batch), cuts[run], device)
            (here if on_qpu else remote).append(cell)
    return remote, here


def dimension(values: np.ndarray) -> float | str:
    """The effective dimension of head outputs (images, outputs): blank for a single image (no spread)."""
    return round(participation_ratio(values), 4) if len(values) > 1 else ""
