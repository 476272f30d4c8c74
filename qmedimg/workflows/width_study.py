"""Width × depth × noise study: at what circuit size does device noise start to cost accuracy?
Trains (or reuses) one hybrid run per head size, qubits × layers × seeds, runs the noise study of
each on the fake devices it fits, and writes the grid's results, plots and one verdict per device.

Example::

    from qmedimg.workflows.width_study import width_study
    out = width_study({"data_file": "breastmnist.npz"}, qubits=[4, 8, 12], layers=[1, 2],
                      backends=["fake_brisbane", "fake_torino", "fake_fez"], scales=[0, 0.5, 1, 2],
                      out="runs/width")
    # out / "results.csv", "accuracy_vs_circuit.png", "accuracy_lost.png", "summary.md"

Layout of ``out``: ``runs/q{n}-l{L}-s{seed}/`` is a normal run directory per head and seed, with
its own ``noise-study/`` (the per-run study, resumable row by row); ``results.csv`` gathers those rows
with ``qubits``, ``layers`` and ``seed`` columns and is rewritten after each cell.

Each cell (:class:`Cell`: one head size and seed) is one call of :func:`run_cell` on a plain,
picklable description, so an executor runs cells anywhere (:mod:`qmedimg.executor`: one after another
here by default, or as Ray tasks with ``executor=get_executor("ray")``, each with ``threads`` cores); a
failed cell is named after the others finish. A finished run (``metrics.json``
there, config equal) is reused, an interrupted one resumed, a finished study row never recomputed:
the same command after a crash (even ``kill -9``) continues where it stopped. A run directory made
with other settings is refused before anything trains.

Checked before anything is written: the grid strings, every head against the exact estimator and
the data, and the memory the grid needs (:func:`largest_memory`: the largest simulated state as the
backend simulates it, e.g. a density matrix 16·4^n bytes under noise up to 10 active qubits per parallel
Aer experiment, the trajectory sampler's states above, a statevector 16·2^n without noise)
against ``max_memory_gb`` (default: the memory available now). ``dry_run=True`` (``--dry-run``) stops there
and returns the plan: each cell's state and time left, the memory, the wall time on 1..16 workers
(:mod:`~qmedimg.workflows.width_plan`). A head wider than a device is not an
error: that (width, device) pair is skipped and ``summary.md`` says so; a device narrower than every
width is refused. Real QPUs are refused (use ``noise-study --dry-run`` / ``--allow-qpu`` there).

``cross_check=N`` (``--cross-check N``) chooses N points of the whole grid whose backend samples noise
trajectories (:func:`~qmedimg.workflows.study_points.choose_cross_checks`: noisy exact points first, the
widest heads first) and runs each again on Aer in its run's noise study; their rows (``cross_check`` =
aer) go to ``results.csv`` next to the others, and ``summary.md`` gets a section "Cross-check against Aer".

``noise_aware=True`` (``--noise-aware``) also trains every head under the noise of each noise-scalable
device it fits (same seed, recipe and data; ``backend`` = the device's entry at noise scale 1) into
``runs/q{n}-l{L}-s{seed}-aware-{device}-{entry digest}/`` (the digest of the entry as the study read it:
a redefined device trains a new run, never reuses one trained under other noise), and evaluates it on
that device at scale 1 without mitigation. Each such training is a cell of its own (it is the costly
part; an executor runs it next to the others) with its own ``noise-study/``; its rows have ``training``
= noise-aware. ``summary.md`` then compares, per device and head, with paired 95 % bootstrap intervals
over the test images (and seeds), the ACC lost by the ideally trained head, by the noise-aware one and
after readout+zne, all against the ideally trained head's exact accuracy on the same images
(:mod:`qmedimg.report.intervals`; per-image data from each point's ``point-<id>.npz``), and
``accuracy_lost_by_strategy.png`` plots them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Iterable

from qmedimg.backends import Backend, BackendContext, get_backend
from qmedimg.backends.jobs import request_id
from qmedimg.errors import QmedimgError
from qmedimg.executor import Executor, LocalExecutor, failure_report
from qmedimg.cores import available_memory
from qmedimg.files import reporting_os_errors, write_csv, write_json, write_text, writing_folder
from qmedimg.report.noise_study import cross_check_section, value_agreement
from qmedimg.report.width_study import noise_aware_section, plot_strategies, plot_width_study, summary
from qmedimg.rundir import TrainConfig, build_model, config_differences, load_data, make_config
from qmedimg.quantum.circuits import load_circuit
from qmedimg.workflows.noise_study import KEY, MITIGATIONS, grid_points, noise_study, read_rows
from qmedimg.workflows.study_points import (IDEAL, NOISE_AWARE, Point, choose_cross_checks, cross_check_pairs,
                                            cross_checkable, defining_entry, no_cross_check, point_name, read_point)
from qmedimg.workflows.grid_plan import memory_size, simulation_memory
from qmedimg.workflows.train import train_or_resume
from qmedimg.workflows.width_plan import plan_width_study

STUDY_DEFAULTS = {"epochs": 10, "ema_decay": 0.0}  # compare's short-schedule recipe (docs/known-issues.md)
GRID_COLUMNS = ["qubits", "layers", "seed"]
INTERVALS = {"resamples": 2000, "level": 0.95, "seed": 0}  # the paired bootstrap of the noise-aware comparison


@dataclass(frozen=True)
class Cell:
    """One head size and seed (and training: ideal, or noise-aware on one device): train (or reuse) its run,
    then its noise study on the devices it fits (a noise-aware run: on its device, at scale 1, no mitigation).
    Plain values only, so an executor can ship it to another process."""

    qubits: int
    layers: int
    seed: int
    config: tuple[tuple[str, object], ...]  # TrainConfig fields, ``out`` included
    backends: tuple[str, ...]  # the backends this head fits
    scales: tuple[float, ...]
    mitigations: tuple[str, ...]
    shots: tuple[int | None, ...]
    opt_level: int
    backends_file: str | None
    test_limit: int | None
    device: str = "cpu"
    cross_checks: tuple[tuple[str, ...], ...] = ()  # points to run again on Aer: ``Point.key()`` without the run
    training: str = IDEAL  # or NOISE_AWARE: the head trained under its one backend's noise

    @property
    def run(self) -> Path:
        return Path(dict(self.config)["out"])


def run_cell(cell: Cell, progress: bool = False) -> list[dict]:
    """Train, resume or reuse the cell's run, run its noise study; its current rows, with the grid columns."""
    run = cell.run
    train_or_resume(make_config(**dict(cell.config)), progress=progress, device=cell.device)  # checked equal before anything ran
    study = noise_study([run], backends=list(cell.backends), scales=cell.scales, mitigations=cell.mitigations,
                        shots=cell.shots, optimization_levels=(cell.opt_level,), backends_file=cell.backends_file,
                        limit=cell.test_limit, out=run / "noise-study", progress=progress, device=cell.device,
                        cross_check_points=cell.cross_checks)
    grid = {"qubits": cell.qubits, "layers": cell.layers, "seed": cell.seed}
    return [{**grid, **row} for row in _current_rows(study / "results.csv", cell)]


