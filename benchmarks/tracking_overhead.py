"""What does ``--track mlflow`` add to a training's wall time? (issue 25's target: at most 5 % of a 60-epoch
BreastMNIST training.)

Trains the same run (same seed, data and threads) in a fresh ``qmedimg train`` process without and with
``--track mlflow``, side by side, logging to an MLflow SQLite store in a temporary folder, and prints both wall
times, their ratio and whether the metrics are the same (tracking reads the finished files; it must not change
the training)::

    python benchmarks/tracking_overhead.py --data-file ../shared/data/breastmnist.npz          # 60 epochs
    python benchmarks/tracking_overhead.py --data-file ../shared/data/breastmnist.npz --epochs 5 --repeats 3

The store is created (and its schema migrated) once before the timed runs and that one-time cost is printed on
its own line: a user's store exists after their first tracked command. With ``--repeats`` the fastest of each
is kept (noise on a shared machine only ever slows a run); the line above says the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))"
SAME = ("test", "val", "selected_epoch")  # what must not differ between the two trainings


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    """Wall seconds of one ``qmedimg`` process, and what it printed last."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CODE, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0 or "warning: tracking" in done.stderr:
        sys.exit(f"qmedimg {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-file", required=True, metavar="PATH.npz", help="e.g. ../shared/data/breastmnist.npz")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="keep the fastest of N of each (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qmedimg-tracking-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
        base = ["train", "--data-file", str(Path(args.data_file).resolve()), "--epochs", str(args.epochs),
                "--seed", str(args.seed), "--threads", str(args.threads), "--quiet"]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient().search_experiments()"],
                       cwd=folder, env=env, check=True, capture_output=True)
        first_use = time.perf_counter() - start
        print(f"load average {os.getloadavg()[0]:.2f}; {args.epochs} epochs of {Path(args.data_file).name}, "
              f"--threads {args.threads}, seed {args.seed}; MLflow store {env['MLFLOW_TRACKING_URI']} "
              f"(created once beforehand: {first_use:.1f} s, not counted)")
        walls: dict[str, list[float]] = {"plain": [], "tracked": []}
        said = ""
        for i in range(args.repeats):
            for name in ("plain", "tracked"):  # side by side: the same load for both
                out = folder / f"{name}-{i}"
                extra = ["--track", "mlflow"] if name == "tracked" else []
                wall, last = timed([*base, "--out", str(out), *extra], env, folder)
                walls[name].append(wall)
                said = last if name == "tracked" else said
        metrics = {name: json.loads((folder / f"{name}-0" / "metrics.json").read_text()) for name in walls}
        same = all(metrics["plain"][k] == metrics["tracked"][k] for k in SAME)
        plain, tracked = min(walls["plain"]), min(walls["tracked"])
        train_s = metrics["plain"]["wall_time_s"]
        print(f"plain   qmedimg train: wall {plain:.2f} s (training itself {train_s:.2f} s); test ACC "
              f"{metrics['plain']['test']['acc']:.4f}")
        print(f"tracked qmedimg train: wall {tracked:.2f} s; test ACC {metrics['tracked']['test']['acc']:.4f}; {said}")
        print(f"ratio tracked/plain {tracked / plain:.3f} ({(tracked / plain - 1) * 100:+.1f} %; target <= +5 %); "
              f"metrics identical: {same}")


if __name__ == "__main__":
    main()
