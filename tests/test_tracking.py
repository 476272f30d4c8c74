"""`--track mlflow`, as a user meets it: train, evaluate, noise-study, compare and width-study log their
parameters, per-epoch metrics, study rows and files to a real `mlflow server` this file starts on 127.0.0.1,
read back through MLflow's client; a grid is a parent run with a child per cell; a tracker that is down is
one warning and the run's files are all there; MLflow missing is one line before anything runs; a token in
the environment is stored nowhere."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from qmedimg.cli import main  # noqa: E402
from qmedimg.cli.parser import build_parser  # noqa: E402
from qmedimg.tracking import HTTP_KNOBS, track_directory  # noqa: E402
from support import one_line_error  # noqa: E402

SECRET = "qmedimg-tracking-test-token-5d2f81c4"  # must appear in no param, tag, metric name or stored file
TINY = ["--dataset", "synthetic", "--limit", "32", "--quiet", "--threads", "1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` (SQLite store, artifacts served through it) on a free port of 127.0.0.1."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'store.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items() if k != "QISKIT_IBM_TOKEN"})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield SimpleNamespace(uri=uri, folder=folder)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def client(server, monkeypatch) -> MlflowClient:
    """The server as the tracking URI of this test's commands, a token in the environment, and a client to read."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("QISKIT_IBM_TOKEN", SECRET)
    return MlflowClient(server.uri)


def tracked_run(capsys, client: MlflowClient):
    """The MLflow run the command just said it logged (its one `tracked in MLflow` line)."""
    out, err = capsys.readouterr()
    assert "warning" not in err, err
    line = [text for text in out.splitlines() if text.startswith("tracked in MLflow")]
    assert len(line) == 1, out
    return client.get_run(line[0].rsplit("run ", 1)[1].strip())


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def children(client: MlflowClient, parent) -> dict:
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return {run.info.run_name: run for run in runs}


def test_train_logs_its_recipe_every_epoch_its_metrics_and_the_model(client, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "3", "--out", str(out), "--track", "mlflow"]) == 0
    run = tracked_run(capsys, client)
    params, metrics = run.data.params, json.loads((out / "metrics.json").read_text())
    assert (params["epochs"], params["cli.epochs"], params["dataset.task"], params["circuit.qubits"]) == (
        "3", "3", "binary-class", "4")
    with open(out / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    logged = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in logged] == [(int(r["epoch"]), float(r["val_loss"])) for r in history]
    assert (run.data.metrics["test.acc"], run.data.metrics["test.auc"]) == (metrics["test"]["acc"], metrics["test"]["auc"])
    assert {"checkpoint.pt", "metrics.json", "history.csv", "config.json", "learning_curves.png"} <= artifacts(
        client, run.info.run_id)
    copy = client.download_artifacts(run.info.run_id, "checkpoint.pt", str(tmp_path))
    assert Path(copy).read_bytes() == (out / "checkpoint.pt").read_bytes()
    assert run.data.tags["qmedimg.command"] == "train" and run.info.status == "FINISHED"


def test_evaluate_logs_a_run_of_its_own_tagged_with_the_run_directory(client, tiny_run_copy, capsys):
    assert main(["evaluate", str(tiny_run_copy), "--quiet", "--threads", "1", "--track", "mlflow"]) == 0
    run = tracked_run(capsys, client)
    result = json.loads((tiny_run_copy / "eval-exact.json").read_text())
    assert run.data.tags["qmedimg.run_dir"] == str(tiny_run_copy.resolve())
    assert run.data.tags["qmedimg.command"] == "evaluate" and run.data.params["backend"] == "exact"
    assert run.data.metrics["test.acc"] == result["test"]["acc"]
    assert artifacts(client, run.info.run_id) == {"eval-exact.json", "eval-exact.npz"}


def test_noise_study_logs_each_row_and_its_files(client, tiny_run_copy, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--scales", "0,1", "--mitigation",
                 "none", "--test-limit", "4", "--out", str(out), "--quiet", "--threads", "1", "--track", "mlflow"]) == 0
    run = tracked_run(capsys, client)
    with open(out / "results.csv", newline="") as handle:
        rows = {float(r["scale"]): r for r in csv.DictReader(handle)}
    for scale in (0.0, 1.0):
        assert run.data.metrics[f"acc/scale {scale}"] == float(rows[scale]["acc"])
    assert run.data.params["cli.scales"] == "0,1"
    assert {"results.csv", "summary.md", "accuracy_vs_noise.png"} <= artifacts(client, run.info.run_id)


