"""Scaling out: the same grids with ``--executor local`` and ``--executor ray`` on this machine, and
training throughput at MedMNIST+ sizes (why a GPU helps).

    python benchmarks/scale.py --data-file ../shared/data/breastmnist.npz [--out runs/scale]
                               [--epochs 10,40] [--skip-compare] [--skip-study] [--skip-sizes]

Prints:
  1. ``qmedimg compare --seeds 0,1,2 --models hybrid,classical,linear`` (10 epochs; ``--epochs 10,40`` adds a
     grid of longer cells) wall time, each a fresh
     command (imports, Ray start-up and all): local with 1 torch thread per cell, local with every core
     (the default), and ``--executor ray`` (a local Ray, one single-CPU worker per core); whether the
     Ray metrics equal the 1-thread local ones (they must: same seeds, same threads), and the speed-ups.
  2. A noise study of the first hybrid run on 1 device × 6 scales × 2 mitigations (exact values): local
     (default), ``--executor ray`` starting a local Ray, and ``--executor ray --ray-address auto``
     joining a Ray already running here (``ray start --head``; stopped afterwards); equal rows checked.
  3. Training samples/s of the hybrid and ResNet-18 at 28, 64 and 128 pixels on this CPU
     (``benchmarks/size_throughput.py``).
Every figure is one wall-clock measurement on a machine that should be otherwise idle.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

TIMING = ("train_seconds", "train_samples_per_s", "wall_time_s", "device")
QMEDIMG = [sys.executable, "-c", "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))"]


def timed(argv: list[str]) -> float:
    """Wall seconds of one fresh ``qmedimg`` command (which must succeed)."""
    start = time.perf_counter()
    done = subprocess.run([*QMEDIMG, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: qmedimg {' '.join(argv)}\n{done.stderr[-2000:]}")
    return wall


def metrics_of(out: Path) -> dict:
    return {run.name: {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}
            for run in sorted(out.iterdir()) if (run / "metrics.json").is_file()}


def study_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as handle:
        return sorted(({k: v for k, v in row.items() if k not in ("wall_s", "run")} for row in csv.DictReader(handle)),
                      key=lambda row: (float(row["scale"] or 0), row["mitigation"]))


def compare_grid(data_file: str, out: Path, epochs: int) -> Path:
    grid = ["compare", "--data-file", data_file, "--seeds", "0,1,2", "--models", "hybrid,classical,linear",
            "--epochs", str(epochs), "--quiet"]
    walls = {}
    for label, extra in (("local, 1 thread per cell", ["--threads", "1"]), ("local, every core (default)", []),
                         ("ray, 2 single-CPU workers", ["--executor", "ray"])):
        folder = out / (f"compare{epochs}-" + label.split(",")[0] + ("-1" if "1 thread" in label else ""))
        shutil.rmtree(folder, ignore_errors=True)
        walls[label] = (timed([*grid, *extra, "--out", str(folder)]), folder)
    (local1, f1), (local, _), (ray, fr) = walls.values()
    same = metrics_of(fr) == metrics_of(f1)
    print(f"compare breastmnist, seeds 0,1,2, hybrid/classical/linear, {epochs} epochs (9 cells), fresh commands:")
    for label, (wall, _) in walls.items():
        print(f"  {label:<30} {wall:7.1f} s")
    print(f"  ray vs local 1 thread: {local1 / ray:.2f}x faster; vs local default: {local / ray:.2f}x; "
          f"metrics identical to local 1-thread: {same}")
    return f1 / "hybrid-seed0"


def noise_grid(run: Path, out: Path) -> None:
    study = ["noise-study", str(run), "--backend", "fake_brisbane", "--scales", "0,0.25,0.5,1,2,4",
             "--mitigation", "none,readout+zne", "--quiet"]
    local = timed([*study, "--out", str(out / "study-local")])
    ray = timed([*study, "--executor", "ray", "--out", str(out / "study-ray")])
    subprocess.run(["ray", "start", "--head", "--num-cpus", "2", "--include-dashboard=false"], capture_output=True,
                   check=True)
    try:
        joined = timed([*study, "--executor", "ray", "--ray-address", "auto", "--out", str(out / "study-joined")])
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True)
    results = {name: study_rows(out / f"study-{name}") for name in ("local", "ray", "joined")}
    same = results["ray"] == results["local"] == results["joined"]
    print("noise study, fake_brisbane x 6 scales x 2 mitigations (12 points, 156 test images), fresh commands:")
    print(f"  local (every core)             {local:7.1f} s")
    print(f"  ray, starting a local Ray      {ray:7.1f} s   ({local / ray:.2f}x local)")
    print(f"  ray, joining a running Ray     {joined:7.1f} s   ({local / joined:.2f}x local)")
    print(f"  rows identical: {same}")


def sizes() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from size_throughput import train_samples_per_s

    import torch

    print(f"training samples/s on this CPU (batch 32, {torch.get_num_threads()} threads):")
    for name in ("hybrid", "resnet18"):
        figures = [f"{size}px {train_samples_per_s(name, size, steps=5, repeats=3):8.1f}" for size in (28, 64, 128)]
        print(f"  {name:<9} " + "   ".join(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", required=True)
    parser.add_argument("--out", default="runs/scale")
    parser.add_argument("--epochs", default="10", help="compare grids to time, e.g. 10,40 (default 10)")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--skip-sizes", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"qmedimg scale benchmark; torch {version('torch')}, ray {version('ray')}, qiskit {version('qiskit')}, "
          f"qiskit-aer {version('qiskit-aer')}; {len(__import__('os').sched_getaffinity(0))} cores")
    epochs = [int(e) for e in args.epochs.split(",")]
    run = out / f"compare{epochs[0]}-local-1" / "hybrid-seed0"
    if not args.skip_compare:
        run = [compare_grid(args.data_file, out, e) for e in epochs][0]
    if not args.skip_study:
        for name in ("study-local", "study-ray", "study-joined"):
            shutil.rmtree(out / name, ignore_errors=True)
        noise_grid(run, out)
    if not args.skip_sizes:
        sizes()


if __name__ == "__main__":
    main()
