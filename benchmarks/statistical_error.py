"""Is the statistical error a noisy row states for ACC and AUC the spread its metrics really have? One trained run's
test images on a `fake` entry simulated by noise trajectories, evaluated ``--repeats`` times with other seeds
(the study's ``repeat``), side by side with what each evaluation states.

    python benchmarks/statistical_error.py --run runs/width-aware-breast12/runs/q12-l2-s0 --repeats 8
    python benchmarks/statistical_error.py --run runs/width-aware-breast12/runs/q12-l2-s0 --repeats 6 \
        --mitigation readout+zne

The run is the seed-0 12 × 2 head of the noise-aware experiment (docs/results/noise-aware.md has its command).
Printed: each repeat's ACC/AUC and the errors stated for it (``Inference.statistical_error``: each image's
values redrawn from its covariance over the trajectories); the standard deviation of ACC/AUC over the repeats
against the mean stated error; and, on the first repeat's values, what the two cheaper rules would state: every
value given its row's largest standard error, and every value its own standard error, both independently
(the first is what rows stated before 5 December 2026). Per image: how far its probability of the last class
moves over the repeats, against how far draws from the mean stated covariance move it (median ratio).
With a few repeats the observed spread is itself uncertain: the 95 % range of a standard deviation from 8
repeats is 0.66–2.0× the estimate.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from qmedimg.backends import get_backend
from qmedimg.cores import cores
from qmedimg.inference import Inference
from qmedimg.metrics import compute_metrics, statistical_spread
from qmedimg.quantum.covariance import covariance_root
from qmedimg.rundir import load_run


def diagonal_rules(covariance: np.ndarray) -> dict[str, np.ndarray]:
    """The covariances the cheaper rules assume: the row's largest standard error on every value, or each value's
    own, both with no correlation between one image's values."""
    variances = np.diagonal(covariance, axis1=1, axis2=2)
    eye = np.eye(covariance.shape[1])
    return {"largest error, independent (before 5 Dec 2026)": variances.max() * np.broadcast_to(eye, covariance.shape),
            "own error, independent": variances[:, :, None] * eye}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--backend", default="fake_brisbane")
    parser.add_argument("--mitigation", default="none", choices=["none", "readout+zne"])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--trajectories", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run)
    images, labels = run.dataset.test.images, run.dataset.test.labels
    inference = Inference(run, images)
    mitigation = {"readout": True, "zne": {}} if args.mitigation == "readout+zne" else {"readout": False, "zne": None}
    backend = get_backend(args.backend, simulator="trajectories", trajectories=args.trajectories, mitigation=mitigation)
    print(f"{platform.processor() or platform.machine()}, {cores()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{args.run} on {args.backend}, {len(images)} test images, {args.trajectories} trajectories per image, "
          f"mitigation {args.mitigation}, {args.repeats} repeats")
    values, metrics, stated, covariances = [], [], [], []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        head = inference.on(backend, repeat=repeat)
        values.append(head.values)
        metrics.append(compute_metrics(labels, head.probs, inference.task, run.threshold))
        stated.append(inference.statistical_error(head, labels))
        covariances.append(head.arrays["value_covariance"])
        print(f"  repeat {repeat}: ACC {metrics[-1]['acc']:.4f} AUC {metrics[-1]['auc']:.4f}; stated error ACC "
              f"{stated[-1]['acc']:.4f} AUC {stated[-1]['auc']:.4f} ({time.perf_counter() - start:.1f} s)")
    for name in ("acc", "auc"):
        observed = np.std([m[name] for m in metrics], ddof=1)
        said = np.mean([s[name] for s in stated])
        print(f"  {name.upper()}: spread over the repeats {observed:.4f}; stated (mean) {said:.4f}")
    for rule, covariance in diagonal_rules(covariances[0]).items():
        other = statistical_spread(labels, values[0], covariance, inference.probs_of, inference.task, run.threshold)
        print(f"  what '{rule}' states on repeat 0: ACC {other['acc']:.4f} AUC {other['auc']:.4f}")
    values, roots = np.array(values), covariance_root(np.mean(covariances, axis=0))
    rng = np.random.default_rng(0)
    moved = (values.mean(axis=0) + np.einsum("nop,np->no", roots, rng.standard_normal(values.shape[1:]))
             for _ in range(200))
    drawn = np.array([inference.probs_of(copy)[:, -1] for copy in moved])
    observed = np.array([inference.probs_of(v)[:, -1] for v in values]).std(axis=0, ddof=1)
    ratio = observed / drawn.std(axis=0, ddof=1)
    print(f"  per image, probability spread over the repeats / from the stated covariance: "
          f"median {np.median(ratio):.2f} (quartiles {np.quantile(ratio, 0.25):.2f}, {np.quantile(ratio, 0.75):.2f})")


if __name__ == "__main__":
    main()