def test_compare_logs_a_parent_run_with_a_child_per_cell(client, tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["compare", *TINY, "--epochs", "1", "--seeds", "0,1", "--models", "hybrid,linear", "--out", str(out),
                 "--track", "mlflow"]) == 0
    parent = tracked_run(capsys, client)
    cells = children(client, parent)
    assert set(cells) == {"hybrid-seed0", "hybrid-seed1", "linear-seed0", "linear-seed1"}
    for name, run in cells.items():
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 1, name
        assert "checkpoint.pt" in artifacts(client, run.info.run_id), name
        assert run.data.params["seed"] == name[-1]
    assert {"comparison.csv", "comparison.md", "runs.csv"} <= artifacts(client, parent.info.run_id)
    assert "acc/hybrid" in parent.data.metrics and "mlflow.parentRunId" not in parent.data.tags


def test_width_study_logs_a_parent_run_with_a_child_per_head(client, tmp_path, capsys):
    out = tmp_path / "width"
    assert main(["width-study", *TINY, "--qubits", "4", "--layers", "1", "--backend", "fake_manila", "--scales",
                 "0,1", "--mitigation", "none", "--epochs", "1", "--test-limit", "4", "--out", str(out),
                 "--track", "mlflow"]) == 0
    parent = tracked_run(capsys, client)
    cells = children(client, parent)
    assert set(cells) == {"runs/q4-l1-s0"}
    assert {"noise-study/results.csv", "checkpoint.pt"} <= artifacts(client, cells["runs/q4-l1-s0"].info.run_id)
    assert {"results.csv", "summary.md", "accuracy_lost.png"} <= artifacts(client, parent.info.run_id)
    assert "acc/scale 1.0" in parent.data.metrics


def test_a_token_in_the_environment_is_stored_nowhere(client, server, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--track", "mlflow"]) == 0
    run = tracked_run(capsys, client)
    said = json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)])
    assert SECRET not in said
    stored = [p for p in server.folder.rglob("*") if p.is_file() and p.name != "server.log"]
    assert any(p.suffix == ".pt" for p in stored)  # the artifacts are in the scanned folder
    assert [p for p in stored if SECRET.encode() in p.read_bytes()] == []


def test_a_tracker_that_is_down_is_one_warning_and_the_run_and_its_files_are_kept(tmp_path, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name, _ in HTTP_KNOBS:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    start = time.monotonic()
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--track", "mlflow"]) == 0
    assert time.monotonic() - start < 40
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"qmedimg: warning: tracking to {uri} failed: "), err
    assert err.rstrip().endswith(f"the run's files are in {out}")
    assert {"config.json", "metrics.json", "history.csv", "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    assert not any(name in os.environ for name, _ in HTTP_KNOBS)  # MLflow's knobs restored


def test_mlflow_missing_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails as if not installed
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--track", "mlflow"]) == 2
    assert 'pip install "qmedimg[track]"' in one_line_error(capsys)
    assert not out.exists()


def test_track_is_an_option_of_the_five_commands_that_write_results():
    commands = build_parser()._subparsers._group_actions[0].choices
    with_track = {name: a for name, sub in commands.items() for a in sub._actions if "--track" in a.option_strings}
    assert set(with_track) == {"train", "evaluate", "noise-study", "compare", "width-study"}
    assert {tuple(a.choices) for a in with_track.values()} == {("mlflow",)}


def test_the_python_api_logs_a_finished_run_to_mlflows_own_local_store(tiny_run, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's default store is relative to the working directory
    run_id = track_directory(os.path.relpath(tiny_run), "train")  # a relative path, as a user types it
    run = MlflowClient(mlflow.get_tracking_uri()).get_run(run_id)
    assert run.data.params["epochs"] == "2" and run.data.tags["qmedimg.directory"] == str(tiny_run.resolve())
    assert list(tmp_path.iterdir())  # the store was made here, embedded: nothing was started


def test_a_file_too_large_to_copy_is_named_not_copied(tiny_run, tmp_path, monkeypatch):
    import qmedimg.tracking as tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    size = (tiny_run / "checkpoint.pt").stat().st_size
    monkeypatch.setattr(tracking, "MAX_ARTIFACT_BYTES", size - 1)  # the checkpoint is the largest file of the run
    run_id = track_directory(tiny_run, "train")
    client = MlflowClient(mlflow.get_tracking_uri())
    assert "checkpoint.pt" not in artifacts(client, run_id) and "metrics.json" in artifacts(client, run_id)
    assert str((tiny_run / "checkpoint.pt").resolve()) in client.get_run(run_id).data.tags["qmedimg.not_copied"]
