"""Noise-aware training speed: a full training step of the hybrid model (hqcnn backbone, B=32, BreastMNIST images)
with its head under FakeBrisbane's noise, three ways, in one run.

    python benchmarks/noise_aware_training.py --data-file ../shared/data/breastmnist.npz [--heads 8x2,12x2]

Per head (qubits × layers of ``sel``), samples/s of forward + loss + backward + AdamW on
  (i)   qmedimg's trajectory sampler (``simulator: trajectories``): ``training_trajectories`` trajectories per
        sample for the forward values and as many for the gradient (adjoint sweeps; unbiased);
  (ii)  Aer's density matrix (``simulator: aer``), where it serves (≤ 10 active qubits): the batch-summed
        parameter-shift path (``DeviceEstimator.gradient_rows``); above 10 active qubits it is skipped;
  (iii) one shifted Aer row per sample and parameter (qiskit-ML's way: two rows per gate angle per sample, on
        Aer's density matrix or, above 10 active qubits, its statevector trajectories) — the head alone, 4 rows
        timed and scaled to one sample's rows (said in the output; a full step would take minutes to hours).
Issue-21 targets: ≥ 150 samples/s at 8 × 2 and ≥ 50 at 12 × 2 for (i).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from qmedimg.backends import get_backend
from qmedimg.cores import cores
from qmedimg.quantum.circuits import load_circuit


def step_rate(model, images, labels, steps: int) -> float:
    """Samples/s of ``steps`` training steps (after one untimed warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(images) / (time.perf_counter() - start)


def shifted_rows_rate(backend, spec, timed_rows: int = 4) -> tuple[float, int]:
    """Samples/s of one shifted Aer row per sample and gate angle (the forward row + ±π/2 per angle): the time
    of ``timed_rows`` rows, scaled to one sample's rows. Returns (samples/s, rows per sample)."""
    circuit, observables = backend.prepare(spec)
    rows_per_sample = 1 + 2 * circuit.num_parameters
    rows = np.random.default_rng(0).uniform(-np.pi, np.pi, (timed_rows, circuit.num_parameters))
    estimator = backend.training_head(spec)["estimator"]
    estimator.run([(circuit, [[o] for o in observables], rows[:1])]).result()  # noise model built, untimed
    start = time.perf_counter()
    estimator.run([(circuit, [[o] for o in observables], rows)]).result()
    per_row = (time.perf_counter() - start) / timed_rows
    return 1 / (per_row * rows_per_sample), rows_per_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-file", required=True)
    parser.add_argument("--heads", default="8x2,12x2")
    parser.add_argument("--backend", default="fake_brisbane")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--training-trajectories", type=int, default=None, help="default: the entry's")
    parser.add_argument("--skip-shifted", action="store_true", help="skip (iii)")
    args = parser.parse_args()
    from qmedimg.rundir import build_model, load_data, make_config

    print(f"{cores()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}; {args.backend}, hqcnn backbone, batch 32")
    for head in args.heads.split(","):
        qubits, layers = (int(x) for x in head.split("x"))
        config = make_config(data_file=args.data_file, qubits=qubits, layers=layers, backbone="hqcnn",
                             out="/tmp/unused")
        dataset = load_data(config)
        images = torch.as_tensor(dataset.train.images[:32]).float()
        labels = torch.as_tensor(dataset.train.labels[:32]).long().view(-1)
        spec = load_circuit("sel", qubits=qubits, layers=layers)
        extra = {} if args.training_trajectories is None else {"training_trajectories": args.training_trajectories}
        sampler = get_backend(args.backend, simulator="trajectories", **extra)
        active = len(sampler.describe(spec).transpile["physical_qubits"])
        line = []
        model = build_model(config, dataset, sampler)
        line.append(f"sampler ({sampler.entry.training_trajectories} trajectories) "
                    f"{step_rate(model, images, labels, args.steps):.1f} samples/s")
        aer = get_backend(args.backend, simulator="aer")
        if active <= 10:
            model = build_model(config, dataset, aer)
            line.append(f"Aer density matrix, batch-summed shifts {step_rate(model, images, labels, 1):.2f} samples/s")
        else:
            line.append(f"Aer density matrix: not run ({active} active qubits > 10)")
        if not args.skip_shifted:
            rate, rows = shifted_rows_rate(aer, spec)
            line.append(f"one shifted Aer row per sample and angle {rate:.4f} samples/s ({rows} rows per sample; "
                        "4 rows timed, scaled; head only)")
        print(f"  {qubits}×{layers} ({active} active qubits): " + "; ".join(line))


if __name__ == "__main__":
    main()
