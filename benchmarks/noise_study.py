"""Noise study and noise-aware training speed.

    python benchmarks/noise_study.py --run RUN_DIR     # e.g. runs/breast from the README's main command

Prints, in one run:
  (i)  the study of the issue's target: 1 device (FakeBrisbane) × 6 noise scales × 2 mitigations
       (none, readout+zne) on the run's whole test split, exact expectation values: wall seconds;
  (ii) noise-aware training on FakeBrisbane: the quantum layer's forward + batched parameter-shift
       backward through noisy Aer (density matrix) at batch 32 (the weights' gradient summed over the
       batch before simulation: DeviceEstimator.gradient_rows), and one full hybrid training step;
       samples/s, best of 3, and the rows Aer simulated per step.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from timing import best  # benchmarks/timing.py

from qmedimg.backends import density_gradient, device_estimator
from qmedimg.backends import get_backend
from qmedimg.model import HybridNet
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.qnn import QuantumHead
from qmedimg.workflows.noise_study import noise_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained run directory (quantum head)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="qmedimg-study-"))
    start = time.perf_counter()
    noise_study([args.run], backends=["fake_brisbane"], scales=[0, 0.25, 0.5, 1, 2, 4],
                mitigations=["none", "readout+zne"], out=out, progress=False)
    wall = time.perf_counter() - start
    rows = (out / "results.csv").read_text().count("\n") - 1
    shutil.rmtree(out)
    print(f"noise study: 1 device x 6 scales x 2 mitigations = {rows} points on {args.run}'s test split: {wall:.1f} s")

    spec = load_circuit("sel")
    backend = get_backend("fake_brisbane")
    circuit, observables = backend.prepare(spec)
    b = args.batch_size
    head = QuantumHead(spec, **backend.training_head(spec))
    angles = torch.rand(b, spec.num_qubits, dtype=torch.float64, requires_grad=True)

    def layer_step():
        head(angles).sum().backward()

    rows = []
    run_rows = device_estimator.aer_rows  # the forward pass and the batch-summed gradient's two Aer calls
    counted = lambda sim, circuit, values: rows.append(len(values)) or run_rows(sim, circuit, values)  # noqa: E731
    device_estimator.aer_rows = density_gradient.aer_rows = counted
    layer_step()
    device_estimator.aer_rows = density_gradient.aer_rows = run_rows
    print(f"noise-aware quantum layer fwd+bwd on FakeBrisbane (density matrix), B={b}: "
          f"{b / best(layer_step):.1f} samples/s ({sum(rows)} simulated rows per step; one shifted row "
          f"per sample and parameter would be {b * (1 + 2 * circuit.num_parameters)})")
    model = HybridNet(channels=1, num_classes=2, spec=spec, head_on=backend.training_head(spec))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(b, 1, 28, 28)
    labels = torch.randint(0, 2, (b,))

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    print(f"noise-aware training step (hqcnn backbone) on FakeBrisbane, B={b}: {b / best(train_step):.1f} samples/s")


if __name__ == "__main__":
    main()
