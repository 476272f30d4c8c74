"""Why does training collapse beside another CPU-heavy process, and what does each fix cost on a quiet machine?

Trains the same short run (default: ``qmedimg train --dataset synthetic --epochs 2``, 256 training images;
BreastMNIST with ``--data-root DIR`` or ``--data-file breastmnist.npz``) in a fresh process under each
OpenMP/torch setting, once on the machine as it is and once beside neighbours this script starts itself (a
busy-loop Python process per core, by default), and prints the wall times and the test metrics side by
side, so that "the same numbers" is visible::

    python benchmarks/busy_machine.py                       # every setting, synthetic data
    python benchmarks/busy_machine.py --data-file ../shared/data/breastmnist.npz --epochs 5 --repeats 2
    python benchmarks/busy_machine.py --data-file ../shared/data/breastmnist.npz --epochs 60 --settings default
                                                            # the README's main command, quiet and busy
    python benchmarks/busy_machine.py --settings default,passive --neighbours 1

The settings: ``default`` (nothing set: what the ``qmedimg`` command does by itself, which since issue 23 is
``OMP_WAIT_POLICY=PASSIVE`` when the variable is not set), ``libgomp`` (torch imported before ``main``, so
the command leaves the variable alone: libgomp's own default, spinning a while before sleeping, as before
issue 23), ``passive`` (``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep at once), ``active``
(``OMP_WAIT_POLICY=ACTIVE``: they spin), ``spin0`` (``GOMP_SPINCOUNT=0``), ``spin10k``/``spin100k``
(``GOMP_SPINCOUNT=10000``/``100000`` with libgomp's own wait policy: spinning that long before sleeping, where
libgomp's default is 300,000), ``omp1`` (``OMP_NUM_THREADS=1``: one
thread, so other float32 rounding) and ``interop1`` (``torch.set_num_interop_threads(1)`` before the run; torch
is then imported before ``main``, so compare it with ``libgomp``).

Wall times are noisy on a shared machine: the line above the table says the load average before the
quiet runs, and ``--repeats`` keeps the fastest of several (noise only ever slows a run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name: (environment variables, Python run before main)
    "default": ({}, ""),
    "libgomp": ({}, "import torch; "),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, ""),
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, ""),
    "spin0": ({"GOMP_SPINCOUNT": "0"}, ""),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, "import torch; "),
    "spin100k": ({"GOMP_SPINCOUNT": "100000"}, "import torch; "),
    "omp1": ({"OMP_NUM_THREADS": "1"}, ""),
    "interop1": ({}, "import torch; torch.set_num_interop_threads(1); "),
}
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def train_once(argv: list[str], setting: str, out: Path) -> dict:
    """One training in a fresh process under ``setting``: its wall time and what metrics.json says."""
    variables, prelude = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES} | variables
    code = prelude + "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv, "--out", str(out), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{setting}: qmedimg {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    digest = hashlib.sha256(json.dumps([test["acc"], test["auc"], test["f1"], metrics["val"]["auc"]]).encode())
    return {"wall": wall, "train": metrics["train_seconds"], "acc": test["acc"], "auc": test["auc"],
            "threads": metrics["torch_threads"], "digest": digest.hexdigest()[:8]}


def best(argv: list[str], setting: str, out: Path, repeats: int) -> dict:
    """The fastest of ``repeats`` trainings (their metrics must agree: the same setting is one computation)."""
    runs = [train_once(argv, setting, out) for _ in range(repeats)]
    if len({r["digest"] for r in runs}) > 1:
        print(f"  note: {setting}'s repeats gave different metrics: {[r['digest'] for r in runs]}")
    return min(runs, key=lambda r: r["wall"])


def neighbours(count: int) -> list[subprocess.Popen]:
    """``count`` CPU-heavy processes (a Python busy loop each), left running until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"from {', '.join(SETTINGS)}")
    parser.add_argument("--data-root", help="train BreastMNIST from this folder (default: synthetic data)")
    parser.add_argument("--data-file", help="train on this MedMNIST-layout npz (e.g. breastmnist.npz)")
    parser.add_argument("--limit", type=int, default=0, help="at most N samples per split (default: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, help="qmedimg train --threads (default: the command's default)")
    parser.add_argument("--neighbours", type=int, default=len(os.sched_getaffinity(0)),
                        help="busy-loop processes beside the busy runs (default: one per core)")
    parser.add_argument("--repeats", type=int, default=1, help="keep the fastest of N runs per cell (default 1)")
    args = parser.parse_args()
    argv = ["train", "--epochs", str(args.epochs)]
    if args.data_file:
        argv += ["--data-file", str(Path(args.data_file).resolve())]
    else:
        argv += ["--dataset", "breastmnist", "--data-root", args.data_root] if args.data_root else \
            ["--dataset", "synthetic"]
    argv += ["--limit", str(args.limit)] if args.limit else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; valid: {', '.join(SETTINGS)}")
    work = Path(tempfile.mkdtemp(prefix="qmedimg-busy-"))
    print(f"qmedimg {' '.join(argv)}; {len(os.sched_getaffinity(0))} cores; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; busy = beside {args.neighbours} busy-loop process(es)")
    print("wall = the whole command (imports, data, training, plots); train = metrics.json's train_seconds")
    print(f"{'setting':<10}{'wall quiet':>11}{'busy':>7}{'ratio':>7}{'train quiet':>13}{'busy':>7}{'ratio':>7}"
          f"{'threads':>8}  {'test ACC AUC: quiet | busy':<36}metrics")
    try:
        for setting in settings:
            quiet = best(argv, setting, work / setting, args.repeats)
            others = neighbours(args.neighbours)
            try:
                busy = best(argv, setting, work / setting, args.repeats)
            finally:
                for process in others:
                    process.kill()
                    process.wait()
            shown = f"{quiet['acc']:.4f} {quiet['auc']:.4f} | {busy['acc']:.4f} {busy['auc']:.4f}"
            print(f"{setting:<10}{quiet['wall']:>10.1f}s{busy['wall']:>6.1f}s{busy['wall'] / quiet['wall']:>6.2f}x"
                  f"{quiet['train']:>12.1f}s{busy['train']:>6.1f}s{busy['train'] / quiet['train']:>6.2f}x"
                  f"{quiet['threads']:>8}  {shown:<36}"
                  f"{quiet['digest']}{' =' if quiet['digest'] == busy['digest'] else ' != ' + busy['digest']}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
