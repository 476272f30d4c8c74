"""Accuracy over seeds: trains the README's main job once per seed and prints mean ± std.

    python benchmarks/accuracy.py --data-root ../shared/data [--seeds 0,1,2] [--head quantum]
                                  [--out runs/accuracy] [any other `qmedimg train` option as key=value]

Model selection is on the validation split only (as in every run); the test metrics printed are
those each run wrote to its metrics.json. Writes summary.json next to the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from qmedimg.rundir import make_config
from qmedimg.workflows.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--head", default="quantum", choices=["quantum", "classical"])
    parser.add_argument("--out", default="runs/accuracy")
    parser.add_argument("extra", nargs="*", help="more train options as key=value, e.g. epochs=20")
    args = parser.parse_args()
    extra = {}
    for item in args.extra:
        key, _, value = item.partition("=")
        extra[key.replace("-", "_")] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = Path(args.out) / f"{args.dataset}-{args.head}-seed{seed}"
        config = make_config(dataset=args.dataset, data_root=args.data_root, head=args.head, seed=seed,
                             out=str(out), **extra)
        start = time.perf_counter()
        metrics = train(config, progress=False)
        wall = time.perf_counter() - start
        test = metrics["test"]
        rows.append({"seed": seed, "acc": test["acc"], "auc": test["auc"], "f1": test["f1"],
                     "epoch": metrics["selected_epoch"], "wall_s": round(wall, 1),
                     "samples_per_s": metrics["train_samples_per_s"], "params": metrics["parameters"]})
        print(f"seed {seed}: test ACC {test['acc']:.4f}  AUC {test['auc']:.4f}  F1 {test['f1']:.4f}  "
              f"epoch {metrics['selected_epoch']}  wall {wall:.1f} s  "
              f"{metrics['train_samples_per_s']:.0f} train samples/s  -> {out}")
    summary = {"dataset": args.dataset, "head": args.head, "options": extra, "runs": rows}
    for key in ("acc", "auc", "f1", "wall_s"):
        values = [r[key] for r in rows]
        summary[key] = {"mean": statistics.mean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    p = rows[0]["params"]
    print(f"{args.dataset} {args.head} head, seeds {args.seeds}: "
          f"ACC {summary['acc']['mean']:.4f} ± {summary['acc']['std']:.4f}  "
          f"AUC {summary['auc']['mean']:.4f} ± {summary['auc']['std']:.4f}  "
          f"wall {summary['wall_s']['mean']:.1f} s/run  "
          f"params {p['total']} ({p['quantum']} quantum)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"summary-{args.dataset}-{args.head}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
