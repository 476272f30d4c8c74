"""Throughput of the quantum layer and of a full hybrid training step, in one run.

    python benchmarks/throughput.py [--circuit sel] [--seconds 3] [--skip-plain-256]

Prints samples/s (forward + backward) of
  (i)  qiskit-machine-learning's EstimatorQNN + TorchConnector with its defaults
       (reference estimator, ParamShiftEstimatorGradient, default_precision) at B=32 and B=256;
  (ii) the same FastEstimatorQNN as (iii) (one-PUB forward, one-PUB batched parameter shift) on
       Aer's statevector EstimatorV2 with run-time parameter binding, at B=32 and B=256: what
       batching buys on a standard simulator. Its values and gradients are checked against the
       exact estimator's (to 1e-8) before anything is timed;
  (iii) qmedimg's path (FastEstimatorQNN + ExactEstimator) at B=32 and B=256: (iii)/(ii) is what
       the exact estimator buys on top of batching;
  (iv) a full training step (forward, loss, backward, AdamW) of the hybrid model and of the same
       model with the classical head, at the default batch size 32;
and the ratios between them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from qiskit.circuit import QuantumCircuit
from qiskit.transpiler.passes import TranslateParameterizedGates
from qiskit_aer.primitives import EstimatorV2 as AerEstimatorV2
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN

from qmedimg.model import HybridNet
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.qnn import FastEstimatorQNN

# Gates Aer binds correctly at run time; parameterized cp/crz/crx/cry are unrolled into these.
AER_SAFE_GATES = ["rx", "ry", "rz", "p", "u", "rzz", "rxx", "ryy", "rzx"]
AER_TOLERANCE = 1e-8  # max |Aer - exact| of values and gradients before Aer is timed


def rate(step, batch: int, seconds: float, min_reps: int = 2, windows: int = 1,
         warmup: bool = True) -> float:
    """Samples per second of ``step()`` after one warm-up call: the best of ``windows`` timing
    windows of at least ``seconds`` and ``min_reps`` calls each (the best window is the one least
    disturbed by whatever else the machine did)."""
    if warmup:
        step()
    best = 0.0
    for _ in range(windows):
        reps, start = 0, time.perf_counter()
        while reps < min_reps or time.perf_counter() - start < seconds:
            step()
            reps += 1
        best = max(best, reps * batch / (time.perf_counter() - start))
    return best


def aer_safe(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with parameterized controlled rotations unrolled and no global phase: with
    run-time parameter binding, Aer 0.18.2 ignores parameterized cp/crz/crx/cry and fails on a
    parameterized global phase with several parameter rows (qiskit-aer #2403, #2323). Same
    parameters, same expectation values."""
    unrolled = TranslateParameterizedGates(AER_SAFE_GATES)(circuit)
    unrolled.global_phase = 0  # no effect on expectation values
    return unrolled


def check_against_exact(qnn, reference, weights: np.ndarray, batch: int = 4) -> None:
    """Raise unless ``qnn`` gives ``reference``'s values and input/weight gradients to AER_TOLERANCE
    on a small random batch (an explicit raise, not ``assert``: it must survive ``python -O``)."""
    x = np.random.default_rng(1).uniform(-np.pi, np.pi, (batch, qnn.num_inputs))
    pairs = {"values": (qnn.forward(x, weights), reference.forward(x, weights))}
    pairs.update(zip(("input gradients", "weight gradients"),
                     zip(qnn.backward(x, weights), reference.backward(x, weights))))
    for what, (got, want) in pairs.items():
        error = np.max(np.abs(np.asarray(got) - np.asarray(want)))
        if not error <= AER_TOLERANCE:
            raise AssertionError(f"FastEstimatorQNN+Aer {what} differ from the exact estimator's by {error:.2e} "
                                 f"(> {AER_TOLERANCE:g}): not timing a wrong computation")


def layer_step(layer: torch.nn.Module, batch: int, n_inputs: int):
    x = torch.rand(batch, n_inputs, requires_grad=True)

    def step():
        layer(x).sum().backward()

    return step


def train_step(model: torch.nn.Module, batch: int):
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 2, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--circuit", default="sel")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timing window")
    parser.add_argument("--skip-plain-256", action="store_true", help="plain qiskit-ML at B=256 takes ~4 min")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = load_circuit(args.circuit)
    n, weights = len(spec.inputs), np.random.default_rng(0).uniform(-np.pi, np.pi, len(spec.weights))
    common = dict(circuit=spec.circuit, observables=list(spec.observables), input_params=list(spec.inputs),
                  weight_params=list(spec.weights), input_gradients=True)
    plain = TorchConnector(EstimatorQNN(**common), initial_weights=weights)
    fast = TorchConnector(FastEstimatorQNN(estimator=ExactEstimator(), default_precision=0.0, **common),
                          initial_weights=weights)
    aer_estimator = AerEstimatorV2(options={"default_precision": 0.0, "backend_options": {
        "method": "statevector", "runtime_parameter_bind_enable": True}})
    aer_qnn = FastEstimatorQNN(estimator=aer_estimator, default_precision=0.0,
                               **{**common, "circuit": aer_safe(spec.circuit)})
    check_against_exact(aer_qnn, fast.neural_network, weights)
    aer = TorchConnector(aer_qnn, initial_weights=weights)
    print(f"circuit {spec.name}: {spec.num_qubits} qubits, {n} inputs, {len(spec.weights)} weights, "
          f"{len(spec.observables)} observables; torch threads {torch.get_num_threads()}")
    results = {}
    for batch in (32, 256):
        if batch == 256 and args.skip_plain_256:
            results[("plain", batch)] = float("nan")
        else:
            # minutes per call: one timed call, no warm-up
            results[("plain", batch)] = rate(layer_step(plain, batch, n), batch, 0.0, 1, warmup=False)
        # ~0.1 s (B=32) to ~1.5 s (B=256) a call: three windows of at least three calls
        results[("aer", batch)] = rate(layer_step(aer, batch, n), batch, args.seconds, 3, windows=3)
        results[("fast", batch)] = rate(layer_step(fast, batch, n), batch, args.seconds, 5, windows=5)
        p, a, f = results[("plain", batch)], results[("aer", batch)], results[("fast", batch)]
        print(f"quantum layer fwd+bwd B={batch:<4} qiskit-ML defaults {p:10.1f} samples/s   "
              f"FastEstimatorQNN+Aer {a:8.1f} samples/s   qmedimg {f:10.1f} samples/s   "
              f"ratio {f / p:8.0f}x = {a / p:.0f}x (FastEstimatorQNN+Aer) * {f / a:.0f}x (ExactEstimator)")
    backbone = "hqcnn"  # the training default
    hybrid = HybridNet(channels=1, num_classes=2, spec=spec, head_on={"estimator": ExactEstimator()}, backbone=backbone)
    classical = HybridNet(channels=1, num_classes=2, spec=spec, head="classical", backbone=backbone)
    h = rate(train_step(hybrid, 32), 32, args.seconds, 5, windows=3)
    c = rate(train_step(classical, 32), 32, args.seconds, 5, windows=3)
    print(f"training step B=32 ({backbone} backbone)  hybrid {h:8.1f} samples/s   classical head {c:8.1f} samples/s   "
          f"hybrid/classical {h / c:.2f}")


if __name__ == "__main__":
    main()
