"""Why does the quantum head rank images worse than its equal-size classical twin? Diagnostics, 3 seeds.

    python benchmarks/head_ranking.py --data-file ../shared/data/breastmnist.npz [--seeds 0,1,2]
                                      [--epochs 60] [--out runs/head-ranking] [--split test]

Trains (or reuses) the default recipe with the quantum head and with the equal-size classical head
(``--head classical``: a bias-free tanh MLP on the same angles), one run per seed, and prints per run,
on ``--split`` (the test split by default; every run still keeps its epoch by validation only):

- AUC: the model's own (MedMNIST's).
- AUC angles: a logistic regression on the head's input angles (fitted on the training split): how
  well the numbers the head receives could rank the images. AUC outputs: the same on the head's outputs
  (what the classifier gets). angles − outputs is the ranking the head loses.
- reversed: the share of the score's sensitivity to the angles (|∂score/∂angle| summed over images and
  angles) that goes against each angle's main direction. A head monotone in each angle has 0; the
  quantum head's outputs are trigonometric in each angle (a·cos x + b·sin x + c, periodic over the
  angles' (-π, π)), so images beyond the turning point are ranked backwards along that angle. The
  score: the logit of class 1 minus that of class 0 (binary), else each class's logit minus their mean.
- angles > π/2: the share of angles in the outer half of their range (beyond a half period of cos).
- outputs > 0.95: the share of head outputs within 0.05 of ±1 (⟨Z⟩ at its bound or tanh saturated).
- output span: the range of the score over the images, against the most the classifier could give a
  head bounded by ±1 (Σ|w| per score): how much of its output range the head uses.
- dim: the effective dimension of the head's outputs.

Prints a mean ± std line per head, then the paired AUC difference quantum − classical: the mean over seeds
with a 95 % bootstrap interval (B = 1000, seed 0; the seeds resampled, then the same images for both heads).
Diagnostics, not a claim: read them next to each other.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from qmedimg.metrics import compute_metrics
from qmedimg.model import head_angles, ideal_head_values, participation_ratio
from qmedimg.rundir import load_run, make_config
from qmedimg.workflows.train import train

COLUMNS = ("auc", "auc_angles", "auc_outputs", "reversed", "angles_outer", "outputs_bound", "span", "dim")


def linear_auc(train_x, train_y, test_x, test_y, task: str) -> float:
    """Test AUC of a logistic regression fitted on the training split (features standardised)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-12
    fitted = LogisticRegression(max_iter=2000).fit((train_x - mean) / std, train_y)
    return compute_metrics(test_y, fitted.predict_proba((test_x - mean) / std), task)["auc"]


