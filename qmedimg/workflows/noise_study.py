"""Noise study: a trained model's test metrics over a grid of devices, noise scales, mitigation,
shots and transpiler optimization levels — one command, a CSV, plots and a summary.

Example::

    from qmedimg.workflows.noise_study import noise_study
    out = noise_study(["runs/breast"], backends=["fake_brisbane", "fake_torino"],
                      scales=[0, 0.5, 1, 2, 4], mitigations=["none", "readout+zne"])
    # out / "results.csv", "accuracy_vs_noise.png", "expectation_error.png", "summary.md"

The backbone runs once per run; each grid point only re-runs the quantum head on its backend (the
same ``TorchConnector`` head as ``evaluate``). Rows are appended to ``results.csv`` as they finish,
each with ``inputs``: a digest of what produced it (the run's config and checkpoint, ``limit``, the
backend's registry entry less its description, and what its kind says a row also depends on:
:meth:`~qmedimg.backends.study_rules.StudyRules.result_inputs`). Running the same command again skips the points
whose row is there with the same inputs; a point whose inputs changed (retrained, other ``limit``,
backend redefined) is computed again: the old row stays in the CSV (it may have cost QPU time), but
only rows of this grid with these inputs go on the plots and in ``summary.md``, whose last line says
how many points were reused and how many recomputed because their inputs changed. Several run
directories (e.g. trained with different circuits, or trained ideal vs with noise) go on the same
plots.

Is the head still used under noise? Each row also holds ``effective_dimension``: the participation
ratio of the covariance of the head's outputs on the evaluated images at that point (next to
``ideal_effective_dimension``, the same for the exact head, and ``head_outputs``). A ``results.csv``
written before these columns existed is upgraded in place (rewritten whole, atomically): its rows
are kept and reused with those cells blank (shown as "—"), never recomputed; so is one written
before the simulation columns (below) existed.

How was each point simulated? ``simulation`` (density_matrix, trajectories or statevector),
``simulator`` (aer, or qmedimg's trajectory sampler), ``trajectories`` and ``statistical_error`` (the
largest standard error of one expectation value, where values are means over noise trajectories),
blank for kinds that do not say. ``cross_check=N`` (``--cross-check N``) runs N of the points whose
backend samples noise trajectories again on Aer (``simulator: aer``, the same entry, seed and images
otherwise; chosen by :func:`~qmedimg.workflows.study_points.choose_cross_checks`): their rows go to
``results.csv`` with ``cross_check`` = aer, keyed by their own entry (resumable, never taken for the
sampler's), and ``summary.md`` gets a section "Cross-check against Aer" comparing the two.

How was the head trained? ``training``: ``ideal`` (noiseless values) or ``noise-aware`` (under a device's
noise: :func:`~qmedimg.workflows.study_points.training_of`), part of a point's identity; a results.csv
from before the column is upgraded in place, its rows read as ideal. Every computed point also writes
``point-<point id>.npz`` next to results.csv (test labels, probabilities and decisions at the run's
threshold, of the point and of the exact head, keyed by image index; the head values, and where they are means
over noise trajectories each image's covariance of them; atomically, before its row): a
row whose file is missing is computed again (rows on a real QPU excepted: they cost QPU time).

How sure is each number? Every row holds bootstrap 95 % intervals over its test images of ACC, AUC, sensitivity
and specificity, and ``acc_lost`` (ideal ACC − ACC) with its paired interval (the same images drawn for the exact
and the noisy decisions): :mod:`qmedimg.report.study_intervals`; and ``calibration_date``, the device calibration
the point simulated, where its backend says. A results.csv from before these columns (version 5 or older) is
upgraded in place, each row's intervals computed from its per-image file (blank where that file is gone).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from itertools import product
from pathlib import Path

from qmedimg.backends import Backend, BackendContext, get_backend
from qmedimg.backends.jobs import request_id
from qmedimg.errors import QmedimgError
from qmedimg.cores import available_memory
from qmedimg.executor import Executor, LocalExecutor, Resources, failure_report, run_with_cores
from qmedimg.files import (append_line, read_json, repair_tail, reporting_os_errors, write_json, write_text,
                           writing_folder)
from qmedimg.inference import Inference
from qmedimg.report.drift import drift_section, plot_drift
from qmedimg.report.noise_study import cross_check_section, plot_noise_study, summary, value_agreement
from qmedimg.report.study_intervals import INTERVAL_COLUMNS
from qmedimg.rundir import load_run
from qmedimg.workflows.grid_plan import PlannedCell, memory_size, plan_text, simulation_memory, time_head
from qmedimg.workflows.study_points import (IDEAL, KEY, PER_IMAGE, CellWorkspace, Point, choose_cross_checks,
                                            cross_checkable, cross_checks_of, make_cells, no_cross_check,
                                            point_backend, point_file, point_inputs, point_name, read_point, run_key,
                                            run_study_cell, training_of, with_intervals, write_point)

MITIGATIONS = ("none", "readout", "zne", "readout+zne")
COLUMNS = ["run", "circuit", "trained_on", "backend", "device", "calibration_date", "scale", "mitigation", "shots",
           "opt_level", "repeat", "acc", "acc_low", "acc_high", "auc", "auc_low", "auc_high", "f1", "sensitivity",
           "sensitivity_low", "sensitivity_high", "specificity", "specificity_low", "specificity_high", "ideal_acc",
           "ideal_auc", "acc_lost", "acc_lost_low", "acc_lost_high", "effective_dimension",
           "ideal_effective_dimension", "head_outputs", "mean_abs_expectation_error",
           "two_qubit_gates", "depth", "estimated_fidelity", "zne_factors", "shot_cost", "cross_check", "training",
           "simulation", "simulator", "trajectories", "statistical_error", "acc_statistical_error",
           "auc_statistical_error", "wall_s", "inputs"]
# The columns each version of results.csv added (older files read them blank, and are upgraded in place):
ADDED_COLUMNS = ("effective_dimension", "ideal_effective_dimension", "head_outputs")  # 2: the head's usage
SIMULATION_COLUMNS = ("cross_check", "simulation", "simulator", "trajectories", "statistical_error")  # 3: how simulated
TRAINING_COLUMNS = ("training",)  # 4: the training mode (older rows read ideal)
METRIC_ERROR_COLUMNS = ("acc_statistical_error", "auc_statistical_error")  # 5: ACC/AUC statistical errors
INTERVAL_COLUMNS_ADDED = (*INTERVAL_COLUMNS, "calibration_date")  # 6: bootstrap intervals, the device's calibration
_ADDED_IN = {2: ADDED_COLUMNS, 3: SIMULATION_COLUMNS, 4: TRAINING_COLUMNS, 5: METRIC_ERROR_COLUMNS,
             6: INTERVAL_COLUMNS_ADDED}
RESULTS_SCHEMAS = {version: [c for c in COLUMNS if all(c not in added for later, added in _ADDED_IN.items()
                                                       if later > version)] for version in range(1, max(_ADDED_IN) + 1)}
"""results.csv's header in each format version (1: the first; the last: ``COLUMNS``, what this qmedimg writes):
a file is identified by its header, read with the columns of later versions blank, and upgraded in place."""
RESULTS_SCHEMA = max(RESULTS_SCHEMAS)


def parse_list(text: str, kind, name: str, valid=None) -> list:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]; 'none' stands for None where ``kind`` allows it."""
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise QmedimgError(f"--{name}: empty item in '{text}'")
        if part == "none" and kind is not str:
            items.append(None)
            continue
        try:
            value = kind(part)
        except ValueError:
            raise QmedimgError(f"--{name}: '{part}' is not a {kind.__name__}") from None
        if valid is not None and value not in valid:
            raise QmedimgError(f"--{name}: unknown value '{part}'; valid: {', '.join(map(str, valid))}")
        items.append(value)
    return items