def _current_rows(path: Path, cell: Cell) -> list[dict]:
    """The study rows of this cell's grid and of its cross-checks: the last row per point (a point
    recomputed because its inputs changed is appended after the old one)."""
    checked = lambda row: tuple("" if k == "cross_check" else row[k] for k in KEY[1:])  # noqa: E731  its grid point
    rows = [row for row in read_rows(path) if not row["cross_check"] or checked(row) in cell.cross_checks]
    text = lambda v: "" if v is None else str(v)  # noqa: E731
    wanted = {"backend": set(cell.backends), "mitigation": set(cell.mitigations),
              "shots": {text(s) for s in cell.shots}, "opt_level": {str(cell.opt_level), "-1"}}
    wanted["training"] = {cell.training}
    latest: dict[tuple, dict] = {}
    for row in rows:
        if all(row[k] in v for k, v in wanted.items()) and (row["scale"] == "" or float(row["scale"]) in cell.scales):
            latest[tuple(row[k] for k in KEY)] = row
    return list(latest.values())


def parse_grid(text: str, name: str) -> list[int]:
    """'4,8,12' -> [4, 8, 12]: positive, distinct integers, or one line naming the option."""
    items = []
    for part in str(text).split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise QmedimgError(f"--{name}: '{part.strip()}' in '{text}' is not an integer; write e.g. "
                               f"--{name} {'4,8,12' if name == 'qubits' else '1,2'}") from None
        if value < (0 if name == "seeds" else 1):
            raise QmedimgError(f"--{name}: {value} must be >= {0 if name == 'seeds' else 1} (in '{text}')")
        if value in items:
            raise QmedimgError(f"--{name}: '{text}' repeats {value}")
        items.append(value)
    return items


