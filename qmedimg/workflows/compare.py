"""Is the quantum head worth it? Train the hybrid and its classical baselines on the same data, seeds
and machine, and write the seed papers' table.

Example::

    from qmedimg.workflows.compare import compare
    out = compare({"dataset": "breastmnist", "data_root": "../shared/data"}, seeds=[0, 1, 2],
                  models=["hybrid", "classical", "linear", "resnet18"], out="runs/compare")
    # out / "comparison.md", "comparison.csv", "runs.csv", "learning_curves.png", "confusion-<model>.png"

Models: ``hybrid`` (one per ``circuits`` entry), ``classical`` (the same backbone with a classical
head with the nearest number of trainable parameters: equal for ``sel``/``ring``, 24 vs 22 for
``fqa``), ``linear`` (the same backbone, a plain linear
head), ``resnet18`` (adapted to 28×28 as MedMNIST v2's benchmark), ``vgg16`` (64×64 and up). Every
model gets the same recipe; each run is a normal run directory, so an interrupted comparison
continues where it stopped. A run directory is reused (finished) or resumed (interrupted) only if
its ``config.json`` holds the very config this comparison would train (recipe, data options, seed);
one made with other settings is refused before anything trains, naming the differing keys — never
overwritten: choose another ``out`` or move it away.

Next to accuracy the table says whether each model's head is used: the effective dimension of the
head's outputs on the test split and the circuit weights with zero gradient (``head_usage`` of each
run's metrics.json; measured on the kept weights for a reused run from before it was recorded,
without writing into that run). Multi-class data and wide heads (``qubits=8``: 8 outputs) work as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from qmedimg.errors import QmedimgError
from qmedimg.files import read_json
from qmedimg.model import head_usage
from qmedimg.report.comparison import write_comparison
from qmedimg.rundir import build_model, load_data, load_run, make_config, read_record
from qmedimg.workflows.train import resume, train

MODELS = ("hybrid", "classical", "linear", "resnet18", "vgg16")
# short schedules: the moving average's BatchNorm statistics lag its weights (README, Known issues)
COMPARE_DEFAULTS = {"epochs": 10, "ema_decay": 0.0}


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise QmedimgError(f"--seeds: '{text}' is not a comma-separated list of integers like 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise QmedimgError(f"--seeds: '{text}' repeats a seed")
    return seeds


def _plan(models: list[str], circuits: list[str]) -> list[tuple[str, dict]]:
    """(label, train-config fields) per model."""
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise QmedimgError(f"--models: unknown '{','.join(unknown) or ''}'; valid: {', '.join(MODELS)}")
    plan = []
    for model in models:
        if model == "hybrid":
            plan += [(f"hybrid-{c}" if len(circuits) > 1 else "hybrid", {"circuit": c}) for c in circuits]
        elif model in ("classical", "linear"):
            plan.append((model, {"head": model, "circuit": circuits[0]}))
        else:
            plan.append((model, {"model": model}))
    return plan


def _differences(run: Path, config) -> list[str]:
    """'key: recorded -> now' for every config key (but ``out``) in which ``run`` differs from ``config``."""
    recorded = read_record(run)["config"]
    wanted = json.loads(json.dumps(config.model_dump()))
    keys = sorted((set(recorded) | set(wanted)) - {"out"})
    return [f"{k}: {recorded.get(k, '(absent)')!r} -> {wanted.get(k, '(absent)')!r}"
            for k in keys if recorded.get(k, "(absent)") != wanted.get(k, "(absent)")]


def _test_head_usage(run: Path, metrics: dict) -> dict | None:
    """The head's usage on the test split as the run recorded it; for a run from before qmedimg
    recorded it, measured now on its kept weights (the run directory is left untouched); None for
    networks without a bounded head (a plain linear head, a baseline CNN)."""
    if "head_usage" in metrics:
        return metrics["head_usage"]["test"]
    if metrics.get("model", "hybrid") != "hybrid" or metrics.get("head") == "linear":
        return None
    loaded = load_run(run)
    return head_usage(loaded.model, loaded.dataset.test.images)


def compare(data: dict, *, seeds: list[int], models: list[str], circuits: list[str] = ("sel",),
            out: str | Path, progress: bool = True, **recipe) -> Path:
    """Train every model for every seed (or reuse finished runs, resume interrupted ones, when their
    config is this one) and write the comparison."""
    if not seeds:
        raise QmedimgError("--seeds: give at least one seed, e.g. 0,1,2")
    plan = _plan(list(models), list(circuits))
    out = Path(out)
    configs = []
    for label, fields in plan:
        for seed in seeds:
            fields_all = {**data, **COMPARE_DEFAULTS, **{k: v for k, v in recipe.items() if v is not None},
                          **fields, "seed": seed, "out": str(out / f"{label}-seed{seed}")}
            configs.append((label, seed, make_config(**fields_all)))
    dataset = load_data(configs[0][2])
    for _, _, config in configs[:: len(seeds)]:  # every model can take this data: checked before any training
        build_model(config, dataset)
    for _, _, config in configs:  # a directory made with other settings is refused before anything trains
        run = Path(config.out)
        if (run / "config.json").is_file() and (changed := _differences(run, config)):
            raise QmedimgError(f"{run}: holds a run made with other settings ({'; '.join(changed)}); compare "
                               "reuses a run only if its config matches: choose another --out or move it away")
    records = []
    for label, seed, config in configs:
        run = Path(config.out)
        if (run / "metrics.json").is_file():
            metrics = read_json(run / "metrics.json")
        elif (run / "config.json").is_file():  # interrupted, even before its first epoch ended
            metrics = resume(run, progress=progress)
        else:
            metrics = train(config, progress=progress)
        with open(run / "history.csv", newline="") as handle:
            history = list(csv.DictReader(handle))
        records.append({"model": label, "seed": seed, "run": str(run), "metrics": metrics, "history": history,
                        "head_usage": _test_head_usage(run, metrics)})
    write_comparison(out, records, seeds, data)
    return out
