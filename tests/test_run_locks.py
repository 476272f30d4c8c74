"""One writer per output folder: two commands writing one run directory at once never both succeed,
and never leave a directory whose files come from different runs."""

import json
import subprocess
import sys
import time

import torch

from qmedimg.cli import main
from qmedimg.files import LOCK, exclusive

# imports first, then both wait for the same go-file: the two trains start within milliseconds
TRAIN = """
import sys, time, pathlib
from qmedimg.cli import main
import qmedimg.workflows.train, qmedimg.rundir
go = pathlib.Path(sys.argv[1])
go.with_suffix("." + sys.argv[2]).touch()
while not go.exists():
    time.sleep(0.002)
raise SystemExit(main(sys.argv[3:]))
"""


def test_two_trains_started_together_into_one_folder_one_wins_whole(tmp_path):
    out = tmp_path / "run"
    settings = [("7", "1"), ("0", "4")]  # (seed, epochs): a mixed directory would show it
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, str(go), seed, "train", "--dataset", "synthetic",
                               "--limit", "48", "--batch-size", "16", "--seed", seed, "--epochs", epochs,
                               "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for seed, epochs in settings]
    deadline = time.monotonic() + 120
    while not all(go.with_suffix("." + seed).exists() for seed, _ in settings) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = [code for code, _ in results]
    assert sorted(codes) == [0, 2], results
    loser = next(err for code, err in results if code == 2).strip()
    assert "\n" not in loser and ("another qmedimg command is writing" in loser or "already exists" in loser)
    seed, epochs = settings[codes.index(0)]
    config = json.loads((out / "config.json").read_text())["config"]
    metrics = json.loads((out / "metrics.json").read_text())
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (config["seed"], config["epochs"]) == (int(seed), int(epochs))
    assert metrics["seed"] == int(seed) and checkpoint["epoch"] == int(epochs)
    assert metrics["test"]["confusion"] and sum(map(sum, metrics["test"]["confusion"])) == 48


def test_while_one_command_writes_a_run_a_second_train_or_resume_is_refused(tiny_run_copy, tmp_path, capsys):
    empty = tmp_path / "new"
    empty.mkdir()
    for folder, argv in ((tiny_run_copy, ["train", "--resume", str(tiny_run_copy)]),
                         (empty, ["train", "--dataset", "synthetic", "--limit", "48", "--epochs", "1",
                                  "--out", str(empty)])):
        with exclusive(folder / LOCK, "held by the test"):
            before = sorted(p.name for p in folder.iterdir())
            assert main(argv + ["--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another qmedimg command is writing there now" in err
        assert sorted(p.name for p in folder.iterdir()) == before
    assert main(["train", "--dataset", "synthetic", "--limit", "48", "--epochs", "1", "--out", str(empty),
                 "--quiet"]) == 0  # released: the folder (holding only its lock file) takes the run


def test_a_second_noise_study_into_the_same_folder_is_refused_while_the_first_runs(tiny_run_copy, capsys):
    out = tiny_run_copy / "noise-study"
    argv = ["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--mitigation", "none", "--test-limit", "4",
            "--quiet"]
    assert main(argv + ["--scales", "0,1"]) == 0
    rows = (out / "results.csv").read_text()
    assert rows.count("\n") == 3  # header + 2 points
    with exclusive(out / LOCK, "held by the test"):  # the first study is still writing
        assert main(argv + ["--scales", "0,1,2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another qmedimg command is writing there now" in err
    assert (out / "results.csv").read_text() == rows
    assert main(argv + ["--scales", "0,1,2"]) == 0  # released: only the new point is computed
    assert (out / "results.csv").read_text().count("\n") == 4
