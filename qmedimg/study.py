"""Noise study: a trained model's test metrics over a grid of devices, noise scales, mitigation,
shots and transpiler optimization levels — one command, a CSV, plots and a summary.

Example::

    from qmedimg.study import noise_study
    out = noise_study(["runs/breast"], backends=["fake_brisbane", "fake_torino"],
                      scales=[0, 0.5, 1, 2, 4], mitigations=["none", "readout+zne"])
    # out / "results.csv", "accuracy_vs_noise.png", "expectation_error.png", "summary.md"

The backbone runs once per run; each grid point only re-runs the quantum head on its backend (the
same ``TorchConnector`` head as ``evaluate``). Rows are appended to ``results.csv`` as they finish;
running the same command again skips the rows already there. Several run directories (e.g. trained
with different circuits, or trained ideal vs with noise) go on the same plots.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from qmedimg.errors import QmedimgError

MITIGATIONS = ("none", "readout", "zne", "readout+zne")
COLUMNS = ["run", "circuit", "trained_on", "backend", "device", "scale", "mitigation", "shots", "opt_level",
           "repeat", "acc", "auc", "f1", "ideal_acc", "ideal_auc", "mean_abs_expectation_error",
           "two_qubit_gates", "depth", "estimated_fidelity", "shot_cost", "wall_s"]
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
        return tuple(_text(getattr(self, k)) for k in KEY)


def _text(value) -> str:
    return "" if value is None else str(value)


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


def _mitigation_overrides(kind: str, mitigation: str, backend: str) -> dict:
    readout, zne = "readout" in mitigation, "zne" in mitigation
    if kind == "fake":
        return {"mitigation": {"readout": readout, "zne": {} if zne else None}}
    if kind == "ibm":
        return {"options": {"resilience_level": 0,
                            "resilience": {"measure_mitigation": readout, "zne_mitigation": zne}}}
    if mitigation != "none":
        raise QmedimgError(f"--mitigation {mitigation}: backend '{backend}' is {kind} (noiseless); mitigation needs "
                           "a fake or ibm backend")
    return {}


def _grid(runs: list[str], backends: dict, scales, mitigations, shots, levels, repeats) -> list[Point]:
    """Every point to evaluate; checks first, so bad input writes nothing."""
    points = []
    for run, (name, backend) in product(runs, backends.items()):
        kind = backend.kind
        for scale, mitigation, n, level in product(scales if kind == "fake" else [None], mitigations, shots,
                                                   levels if kind in ("fake", "ibm") else [None]):
            _mitigation_overrides(kind, mitigation, name)
            random = n is not None or kind == "ibm"  # exact values repeat exactly: one repeat is enough
            for repeat in range(repeats if random else 1):
                points.append(Point(run, name, scale, mitigation, n, level if level is not None else -1, repeat))
    return points


def _backend_for(point: Point, backends_file, base_entry):
    from qmedimg.backends import get_backend

    kind = base_entry.kind
    overrides: dict = {}
    if kind in ("aer", "fake", "ibm"):
        overrides["shots"] = point.shots
    if kind == "fake":
        overrides["noise_scale"] = point.scale
    if kind in ("aer", "fake"):
        overrides["seed"] = (base_entry.seed or 0) + point.repeat
    if point.opt_level >= 0:
        overrides["transpile"] = {"optimization_level": point.opt_level}
    overrides.update(_mitigation_overrides(kind, point.mitigation, point.backend))
    return get_backend(point.backend, backends_file, **overrides)


def _zne_factors(backend) -> list[float]:
    """The noise factors a ZNE point runs (each costs one execution of the circuit)."""
    if backend.kind == "ibm":
        from qmedimg.ibm import final_options

        return final_options(backend.entry)[2]
    return backend.entry.mitigation.zne.noise_factors


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def noise_study(run_dirs: list[str | Path], *, backends: list[str], scales=(0, 0.25, 0.5, 1, 2, 4),
                mitigations=("none",), shots=(None,), optimization_levels=(1,), repeats: int = 1,
                backends_file: str | Path | None = None, limit: int | None = None, out: str | Path | None = None,
                allow_qpu: bool = False, dry_run: bool = False, progress: bool = True) -> Path:
    """Evaluate every run on every grid point; write ``noise-study/`` (in the first run unless ``out``).

    A grid with real-QPU (``ibm``) entries runs only with ``allow_qpu`` after a ``dry_run`` of the
    same grid (which writes ``dry-run.json``: every point's QPU-time estimate, nothing submitted)."""
    from tqdm import tqdm

    from qmedimg.backends import get_backend, transpile_report
    from qmedimg.evaluate import _head_on_backend, _ideal_head, _probs_from_head, compute_metrics, head_angles
    from qmedimg.report import plot_noise_study
    from qmedimg.train import load_run

    if not run_dirs:
        raise QmedimgError("noise-study needs at least one RUN_DIR")
    if any(s is None or s < 0 for s in scales):
        raise QmedimgError(f"--scales: noise scales must be numbers >= 0 (0 = ideal, 1 = as calibrated); got {list(scales)}")
    if repeats < 1:
        raise QmedimgError(f"--repeats must be >= 1, got {repeats}")
    for m in mitigations:
        if m not in MITIGATIONS:
            raise QmedimgError(f"--mitigation: unknown '{m}'; valid: {', '.join(MITIGATIONS)}")
    base = {name: get_backend(name, backends_file) for name in backends}
    qpus = [name for name, b in base.items() if b.kind == "ibm" and not b.entry.local]
    if qpus and not (allow_qpu or dry_run):
        raise QmedimgError(f"{', '.join(qpus)}: a grid on real QPUs spends QPU time at every point; run it with "
                           "--dry-run first, then again with --allow-qpu")
    runs = {}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        if not run.config.quantum:
            raise QmedimgError(f"{run.path}: a classical-head run has no quantum head to put under noise")
        runs[str(run.path)] = run
    points = _grid(list(runs), base, scales, mitigations, shots, optimization_levels, repeats)

    out = Path(out) if out is not None else Path(run_dirs[0]) / "noise-study"
    from qmedimg.ibm import request_id

    entries = {n: b.entry.model_dump() for n, b in base.items()}
    grid_id = request_id(points=[list(p.key()) for p in points], limit=limit, backends=entries)
    if dry_run:
        return _dry_run(out, grid_id, points, runs, base, backends_file, limit)
    if qpus:
        checked = out / "dry-run.json"
        if not checked.is_file() or json.loads(checked.read_text()).get("grid") != grid_id:
            raise QmedimgError(f"no dry run of this exact grid in {out}: run the same command with --dry-run first")
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    done = {tuple(row[k] for k in KEY) for row in _read_rows(results)}
    todo = [p for p in points if p.key() not in done]
    (out / "study.json").write_text(json.dumps({
        "runs": list(runs), "backends": entries,
        "scales": list(scales), "mitigations": list(mitigations), "shots": list(shots),
        "optimization_levels": list(optimization_levels), "repeats": repeats, "limit": limit,
        "points": len(points)}, indent=2))

    cache: dict[str, tuple] = {}  # run -> (labels, angles, ideal values, ideal metrics)
    new_file = not results.is_file()
    with open(results, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new_file:
            writer.writeheader()
        for point in tqdm(todo, desc="noise study", unit="point", disable=not progress):
            run = runs[point.run]
            if point.run not in cache:
                images, labels = run.dataset.test.images[:limit], run.dataset.test.labels[:limit]
                angles = head_angles(run.model, images)
                ideal = _ideal_head(run.model, angles)
                cache[point.run] = (labels, angles, ideal,
                                    compute_metrics(labels, _probs_from_head(run.model, ideal), run.dataset.task))
            labels, angles, ideal, ideal_metrics = cache[point.run]
            backend = _backend_for(point, backends_file, base[point.backend].entry)
            start = time.perf_counter()
            if backend.kind == "ibm":
                from qmedimg.evaluate import _head_on_ibm

                values, _ = _head_on_ibm(run, backend, angles, dry_run=False, resume=False, progress=False)
            else:
                values = _head_on_backend(run.model, backend, angles, progress=False)
            wall = time.perf_counter() - start
            metrics = compute_metrics(labels, _probs_from_head(run.model, values), run.dataset.task)
            report = transpile_report(backend, run.model.spec) if backend.device is not None else {}
            zne = len(_zne_factors(backend)) if "zne" in point.mitigation else 1
            writer.writerow({
                "run": point.run, "circuit": run.model.spec.name, "trained_on": run.config.backend,
                "backend": point.backend, "device": backend.device_name, "scale": _text(point.scale),
                "mitigation": point.mitigation, "shots": _text(point.shots), "opt_level": point.opt_level,
                "repeat": point.repeat, "acc": metrics["acc"], "auc": metrics["auc"], "f1": metrics["f1"],
                "ideal_acc": ideal_metrics["acc"], "ideal_auc": ideal_metrics["auc"],
                "mean_abs_expectation_error": float(np.abs(values - ideal).mean()),
                "two_qubit_gates": report.get("two_qubit_gates", ""), "depth": report.get("depth", ""),
                "estimated_fidelity": report.get("estimated_fidelity", ""),
                "shot_cost": "exact" if point.shots is None else point.shots * zne, "wall_s": round(wall, 3)})
            handle.flush()
    rows = [row for row in _read_rows(results) if tuple(row[k] for k in KEY) in {p.key() for p in points}]
    plot_noise_study(rows, out)
    (out / "summary.md").write_text(summary(rows, points))
    return out


def _dry_run(out: Path, grid_id: str, points: list[Point], runs: dict, base: dict, backends_file, limit) -> Path:
    """What the grid would run, with a QPU-time estimate for every point on a real QPU; nothing evaluated."""
    from qmedimg import ibm
    from qmedimg.evaluate import head_angles

    plans = []
    for point in points:
        entry = base[point.backend].entry
        if entry.kind != "ibm" or entry.local:
            plans.append({"point": list(point.key()), "qpu_seconds": 0.0})
            continue
        run = runs[point.run]
        backend = _backend_for(point, backends_file, entry)
        circuit, observables = backend.prepare(run.model.spec)
        angles = head_angles(run.model, run.dataset.test.images[:limit])
        weights = run.model.head.connector.weight.detach().double().numpy()
        values = ibm.parameter_values(circuit, run.model.spec, angles, weights)
        plan = ibm.plan(backend.entry, values, len(observables), backend.device, circuit)
        plans.append({"point": list(point.key()), "qpu_seconds": plan["estimated_qpu_seconds"], "plan": plan})
    out.mkdir(parents=True, exist_ok=True)
    total = sum(p["qpu_seconds"] for p in plans)
    (out / "dry-run.json").write_text(json.dumps({"grid": grid_id, "points": len(points),
                                                  "estimated_qpu_seconds": total, "plans": plans}, indent=2))
    return out / "dry-run.json"


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by curve: (run, device/backend, mitigation, shots, opt level); each curve runs over scale."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["run"], row["backend"], row["mitigation"], row["shots"], row["opt_level"]),
                          []).append(row)
    return groups


def curve(rows: list[dict], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(scales, mean, min, max) of ``column`` over repeats, sorted by scale (blank scale -> 1)."""
    by_scale: dict[float, list[float]] = {}
    for row in rows:
        by_scale.setdefault(float(row["scale"]) if row["scale"] else 1.0, []).append(float(row[column]))
    scales = np.array(sorted(by_scale))
    values = [by_scale[s] for s in scales]
    return (scales, np.array([np.mean(v) for v in values]), np.array([min(v) for v in values]),
            np.array([max(v) for v in values]))


def _label(key: tuple, many_runs: bool, rows: list[dict]) -> str:
    run, backend, mitigation, shots, level = key
    parts = [backend, mitigation, f"{shots} shots" if shots else "exact"]
    if level not in ("", "-1"):
        parts.append(f"opt {level}")
    if many_runs:
        parts.insert(0, f"{rows[0]['circuit']} ({'trained ' + rows[0]['trained_on']}) {Path(run).name}")
    return ", ".join(parts)


def summary(rows: list[dict], points: list[Point]) -> str:
    """summary.md: ideal accuracy, the scale at which each device loses 1/5/10 points, what each
    mitigation recovers and at what shot cost."""
    groups = _groups(rows)
    many = len({r["run"] for r in rows}) > 1
    lines = ["# Noise study", ""]
    for run in sorted({r["run"] for r in rows}):
        first = next(r for r in rows if r["run"] == run)
        lines.append(f"- `{run}` (circuit {first['circuit']}, trained on {first['trained_on']}): ideal test "
                     f"ACC {float(first['ideal_acc']):.4f}, AUC {float(first['ideal_auc']):.4f}")
    lines += ["", f"{len(rows)} grid points. ACC/AUC as MedMNIST computes them on the test split; mean |Δ| is the "
              "mean absolute difference of the head's expectation values from the ideal ones.", "",
              "## Noise scale at which accuracy drops", "",
              "| curve | ACC at lowest scale | −1 point | −5 points | −10 points |", "|---|---|---|---|---|"]
    for key, group in groups.items():
        scales, acc, _, _ = curve(group, "acc")
        ideal = float(group[0]["ideal_acc"])
        cells = []
        for drop in (0.01, 0.05, 0.10):
            hit = [s for s, a in zip(scales, acc) if ideal - a >= drop - 1e-12]
            cells.append(f"{hit[0]:g}" if hit else f"> {scales.max():g}")
        lines.append(f"| {_label(key, many, group)} | {acc[0]:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "## What mitigation recovers (at noise scale 1)", "",
              "| run / backend / shots / opt | mitigation | ACC | AUC | mean abs Δ | Δ vs none | shot cost |",
              "|---|---|---|---|---|---|---|"]
    for key, group in groups.items():
        at_one = [r for r in group if (float(r["scale"]) if r["scale"] else 1.0) == 1.0]
        if not at_one:
            continue
        base_key = (key[0], key[1], "none", key[3], key[4])
        base = [r for r in groups.get(base_key, []) if (float(r["scale"]) if r["scale"] else 1.0) == 1.0]
        acc = np.mean([float(r["acc"]) for r in at_one])
        auc = np.mean([float(r["auc"]) for r in at_one])
        err = np.mean([float(r["mean_abs_expectation_error"]) for r in at_one])
        versus = "—"
        if base and key[2] != "none":
            base_err = np.mean([float(r["mean_abs_expectation_error"]) for r in base])
            base_acc = np.mean([float(r["acc"]) for r in base])
            versus = f"ACC {acc - base_acc:+.4f}, mean abs Δ ×{err / base_err:.2f}" if base_err else "—"
        cost = at_one[0]["shot_cost"]
        where = f"{Path(key[0]).name} / {key[1]} / {key[3] or 'exact'} / opt {key[4]}"
        lines.append(f"| {where} | {key[2]} | {acc:.4f} | {auc:.4f} | {err:.4f} | {versus} | "
                     f"{cost if cost == 'exact' else cost + ' shots/image'} |")
    lines += ["", "ZNE costs 3 circuit executions per value (noise factors 1, 3, 5); readout mitigation uses the "
              "device's calibration and costs no extra shots here (on hardware, TREX adds calibration shots).",
              "Plots: `accuracy_vs_noise.png`, `expectation_error.png`" + (", `circuits.png`" if many else "") + "."]
    return "\n".join(lines) + "\n"
