"""Does a decision threshold chosen on validation win back the ACC that calibrated noise takes?

    python benchmarks/threshold_under_noise.py --study runs/width-aware-breast --qubits 8 --layers 2 \\
        --backend fake_brisbane [--seeds 0,1,2] [--out runs/threshold-under-noise]

Takes the width study's runs of one head (the ideally trained ``q{n}-l{L}-s{seed}`` and the noise-aware
``q{n}-l{L}-s{seed}-aware-{backend}-*``), trains each again with the same config except ``threshold="val"``
(binary tasks: the threshold with the best validation accuracy, chosen when training ends: on the exact head
for the ideal run, on the device's noisy head for the noise-aware one), evaluates all four on ``--backend``
(its registry entry, noise scale 1) and prints per seed and as a mean: exact and noisy test ACC/AUC at the
fixed 0.5 and at the validation threshold. The test split chooses nothing. A diagnostic of the width study's
finding that noise moves the head's threshold; it is not a claim by itself.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from qmedimg.files import read_json
from qmedimg.rundir import make_config
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.train import train


def retrained(run: Path, out: Path) -> Path:
    """``run`` trained again with ``threshold="val"`` into ``out`` (reused when finished)."""
    if not (out / "metrics.json").is_file():
        fields = {**read_json(run / "config.json")["config"], "threshold": "val", "out": str(out)}
        train(make_config(**fields), progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="a width-study folder run with --noise-aware")
    parser.add_argument("--qubits", type=int, required=True)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--backend", required=True, help="the fake device the noise-aware runs trained on")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/threshold-under-noise")
    args = parser.parse_args()
    runs = Path(args.study) / "runs"
    table = []
    print(f"{'run':<34} {'exact ACC':>9} {'noisy ACC':>9} {'exact AUC':>9} {'noisy AUC':>9} {'threshold':>9}")
    for seed in [int(s) for s in args.seeds.split(",")]:
        head = f"q{args.qubits}-l{args.layers}-s{seed}"
        aware = sorted(runs.glob(f"{head}-aware-{args.backend}-*"))
        if not aware:
            parser.error(f"no noise-aware run {head}-aware-{args.backend}-* in {runs}")
        for name, run in (("ideal", runs / head), ("noise-aware", aware[0])):
            for rule, path in (("0.5", run), ("val", retrained(run, Path(args.out) / f"{head}-{name}-val"))):
                result = evaluate_run(path, args.backend)
                row = {"name": f"{head} {name} @{rule}", "exact_acc": result["ideal_test"]["acc"],
                       "acc": result["test"]["acc"], "exact_auc": result["ideal_test"]["auc"],
                       "auc": result["test"]["auc"], "threshold": result["threshold"]["value"], "key": (name, rule)}
                table.append(row)
                print(f"{row['name']:<34} {row['exact_acc']:>9.4f} {row['acc']:>9.4f} {row['exact_auc']:>9.4f} "
                      f"{row['auc']:>9.4f} {row['threshold']:>9.4f}", flush=True)
    for key in dict.fromkeys(r["key"] for r in table):
        group = [r for r in table if r["key"] == key]
        cells = " ".join(f"{statistics.mean(r[c] for r in group):>9.4f}" for c in ("exact_acc", "acc", "exact_auc", "auc"))
        print(f"{'mean ' + key[0] + ' @' + key[1]:<34} {cells}")


if __name__ == "__main__":
    main()
