"""The width study's dry run (``width-study --dry-run``): every cell (a head size and seed, trained ideally or
under one device's noise) with its state and the time left to train it and to run its noise-study points, the
memory of the grid's largest simulated state, and the wall time on 1..16 workers. Nothing is trained, evaluated
or written.

A time is measured where the grid has already done the same kind of work, else timed now on this machine:

- training: a finished run has nothing left (its ``wall_time_s`` is shown); else a few optimiser steps are timed
  (:func:`~qmedimg.workflows.grid_plan.time_training`, on the device's noise for a noise-aware cell) and scaled to
  the recipe, for an interrupted run to the epochs it has left (``history.csv``);
- a point is done when its run is finished and its ``noise-study/results.csv`` holds its row with the inputs it
  would have now (:func:`~qmedimg.workflows.study_points.point_inputs`) and its per-image file. A point to run
  takes the ``wall_s`` of a row of the same head size and point in any cell (another seed's), else the head,
  with random weights and angles, is timed now on a few images on the point's backend and scaled to the test
  images (:func:`~qmedimg.workflows.grid_plan.time_head`): a head's time depends on its gates and its noise, not
  on what its weights learned.

Example::

    from qmedimg.workflows.width_study import width_study
    print(width_study({"data_file": "breastmnist.npz"}, qubits=[4, 8, 12], layers=[1, 2], seeds=[0, 1, 2],
                      backends=["fake_brisbane"], out="runs/width", dry_run=True))
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qmedimg.backends import Backend, HeadRequest, JobOptions
from qmedimg.executor import Executor, Resources, run_with_cores
from qmedimg.files import read_json
from qmedimg.rundir import load_data, make_config, run_digest
from qmedimg.workflows.grid_plan import PlannedCell, plan_text, time_head, time_training
from qmedimg.workflows.noise_study import grid_points, read_rows
from qmedimg.workflows.study_points import (KEY, Point, cross_checks_of, point_backend, point_file, point_inputs,
                                            run_key)

KIND = tuple(k for k in KEY if k not in ("run", "repeat", "training"))
"""What a point's time depends on besides its head size: its backend, scale, mitigation, shots, level, simulator."""


def plan_width_study(cells: list, bases: dict[str, Backend], specs: dict, test_limit: int | None,
                     executor: Executor, resources: Resources, memory: str) -> str:
    """The dry run's printout for ``cells`` (:class:`~qmedimg.workflows.width_study.Cell`, cross-checks chosen),
    their ``bases`` backends and each head's circuit in ``specs`` ((qubits, layers) -> spec); ``memory``: the line
    on the grid's largest simulated state."""
    dataset = load_data(make_config(**dict(cells[0].config)))
    tested = len(dataset.test.labels)
    cut = test_limit if test_limit is not None and test_limit < tested else None
    rows = {cell: _rows(cell) for cell in cells}
    point_times = {(cell.qubits, cell.layers, *(row[k] for k in KIND)): (float(row["wall_s"]), "measured")
                   for cell in cells for row in rows[cell] if row.get("wall_s")}
    training_times: dict[tuple, float] = {}
    planned = []
    for cell in cells:
        run = cell.run
        finished = (run / "metrics.json").is_file()
        took = read_json(run / "metrics.json").get("wall_time_s", 0.0) if finished else 0.0
        train_s = 0.0 if finished else _training_left(cell, dataset, resources.cpus, training_times)
        points = _points(cell, bases)
        done = _done(cell, points, rows[cell], bases, cut) if finished else {}
        seconds, measured, timed = 0.0, 0, 0
        for point in (p for p in points if p.key() not in done):
            kind = (cell.qubits, cell.layers, *(dict(zip(KEY, point.key()))[k] for k in KIND))
            if kind not in point_times:
                backend = point_backend(point, bases[point.backend])
                point_times[kind] = (_time_point(backend, specs[cell.qubits, cell.layers], cut or tested,
                                                 resources.cpus), "timed")
            seconds += point_times[kind][0]
            measured += point_times[kind][1] == "measured"
            timed += point_times[kind][1] == "timed"
        counts = ", ".join(f"{n} {what}" for n, what in ((len(done), "done"), (measured, "measured"), (timed, "timed"))
                           if n)
        basis = (f"{f'trained ({took:.0f} s)' if finished else 'training timed'}; "
                 f"{len(points)} point{'s' * (len(points) != 1)}: {counts}")
        if finished and len(done) == len(points):  # what it took
            planned.append(PlannedCell(run.name, "finished", took + sum(done.values()), basis))
        else:
            planned.append(PlannedCell(run.name, "interrupted" if (run / "config.json").is_file() else "new",
                                       train_s + seconds, basis))
    return plan_text("width study", planned, resources, executor.name, executor.workers(resources), memory=memory)


def _training_left(cell, dataset, cpus: int, timed: dict) -> float:
    """Seconds left to train a cell's run: a few optimiser steps timed once per head size and training backend
    (``timed``), scaled to the recipe's epochs, for an interrupted run to those it has left (history.csv)."""
    config = make_config(**dict(cell.config))
    key = (cell.qubits, cell.layers, config.backend)
    if key not in timed:
        timed[key] = time_training(config, dataset, cpus)
    return timed[key] * max(config.epochs - _epochs_done(cell.run), 0) / config.epochs


def _rows(cell) -> list[dict]:
    path = cell.run / "noise-study" / "results.csv"
    return read_rows(path) if path.is_file() else []


def _epochs_done(run: Path) -> int:
    """The epochs an interrupted run has finished: the lines of its history.csv after the header."""
    history = run / "history.csv"
    return max(len(history.read_text().splitlines()) - 1, 0) if history.is_file() else 0


def _points(cell, bases: dict[str, Backend]) -> list[Point]:
    """The cell's grid points (and cross-checks), as its noise study will list them."""
    points = grid_points([run_key(cell.run)], {b: bases[b] for b in cell.backends}, cell.scales, cell.mitigations,
                         cell.shots, (cell.opt_level,), 1, {run_key(cell.run): cell.training})
    return points + cross_checks_of(points, cell.cross_checks)


def _done(cell, points: list[Point], rows: list[dict], bases: dict[str, Backend], cut: int | None) -> dict:
    """{key: wall seconds} of the points of a finished run whose row holds the inputs they would have now and
    whose per-image file is there (what the noise study would reuse)."""
    run_id = run_digest(cell.run)
    have = {(*(row[k] for k in KEY), row["inputs"]): float(row["wall_s"] or 0) for row in rows
            if point_file(cell.run / "noise-study", row).is_file()}
    wanted = {p.key(): (*p.key(), point_inputs(p, run_id, cut, bases[p.backend])) for p in points}
    return {key: have[row] for key, row in wanted.items() if row in have}


def _time_point(backend: Backend, spec, images: int, cpus: int) -> float:
    """Seconds a head of ``spec``, with random weights and angles, would take on ``backend`` for ``images`` images
    with ``cpus`` cores (:func:`~qmedimg.workflows.grid_plan.time_head`)."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 2 * np.pi, len(spec.weights))
    angles = rng.uniform(-np.pi, np.pi, (8, len(spec.inputs)))

    def seconds_for(k: int) -> float:
        start = time.perf_counter()
        backend.run_head(HeadRequest(spec, weights, angles[:k]), JobOptions())
        return time.perf_counter() - start

    return run_with_cores(lambda _: time_head(seconds_for, images), None, cpus)