def grid_points(runs: list[str], backends: dict[str, Backend], scales, mitigations, shots, levels,
                repeats, trainings: dict[str, str] | None = None) -> list[Point]:
    """Every point to evaluate; checks first, so bad input writes nothing. ``trainings``: each run's
    training mode (default ideal)."""
    points = []
    for run, (name, backend) in product(runs, backends.items()):
        rules = backend.study
        for scale, mitigation, n, level in product(scales if rules.noise_scalable else [None], mitigations, shots,
                                                   levels if rules.transpiles else [None]):
            rules.mitigation_overrides(mitigation)  # refused here, before anything runs
            for repeat in range(repeats if rules.sampled(n) else 1):  # exact values repeat exactly
                points.append(Point(run, name, scale, mitigation, n, level if level is not None else -1, repeat,
                                    training=(trainings or {}).get(run, IDEAL)))
    return points


def _csv_line(row: dict) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def read_rows(path: Path, *, upgrade: bool = False) -> list[dict]:
    """The rows of results.csv; a last row torn by a crash or a full disk is cut off first. A file
    without a header (empty or blank: e.g. left by a full disk before its first line) has none. A file
    with an older version's header (``RESULTS_SCHEMAS``) is read with the missing cells blank and, with ``upgrade``,
    rewritten atomically with today's header (so new rows can be appended); any other header, or a
    file that is no CSV text, is refused in one line naming it."""
    if not path.is_file():
        return []
    repair_tail(path)
    try:
        with reporting_os_errors(path, "cannot read"), open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows, header = list(reader), reader.fieldnames  # while open: DictReader reads the header lazily
    except (UnicodeDecodeError, csv.Error) as exc:  # e.g. the NUL bytes a crash can leave in a file
        raise QmedimgError(f"{path}: not a readable CSV file ({' '.join(str(exc).split())}); move it away to run "
                           "the study again") from None
    if not header:
        return []
    for number, row in enumerate(rows, 2):
        _check_row(path, number, row)
    rows = [{**row, "run": run_key(row["run"])} for row in rows]  # 'st' and '/abs/st' are one run
    if header == COLUMNS:
        return rows
    if header not in RESULTS_SCHEMAS.values():
        shown = ", ".join(map(repr, header[:3])) + (", …" if len(header) > 3 else "")
        raise QmedimgError(f"{path}: written by another version of qmedimg or another program (its header has "
                           f"other columns: {shown}); move it away to run the study again")
    rows = [{**dict.fromkeys(COLUMNS, ""), "training": IDEAL, **row} for row in rows]
    if upgrade:  # a row whose per-image file is there gets its intervals now (nothing recomputed)
        rows = [with_intervals(path.parent, row) for row in rows]
        write_text(path, "".join(_csv_line(row) for row in [dict(zip(COLUMNS, COLUMNS)), *rows]))
    return rows


