"""Width × depth × noise study: wall time of the issue's target grid, training included.

    python benchmarks/width_study.py --data-file ../shared/data/breastmnist.npz            # the target grid
    python benchmarks/width_study.py --qubits 4,5 --layers 1 --backend fake_brisbane --scales 0,1 --epochs 2

Target (issues 14 and 21): 4/8/12 qubits × 1/2 layers × 3 devices (fake_brisbane, fake_torino, fake_fez) × 4 noise
scales × none/readout+zne × 3 seeds (issue 21) on BreastMNIST in ≤ 30 min on 2 cores, training included, showing
for at least one device a width at which calibrated noise costs ≥ 1 point of ACC — or saying so with the numbers.
The default is one seed (``--seeds 0,1,2`` for the target); the verdict line says which it measured.

Prints: the grid, wall seconds in all, training seconds per run (from each run's metrics.json),
evaluation seconds per device (sum of the study rows' wall_s), whether the target time is met, and
summary.md's verdicts. The study goes to a fresh temporary folder unless --out is given (then a
second call shows the resume path: everything reused).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from qmedimg.workflows.noise_study import parse_list
from qmedimg.workflows.width_study import parse_grid, width_study

TARGET_S = 30 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-file", default=str(Path(__file__).resolve().parents[2] / "shared/data/breastmnist.npz"))
    parser.add_argument("--qubits", default="4,8,12")
    parser.add_argument("--layers", default="1,2")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--backend", default="fake_brisbane,fake_torino,fake_fez")
    parser.add_argument("--scales", default="0,0.5,1,2")
    parser.add_argument("--mitigation", default="none,readout+zne")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--out", default=None, help="study folder (default: a new temporary one)")
    args = parser.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="qmedimg-width-")) / "study"
    qubits, layers = parse_grid(args.qubits, "qubits"), parse_grid(args.layers, "layers")
    backends = parse_list(args.backend, str, "backend")
    scales = parse_list(args.scales, float, "scales")
    print(f"grid: qubits {args.qubits} × layers {args.layers} × seeds {args.seeds} × {len(backends)} devices × "
          f"scales {args.scales} × mitigation {args.mitigation}; {args.epochs} epochs; data {args.data_file}")
    start = time.perf_counter()
    width_study({"data_file": args.data_file}, qubits=qubits, layers=layers, seeds=parse_grid(args.seeds, "seeds"),
                backends=backends, scales=scales, mitigations=parse_list(args.mitigation, str, "mitigation"),
                epochs=args.epochs, test_limit=args.test_limit, out=out, progress=False)
    wall = time.perf_counter() - start

    for run in sorted((out / "runs").iterdir()):
        metrics = json.loads((run / "metrics.json").read_text())
        print(f"  train {run.name}: {metrics['wall_time_s']:.1f} s, test ACC {metrics['test']['acc']:.4f} "
              f"AUC {metrics['test']['auc']:.4f}")
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for backend in backends:
        mine = [r for r in rows if r["backend"] == backend]
        print(f"  evaluate on {backend}: {len(mine)} points, {sum(float(r['wall_s']) for r in mine):.1f} s")
    for head in sorted({(int(r["qubits"]), int(r["layers"])) for r in rows}):
        mine = [r for r in rows if (int(r["qubits"]), int(r["layers"])) == head]
        parts = ", ".join(f"{m} {sum(float(r['wall_s']) for r in mine if r['mitigation'] == m):.1f} s"
                          for m in sorted({r["mitigation"] for r in mine}))
        methods = "/".join(sorted({r["simulation"] for r in mine if float(r["scale"]) > 0}))
        print(f"  evaluate {head[0]}×{head[1]} ({methods}): {len(mine)} points, {parts}")
    seeds = parse_grid(args.seeds, "seeds")
    verdict = (('met' if wall <= TARGET_S else 'NOT met') if len(seeds) >= 3
               else f"not measured: the target is for 3 seeds, this run has {len(seeds)}")
    print(f"width study: {len(rows)} points, {wall:.1f} s wall ({wall / 60:.1f} min; target ≤ {TARGET_S // 60} min with "
          f"3 seeds: {verdict}); written to {out}")
    text = (out / "summary.md").read_text()
    body = text.split("## Per device", 1)[1].split("## Accuracy lost", 1)[0].strip()
    verdict = text.split("## Where noise starts to cost accuracy", 1)[1].split("Plots:", 1)[0].strip()
    print(body)
    print(verdict)


if __name__ == "__main__":
    main()