def largest_memory(cells: list[Cell], bases: dict[str, Backend], specs: dict) -> tuple[int, str]:
    """(peak bytes, what) of the grid's largest simulated state: each head on each backend it fits at the grid's
    largest scale, as the backend simulates it (:func:`~qmedimg.workflows.grid_plan.simulation_memory`: e.g. a
    density matrix per parallel experiment under noise up to 10 active qubits on fake devices)."""
    worst = (0, "")
    for cell in cells:
        spec = specs[cell.qubits, cell.layers]
        for name in cell.backends:
            rules = bases[name].study
            noisy = rules.noise_scalable and max(cell.scales) > 0
            point = rules.point(scale=max(cell.scales) if rules.noise_scalable else None, mitigation="none",
                                shots=cell.shots[0], opt_level=cell.opt_level if rules.transpiles else None, repeat=0)
            need, how = simulation_memory(point, spec, noisy)
            if need > worst[0]:
                worst = (need, f"{cell.qubits} qubits × {cell.layers} layer{'s' * (cell.layers != 1)} on {name} "
                               f"needs ~{memory_size(need)} ({how})")
    return worst


def plan_cells(data: dict, *, qubits: list[int], layers: list[int], seeds: list[int], backends: list[str],
               scales, mitigations, shots, opt_level: int, backends_file, test_limit, out: Path, circuit: str,
               recipe: dict, noise_aware: bool = False) -> tuple[list[Cell], dict[str, Backend], list[dict], dict]:
    """Every cell of the grid (the noise-aware trainings after the others), the backends, the skipped (width,
    device) pairs and each head's circuit; all checks that need no training (data, circuits, exact-estimator
    width, devices, existing runs) happen here."""
    context = BackendContext()  # the grid's transpiled circuits, shared by its backends and their points
    bases = {name: get_backend(name, backends_file, context=context) for name in backends}
    qpus = [name for name, b in bases.items() if b.spends_qpu_time]
    if qpus:
        raise QmedimgError(f"{', '.join(qpus)}: width-study runs on simulators only (it evaluates many heads); "
                           "evaluate a chosen run on a QPU with `qmedimg noise-study RUN --dry-run` then --allow-qpu")
    for backend in bases.values():
        for m in mitigations:
            backend.study.mitigation_overrides(m)  # refused here (e.g. zne on a noiseless backend)
    if noise_aware and not any(b.study.noise_scalable for b in bases.values()):
        raise QmedimgError(f"--noise-aware trains under a device's noise: none of --backend {','.join(backends)} has "
                           "noise to train under; add a fake device (e.g. fake_brisbane)")
    widths = {name: b.describe().device_qubits for name, b in bases.items()}
    for name, width in widths.items():
        if width is not None and width < min(qubits):
            raise QmedimgError(f"backend '{name}' ({bases[name].describe().device}) has {width} qubits, fewer than "
                               f"every head in --qubits {','.join(map(str, qubits))}: drop it or add a width <= {width}")
    skipped = [{"backend": name, "device": bases[name].describe().device, "device_qubits": width, "qubits": n}
               for n in qubits for name, width in widths.items() if width is not None and n > width]
    fits = lambda n: tuple(name for name in backends if widths[name] is None or n <= widths[name])  # noqa: E731
    configs = {}
    for n in qubits:
        for depth in layers:
            for seed in seeds:
                fields = {**data, **STUDY_DEFAULTS, **{k: v for k, v in recipe.items() if v is not None},
                          "circuit": circuit, "qubits": n, "layers": depth, "seed": seed,
                          "out": str(out / "runs" / f"q{n}-l{depth}-s{seed}")}
                configs[n, depth, seed] = make_config(**fields)
    aware = {(n, depth, seed, name): aware_config(config, name, bases[name], backends_file)
             for (n, depth, seed), config in configs.items() if noise_aware
             for name in fits(n) if bases[name].study.noise_scalable}
    dataset = load_data(next(iter(configs.values())))
    specs = {}
    for (n, depth, seed, *_), config in [*configs.items(), *aware.items()]:
        if (n, depth) not in specs:
            specs[n, depth] = load_circuit(circuit, qubits=n, layers=depth)
            build_model(config, dataset)  # the exact estimator and the data can take this head
        run = Path(config.out)
        if (run / "config.json").is_file() and (changed := config_differences(run, config)):
            raise QmedimgError(f"{run}: holds a run made with other settings ({'; '.join(changed)}); width-study "
                               "reuses a run only if its config matches: choose another --out or move it away")
    registry = None if backends_file is None else str(backends_file)
    cells = [Cell(n, depth, seed, tuple(sorted(config.model_dump().items())), fits(n), tuple(scales),
                  tuple(mitigations), tuple(shots), opt_level, registry, test_limit)
             for (n, depth, seed), config in configs.items()]
    cells += [Cell(n, depth, seed, tuple(sorted(config.model_dump().items())), (name,), (1.0,), ("none",),
                   tuple(shots), opt_level, registry, test_limit, training=NOISE_AWARE)
              for (n, depth, seed, name), config in aware.items()]
    return cells, bases, skipped, specs


