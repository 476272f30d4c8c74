"""Noisy evaluation speed on FakeBrisbane: fixed cost per call and test images/s.

    python benchmarks/noisy_eval.py [--circuit sel] [--run RUN_DIR]
    python benchmarks/noisy_eval.py --qubits 12 --layers 2 --data-file /work/shared/data/breastmnist.npz

Prints, in one run:
  (i)  the stock path: Aer EstimatorV2 with ``NoiseModel.from_backend(device)`` on the 127-qubit ISA
       circuit (what qiskit-ML's EstimatorQNN ends up calling), seconds for one call of 8 rows;
  (ii) qmedimg's ``fake`` backend (noise model restricted to the active qubits, readout error included,
       exact density-matrix values): first call, fixed cost per later call (2 rows, best of 5), and
       images/s through the same TorchConnector head evaluation uses (156 = BreastMNIST's test split,
       and 1024 rows; best of 3), plus the same with readout mitigation + ZNE (1,3,5);
  (iii) with --run: ``qmedimg evaluate RUN --backend fake_brisbane`` end to end.

With ``--qubits N`` (and ``--layers L``) it times a wide head instead: how it is simulated (density
matrix, or trajectories above ``DENSITY_MATRIX_MAX_QUBITS`` active qubits), set-up, and wall time and
images/s for the 156 images of BreastMNIST's test split through ``Backend.run_head`` (what
``qmedimg evaluate`` runs), the angles from an untrained model's backbone on the real images
(``--data-file``) or random angles; the cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from qiskit_aer.noise import NoiseModel
from qiskit_aer.primitives import EstimatorV2
from timing import best, angles_on_test_images  # benchmarks/timing.py

from qmedimg.backends import get_backend
from qmedimg.cores import cores
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.qnn import QuantumHead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--circuit", default="sel")
    parser.add_argument("--run", default=None, help="a trained run directory to evaluate end to end")
    parser.add_argument("--skip-stock", action="store_true", help="skip the slow stock Aer call")
    parser.add_argument("--qubits", type=int, default=None, help="time a head this wide on the test split")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=None,
                        help="trajectories per image (default: the estimator's)")
    parser.add_argument("--images", type=int, default=None, help="only the first N test images (default: all 156)")
    parser.add_argument("--data-file", default=None, help="BreastMNIST npz: angles from its 156 test images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.qubits is not None:
        return wide(args)
    spec = load_circuit(args.circuit)
    backend = get_backend("fake_brisbane")
    device = backend.training_head(spec)["estimator"].device
    isa, observables = backend.prepare(spec)
    rng = np.random.default_rng(0)
    print(f"circuit {spec.name}: {spec.num_qubits} qubits; device {device.name} ({device.num_qubits} qubits); "
          f"ISA depth {isa.depth()}")

    if not args.skip_stock:
        start = time.perf_counter()
        stock = EstimatorV2(options={"default_precision": 0.0,
                                     "backend_options": {"noise_model": NoiseModel.from_backend(device)}})
        values = rng.uniform(-np.pi, np.pi, (8, isa.num_parameters))
        build = time.perf_counter() - start
        call = best(lambda: stock.run([(isa, [[o] for o in observables], values)]).result(), 2)
        print(f"stock Aer EstimatorV2 + NoiseModel.from_backend: build {build:.2f} s, one call of 8 rows {call:.2f} s "
              f"({8 / call:.1f} rows/s)")

    for name, overrides in (("fake_brisbane", {}), ("fake_brisbane_mitigated", {})):
        target = get_backend(name, **overrides)
        head = QuantumHead(spec, **target.training_head(spec))  # its estimator, ISA circuit, observables, precision
        angles = torch.from_numpy(rng.uniform(-np.pi, np.pi, (1024, spec.num_qubits)))
        with torch.no_grad():
            start = time.perf_counter()
            head(angles[:2])
            first = time.perf_counter() - start
            fixed = best(lambda: head(angles[:2]), 5)
            rates = [n / best(lambda: head(angles[:n]), 3) for n in (156, 1024)]
        print(f"qmedimg {name:<24} first call {first:.2f} s, fixed cost per call {fixed:.3f} s, "
              f"{rates[0]:.0f} images/s (156 rows), {rates[1]:.0f} images/s (1024 rows)")

    if args.run:
        from qmedimg.workflows.evaluate import evaluate_run

        result = evaluate_run(args.run, "fake_brisbane")
        print(f"qmedimg evaluate {args.run} --backend fake_brisbane: {result['images']} images, "
              f"setup (device load + transpile) {result['setup_s']:.2f} s, then {result['images_per_s']:.0f} images/s "
              f"(backbone + noisy head + classifier, {result['wall_time_s']:.2f} s), "
              f"ACC {result['test']['acc']:.4f} (ideal {result['ideal_test']['acc']:.4f})")


def wide(args) -> None:
    """A head of ``args.qubits`` qubits on FakeBrisbane over the 156 test images: method, set-up, wall time."""
    from qmedimg.backends import HeadRequest

    spec = load_circuit(args.circuit, qubits=args.qubits, layers=args.layers)
    angles = angles_on_test_images(args.data_file, args.circuit, args.qubits, args.layers)
    angles = angles[: args.images]
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, len(spec.weights))
    backend = get_backend("fake_brisbane")
    start = time.perf_counter()
    backend.warm_up(spec)
    estimator = backend.training_head(spec)["estimator"]
    if args.trajectories:
        estimator.trajectories = args.trajectories
    simulation = estimator.simulation(backend.prepare(spec).circuit)
    setup = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    values = backend.run_head(HeadRequest(spec, weights, angles)).values
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    again = backend.with_overrides().run_head(HeadRequest(spec, weights, angles[:8])).values
    report = backend.describe(spec).transpile
    print(f"{spec.name} {spec.num_qubits} qubits x {spec.layers} layers on {estimator.device.name}: "
          f"{simulation['active_qubits']} active qubits, {report['two_qubit_gates']} two-qubit gates, "
          f"depth {report['depth']}; method {simulation['method']}"
          + (f", {simulation['trajectories']} trajectories per image" if simulation["trajectories"] else ""))
    print(f"noisy evaluation of {len(angles)} images: set-up {setup:.1f} s (device, transpile, noise model), "
          f"{wall:.1f} s wall, {len(angles) / wall:.2f} images/s ({cpu:.1f} s CPU over {cores()} cores; the machine's "
          f"load average was {os.getloadavg()[0]:.1f}); "
          f"repeatable with the same seed: {np.array_equal(values[:8], again)}")


if __name__ == "__main__":
    main()
