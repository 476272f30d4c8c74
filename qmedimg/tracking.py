"""Log a finished command's output directory to MLflow, so runs, studies and grids can be browsed and
compared in an experiment tracker (``--track mlflow`` on train, evaluate, noise-study, compare, width-study).

Example::

    from qmedimg.tracking import track_directory
    run_id = track_directory("runs/breast", "train")                     # one MLflow run
    track_directory("runs/compare", "compare")                           # a parent run, a child per cell
    track_directory("runs/breast", "evaluate", evaluation="eval-fake_brisbane.json")

Everything is read from the files the command wrote, after it finished: nothing here runs during training,
so tracking costs no training time and a tracker that is down loses nothing (the files are the record).

What one directory gives:

- a **run directory** (it holds ``config.json``): params = the recipe of ``config.json`` flattened
  (``epochs``, ``lr``, ``dataset.task``, ``circuit.qubits``, ``versions.qiskit``, ...); metrics = every
  column of ``history.csv`` with ``step=epoch``, and every number of ``metrics.json`` (``test.acc``, ...);
  artifacts = its JSON/CSV/Markdown/PNG files and ``checkpoint.pt`` (not ``eval-*``: those are evaluate's; a
  file over 100 MB, such as a ResNet-18 baseline's checkpoint, is named in the tag ``qmedimg.not_copied``);
- a **study or grid folder** (noise-study, compare, width-study): one run with the folder's files as artifacts
  and one metric per number of each row of ``results.csv`` / ``comparison.csv`` / ``summary.csv``, named by
  the columns that tell the rows apart (``acc/fake_brisbane scale 0.5 readout_zne``; ``step`` = the row's
  repeat); and a **child run per run directory** inside it (``mlflow.parentRunId``), logged as above;
- an **evaluation** (``evaluation=`` the eval file in a run directory): a run of its own, tagged
  ``qmedimg.run_dir``, with the eval file's settings as params, its numbers as metrics, the eval JSON and NPZ.

``options`` (the command line's, as a dict) become ``cli.<name>`` params. Environment variables are never
read into a run (only ``MLFLOW_EXPERIMENT_NAME``, for the experiment's name; default ``qmedimg``). Where the
runs go is MLflow's own choice: ``$MLFLOW_TRACKING_URI``, else MLflow's default local store. While logging,
MLflow's HTTP retries and timeout are cut to seconds (unless set in the environment) and its log lines and
warnings are silenced; failures raise (the command line turns them into one warning line).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import time
import warnings
from pathlib import Path

from qmedimg.errors import QmedimgError

EXPERIMENT = "qmedimg"
INSTALL = 'pip install "qmedimg[track]"'
ARTIFACT_SUFFIXES = (".json", ".csv", ".md", ".png", ".pt")
NOT_ARTIFACTS = ("eval-", "ledger-", ".")  # evaluate's files (its own runs), QPU job ledgers, lock files
ROW_TABLES = ("results.csv", "comparison.csv", "summary.csv")
ROW_KEYS = ("dataset", "model", "run", "circuit", "qubits", "layers", "seed", "trained_on", "training", "backend",
            "device", "scale", "mitigation", "shots", "opt_level", "simulator")
NAMED_KEYS = ("qubits", "layers", "seed", "scale", "shots", "opt_level")
ROW_METRICS = ("acc", "auc", "f1", "precision", "recall", "sensitivity", "specificity", "ideal_acc", "ideal_auc",
               "mean_abs_expectation_error", "estimated_fidelity", "effective_dimension", "acc_statistical_error",
               "auc_statistical_error")
EVAL_METRICS = ("test", "ideal_test", "test_intervals", "test_statistical_error", "mean_abs_expectation_error",
                "images", "setup_s", "wall_time_s", "images_per_s", "qpu_seconds")
EVAL_NOT_PARAMS = EVAL_METRICS + ("per_image", "jobs")
HTTP_KNOBS = (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
              ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"), ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"))
QUIET_LOGGERS = ("mlflow", "urllib3", "alembic", "sqlalchemy", "requests")
MAX_PARAM = 1000  # characters of one param value (MLflow's own limit is 6000)
BATCH = 100  # params per log_batch call (MLflow's limit; metrics go 1000 at a time)
MAX_ARTIFACT_BYTES = 100 * 2**20  # a larger file (compare's ResNet-18 checkpoints, ~214 MB) is named, not copied


def require_mlflow() -> None:
    """Raise one line naming the extra to install when MLflow cannot be imported (checked before a command runs)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise QmedimgError(f"--track mlflow needs MLflow, which is not installed here: {INSTALL}") from None


