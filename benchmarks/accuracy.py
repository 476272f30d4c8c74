"""Accuracy over seeds: trains the README's main job once per seed and prints mean ± std over seeds (one seed:
its value and its 95 % bootstrap interval over the test images, from metrics.json's ``test_intervals``: one run
measures no seed-to-seed spread, so no "±" is printed).

    python benchmarks/accuracy.py --data-root ../shared/data [--seeds 0,1,2] [--head quantum]
                                  [--out runs/accuracy] [any other `qmedimg train` option as key=value]

Model selection is on the validation split only (as in every run); the test metrics printed are
those each run wrote to its metrics.json, each seed's with its bootstrap intervals [low, high] and its
sensitivity/specificity at the run's threshold. Writes summary.json next to the runs (``std``: null for one seed).
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
        intervals = metrics["test_intervals"]
        rows.append({"seed": seed, "acc": test["acc"], "auc": test["auc"], "f1": test["f1"],
                     "sensitivity": test["sensitivity"], "specificity": test["specificity"], "intervals": intervals,
                     "epoch": metrics["selected_epoch"], "wall_s": round(wall, 1),
                     "samples_per_s": metrics["train_samples_per_s"], "params": metrics["parameters"]})
        print(f"seed {seed}: test ACC {test['acc']:.4f} {_interval(intervals['acc'])}  AUC {test['auc']:.4f} "
              f"{_interval(intervals['auc'])}  F1 {test['f1']:.4f}  sensitivity {test['sensitivity']:.4f}  "
              f"specificity {test['specificity']:.4f}  epoch {metrics['selected_epoch']}  wall {wall:.1f} s  "
              f"{metrics['train_samples_per_s']:.0f} train samples/s  -> {out}")
    summary = {"dataset": args.dataset, "head": args.head, "options": extra, "runs": rows}
    for key in ("acc", "auc", "f1", "wall_s"):
        values = [r[key] for r in rows]
        summary[key] = {"mean": statistics.mean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else None}  # one seed: no spread
    p, how = rows[0]["params"], rows[0]["intervals"]
    print(f"{args.dataset} {args.head} head, seeds {args.seeds}: "
          f"ACC {_headline(summary, rows, 'acc')}  AUC {_headline(summary, rows, 'auc')}  "
          f"wall {summary['wall_s']['mean']:.1f} s/run  "
          f"params {p['total']} ({p['quantum']} quantum)")
    note = "mean ± std over seeds" if len(rows) > 1 else "one seed: no spread over seeds"
    print(f"  {note}; [low, high]: {100 * how['level']:g} % percentile bootstrap over the test images "
          f"({how['draws']} resamples, seed {how['seed']})")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"summary-{args.dataset}-{args.head}.json").write_text(json.dumps(summary, indent=2))


def _interval(ends: list) -> str:
    """'[0.7885, 0.9000]', or '[undefined]' (NaN or null ends: the metric is undefined on these test images)."""
    return "[undefined]" if any(e is None or e != e for e in ends) else f"[{ends[0]:.4f}, {ends[1]:.4f}]"


def _headline(summary: dict, rows: list[dict], key: str) -> str:
    """'0.8654 ± 0.0111' (mean ± std over seeds); with one seed its value and its bootstrap interval, no '±'."""
    if len(rows) > 1:
        return f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}"
    return f"{rows[0][key]:.4f} {_interval(rows[0]['intervals'][key])}"


if __name__ == "__main__":
    main()
