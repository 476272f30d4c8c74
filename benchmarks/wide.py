"""Wide quantum heads, exact: forward + backward of the quantum layer at 4-16 qubits, next to the
peers a QML researcher would otherwise use, in one run.

    python benchmarks/wide.py [--qubits 4,8,12,16] [--batches 32,256] [--layers 2] [--seconds 2]

The layer is ``sel`` (Ry(x) encoding, strongly-entangling Rz·Ry·Rz layers with CNOT rings), Z read
out on every qubit, gradients w.r.t. inputs and weights (what training a hybrid CNN needs). Prints
samples/s of
  * qmedimg: ``QuantumHead`` (FastEstimatorQNN + TorchConnector + ExactEstimator) with its
    automatic gradient (adjoint from 5 qubits, parameter shift below), and with the other method
    forced (parameter shift: the method before the adjoint gradient existed; skipped at 16 qubits);
  * PennyLane ``default.qubit`` (``diff_method="backprop"``) and ``lightning.qubit``
    (``diff_method="adjoint"``) through ``qml.qnn.TorchLayer``, on the same circuit
    (``AngleEmbedding(rotation="Y")`` + ``StronglyEntanglingLayers``) — their outputs are checked
    equal to qmedimg's for the same inputs and weights before anything is timed.
PennyLane is not a qmedimg dependency: install it beside the project for the benchmark only, e.g.
``python -m venv --system-site-packages /tmp/peers && /tmp/peers/bin/pip install pennylane
pennylane-lightning`` and run this file with ``/tmp/peers/bin/python``; without it the peers are
skipped. (qiskit-torch-module is not on the package registry here: see ../shared/QISKIT_NOTES.md for
its figures.)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time

import numpy as np
import torch

from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.qnn import QuantumHead


def rate(step, batch: int, seconds: float, budget: float) -> float:
    """Samples/s of ``step()`` after a warm-up call: the best of up to three windows of at least
    ``seconds`` (one call only when a call takes longer than ``budget`` seconds)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    if first > budget:
        return batch / first
    best = 0.0
    for _ in range(3):
        reps, start = 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - start < seconds:
            step()
            reps += 1
        best = max(best, reps * batch / (time.perf_counter() - start))
    return best


def qmedimg_layer(qubits: int, layers: int, weights: np.ndarray, method: str):
    spec = load_circuit("sel", qubits=qubits, layers=layers)
    head = QuantumHead(spec, ExactEstimator())
    head.qnn.gradient.method = method
    # sel's weights are w0, w1, ... in (layer, qubit, Rz/Ry/Rz) order; the QNN takes them by name
    order = {p.name: i for i, p in enumerate(spec.weights)}
    flat = np.empty(len(spec.weights))
    for k, value in enumerate(weights.ravel()):
        flat[order[f"w{k}"]] = value
    with torch.no_grad():
        head.connector.weight.copy_(torch.as_tensor(flat))
    return head


def pennylane_layer(qubits: int, layers: int, weights: np.ndarray, device: str, diff_method: str):
    import pennylane as qml

    dev = qml.device(device, wires=qubits)

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(qubits), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(qubits))
        return [qml.expval(qml.PauliZ(i)) for i in range(qubits)]

    layer = qml.qnn.TorchLayer(circuit, {"weights": (layers, qubits, 3)})
    with torch.no_grad():
        layer.weights.copy_(torch.as_tensor(weights))
    return layer


def step_of(layer, batch: int, qubits: int):
    x = (torch.rand(batch, qubits, generator=torch.Generator().manual_seed(batch)) * 3).requires_grad_()

    def step():
        layer(x).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qubits", default="4,8,12,16")
    parser.add_argument("--batches", default="32,256")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timing window")
    parser.add_argument("--budget", type=float, default=60.0, help="time one call only when a call takes longer")
    args = parser.parse_args()
    try:
        import pennylane  # noqa: F401
        peers = {"default.qubit": ("default.qubit", "backprop"), "lightning": ("lightning.qubit", "adjoint")}
        peer_note = f"pennylane {importlib.metadata.version('pennylane')}"
    except ImportError:
        peers, peer_note = {}, "pennylane not installed: peers skipped"
    print(f"sel, {args.layers} layers, Z on every qubit, fwd+bwd with input gradients; torch threads "
          f"{torch.get_num_threads()}; {peer_note}")
    for qubits in [int(q) for q in args.qubits.split(",")]:
        weights = np.random.default_rng(qubits).uniform(-np.pi, np.pi, (args.layers, qubits, 3))
        layers = {"qmedimg": qmedimg_layer(qubits, args.layers, weights, "auto")}
        auto_adjoint = layers["qmedimg"].qnn.gradient.uses_adjoint(layers["qmedimg"].qnn.circuit)
        if not auto_adjoint:
            layers["qmedimg adjoint"] = qmedimg_layer(qubits, args.layers, weights, "adjoint")
        elif qubits < 16:
            layers["qmedimg parameter shift"] = qmedimg_layer(qubits, args.layers, weights, "parameter-shift")
        for name, (device, diff) in peers.items():
            layers[name] = pennylane_layer(qubits, args.layers, weights, device, diff)
        x = torch.rand(3, qubits, generator=torch.Generator().manual_seed(0)) * 3
        want = layers["qmedimg"](x).detach().double()
        for name, layer in layers.items():
            got = torch.as_tensor(np.asarray(layer(x).detach(), dtype=float))
            if not torch.allclose(got, want, atol=1e-5):
                raise AssertionError(f"{name} computes another circuit at {qubits} qubits: not timing it")
        method = "adjoint" if auto_adjoint else "shift"
        for batch in [int(b) for b in args.batches.split(",")]:
            rates = {name: rate(step_of(layer, batch, qubits), batch, args.seconds, args.budget)
                     for name, layer in layers.items()}
            peer_best = max((v for k, v in rates.items() if k in peers), default=float("nan"))
            cells = "   ".join(f"{name} {value:9.1f}" for name, value in rates.items())
            print(f"{qubits:2d} qubits B={batch:<4} samples/s: {cells}   "
                  f"qmedimg ({method}) / fastest peer {rates['qmedimg'] / peer_best:5.1f}x", flush=True)


if __name__ == "__main__":
    main()