NUMBERS = ("acc", "auc", "f1", "ideal_acc", "ideal_auc", "mean_abs_expectation_error", "wall_s", "opt_level", "repeat")
"""results.csv columns every row holds a number in (NaN for an undefined metric)."""


def _check_row(path: Path, number: int, row: dict) -> None:
    """One line naming the file, the line and the field when a row of results.csv is damaged."""
    if None in row or any(value is None for value in row.values()):
        raise QmedimgError(f"{path}: line {number} has {'more' if None in row else 'fewer'} fields than the header; "
                           "the file was edited or damaged: move it away, or delete that line, to run the study again")
    for column in (c for c in NUMBERS if c in row):
        try:
            float(row[column])
        except ValueError:
            raise QmedimgError(f"{path}: line {number}, column {column}: {row[column][:40]!r} is not a number; the "
                               "file was edited or damaged: delete that line to compute the point again") from None


def noise_study(run_dirs: list[str | Path], *, backends: list[str], scales=(0, 0.25, 0.5, 1, 2, 4),
                mitigations=("none",), shots=(None,), optimization_levels=(1,), repeats: int = 1,
                backends_file: str | Path | None = None, limit: int | None = None, out: str | Path | None = None,
                allow_qpu: bool = False, dry_run: bool = False, progress: bool = True,
                executor: Executor | None = None, threads: int | None = None, device: str = "auto",
                cross_check: int = 0, cross_check_points=None) -> Path:
    """Evaluate every run on every grid point; write ``noise-study/`` (in the first run unless ``out``).

    A grid with real-QPU (``ibm``) entries runs only with ``allow_qpu`` after a ``dry_run`` of the
    same grid (which writes ``dry-run.json``: every point's QPU-time estimate, nothing submitted).
    ``cross_check``: how many points to run again on Aer (module docstring); ``cross_check_points``:
    which instead, as their ``Point.key()`` without the run (how width-study spreads its choice)."""
    if not run_dirs:
        raise QmedimgError("noise-study needs at least one RUN_DIR")
    if cross_check < 0:
        raise QmedimgError(f"--cross-check must be >= 0 (how many points to run again on Aer), got {cross_check}")
    if any(s is None or not math.isfinite(s) or not 0 <= s <= 1000 for s in scales):
        raise QmedimgError(f"--scales: noise scales must be finite numbers >= 0 and at most 1000 (0 = ideal, 1 = "
                           f"as calibrated; every error rate saturates long before 1000); got {list(scales)}")
    if repeats < 1:
        raise QmedimgError(f"--repeats must be >= 1, got {repeats}")
    if any(n is not None and n < 1 for n in shots):
        raise QmedimgError(f"--shots: shot counts must be >= 1, or none for exact values; got {list(shots)}")
    for m in mitigations:
        if m not in MITIGATIONS:
            raise QmedimgError(f"--mitigation: unknown '{m}'; valid: {', '.join(MITIGATIONS)}")
    executor = executor or LocalExecutor()
    context = BackendContext()  # the study's transpiled circuits: shared by its base and point backends
    base = {name: get_backend(name, backends_file, context=context) for name in backends}
    qpus = [name for name, b in base.items() if b.spends_qpu_time]
    if qpus and not (allow_qpu or dry_run):
        raise QmedimgError(f"{', '.join(qpus)}: a grid on real QPUs spends QPU time at every point; run it with "
                           "--dry-run first, then again with --allow-qpu")
    runs = {}
    for run_dir in run_dirs:
        run = load_run(run_dir, device=device)
        if not run.config.quantum:
            raise QmedimgError(f"{run.path}: a classical-head run has no quantum head to put under noise")
        runs[run_key(run.path)] = run
        for backend in base.values():  # transpiled now (cached): a head wider than a device stops here, nothing written
            if not backend.spends_qpu_time:
                backend.prepare(run.model.spec)
    trainings = {name: training_of(run.config) for name, run in runs.items()}
    points = grid_points(list(runs), base, scales, mitigations, shots, optimization_levels, repeats, trainings)
    eligible = {name for name, backend in base.items() if cross_checkable(backend)}
    if cross_check_points is None:
        widths = {name: (run.model.spec.num_qubits, run.model.spec.layers or 0) for name, run in runs.items()}
        checks = choose_cross_checks(points, widths, eligible, cross_check)
    else:
        checks = cross_checks_of(points, cross_check_points)
    grid, points = points, points + checks

    out = Path(out) if out is not None else Path(run_dirs[0]) / "noise-study"
    entries = {n: b.entry.model_dump(mode="json") for n, b in base.items()}
    run_ids = {name: run.run_id() for name, run in runs.items()}
    cuts = {name: limit if limit is not None and limit < len(run.dataset.test.images) else None  # images used
            for name, run in runs.items()}
    inputs = {p: point_inputs(p, run_ids[p.run], cuts[p.run], base[p.backend]) for p in points}
    grid_id = request_id(points=[list(p.key()[:KEY.index("cross_check")]) for p in grid], limit=limit,
                         backends=entries, runs=run_ids)  # as before the training column: run_ids say how it trained
    if qpus and not dry_run:
        checked = out / "dry-run.json"
        if not checked.is_file() or read_json(checked).get("grid") != grid_id:
            raise QmedimgError(f"no dry run of this exact grid in {out}: run the same command with --dry-run first")
    results = out / "results.csv"
    with contextlib.ExitStack() as held:
        previous, done, seen, todo = _progress(results, points, inputs, not dry_run, qpus)
        if todo or dry_run:  # Ray starts or joins here (or fails in seconds), before anything is written
            cell_device, gpus = executor.place(device)
            resources = executor.resources(threads, gpus)  # refused here if no node can take a cell
            executor.start(run_study_cell)
        if dry_run:
            plan = _plan(points, done, inputs, previous, runs, base, limit, executor, resources)
            return _dry_run(out, grid_id, grid, runs, base, limit, plan)
        held.enter_context(writing_folder(out))  # one study writes here at a time: a second is refused in one line
        previous, done, seen, todo = _progress(results, points, inputs, True, qpus)  # as it is now, under the lock
        rowed = {(*(row[k] for k in KEY), row["inputs"]) for row in previous}
        lost = sum((*p.key(), inputs[p]) in rowed for p in todo)  # its row is there, its per-image file is not
        changed = sum(p.key() in seen for p in todo) - lost  # a row for this point, made from other inputs
        write_json(out / "study.json", {
            "runs": list(runs), "backends": entries,
            "scales": list(scales), "mitigations": list(mitigations), "shots": list(shots),
            "optimization_levels": list(optimization_levels), "repeats": repeats, "limit": limit,
            "run_ids": run_ids, "points": len(grid), "cross_check": cross_check,
            "cross_checked": [point_name(p) for p in checks], "reused": len(points) - len(todo), "computed": len(todo),
            "recomputed_inputs_changed": changed, "recomputed_per_image_missing": lost})

        if not results.is_file() or not results.read_bytes().strip():  # none yet, or left empty by a full disk
            write_text(results, _csv_line(dict(zip(COLUMNS, COLUMNS))))
        # each row is appended whole (one write, fsync'd) as it arrives: an interrupted study loses at most the
        # points being evaluated. Points on a real QPU run here, one by one: a task Ray retried could submit twice.
        workspace = CellWorkspace(runs.values(), base.values(), context)  # cells run here reuse what is loaded
        cells, local = ([], []) if not todo else make_cells(todo, base, inputs, limit, cuts, run_ids, executor, resources,
                                                             cell_device)
        failed = []
        try:
            for chosen, mine in ((executor, cells), (LocalExecutor(), local)):
                if not mine:
                    continue
                function = workspace.run_cell if chosen.in_process else run_study_cell
                for outcome in chosen.map(function, mine, names=[c.name for c in mine], resources=resources,
                                          progress=progress, desc="noise study"):
                    if not outcome.ok:
                        failed.append(outcome)
                    for row in outcome.value or []:  # its per-image file first: a row never lacks one
                        write_point(out, row, row.pop(PER_IMAGE))
                        append_line(results, _csv_line(row))
        finally:  # also on Ctrl-C or a failed write: the loaded runs and backends are not kept in this process
            del workspace
        if failed:
            raise failure_report(failed, len(cells) + len(local), "The rows that finished are in results.csv: run "
                                 "the same command again to compute only the rest")
        wanted = {(*p.key(), inputs[p]) for p in points}
        current = {key: row for row in read_rows(results) if (key := (*(row[k] for k in KEY), row["inputs"])) in wanted}
        rows = [row for row in current.values() if not row["cross_check"]]  # the grid's, in results.csv's order
        with reporting_os_errors(out):
            plot_noise_study(rows, out)
            plot_drift(rows, out)  # where entries of one device were calibrated on different dates
        text = summary(rows) + drift_section(rows, lambda row: read_point(out, row))
        asked = cross_check if cross_check_points is None else len(checks)
        if asked:
            many = len(runs) > 1
            pairs = []
            for p in checks:
                sampler, aer = current[(*p.checked().key(), inputs[p.checked()])], current[(*p.key(), inputs[p])]
                pairs.append(((f"{Path(p.run).name}: " if many else "") + point_name(p.checked()), sampler, aer,
                              value_agreement(read_point(out, sampler), read_point(out, aer))))
            text += cross_check_section(pairs, asked=asked, eligible=sum(p.backend in eligible for p in grid),
                                        why_none=no_cross_check(base))
        write_text(out / "summary.md", text + _provenance(len(grid), len(checks), len(todo), changed, lost))
        return out


