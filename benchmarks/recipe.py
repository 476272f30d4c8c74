"""Which head recipe carries more than one number, and does it help? Chosen on validation, 3 seeds.

    OMP_NUM_THREADS=1 python benchmarks/recipe.py --data-file ../shared/data/breastmnist.npz \\
        [--seeds 0,1,2] [--epochs 60] [--variants baseline,sel-bn,...] [--ablate sel-bnh,...] [--out runs/recipe]

Trains every variant below (circuit x angle map x read-out, everything else the default recipe) for
every seed, then the equal-size classical head (``--head classical``) with the chosen variant's angle
map and read-out, the classical head of today's recipe, and that of each ``--ablate`` variant. Prints
one row per variant: validation and test ACC/AUC (mean ± std over seeds), the head's effective
dimension on the test split (participation ratio of its outputs, of O outputs) and its circuit weights
with zero gradient. The variant chosen is the quantum one with the best mean validation AUC, then ACC:
the test split chooses nothing. Finished runs are reused on a re-run (same --out), so an interrupted
benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from qmedimg.files import read_json
from qmedimg.rundir import make_config
from qmedimg.workflows.train import train

# name -> the train options that differ from the default recipe's
VARIANTS = {
    "baseline": {"circuit": "sel", "angle_map": "tanh", "readout": "circuit"},  # the recipe before issue 14
    "sel-bn": {"circuit": "sel", "angle_map": "batchnorm", "readout": "circuit"},
    "sel-zz": {"circuit": "sel", "angle_map": "tanh", "readout": "z+zz"},
    "sel-bnh": {"circuit": "sel", "angle_map": "batchnorm-half", "readout": "circuit"},
    "reup": {"circuit": "reup", "angle_map": "tanh", "readout": "circuit"},
    "reup-bnh": {"circuit": "reup", "angle_map": "batchnorm-half", "readout": "circuit"},
    "sel-bnh-zz": {"circuit": "sel", "angle_map": "batchnorm-half", "readout": "z+zz"},
    "reup-bnh-zz": {"circuit": "reup", "angle_map": "batchnorm-half", "readout": "z+zz"},
    "sel-bn-zz": {"circuit": "sel", "angle_map": "batchnorm", "readout": "z+zz"},
    "reup-bn": {"circuit": "reup", "angle_map": "batchnorm", "readout": "circuit"},
}


def run_seeds(name: str, options: dict, args, seeds: list[int]) -> list[dict]:
    """Train (or reuse) one run per seed; the numbers of each."""
    rows = []
    for seed in seeds:
        out = Path(args.out) / f"{name}-seed{seed}"
        if (out / "metrics.json").is_file():
            metrics = read_json(out / "metrics.json")
        else:
            config = make_config(data_file=args.data_file, epochs=args.epochs, seed=seed, out=str(out), **options)
            start = time.perf_counter()
            metrics = train(config, progress=False)
            print(f"  trained {out} in {time.perf_counter() - start:.0f} s", flush=True)
        usage = metrics.get("head_usage", {}).get("test") or {}
        rows.append({"val_acc": metrics["val"]["acc"], "val_auc": metrics["val"]["auc"],
                     "test_acc": metrics["test"]["acc"], "test_auc": metrics["test"]["auc"],
                     "dim": usage.get("effective_dimension", float("nan")), "outputs": usage.get("outputs", 0),
                     "zero": len(usage.get("zero_gradient_weights", [])), "weights": usage.get("weights", 0),
                     "params": metrics["parameters"]})
    return rows


def mean_std(rows: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def line(name: str, rows: list[dict]) -> str:
    cells = []
    for key in ("val_acc", "val_auc", "test_acc", "test_auc"):
        m, s = mean_std(rows, key)
        cells.append(f"{m:.3f}±{s:.3f}" if len(rows) > 1 else f"{m:.3f}")  # one seed: no spread to show
    m, s = mean_std(rows, "dim")
    dim = f"{m:4.2f}±{s:4.2f}" if len(rows) > 1 else f"{m:4.2f}"
    dims = "/".join(f"{r['dim']:.2f}" for r in rows)
    p = rows[0]["params"]
    zero = f"{rows[0]['zero']}/{rows[0]['weights']}" if rows[0]["weights"] else "-"
    return (f"{name:<24} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12} {cells[3]:>12}  "
            f"{dim} of {rows[0]['outputs']:<2} ({dims})  {zero:>5}  {p['head']:>4}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-file", required=True, help="a MedMNIST-layout .npz (e.g. breastmnist.npz)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=60, help="default 60 (the default recipe's)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from {', '.join(VARIANTS)}")
    parser.add_argument("--ablate", default="", help="more variants to train with the classical head too, e.g. sel-bnh")
    parser.add_argument("--out", default="runs/recipe")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.variants.split(",")
    extra = [n for n in args.ablate.split(",") if n]
    unknown = [n for n in names + extra if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    results = {}
    for name in names:
        results[name] = run_seeds(name, VARIANTS[name], args, seeds)
        print(f"done {name}", flush=True)
    chosen = max(names, key=lambda n: (mean_std(results[n], "val_auc")[0], mean_std(results[n], "val_acc")[0]))
    ablations = {f"{chosen} classical": {**VARIANTS[chosen], "head": "classical"}}
    for name in ["baseline", *extra]:
        ablations.setdefault(f"{name} classical", {**VARIANTS[name], "head": "classical"})
    for label, options in ablations.items():
        results[label] = run_seeds(label.replace(" ", "-"), options, args, seeds)
    print(f"\n{Path(args.data_file).name}, seeds {args.seeds}, {args.epochs} epochs; mean±std over seeds; "
          "dim = effective dimension of the head's outputs on the test split (per seed in brackets)")
    print(f"{'variant':<24} {'val ACC':>12} {'val AUC':>12} {'test ACC':>12} {'test AUC':>12}  "
          f"{'dim (test)':<26}  {'zero-grad':>5}  head params")
    for name, rows in results.items():
        print(line(name, rows))
    m_auc, m_acc = mean_std(results[chosen], "val_auc")[0], mean_std(results[chosen], "val_acc")[0]
    print(f"chosen on validation (mean AUC, then ACC): {chosen} (val AUC {m_auc:.3f}, ACC {m_acc:.3f}); "
          f"options {VARIANTS[chosen]}")


if __name__ == "__main__":
    main()
