"""Is the quantum head worth it? Train the hybrid and its classical baselines on the same data, seeds
and machine, and write the seed papers' table.

Example::

    from qmedimg.workflows.compare import compare
    out = compare({"dataset": "breastmnist", "data_root": "../shared/data"}, seeds=[0, 1, 2],
                  models=["hybrid", "classical", "linear", "resnet18"], out="runs/compare")
    # out / "comparison.md", "comparison.csv", "runs.csv", "paired.csv", "learning_curves.png", "confusion-<model>.png"
    compare([{"dataset": "breastmnist"}, {"dataset": "pneumoniamnist"}], seeds=[0, 1, 2], models=["hybrid"],
            out="runs/seeds", executor=get_executor("ray"))
    # out / "breastmnist" / "comparison.md", ..., out / "summary.md" (one table across datasets)

Models: ``hybrid`` (one per ``circuits`` entry), ``classical`` (the same backbone with a classical
head with the nearest number of trainable parameters: equal for ``sel``/``ring``, 24 vs 22 for
``fqa``), ``linear`` (the same backbone, a plain linear
head), ``resnet18`` (adapted to 28×28 as MedMNIST v2's benchmark), ``vgg16`` (64×64 and up). Every
model gets the same recipe; each run is a normal run directory, so an interrupted comparison
continues where it stopped. A run directory is reused (finished) or resumed (interrupted) only if
its ``config.json`` holds the very config this comparison would train (recipe, data options, seed);
one made with other settings is refused before anything trains, naming the differing keys — never
overwritten: choose another ``out`` or move it away.

Every (dataset, model, seed) is one cell of a grid (:mod:`qmedimg.executor`): run one after another
here, or as Ray tasks side by side, each with the same number of torch threads (``threads``; the same
seeds and threads give the same metrics wherever a cell ran). A cell that fails is reported by name
after the others finish (:class:`~qmedimg.errors.GridIncomplete`); the tables of the datasets whose
cells all finished are written; running the command again reuses the finished runs.

Each cell keeps its run's per-image outputs on the test split (:data:`PER_IMAGE_FILE` in the run directory,
written when the cell trains or resumes it), and the comparison pairs the hybrid with each baseline on the same
test images: differences of ACC and AUC with paired bootstrap intervals, per seed and pooled, and DeLong's test
of the AUC difference (:mod:`qmedimg.report.paired`), in paired.csv and comparison.md (summary.md: whether each
is distinguishable from zero). A run reused from before qmedimg kept these files is left untouched, and
comparison.md says in one line that the paired comparison is not available.

Next to accuracy the table says whether each model's head is used: the effective dimension of the
head's outputs on the test split and the circuit weights with zero gradient (``head_usage`` of each
run's metrics.json; measured on the kept weights for a reused run from before it was recorded,
without writing into that run). Multi-class data and wide heads (``qubits=8``: 8 outputs) work as is.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from qmedimg.errors import QmedimgError
from qmedimg.executor import Executor, LocalExecutor, Resources, failure_report
from qmedimg.files import read_json
from qmedimg.inference import Inference
from qmedimg.model import head_usage
from qmedimg.report.comparison import write_comparison, write_summary
from qmedimg.report.paired import paired_comparison
from qmedimg.rundir import (TrainConfig, build_model, check_for_task, config_differences, load_data, load_run,
                            make_config)
from qmedimg.workflows.grid_plan import PlannedCell, plan_text, time_training
from qmedimg.workflows.per_image import per_image, read_per_image, write_per_image
from qmedimg.workflows.train import train_or_resume

MODELS = ("hybrid", "classical", "linear", "resnet18", "vgg16")
PER_IMAGE_FILE = "test-per-image.npz"
"""Each cell's per-image outputs on the test split, in its run directory (:mod:`qmedimg.workflows.per_image`)."""
# short schedules: the moving average's BatchNorm statistics lag its weights (docs/known-issues.md)
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