def _progress(results: Path, points: list[Point], inputs: dict, upgrade: bool,
              qpus: list[str]) -> tuple[list, set, set, list]:
    """(rows of results.csv, the keys with inputs of those done, their keys, the points still to compute). A
    row is done when its per-image file is there too (or it ran on a real QPU: ``qpus``, never run twice)."""
    previous = read_rows(results, upgrade=upgrade)
    done = {(*(row[k] for k in KEY), row["inputs"]) for row in previous
            if row["backend"] in qpus or point_file(results.parent, row).is_file()}
    seen = {tuple(row[k] for k in KEY) for row in previous}
    return previous, done, seen, [p for p in points if (*p.key(), inputs[p]) not in done]


def _provenance(points: int, checks: int, computed: int, changed: int, lost: int = 0) -> str:
    """summary.md's last line: what this command reused from results.csv and what it recomputed."""
    total = points + checks
    also = f" and {checks} cross-check point{'s' * (checks != 1)}" if checks else ""
    line = f"\n{points} grid points{also}: {total - computed} reused from results.csv, {computed} computed now"
    if changed:
        line += (f"; {changed} of them recomputed because their inputs changed (checkpoint or config, --test-limit or "
                 "the backend's definition) — the earlier rows stay in results.csv, left out of this summary")
    if lost:
        line += f"; {lost} recomputed because their per-image file (point-<id>.npz) was missing"
    return line + ".\n"