def aware_config(ideal: TrainConfig, name: str, backend: Backend, backends_file) -> TrainConfig:
    """The noise-aware twin of an ideal run's config: the same but trained on ``name`` at noise scale 1, in
    ``runs/<ideal run>-aware-<name>-<digest of the entry, description aside>/``."""
    digest = request_id(entry=defining_entry(backend))[:8]
    out = Path(ideal.out).with_name(f"{Path(ideal.out).name}-aware-{name}-{digest}")
    return make_config(**{**ideal.model_dump(), "backend": name, "noise_scale": 1.0, "out": str(out),
                          "backends_file": None if backends_file is None else str(backends_file)})


def width_study(data: dict, *, qubits: Iterable[int], layers: Iterable[int], backends: list[str],
                seeds: Iterable[int] = (0,), scales=(0, 0.5, 1, 2), mitigations=("none", "readout+zne"),
                shots=(None,), optimization_level: int = 1, circuit: str = "sel", out: str | Path,
                backends_file: str | Path | None = None, test_limit: int | None = None,
                max_memory_gb: float | None = None, progress: bool = True,
                executor: Executor | None = None, threads: int | None = None, device: str = "auto",
                cross_check: int = 0, noise_aware: bool = False, dry_run: bool = False, **recipe) -> Path | str:
    """Train or reuse a run per (qubits, layers, seed), run the noise study of each on every backend
    it fits, and write ``out``: ``results.csv``, ``accuracy_vs_circuit.png``, ``accuracy_lost.png``,
    ``summary.md`` and ``study.json`` (with ``noise_aware``, also ``accuracy_lost_by_strategy.png``: module
    docstring). ``data``: TrainConfig data fields (dataset or data_file, …); ``recipe``: training fields
    (epochs, batch_size, lr, …; defaults :data:`STUDY_DEFAULTS`). With ``dry_run`` nothing is trained, evaluated or
    written: the plan is returned as text (:mod:`~qmedimg.workflows.width_plan`)."""
    qubits, layers, seeds, scales = list(qubits), list(layers), list(seeds), [float(s) for s in scales]
    if not (qubits and layers and seeds and backends and mitigations and shots):
        raise QmedimgError("width-study needs at least one each of --qubits, --layers, --seeds, --backend, "
                           "--mitigation and --shots")
    if any(s < 0 or s != s or s == float("inf") for s in scales) or 1.0 not in scales:
        raise QmedimgError(f"--scales: finite numbers >= 0 including 1 (the calibrated noise every verdict is "
                           f"read at); got {','.join(f'{s:g}' for s in scales)}")
    for m in mitigations:
        if m not in MITIGATIONS:
            raise QmedimgError(f"--mitigation: unknown '{m}'; valid: {', '.join(MITIGATIONS)}")
    if "none" not in mitigations:
        raise QmedimgError("--mitigation must include 'none': the accuracy lost is read without mitigation, "
                           "and what each mitigation recovers against it")
    if cross_check < 0:
        raise QmedimgError(f"--cross-check must be >= 0 (how many points to run again on Aer), got {cross_check}")
    out = Path(out)
    executor = executor or LocalExecutor()
    cell_function = partial(run_cell, progress=progress and executor.in_process and sys.stderr.isatty())
    executor.start(cell_function)  # Ray joins (or fails) now; its workers import while the grid is checked
    placed, gpus = executor.place(device)
    resources = executor.resources(threads, gpus)  # refused here if no node can take a cell
    cells, bases, skipped, specs = plan_cells(
        data, qubits=qubits, layers=layers, seeds=seeds, backends=backends, scales=scales, mitigations=list(mitigations),
        shots=list(shots), opt_level=optimization_level, backends_file=backends_file, test_limit=test_limit,
        out=out, circuit=circuit, recipe=recipe, noise_aware=noise_aware)
    limit_bytes = int(max_memory_gb * 1e9) if max_memory_gb is not None else available_memory()
    need, largest = largest_memory(cells, bases, specs)
    if need > limit_bytes:
        raise QmedimgError(f"the grid does not fit in memory: {largest}, {memory_size(limit_bytes)} available "
                           "(--max-memory); drop the widest --qubits or the noisy devices for them")
    cells, eligible = _with_cross_checks(cells, bases, cross_check)
    cells = [replace(cell, device=placed) for cell in cells]
    if dry_run:
        return plan_width_study(cells, bases, specs, test_limit, executor, resources,
                                f"memory: the largest simulated state: {largest}; {memory_size(limit_bytes)} available "
                                f"({'--max-memory' if max_memory_gb is not None else 'now'})")

    with writing_folder(out):  # one width study writes here at a time: a second is refused in one line
        write_json(out / "study.json", {
            "data": data, "circuit": circuit, "qubits": qubits, "layers": layers, "seeds": seeds, "backends": backends,
            "scales": scales, "mitigations": list(mitigations), "shots": list(shots),
            "optimization_level": optimization_level, "test_limit": test_limit, "recipe": recipe,
            "cells": [c.run.name for c in cells], "skipped": skipped, "noise_aware": noise_aware,
            **({"intervals": INTERVALS} if noise_aware else {}),
            "cross_check": cross_check, "cross_checked": {c.run.name: [list(k) for k in c.cross_checks]
                                                          for c in cells if c.cross_checks}})
        finished: dict[int, list[dict]] = {}
        failed = []
        for outcome in executor.map(cell_function, cells, names=[c.run.name for c in cells], resources=resources,
                                    progress=progress, desc="width study"):
            if not outcome.ok:
                failed.append(outcome)
                continue
            finished[outcome.index] = outcome.value
            rows = [row for index in sorted(finished) for row in finished[index]]
            _write_results(out / "results.csv", rows)  # what is finished so far, in one place
        if failed:
            raise failure_report(failed, len(cells), "The finished cells are kept: run the same command again to "
                                 "retry the failed ones")
        rows = [row for index in sorted(finished) for row in finished[index]]
        grid = [row for row in rows if not row["cross_check"]]
        ideal = [row for row in grid if row["training"] == IDEAL]  # the noise-aware runs have a section of their own
        devices = {name: bases[name].describe().device for name in backends}
        with reporting_os_errors(out):
            plot_width_study(ideal, out, skipped)
        text = summary(ideal, skipped, devices=devices, data=data, circuit=circuit)
        if noise_aware:
            scored = _with_images(grid, {name for name, b in bases.items() if b.study.noise_scalable})
            aware_devices = {name: devices[name] for name in backends if bases[name].study.noise_scalable}
            with reporting_os_errors(out):
                plot_strategies(scored, out / "accuracy_lost_by_strategy.png", aware_devices, **INTERVALS)
            text += noise_aware_section(scored, aware_devices, **INTERVALS)
        if cross_check:
            pairs = [(_label(sampler), sampler, aer, value_agreement(*(read_point(Path(row["run"]) / "noise-study", row)
                                                                       for row in (sampler, aer))))
                     for sampler, aer in cross_check_pairs(rows, GRID_COLUMNS + list(KEY))]
            text += cross_check_section(pairs, asked=cross_check, eligible=eligible, why_none=no_cross_check(bases))
        write_text(out / "summary.md", text)
        return out