@dataclass(frozen=True)
class CompareCell:
    """One training run of the comparison: picklable, so it runs wherever the executor sends it."""

    dataset: str
    label: str
    seed: int
    config: TrainConfig
    device: str = "cpu"

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.label}-seed{self.seed}"


def run_compare_cell(cell: CompareCell, progress: bool = False) -> dict:
    """Train, resume or reuse the cell's run; its metrics, history, head usage and per-image outputs on the test
    split (``per_image``: :data:`PER_IMAGE_FILE`, written when the cell trains or resumes the run; None for a run
    reused from before qmedimg wrote it, which is left untouched)."""
    run = Path(cell.config.out)
    reused = (run / "metrics.json").is_file()
    metrics = train_or_resume(cell.config, progress=progress, device=cell.device)
    if not reused:
        write_per_image(run / PER_IMAGE_FILE, outputs_on_test_split(run))
    with open(run / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    arrays = read_per_image(run / PER_IMAGE_FILE) if (run / PER_IMAGE_FILE).is_file() else None
    return {"metrics": metrics, "history": history, "head_usage": _test_head_usage(run, metrics), "per_image": arrays}


def outputs_on_test_split(run_dir: str | Path) -> dict:
    """A trained run's per-image outputs on its own test split (the exact head, at the run's threshold: the
    probabilities and decisions its metrics.json's ``test`` metrics come from), with the images' digest."""
    run = load_run(run_dir)
    test = run.dataset.test
    inference = Inference(run, test.images)
    return per_image(inference, None, test.labels, values=True, images=test.images)


def dataset_name(data: dict) -> str:
    """What a comparison calls a dataset: its ``name`` if given (e.g. two subsets of one flag), else
    its flag, or its file's name without .npz."""
    return str(data.get("name") or data.get("dataset") or Path(str(data.get("data_file", "data"))).stem)


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


def plan_compare(data: dict | list[dict], *, seeds: list[int], models: list[str], circuits=("sel",),
                 out: str | Path, **recipe) -> list[CompareCell]:
    """Every cell of the comparison, checked (data, models, run directories already there) before
    anything is written. Several datasets: each in ``out/<dataset>/``."""
    if not seeds:
        raise QmedimgError("--seeds: give at least one seed, e.g. 0,1,2")
    datasets = [data] if isinstance(data, dict) else list(data)
    names = [dataset_name(d) for d in datasets]
    if not datasets or len(set(names)) != len(names):
        raise QmedimgError(f"--datasets: give each dataset once, or a distinct 'name' to each (got "
                           f"{', '.join(names) or 'none'})")
    plan = _plan(list(models), list(circuits))
    cells = []
    for name, options in zip(names, datasets):
        folder = Path(out) / name if len(datasets) > 1 else Path(out)
        mine = []
        for label, fields in plan:
            for seed in seeds:
                config = make_config(**{**{k: v for k, v in options.items() if k != "name"}, **COMPARE_DEFAULTS,
                                        **{k: v for k, v in recipe.items() if v is not None},
                                        **fields, "seed": seed, "out": str(folder / f"{label}-seed{seed}")})
                mine.append(CompareCell(name, label, seed, config))
        dataset = load_data(mine[0].config)
        check_for_task(mine[0].config, dataset)  # e.g. a threshold rule on a multi-class set: before any training
        for cell in mine[:: len(seeds)]:  # every model can take this data: checked before any training
            build_model(cell.config, dataset)
        cells += mine
    for cell in cells:  # a directory made with other settings is refused before anything trains
        run = Path(cell.config.out)
        if (run / "config.json").is_file() and (changed := config_differences(run, cell.config)):
            raise QmedimgError(f"{run}: holds a run made with other settings ({'; '.join(changed)}); compare "
                               "reuses a run only if its config matches: choose another --out or move it away")
    return cells


def compare(data: dict | list[dict], *, seeds: list[int], models: list[str], circuits=("sel",),
            out: str | Path, progress: bool = True, executor: Executor | None = None, threads: int | None = None,
            device: str = "auto", dry_run: bool = False, **recipe) -> Path | str:
    """Train every model for every seed on every dataset (or reuse finished runs, resume interrupted
    ones, when their config is this one) and write the comparison; with ``dry_run`` nothing runs and
    the plan (cells, resources, estimated wall time) is returned as text. ``device``: where the networks
    train (``auto``: a GPU per cell when the executor has GPUs); ``threads``: torch threads per cell."""
    executor = executor or LocalExecutor()
    cells = plan_compare(data, seeds=seeds, models=models, circuits=circuits, out=out, **recipe)
    todo = [i for i, cell in enumerate(cells) if not (Path(cell.config.out) / "metrics.json").is_file()]
    results, failed = {}, []
    if todo or dry_run:  # Ray starts or joins here (or fails in seconds), before anything trains
        placed, gpus = executor.place(device)
        if recipe.get("amp") and not placed.startswith("cuda"):
            raise QmedimgError(f"--amp needs --device cuda (float16 autocast on a GPU); the cells would run on {placed}")
        resources = executor.resources(threads, gpus)  # refused here if no node can take a cell
        if dry_run:
            return _dry_run(cells, resources, executor, executor.workers(resources))
        cell_function = partial(run_compare_cell, progress=progress and executor.in_process and sys.stderr.isatty())
        executor.start(cell_function)
        running = [replace(cells[i], device=placed) for i in todo]
        for outcome in executor.map(cell_function, running, names=[c.name for c in running], resources=resources,
                                    progress=progress, desc="compare"):
            if outcome.ok:
                results[todo[outcome.index]] = outcome.value
            else:
                failed.append(outcome)
    for i, cell in enumerate(cells):  # finished before: read here, no executor needed
        if i not in todo:
            results[i] = run_compare_cell(cell)
    out = Path(out)
    tables, paired = {}, {}
    for name in dict.fromkeys(c.dataset for c in cells):
        mine = [(i, c) for i, c in enumerate(cells) if c.dataset == name]
        if any(i not in results for i, _ in mine):
            continue
        records = [{"model": c.label, "seed": c.seed, "run": c.config.out, **results[i]} for i, c in mine]
        folder = Path(mine[0][1].config.out).parent
        paired[name] = paired_comparison(records)  # seeded: the same runs give the same intervals
        tables[name] = write_comparison(folder, records, seeds, _data_of(mine[0][1].config), paired[name])
    if len({c.dataset for c in cells}) > 1 and tables:
        write_summary(out, tables, seeds, paired)
    if failed:
        raise failure_report(failed, len(cells), "The finished runs are kept: run the same command again to "
                             "retry the failed cells")
    return out


def _data_of(config: TrainConfig) -> dict:
    return {k: v for k, v in config.model_dump().items()
            if k in ("dataset", "data_file", "data_root", "size", "classes", "limit")}


def _dry_run(cells: list[CompareCell], resources: Resources, executor: Executor, workers: int) -> str:
    """The plan: each cell's state and time (measured from a finished run of the same dataset and
    model when there is one, else timed now), and the wall time on 1..16 workers."""
    times, planned, datasets = {}, [], {}
    for cell in cells:
        finished = Path(cell.config.out) / "metrics.json"
        key = (cell.dataset, cell.label)
        if key not in times and finished.is_file() and read_json(finished).get("wall_time_s"):
            times[key] = (read_json(finished)["wall_time_s"], "measured")
    for cell in cells:
        run, key = Path(cell.config.out), (cell.dataset, cell.label)
        state = ("finished" if (run / "metrics.json").is_file() else
                 "interrupted" if (run / "config.json").is_file() else "new")
        if key not in times:
            if cell.dataset not in datasets:
                datasets[cell.dataset] = load_data(cell.config)
            times[key] = (time_training(cell.config, datasets[cell.dataset], resources.cpus), "timed")
        planned.append(PlannedCell(cell.name, state, *times[key]))
    return plan_text("compare", planned, resources, executor.name, workers)
