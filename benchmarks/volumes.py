"""Training speed on volumes (28³, the 3D MedMNIST sets): the hybrid 3D model against the same model with
the classical head. Target (issue 16): hybrid >= 0.5x the classical head's samples/s.

    python benchmarks/volumes.py [--size 28] [--batch-size 32] [--backbones hqcnn,compact] [--resnet18]
                                 [--steps 3] [--seconds 3] [--repeats 3]

A training step is the one of ``qmedimg.workflows.train``: forward, label-smoothed cross-entropy,
backward, AdamW step, moving-average update, on a batch of generated volumes
(``write_synthetic_npz(volumes=True)``); networks built as ``qmedimg train`` builds them
(``qmedimg.rundir.build_model``): the 3D backbone, the 4-qubit ``sel`` head on the exact estimator
(``hybrid``) or its tanh-MLP twin (``classical``). Windows of the two models alternate (hybrid,
classical, hybrid, ...) so both see the same machine load; the best window of each is printed, and
the ratio of the two. ``--resnet18`` adds the 3D ResNet-18 baseline (torchvision's r3d_18) for scale.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch

from qmedimg.data import load_dataset, write_synthetic_npz
from qmedimg.rundir import make_config
from size_throughput import training_step  # benchmarks/ is on the path when run as a script


def make_step(fields: dict, data_file: Path, batch_size: int, seed: int = 0):
    """A function doing one training step of the network ``fields`` describe, on ``batch_size`` volumes."""
    config = make_config(data_file=str(data_file), seed=seed, out="-", **fields)
    dataset = load_dataset(data_file=data_file)
    return training_step(config, dataset, batch_size)

def window(step, steps: int, seconds: float) -> float:
    """Samples/s over at least ``steps`` steps and ``seconds`` seconds."""
    done, start = 0, time.perf_counter()
    count = 0
    while count < steps or time.perf_counter() - start < seconds:
        done += step()
        count += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=32, help="the recipe's batch (default 32)")
    parser.add_argument("--backbones", default="hqcnn", help="comma-separated: hqcnn (the default), compact")
    parser.add_argument("--resnet18", action="store_true", help="also time the 3D ResNet-18 baseline (slow)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    versions = ", ".join(f"{p} {version(p)}" for p in ("qmedimg", "torch", "qiskit", "qiskit-machine-learning",
                                                        "numpy"))
    print(f"volumes {args.size}³, training step at batch {args.batch_size}, best of {args.repeats} alternating "
          f"windows of >= {args.steps} steps and {args.seconds} s; CPU, {torch.get_num_threads()} torch threads; "
          f"python {platform.python_version()}, {versions}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic_npz(Path(tmp) / "volumes.npz", n_train=args.batch_size, n_val=2, n_test=2,
                                   size=args.size, volumes=True)
        for backbone in args.backbones.split(","):
            steps = {head: make_step({"backbone": backbone, "head": head}, data, args.batch_size)
                     for head in ("quantum", "classical")}
            for step in steps.values():  # warm-up (the exact estimator's kernel, oneDNN's plans)
                step(), step()
            best = {head: 0.0 for head in steps}
            for _ in range(args.repeats):
                for head, step in steps.items():
                    best[head] = max(best[head], window(step, args.steps, args.seconds))
            ratio = best["quantum"] / best["classical"]
            print(f"{backbone:<8} hybrid (quantum head) {best['quantum']:7.1f} samples/s   classical head "
                  f"{best['classical']:7.1f} samples/s   ratio {ratio:.2f}x  (target >= 0.5x: "
                  f"{'met' if ratio >= 0.5 else 'NOT met'})", flush=True)
        if args.resnet18:
            step = make_step({"model": "resnet18"}, data, args.batch_size)
            step()
            rate = max(window(step, 1, args.seconds) for _ in range(args.repeats))
            print(f"resnet18 (r3d_18, 3x3x3 stem) {rate:7.1f} samples/s", flush=True)


if __name__ == "__main__":
    main()