def tracking_uri() -> str:
    """Where runs go: ``$MLFLOW_TRACKING_URI``, else MLflow's default local store."""
    import mlflow

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def track_directory(directory: str | Path, command: str, options: dict | None = None, *,
                    evaluation: str | None = None, experiment: str | None = None) -> str:
    """Log ``directory`` (what ``command`` wrote) to MLflow and return the (parent) MLflow run id.

    ``evaluation``: for ``command="evaluate"``, the eval file's name inside the run directory. ``experiment``:
    default ``$MLFLOW_EXPERIMENT_NAME`` or ``qmedimg``. Raises whatever MLflow raises (after marking the runs
    it had started as failed)."""
    from mlflow.tracking import MlflowClient

    folder = Path(directory).resolve()
    if not folder.is_dir():
        raise QmedimgError(f"{directory}: not a directory")
    cli = {f"cli.{k}": _text(v) for k, v in sorted((options or {}).items())}
    started: list[str] = []
    with _quiet():
        client = MlflowClient()
        try:
            experiment_id = _experiment(client, experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
            tags = {"qmedimg.command": command, "mlflow.source.name": f"qmedimg {command}"}
            if evaluation:
                return _log_evaluation(client, experiment_id, folder, evaluation, cli, tags, started)
            return _log_folder(client, experiment_id, folder, cli, tags, started)
        except BaseException:
            for run_id in started:
                with contextlib.suppress(Exception):
                    client.set_terminated(run_id, "FAILED")
            raise


# ------------------------------------------------------------------------------------------------ one run each


def _log_folder(client, experiment_id: str, folder: Path, cli: dict, tags: dict, started: list) -> str:
    """A run directory as one run; a study or grid folder as a run with a child per run directory inside."""
    files, cells = _walk(folder)
    tags = {**tags, "qmedimg.directory": str(folder)}
    if (folder / "config.json").is_file():
        return _log_cell(client, experiment_id, folder, folder.name, cli, tags, started, files)
    metrics = [m for table in files if table.name in ROW_TABLES for m in _row_metrics(table, folder)]
    parent = _run(client, experiment_id, folder.name, tags, cli, metrics, files, folder, started)
    for cell in cells:
        name = str(cell.relative_to(folder))
        cell_files, _ = _walk(cell)
        _log_cell(client, experiment_id, cell, name, {}, {**tags, "qmedimg.directory": str(cell),
                                                         "mlflow.parentRunId": parent}, started, cell_files)
    return parent


def _log_cell(client, experiment_id, cell: Path, name: str, cli: dict, tags: dict, started: list, files) -> str:
    """One trained run: its recipe as params, history.csv per epoch and metrics.json as metrics, its files."""
    config = _read_json(cell / "config.json")
    recipe = {**config.get("config", {}), **{k: v for k, v in config.items() if k not in ("config", "schema")}}
    params = {**cli, **{k: _text(v) for k, v in _flatten(recipe).items() if not k.endswith("qasm")}}
    metrics = _history(cell / "history.csv") + _numbers(_read_json(cell / "metrics.json"), step=0)
    metrics += [m for table in files if table.name in ROW_TABLES for m in _row_metrics(table, cell)]
    return _run(client, experiment_id, name, tags, params, metrics, files, cell, started)


def _log_evaluation(client, experiment_id, folder: Path, evaluation: str, cli: dict, tags: dict, started) -> str:
    """An eval file as a run of its own, tagged with its run directory."""
    path = folder / evaluation
    result = _read_json(path)
    params = {**cli, **{k: _text(v) for k, v in _flatten({k: v for k, v in result.items()
                                                         if k not in EVAL_NOT_PARAMS}).items()}}
    metrics = _numbers({k: v for k, v in result.items() if k in EVAL_METRICS}, step=0)
    files = [p for p in (path, path.with_suffix(".npz")) if p.is_file()]
    tags = {**tags, "qmedimg.run_dir": str(folder), "qmedimg.evaluation": evaluation}
    return _run(client, experiment_id, f"{folder.name} {path.stem}", tags, params, metrics, files, folder, started)


def _run(client, experiment_id, name, tags, params, metrics, files, root: Path, started: list) -> str:
    """Create a run, log params, metrics and artifacts in batches, and mark it finished."""
    from mlflow.entities import Param, RunTag

    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    started.append(run_id)
    first: dict = {}
    for metric in metrics:  # one value per name and step (rows no key column tells apart: the first)
        first.setdefault((metric.key, metric.step), metric)
    metrics = list(first.values())
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), BATCH):
        client.log_batch(run_id, params=items[i:i + BATCH])
    for i in range(0, len(metrics), 10 * BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + 10 * BATCH])
    copied = [path for path in files if path.stat().st_size <= MAX_ARTIFACT_BYTES]
    for path in copied:
        where = path.parent.relative_to(root).as_posix()
        client.log_artifact(run_id, str(path), None if where == "." else where)
    tags = [RunTag("qmedimg.artifacts", str(len(copied)))]
    if len(copied) < len(files):  # too large to copy into the tracker: where they are instead
        tags.append(RunTag("qmedimg.not_copied", "; ".join(f"{path.resolve()} ({path.stat().st_size / 2**20:.0f} MB)"
                                                           for path in files if path not in copied)[:MAX_PARAM]))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id)
    started.remove(run_id)
    return run_id


