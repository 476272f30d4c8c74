"""Which decision threshold and class balancing should a run use by default? Chosen on validation only.

    python benchmarks/threshold.py --data-file ../shared/data/breastmnist.npz [--seeds 0,1,2] [--epochs 60] \\
        [--imbalanced-epochs 30] [--out runs/threshold] [--balancing none,class-weights,balanced-sampling]

Two binary sets: the given MedMNIST file (BreastMNIST: 546/78/156, class 0 — malignant — 27% of each
split) and a generated imbalanced one (``imbalanced.npz`` in ``--out``, 400/200/300: blob vs ring under
heavy noise, the ring class 15% of train and validation and 40% of test — a skewed training set and a
test split of another prevalence, as PneumoniaMNIST's; trained ``--imbalanced-epochs``). For each balancing (none, ``--class-weights``, ``--balanced-sampling``)
and seed it trains (or reuses) one run with the default recipe, then applies each threshold rule
(0.5, ``val``, ``youden``) to the kept weights' probabilities, the rule seeing the validation split
only. One line per set × balancing × rule: test ACC/AUC and validation ACC/AUC (mean ± std over
seeds), the threshold, and "held-out val ACC": the rule applied to one stratified half of the
validation split and scored on the other (both ways, 20 seeded splits) — what a rule earns on images
it did not choose on (``val`` scores its own choice on the same images, so its plain validation ACC
flatters it). The line picked per set is the best held-out validation ACC, then validation AUC: the
test split chooses nothing. Finished runs are reused (same ``--out``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from qmedimg.data import write_synthetic_npz
from qmedimg.files import read_json
from qmedimg.metrics import choose_threshold, compute_metrics, decisions
from qmedimg.model import predict_probs
from qmedimg.rundir import load_run, make_config, versions
from qmedimg.workflows.train import train

BALANCING = {"none": {}, "class-weights": {"class_weights": True}, "balanced-sampling": {"balanced_sampling": True}}
RULES = (0.5, "val", "youden")
TASK = "binary-class"


def imbalanced_npz(path: Path, minority: float = 0.15, test_minority: float = 0.4, noise: float = 200.0) -> Path:
    """A hard, imbalanced binary set: the generated blob-vs-ring images with extra Gaussian noise, class 1
    (ring) ``minority`` of train (400) and validation (200) and ``test_minority`` of test (300)."""
    if path.is_file():
        return path
    scratch = write_synthetic_npz(path.with_suffix(".scratch.npz"), n_train=1200, n_val=400, n_test=400, seed=11)
    rng = np.random.default_rng(11)
    arrays = {}
    with np.load(scratch) as npz:
        for split, n, share in (("train", 400, minority), ("val", 200, minority), ("test", 300, test_minority)):
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"].reshape(-1)
            ones = int(round(n * share))
            keep = np.concatenate([rng.choice(np.flatnonzero(labels == 0), n - ones, replace=False),
                                   rng.choice(np.flatnonzero(labels == 1), ones, replace=False)])
            keep = rng.permutation(keep)
            noisy = images[keep].astype(float) + rng.normal(0, noise, images[keep].shape)
            arrays[f"{split}_images"] = np.clip(noisy, 0, 255).astype(np.uint8)
            arrays[f"{split}_labels"] = labels[keep].astype(np.uint8)[:, None]
        names = npz["label_names"][:2]
    scratch.unlink()
    np.savez_compressed(path, **arrays, label_names=names)
    return path


def held_out_acc(labels: np.ndarray, probs: np.ndarray, rule, repeats: int = 20) -> float:
    """Mean ACC of ``rule``'s threshold chosen on one stratified half of a split and used on the other."""
    rng = np.random.default_rng(0)
    scores = []
    for _ in range(repeats):
        halves = [[], []]
        for cls in (0, 1):
            members = rng.permutation(np.flatnonzero(labels == cls))
            halves[0] += list(members[: len(members) // 2])
            halves[1] += list(members[len(members) // 2:])
        for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
            t = rule if isinstance(rule, float) else choose_threshold(labels[fit], probs[fit], TASK, rule)
            scores.append(float((decisions(probs[score], TASK, t) == labels[score]).mean()))
    return statistics.mean(scores)


def run_seed(data_file: Path, balancing: str, seed: int, args, epochs: int) -> dict:
    """Train (or reuse) one run; every rule's numbers on its kept weights."""
    out = Path(args.out) / f"{data_file.stem}-{balancing}-seed{seed}"
    if not (out / "metrics.json").is_file():
        config = make_config(data_file=str(data_file), epochs=epochs, seed=seed, out=str(out),
                             **BALANCING[balancing])
        start = time.perf_counter()
        train(config, progress=False)
        print(f"  trained {out} in {time.perf_counter() - start:.0f} s", flush=True)
    run = load_run(out, device="cpu")
    recorded = read_json(out / "metrics.json")
    val, test = run.dataset.val, run.dataset.test
    p_val, p_test = predict_probs(run.model, val.images), predict_probs(run.model, test.images)
    rows = {}
    for rule in RULES:
        t = rule if isinstance(rule, float) else choose_threshold(val.labels, p_val, TASK, rule)  # validation only
        v, s = compute_metrics(val.labels, p_val, TASK, t), compute_metrics(test.labels, p_test, TASK, t)
        rows[rule] = {"test_acc": s["acc"], "test_auc": s["auc"], "val_acc": v["acc"], "val_auc": v["auc"],
                      "held_out": held_out_acc(val.labels, p_val, rule), "t": t}
    assert abs(rows[0.5]["test_acc"] - recorded["test"]["acc"]) < 1e-12, "the run decides at 0.5: same test ACC"
    return rows


def _ms(values: list[float]) -> str:
    """'mean ± std' over seeds; one seed's value alone (one run measures no spread)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-file", required=True, help="a binary MedMNIST-layout npz (BreastMNIST)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--imbalanced-epochs", type=int, default=30)
    parser.add_argument("--balancing", default=",".join(BALANCING))
    parser.add_argument("--out", default="runs/threshold")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    v = versions()
    print("versions: " + ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "numpy", "qiskit", "qiskit-aer",
                                                         "qiskit-machine-learning", "medmnist")), flush=True)
    for data_file, epochs in ((Path(args.data_file), args.epochs),
                              (imbalanced_npz(Path(args.out) / "imbalanced.npz"), args.imbalanced_epochs)):
        lines = []
        for balancing in args.balancing.split(","):
            per_seed = [run_seed(data_file, balancing, seed, args, epochs) for seed in seeds]
            for rule in RULES:
                got = {k: [r[rule][k] for r in per_seed] for k in per_seed[0][rule]}
                lines.append((statistics.mean(got["held_out"]), statistics.mean(got["val_auc"]),
                              f"{data_file.stem:<11} {balancing:<17} {str(rule):<6}  test ACC {_ms(got['test_acc'])}  "
                              f"AUC {_ms(got['test_auc'])} | val ACC {_ms(got['val_acc'])}  AUC {_ms(got['val_auc'])}  "
                              f"held-out val ACC {_ms(got['held_out'])} | threshold {_ms(got['t'])}"))
        print(f"{data_file.stem}, seeds {args.seeds}, {epochs} epochs (mean ± std over seeds):")
        for *_, line in lines:
            print("  " + line)
        best = max(lines, key=lambda row: row[:2])
        print(f"  chosen on validation (held-out val ACC, then val AUC): {best[2].split('  test')[0].split(None, 1)[1]}",
              flush=True)


if __name__ == "__main__":
    main()