def _with_cross_checks(cells: list[Cell], bases: dict[str, Backend], n: int) -> tuple[list[Cell], int]:
    """(the cells, each with its share of the grid's ``n`` cross-check points, the number of points that could
    be cross-checked): chosen over the whole grid, as each cell's noise study will list its points."""
    points = [p for c in cells if c.training == IDEAL  # the grid's points: a noise-aware run's are not checked
              for p in grid_points([str(c.run)], {b: bases[b] for b in c.backends}, c.scales, c.mitigations, c.shots,
                                   (c.opt_level,), 1)]
    eligible = {name for name, backend in bases.items() if cross_checkable(backend)}
    chosen = choose_cross_checks(points, {str(c.run): (c.qubits, c.layers) for c in cells}, eligible, n)
    return ([replace(c, cross_checks=tuple(p.checked().key()[1:] for p in chosen if p.run == str(c.run)))
             for c in cells], sum(p.backend in eligible for p in points))


def _with_images(rows: list[dict], noisy: set[str]) -> list[dict]:
    """Copies of the rows the noise-aware comparison reads (calibrated noise, on a noise-scalable device, no
    mitigation or readout+zne), each with its per-image arrays (its ``point-<id>.npz``) under ``per_image``."""
    chosen = [row for row in rows if row["backend"] in noisy and row["mitigation"] in ("none", "readout+zne")
              and row["scale"] != "" and float(row["scale"]) == 1.0]
    return [{**row, "per_image": read_point(Path(row["run"]) / "noise-study", row)} for row in chosen]


def _label(row: dict) -> str:
    """A width-study point in a few words: '4×1 seed 0: fake_manila scale 1.0 none exact opt 1 repeat 0'."""
    point = Point(row["run"], row["backend"], row["scale"] or None, row["mitigation"], row["shots"] or None,
                  row["opt_level"], row["repeat"])
    return f"{row['qubits']}×{row['layers']} seed {row['seed']}: {point_name(point)}"


def _write_results(path: Path, rows: list[dict]) -> None:
    columns = GRID_COLUMNS + [c for c in dict.fromkeys(k for row in rows for k in row) if c not in GRID_COLUMNS]
    write_csv(path, [[row.get(c, "") for c in columns] for row in rows], header=columns)
