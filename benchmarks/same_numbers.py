"""Do two checkouts give the same numbers? Trains BreastMNIST seed 0, evaluates it on fake_brisbane and runs the
default noise study with each checkout's code, in the same folder (so paths compare), then prints what differs.

    git worktree add /tmp/before <older commit>
    python benchmarks/same_numbers.py /tmp/before . --data-root DIR_WITH_breastmnist.npz

Times aside, it compares metrics.json and eval-fake_brisbane.json key by key (and their key order), results.csv
column by column, each study point's per-image arrays (probabilities, decisions, labels) bit for bit, matched by
their row, and the kept weights in checkpoint.pt tensor by tensor. Digests that hash a whole file (``run_id``,
a study row's ``inputs``) change whenever the checkpoint's bytes do, even with the same weights: they are listed
with the keys the checkpoint gained or lost.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

TIMES = {"train_seconds", "train_samples_per_s", "wall_time_s", "images_per_s", "setup_s", "wall_s"}
WORK = Path("/tmp/qmedimg-same-numbers/work")


def produce(source: Path, out: Path, data_root: str) -> None:
    """The three commands with ``source``'s code, in WORK, then moved to ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(source.resolve())}
    run = WORK / "breast"
    for argv in (["train", "--data-root", data_root, "--dataset", "breastmnist", "--out", str(run), "--quiet"],
                 ["evaluate", str(run), "--backend", "fake_brisbane", "--quiet"],
                 ["noise-study", str(run), "--quiet"]):
        code = "import sys; from qmedimg.cli import main; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, *argv], cwd=source, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    shutil.move(str(WORK), out)


def points(folder: Path) -> list[dict]:
    """Each results.csv row's per-image arrays, in row order."""
    from qmedimg.workflows.study_points import point_file

    rows = list(csv.DictReader(open(folder / "results.csv")))
    return [dict(np.load(point_file(folder, row))) for row in rows]


def compare(a: Path, b: Path) -> list[str]:
    lines = []
    for name in ("metrics.json", "eval-fake_brisbane.json"):
        x, y = (json.loads((d / "breast" / name).read_text()) for d in (a, b))
        differ = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k) and k not in TIMES)
        order = [k for k in x if k not in TIMES] == [k for k in y if k not in TIMES]
        lines.append(f"{name}: {len(x)} vs {len(y)} keys, same order: {order}; differing (times aside): "
                     f"{differ or 'none'}")
    rows = [list(csv.DictReader(open(d / "breast/noise-study/results.csv"))) for d in (a, b)]
    differ = sorted({c for x, y in zip(*rows) for c in x if x[c] != y.get(c) and c not in TIMES})
    lines.append(f"results.csv: {len(rows[0])} vs {len(rows[1])} rows; differing columns (times aside): "
                 f"{differ or 'none'}")
    x, y = (points(d / "breast/noise-study") for d in (a, b))
    same = len(x) == len(y) and all(p.keys() == q.keys() and all(np.array_equal(p[k], q[k]) for k in p)
                                    for p, q in zip(x, y))
    lines.append(f"study points: {len(x)} vs {len(y)}, per-image arrays bit-identical row by row: {same}")
    old, new = (torch.load(d / "breast/checkpoint.pt", weights_only=True) for d in (a, b))
    weights = all(torch.equal(old["best_model"][k], new["best_model"][k]) for k in old["best_model"])
    lines.append(f"checkpoint.pt: kept weights bit-identical: {weights}; keys gained {sorted(set(new) - set(old))}, "
                 f"lost {sorted(set(old) - set(new))}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--data-root", required=True)
    args = parser.parse_args()
    outs = [WORK.parent / "before", WORK.parent / "after"]
    for source, out in zip((args.before, args.after), outs):
        produce(source, out, args.data_root)
    print("\n".join(compare(*outs)))


if __name__ == "__main__":
    main()