def scores_and_gradients(model, angles: np.ndarray, binary: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N, S), ∂scores/∂angles (N, S, n), Σ|w| per score (S,)): the head's outputs through the
    classifier, as a logit difference (binary) or each logit minus the mean of all."""
    x = torch.from_numpy(angles).float().requires_grad_(True)
    logits = model.classifier(model.head(x))
    weight = model.classifier.weight.detach()
    if binary:
        scores, bound = logits[:, 1:] - logits[:, :1], (weight[1] - weight[0]).abs().sum()[None]
    else:
        scores, bound = logits - logits.mean(1, keepdim=True), (weight - weight.mean(0)).abs().sum(1)
    grads = torch.stack([torch.autograd.grad(scores[:, s].sum(), x, retain_graph=True)[0]
                         for s in range(scores.shape[1])], dim=1)
    return scores.detach().numpy(), grads.numpy(), bound.numpy()


def diagnose(run_dir: Path, split: str) -> dict:
    """The columns above for one finished run."""
    run = load_run(run_dir, device="cpu")
    model, task = run.model, run.dataset.task
    data = getattr(run.dataset, split)
    train_angles = head_angles(model, run.dataset.train.images)
    angles = head_angles(model, data.images)
    outputs = ideal_head_values(model, angles)
    train_outputs = ideal_head_values(model, train_angles)
    labels, train_labels = data.labels.reshape(-1), run.dataset.train.labels.reshape(-1)
    scores, grads, bound = scores_and_gradients(model, angles, task == "binary-class")
    direction = np.sign(grads.sum(axis=0, keepdims=True))  # each (score, angle)'s main direction
    against = np.abs(grads) * (np.sign(grads) == -direction)
    probs = torch.softmax(model.classifier(torch.from_numpy(outputs).float()), 1).detach().double().numpy()
    return {"labels": labels, "probs": probs, "task": task,
            "auc": compute_metrics(labels, probs, task, run.threshold)["auc"],
            "auc_angles": linear_auc(train_angles, train_labels, angles, labels, task),
            "auc_outputs": linear_auc(train_outputs, train_labels, outputs, labels, task),
            "reversed": float(against.sum() / np.abs(grads).sum()),
            "angles_outer": float((np.abs(angles) > model.scale / 2).mean()),
            "outputs_bound": float((np.abs(outputs) > 0.95).mean()),
            "span": float(np.mean((scores.max(0) - scores.min(0)) / (2 * bound))),
            "dim": participation_ratio(outputs)}


def paired_auc_difference(quantum: list[dict], classical: list[dict], *, resamples: int = 1000,
                          seed: int = 0) -> tuple[float, float, float]:
    """(mean over seeds of AUC quantum − classical, 2.5 % and 97.5 % bootstrap percentiles): each resample
    draws the seeds with replacement, then for each drawn seed the same test images for both heads."""
    rng = np.random.default_rng(seed)

    def auc(row: dict, index: np.ndarray) -> float:
        return compute_metrics(row["labels"][index], row["probs"][index], row["task"])["auc"]

    whole = [auc(q, np.arange(len(q["labels"]))) - auc(c, np.arange(len(c["labels"])))
             for q, c in zip(quantum, classical, strict=True)]
    drawn = []
    for _ in range(resamples):
        picks = rng.integers(len(quantum), size=len(quantum))
        differences = []
        for k in picks:
            index = rng.integers(len(quantum[k]["labels"]), size=len(quantum[k]["labels"]))
            differences.append(auc(quantum[k], index) - auc(classical[k], index))
        drawn.append(np.nanmean(differences))
    low, high = np.nanpercentile(drawn, [2.5, 97.5])
    return float(np.mean(whole)), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-file", required=True, help="a MedMNIST-layout .npz (e.g. breastmnist.npz)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=60, help="default 60 (the default recipe's)")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--out", default="runs/head-ranking")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the runs' numbers must not depend on the machine's load
    name = Path(args.data_file).stem
    print(f"{name}, seeds {args.seeds}, {args.epochs} epochs, split {args.split}; columns: {', '.join(COLUMNS)}")
    print(f"{'run':<28}" + "".join(f"{c:>13}" for c in COLUMNS))
    by_head = {}
    for head in ("quantum", "classical"):
        rows = by_head[head] = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            out = Path(args.out) / f"{name}-{head}-seed{seed}"
            if not (out / "metrics.json").is_file():
                train(make_config(data_file=args.data_file, epochs=args.epochs, seed=seed, head=head,
                                  out=str(out)), progress=False)
            rows.append(diagnose(out, args.split))
            print(f"{out.name:<28}" + "".join(f"{rows[-1][c]:>13.4f}" for c in COLUMNS), flush=True)
        cells = [f"{statistics.mean(r[c] for r in rows):.3f}" + (f"±{statistics.stdev([r[c] for r in rows]):.3f}"
                                                                 if len(rows) > 1 else "")  # one seed: no spread
                 for c in COLUMNS]
        print(f"{name + ' ' + head + ' mean±std':<28}" + "".join(f"{c:>13}" for c in cells), flush=True)
    mean, low, high = paired_auc_difference(by_head["quantum"], by_head["classical"])
    print(f"AUC quantum − classical, paired: {mean:+.4f} [{low:+.4f}, {high:+.4f}] (95 % bootstrap over seeds and "
          f"{args.split} images, B = 1000, seed 0)")


if __name__ == "__main__":
    main()