# ------------------------------------------------------------------------------------------- reading the files


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(the files of ``folder`` and of its sub-folders that are not run directories; the run directories in it)."""
    files, cells = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if (path / "config.json").is_file():
                cells.append(path)
            else:
                more, inner = _walk(path)
                files += more
                cells += inner
        elif path.suffix in ARTIFACT_SUFFIXES and not path.name.startswith(NOT_ARTIFACTS):
            files.append(path)
    return files, cells


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _history(path: Path) -> list:
    """Every column of history.csv as a metric with ``step`` = its epoch."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [m for row in rows for k, v in row.items() if k != "epoch"
            for m in _metric(k, v, int(float(row["epoch"])))]


def _row_metrics(table: Path, root: Path) -> list:
    """One metric per number of each row: ``<metric>/<the values of the columns that vary between rows>``."""
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in ROW_KEYS if rows and k in rows[0] and len({r[k] for r in rows}) > 1]
    where = table.parent.relative_to(root).as_posix()
    prefix = "" if where == "." else f"{where}/"
    found = []
    for row in rows:
        label = " ".join(_label(k, row[k]) for k in keys)
        step = int(float(row.get("repeat") or 0))
        for column in [c for m in ROW_METRICS for c in (m, f"{m}_std") if c in row]:
            found += _metric(f"{prefix}{column}" + (f"/{label}" if label else ""), row[column], step)
    return found


def _label(column: str, value: str) -> str:
    """How a row's value appears in a metric's name: a number with its column's name (``scale 0.5``), a run by its
    folder's name, other text (a backend, a mitigation, a model) as it is."""
    if column == "run":
        return Path(value).name
    return f"{column} {value or 'none'}" if column in NAMED_KEYS else value


def _numbers(tree: dict, step: int) -> list:
    """Every number in a JSON tree (lists of numbers too) as a metric named by its path (``test.acc``)."""
    return [m for k, v in _flatten(tree, lists=True).items() for m in _metric(k, v, step)]


def _flatten(tree: dict, prefix: str = "", lists: bool = False) -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}.", lists))
        elif lists and isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            out.update({f"{name}.{i}": v for i, v in enumerate(value)})
        else:
            out[name] = value
    return out


def _metric(name: str, value, step: int) -> list:
    """[an MLflow Metric] of a number (or of text that reads as one), else []."""
    from mlflow.entities import Metric

    if isinstance(value, bool) or value is None or value == "":
        return []
    try:
        number = float(value)
    except (TypeError, ValueError):
        return []
    if math.isinf(number):
        return []
    clean = "/".join(part for part in re.sub(r"[^\w./\- :]", "_", name).split("/") if part not in ("", ".", ".."))
    return [Metric(clean, number, int(time.time() * 1000), step)]


def _text(value) -> str:
    """A param value: text as is, anything else as JSON; cut to MAX_PARAM characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM else text[:MAX_PARAM - 1] + "…"


# ---------------------------------------------------------------------------------------- talking to MLflow


def _experiment(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created by another process meanwhile
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextlib.contextmanager
def _quiet():
    """For the length of the logging: MLflow's HTTP retries and timeout in seconds (unless set), no printed run
    URLs, no log lines or warnings from MLflow and its HTTP/database libraries; all restored after."""
    saved = {name: os.environ.get(name) for name, _ in HTTP_KNOBS}
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for name, value in HTTP_KNOBS:
            os.environ.setdefault(name, value)
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