def _plan(points: list[Point], done: set, inputs: dict, previous: list[dict], runs: dict, base: dict[str, Backend],
          limit, executor: Executor, resources: Resources) -> str:
    """The dry run's plan: every point, finished or to run, with its time: a row's wall time when results.csv has
    one for the same run and point but its repeat (``measured``), else the head on the point's backend timed now
    on a few of the images (:func:`~qmedimg.workflows.grid_plan.time_head`, ``timed``); and the memory of the
    largest simulated state (:func:`~qmedimg.workflows.grid_plan.simulation_memory`)."""
    kind = lambda row: tuple(str(row[k]) for k in KEY if k != "repeat")  # noqa: E731  (the scale included)
    times = {kind(row): (float(row["wall_s"]), "measured") for row in previous if row.get("wall_s")}
    planned, largest = [], (0, "")
    for point in points:
        key = kind(dict(zip(KEY, point.key())))
        run, backend = runs[point.run], point_backend(point, base[point.backend])
        if key not in times:
            if backend.spends_qpu_time:
                times[key] = (0.0, "real QPU: see dry-run.json")
            else:
                images = run.dataset.test.images[:limit]
                head = lambda k: Inference(run, images[:k]).on(backend).wall_s  # noqa: E731  (the head's time only)
                times[key] = (run_with_cores(lambda _: time_head(head, len(images)), None, resources.cpus), "timed")
        if not backend.spends_qpu_time:
            noisy = backend.study.noise_scalable and (point.scale or 0) > 0
            need, how = simulation_memory(backend, run.model.spec, noisy)
            if need > largest[0]:
                largest = (need, f"{point_name(point)} needs ~{memory_size(need)} ({how})")
        state = "finished" if (*point.key(), inputs[point]) in done else "new"
        planned.append(PlannedCell(point_name(point), state, *times[key]))
    memory = (f"memory: the largest simulated state: {largest[1]}; {memory_size(available_memory())} available now"
              if largest[0] else None)
    return plan_text("noise study", planned, resources, executor.name, executor.workers(resources), unit="points",
                     memory=memory)


def _dry_run(out: Path, grid_id: str, points: list[Point], runs: dict, base: dict[str, Backend], limit,
             plan: str) -> Path:
    """What the grid would run (``plan``), with a QPU-time estimate for every point on a real QPU; nothing
    submitted, nothing written but ``dry-run.json``."""
    plans, seen = [], {}  # the backbone runs once per run, not once per point
    for point in points:
        if not base[point.backend].spends_qpu_time:
            plans.append({"point": list(point.key()), "qpu_seconds": 0.0})
            continue
        run = runs[point.run]
        backend = point_backend(point, base[point.backend])
        if point.run not in seen:
            seen[point.run] = Inference(run, run.dataset.test.images[:limit])
        qpu = seen[point.run].on(backend, jobs=run.job_options(dry_run=True)).details["dry_run"]
        plans.append({"point": list(point.key()), "qpu_seconds": qpu["estimated_qpu_seconds"], "plan": qpu})
    out.mkdir(parents=True, exist_ok=True)
    total = sum(p["qpu_seconds"] for p in plans)
    return write_json(out / "dry-run.json", {"grid": grid_id, "points": len(points),
                                             "estimated_qpu_seconds": total, "plan": plan, "plans": plans})
