"""Grids on Ray: the same cells give the same metrics on a real local 2-worker Ray as one after another
here; a failing cell is named while the others finish; a worker killed mid-cell loses nothing; bad
executor input is one line within seconds, with nothing written."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmedimg.cli import main

ray = pytest.importorskip("ray")

GRID = ["compare", "--dataset", "synthetic", "--limit", "64", "--batch-size", "16", "--epochs", "3",
        "--seeds", "0,1", "--models", "hybrid,classical", "--quiet"]
CELLS = ("hybrid-seed0", "hybrid-seed1", "classical-seed0", "classical-seed1")
TIMING = ("train_seconds", "train_samples_per_s", "wall_time_s", "device")


def outcome(run: Path) -> dict:
    """A run's metrics without the timings (which differ from run to run)."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("extra, expected", [
    (["--ray-address", "127.0.0.1:9"], "--ray-address 127.0.0.1:9: nothing answers at 127.0.0.1:9"),
    (["--ray-address", "ray://nohost"], "--ray-address ray://nohost: give auto, HOST:PORT"),
])
def test_an_unreachable_ray_address_is_one_line_within_seconds_and_writes_nothing(tmp_path, capsys, extra, expected):
    out = tmp_path / "c"
    start = time.monotonic()
    assert main([*GRID, "--executor", "ray", *extra, "--out", str(out)]) == 2
    assert time.monotonic() - start < 15
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_ray_not_installed_names_the_extra_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the package
    out = tmp_path / "c"
    assert main([*GRID, "--executor", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Ray is not installed here; install it with pip install -e \".[ray]\"" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [GRID, ["noise-study", "RUN", "--backend", "aer", "--quiet"],
                                     ["width-study", "--dataset", "synthetic", "--qubits", "4", "--layers", "1",
                                      "--backend", "fake_manila", "--quiet"]])
def test_a_grid_on_cuda_without_a_gpu_is_refused_before_anything_runs(tmp_path, capsys, tiny_run_copy, command):
    out = tmp_path / "c"
    argv = [str(tiny_run_copy) if a == "RUN" else a for a in command]
    assert main([*argv, "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: " in err and "no CUDA GPU" in err
    assert err.count("\n") == 1 and not out.exists()


def test_a_ray_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    assert main([*GRID, "--ray-address", "auto", "--out", str(tmp_path / "c")]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err


def test_a_dry_run_prints_cells_resources_and_wall_time_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "c"
    assert main([*GRID, "--dry-run", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "compare: 4 cells, 0 finished (reused), 4 to run; each cell asks for 1 CPU (1 torch thread)" in text
    assert "synthetic/hybrid-seed1" in text and "(timed)" in text
    assert "  2 workers: " in text and "<- --executor local here" in text
    assert not out.exists()


def test_wall_time_on_workers_puts_the_longest_cells_first_on_the_least_loaded():
    from qmedimg.workflows.grid_plan import wall_on_workers

    assert wall_on_workers([60, 60, 30], 2) == 90  # not 120: 30 goes beside a 60
    assert wall_on_workers([1, 1, 4], 2) == 4  # 4 | 1+1; taken in the given order: 1+4 | 1
    assert wall_on_workers([10, 10], 8) == 10 and wall_on_workers([], 4) == 0


# ------------------------------------------------------------------------------- a real local Ray

@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> Path:
    """The grid run one cell after another here, one torch thread per cell (as each Ray worker has)."""
    out = tmp_path_factory.mktemp("local") / "compare"
    assert main([*GRID, "--threads", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def local_ray():
    """A real Ray on this machine, two single-CPU workers, for this module's in-process tests."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("command", [GRID, ["noise-study", "RUN", "--backend", "aer", "--mitigation", "none",
                                             "--quiet"],
                                     ["width-study", "--dataset", "synthetic", "--qubits", "4", "--layers", "1",
                                      "--backend", "fake_manila", "--quiet"]])
def test_a_cell_asking_for_more_cpus_than_the_cluster_has_is_one_line_not_an_endless_wait(
        local_ray, tiny_run_copy, tmp_path, capsys, command):
    """Ray would keep a 64-CPU task pending for ever on a 2-CPU cluster, silently."""
    import threading

    out, exit_code = tmp_path / "c", []
    argv = [str(tiny_run_copy) if a == "RUN" else a for a in command]
    grid = threading.Thread(target=lambda: exit_code.append(main([*argv, "--executor", "ray", "--threads", "64",
                                                                  "--out", str(out)])), daemon=True)
    grid.start()
    grid.join(timeout=60)
    assert not grid.is_alive(), "still waiting for Ray after 60 s"
    err = capsys.readouterr().err
    assert exit_code == [2] and err.count("\n") == 1, err
    assert "--threads 64: each cell asks for 64 CPUs but the Ray cluster has 2; use --threads 2 or fewer" in err
    assert not out.exists()


def test_ray_cells_give_the_same_metrics_as_local_ones(local_grid, local_ray, tmp_path):
    out = tmp_path / "compare"
    assert main([*GRID, "--executor", "ray", "--out", str(out)]) == 0
    for cell in CELLS:
        assert outcome(out / cell) == outcome(local_grid / cell), cell
    assert (out / "comparison.md").is_file()


def test_a_failing_cell_is_named_while_the_others_finish(local_grid, local_ray, tmp_path, capsys):
    import shutil

    out = tmp_path / "compare"
    shutil.copytree(local_grid, out)
    broken = out / "hybrid-seed1"
    (broken / "metrics.json").unlink()
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")  # resuming it fails on every try
    shutil.rmtree(out / "classical-seed0")  # must train while the broken cell fails
    assert main([*GRID, "--executor", "ray", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "1 of 4 cells failed: synthetic/hybrid-seed1 (" in err and err.count("\n") == 1
    assert outcome(out / "classical-seed0") == outcome(local_grid / "classical-seed0")


def _ray_workers_running_a_cell() -> list[int]:
    """PIDs of Ray workers executing a task now (Ray titles them ``ray::run_with_cores``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::run_with_cores"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds Ray's workers in /proc")
def test_a_worker_killed_mid_cell_loses_nothing(local_grid, tmp_path):
    """kill -9 of every worker while it trains: Ray runs those cells again, which resume from their last
    checkpoint (the epochs finished before the kill are kept, not trained again) and end with the
    metrics of an uninterrupted run."""
    out = tmp_path / "compare"
    command = [sys.executable, "-c", "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))",
               *GRID, "--executor", "ray", "--out", str(out)]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kept: dict[str, list[dict]] = {}
    deadline = time.monotonic() + 240
    try:
        while not kept and time.monotonic() < deadline and driver.poll() is None:
            started = [out / c for c in CELLS if (out / c / "checkpoint.pt").is_file()
                       and not (out / c / "metrics.json").is_file()]
            workers = _ray_workers_running_a_cell()
            if started and workers:
                import torch

                for run in started:  # the epochs finished so far, as the checkpoint holds them
                    state = torch.load(run / "checkpoint.pt", weights_only=True)
                    kept[run.name] = [{k: str(v) for k, v in row.items()} for row in state["history"]]
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert kept, "no worker was caught mid-cell"
    assert driver.returncode == 0, stderr[-2000:]
    for cell in CELLS:
        assert outcome(out / cell) == outcome(local_grid / cell), cell
    for name, rows in kept.items():  # not trained again: the kept epochs' rows, timings included, are the same
        assert [{k: row[k] for k in rows[0]} for row in history(out / name)[: len(rows)]] == rows, name


def test_a_noise_study_on_ray_writes_the_rows_a_local_one_writes(local_ray, tiny_run_copy, tmp_path):
    def rows(folder: Path) -> list[dict]:
        with open(folder / "results.csv", newline="") as handle:
            return sorted(({k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(handle)),
                          key=lambda row: (row["scale"], row["mitigation"]))

    study = ["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--scales", "0,1,2",
             "--mitigation", "none,readout+zne", "--test-limit", "16", "--quiet"]
    assert main([*study, "--out", str(tmp_path / "local"), "--threads", "1"]) == 0
    assert main([*study, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert rows(tmp_path / "ray") == rows(tmp_path / "local") and len(rows(tmp_path / "local")) == 6


def test_several_datasets_give_a_table_each_and_one_across_them(local_ray, tmp_path):
    from qmedimg.data import write_synthetic_npz

    root = tmp_path / "data"
    write_synthetic_npz(root / "breastmnist.npz", n_train=48, n_val=16, n_test=16)
    write_synthetic_npz(root / "pneumoniamnist.npz", n_train=48, n_val=16, n_test=16, seed=1)
    out = tmp_path / "seeds"
    assert main(["compare", "--datasets", "breastmnist,pneumoniamnist", "--data-root", str(root), "--epochs", "1",
                 "--seeds", "0,1", "--models", "hybrid,classical", "--executor", "ray", "--quiet",
                 "--out", str(out)]) == 0
    for flag in ("breastmnist", "pneumoniamnist"):
        assert (out / flag / "comparison.md").read_text().startswith(f"# Comparison on {flag}")
    summary = (out / "summary.md").read_text()
    assert "| [breastmnist](breastmnist/comparison.md) |" in summary and "| [pneumoniamnist]" in summary
    with open(out / "summary.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4  # 2 datasets x 2 models
