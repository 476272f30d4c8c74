"""Wide noisy heads: qmedimg's trajectory sampler against Aer's statevector trajectories, in one run.

    python benchmarks/trajectory_sampler.py --data-file ../shared/data/breastmnist.npz
    python benchmarks/trajectory_sampler.py --qubits 12 --layers 2 --backend fake_brisbane --aer-images 8
    python benchmarks/trajectory_sampler.py --data-file ../shared/data/breastmnist.npz --mitigation readout+zne --aer-images 2

The issue-21 target: a 12-qubit × 2-layer ``sel`` head on FakeBrisbane, BreastMNIST's 156 test images, 1,000
noise trajectories per image: ≤ 60 s wall, and ≥ 20× Aer's statevector trajectories on the same images.

Both run through ``Backend.run_head`` (what ``qmedimg evaluate`` runs) on the same entry, once with
``simulator: auto`` (qmedimg's sampler above 10 active qubits) and once with ``simulator: aer``; the head's
angles come from an untrained model's backbone on the real images (``--data-file``; random angles without it),
the weights are random: the cost does not depend on them. Aer runs on the first ``--aer-images`` images only
and its time is scaled to all of them (said in the output). On those images the two are also compared:
the largest |difference| of a value and the largest |z| (difference over both values' own standard errors
combined: over 8 images × 12 values, a largest |z| of about 2.5 is what chance alone gives).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from timing import angles_on_test_images  # benchmarks/timing.py

from qmedimg.backends import HeadRequest, get_backend
from qmedimg.cores import cores
from qmedimg.quantum.circuits import load_circuit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="fake_brisbane")
    parser.add_argument("--circuit", default="sel")
    parser.add_argument("--qubits", type=int, default=12)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=1000)
    parser.add_argument("--aer-images", type=int, default=8, help="images Aer runs (its time is scaled to all)")
    parser.add_argument("--data-file", default=None, help="BreastMNIST npz: angles from its 156 test images")
    parser.add_argument("--mitigation", default="none", choices=["none", "readout+zne"],
                        help="readout+zne: the entry's ZNE (2-qubit gates folded ×1, ×3, ×5) on both sides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = load_circuit(args.circuit, qubits=args.qubits, layers=args.layers)
    angles = angles_on_test_images(args.data_file, args.circuit, args.qubits, args.layers)
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, len(spec.weights))
    print(f"{platform.processor() or platform.machine()}, {cores()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{spec.name} {spec.num_qubits} qubits × {spec.layers} layers on {args.backend}, {len(angles)} images, "
          f"{args.trajectories} trajectories per image, mitigation {args.mitigation}")
    results = {}
    for simulator, count in (("auto", len(angles)), ("aer", min(args.aer_images, len(angles)))):
        mitigation = {"readout": True, "zne": {}} if args.mitigation == "readout+zne" else {"readout": False, "zne": None}
        backend = get_backend(args.backend, simulator=simulator, trajectories=args.trajectories, mitigation=mitigation)
        start = time.perf_counter()
        backend.warm_up(spec)
        simulation = backend.describe(spec).simulation
        setup = time.perf_counter() - start
        start = time.perf_counter()
        result = backend.run_head(HeadRequest(spec, weights, angles[:count]))
        wall = time.perf_counter() - start
        errors = np.sqrt(np.diagonal(result.arrays["value_covariance"], axis1=1, axis2=2))  # each value's own
        simulation = backend.describe(spec).simulation  # after the run: its statistical error
        scaled = wall * len(angles) / count
        results[simulator] = (result.values, errors, scaled)
        print(f"  {simulation['simulator']:>7} {simulation['method']} ({simulation['active_qubits']} active qubits): "
              f"set-up {setup:.1f} s, {count} images {wall:.1f} s wall"
              + (f" -> {len(angles)} images {scaled:.1f} s (scaled)" if count < len(angles) else "")
              + f"; largest standard error of a value {simulation['statistical_error']:.4f}")
    (ours, our_error, our_time), (aer, aer_error, aer_time) = results["auto"], results["aer"]
    shared = len(aer)
    difference = np.abs(ours[:shared] - aer)
    z = difference / np.hypot(our_error[:shared], aer_error)
    print(f"  speed-up over Aer's statevector trajectories: {aer_time / our_time:.1f}× "
          + (f"(target ≥ 20×; qmedimg {our_time:.1f} s for {len(angles)} images, target ≤ 60 s)" if args.mitigation == "none"
             else f"(qmedimg {our_time:.1f} s for {len(angles)} images; the targets are for mitigation none)"))
    print(f"  agreement on {shared} images: largest |difference| {difference.max():.4f}, largest |z| {z.max():.2f} "
          "(z: the difference over both values' own standard errors combined)")


if __name__ == "__main__":
    main()
