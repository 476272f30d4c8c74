"""The hybrid network: CNN backbone -> n angles -> quantum head (or its classical twin) -> classes;
the head's read-out and angle map; the classical baselines; and applying a network to images.

Example::

    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator
    from qmedimg.model import HybridNet, predict_probs

    spec = load_circuit("sel")                       # 4 qubits, 4 inputs, 24 weights
    net = HybridNet(channels=1, num_classes=2, spec=spec, head_on={"estimator": ExactEstimator()})
    logits = net(torch.rand(8, 1, 28, 28))           # (8, 2)
    net.parameter_counts()                           # {'quantum': 24, 'classical': ..., 'total': ...}
    wide = with_readout(spec, "z+zz")                # 8 outputs: Z0..Z3, Z0Z1, Z1Z2, Z2Z3, Z3Z0
    net = HybridNet(channels=1, num_classes=2, spec=wide, angle_map="batchnorm",
                    head_on={"estimator": ExactEstimator()})
    probs = predict_probs(net, uint8_images)         # (N, 2), eval mode, batch by batch
    net.to(torch_device("auto"))                     # cuda if torch sees a GPU, else cpu; batches follow

On a GPU the CNN (and the baselines, the classical heads) run there; a quantum head's angles go to its
estimator on the CPU and its values come back to the GPU (:mod:`qmedimg.quantum.qnn`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from qmedimg.data.images import to_tensor
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec, check_inputs
from qmedimg.quantum.qnn import QuantumHead

BACKBONES = ("compact", "hqcnn")
HEADS = ("quantum", "classical", "linear")
ANGLE_MAPS = ("tanh", "batchnorm", "batchnorm-half")
READOUTS = ("circuit", "z+zz", "z+zz-all")
BASELINE_SIZES = {"resnet18": (28, 64, 128, 224), "vgg16": (64, 128, 224)}  # image sizes each can take
STEMS = ("3x3", "imagenet")  # ResNet-18's first layers (Baseline)
DEVICES = ("auto", "cpu", "cuda")


def torch_device(name: str | torch.device = "auto") -> torch.device:
    """Where the networks run: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` (or
    ``cuda:N``) without one is refused in one line. Choosing CUDA sets ``CUBLAS_WORKSPACE_CONFIG``
    (unless set) before CUDA initialises, as ``torch.use_deterministic_algorithms`` needs there.

    >>> torch_device("auto")          # on a machine without a GPU
    device(type='cpu')
    """
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise QmedimgError(f"--device {name}: unknown device; valid: {', '.join(DEVICES)}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise QmedimgError(f"--device {name}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                               "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise QmedimgError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here; "
                               f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device a network's parameters are on (where its input batches go)."""
    return next(model.parameters()).device


def readout_pairs(num_qubits: int, readout: str) -> list[tuple[int, int]]:
    """The qubit pairs whose ZZ a read-out adds: none for ``circuit``; ring neighbours (i, i+1 mod n)
    for ``z+zz``; every pair for ``z+zz-all``."""
    n = num_qubits
    if readout == "circuit":
        return []
    if readout == "z+zz":
        return [(i, (i + 1) % n) for i in range(n)] if n > 2 else [(0, 1)] if n == 2 else []
    if readout == "z+zz-all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    raise ValueError(f"unknown readout '{readout}'; valid: {', '.join(READOUTS)}")


def with_readout(spec: CircuitSpec, readout: str) -> CircuitSpec:
    """The circuit with the head's read-out, each observable one output the classifier maps to the classes.

    ``circuit``: the file's own ``// observables:`` (default Z on every qubit), unchanged.
    ``z+zz``: Z on every qubit, then Z·Z on ring neighbours (2n outputs from 3 qubits on; 8 at 4).
    ``z+zz-all``: Z on every qubit, then Z·Z on every pair (n + n(n-1)/2 outputs; 10 at 4 qubits).

    >>> from qmedimg.quantum.circuits import load_circuit
    >>> [o.paulis[0].to_label() for o in with_readout(load_circuit("sel"), "z+zz").observables][4:]
    ['IIZZ', 'IZZI', 'ZZII', 'ZIIZ']
    """
    pairs = readout_pairs(spec.num_qubits, readout)  # checks the name
    if readout == "circuit":
        return spec
    n = spec.num_qubits
    singles = [SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], n) for i in range(n)]
    doubles = [SparsePauliOp.from_sparse_list([("ZZ", [i, j], 1.0)], n) for i, j in pairs]
    return replace(spec, observables=tuple(singles + doubles))


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def make_backbone(name: str, channels: int) -> tuple[nn.Module, int]:
    """A CNN mapping (B, C, H, W) images to (B, F) features, for any H = W >= 28; returns (net, F).

    ``compact``: 2 conv + pool blocks, the lightweight design of hybrid-QML papers.
    ``hqcnn``: 5 conv layers in 3 stages, as in the HQCNN paper's feature extractor.
    """
    if name == "compact":
        layers = [*_conv(channels, 16), nn.MaxPool2d(2), *_conv(16, 32), nn.MaxPool2d(2)]
        width = 32
    elif name == "hqcnn":
        layers = [
            *_conv(channels, 16), *_conv(16, 16), nn.MaxPool2d(2),
            *_conv(16, 32), *_conv(32, 32), nn.MaxPool2d(2),
            *_conv(32, 64),
        ]
        width = 64
    else:
        raise ValueError(f"unknown backbone '{name}'; valid: {', '.join(BACKBONES)}")
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), width


class ClassicalHead(nn.Module):
    """The ablation: a bias-free tanh MLP n -> h -> O, bounded to [-1, 1] like expectation values,
    with h chosen so its (n + O)·h weights come nearest the circuit's weight count: equal for
    ``sel`` and ``ring`` at their defaults (24 and 24), not for ``fqa`` (24 vs 22). The counts
    actually trained are reported in ``metrics.json`` and ``comparison.md``."""

    def __init__(self, num_inputs: int, num_outputs: int, num_weights: int):
        super().__init__()
        hidden = max(1, round(num_weights / (num_inputs + num_outputs)))
        self.net = nn.Sequential(
            nn.Linear(num_inputs, hidden, bias=False), nn.Tanh(),
            nn.Linear(hidden, num_outputs, bias=False), nn.Tanh(),
        )
        self.num_outputs = num_outputs

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        return self.net(angles)


class HybridNet(nn.Module):
    """backbone -> Linear(F, n) -> angle map (bounded angles) -> head -> dropout -> Linear(O, classes).

    ``angle_map``: how the n features become the head's input angles. ``tanh`` is π·tanh(feature),
    in (-π, π): it saturates when a feature grows, and lets a feature shrink to a constant.
    ``batchnorm`` normalises each feature over the batch first (``BatchNorm1d`` without affine
    parameters: mean 0, variance 1; running statistics in evaluation), then π·tanh: every angle keeps
    a spread of about ±2 rad and rarely saturates, but it covers most of (-π, π), where Ry(x)'s
    read-out cos(x) folds. ``batchnorm-half``: the same, then (π/2)·tanh, into (-π/2, π/2), where
    sin(x) is one-to-one. The classical head takes the same angles.

    ``head_on``: the quantum head's execution — ``estimator`` and optionally the ``circuit``
    (ISA) and ``observables`` (layout-mapped) to send it and the ``precision`` (keyword arguments
    of :class:`QuantumHead`).

    ``amp`` (a plain attribute, off by default; training on CUDA sets it for ``--amp``): the backbone
    runs under float16 autocast, everything after it (angles, head, classifier) in float32."""

    amp = False

    def __init__(self, *, channels: int, num_classes: int, spec: CircuitSpec,
                 head_on: dict | None = None, backbone: str = "hqcnn",
                 head: str = "quantum", dropout: float = 0.0, angle_map: str = "tanh"):
        super().__init__()
        self.spec = spec
        n = spec.num_qubits  # the model feeds one angle per qubit
        check_inputs(spec, n)
        if angle_map not in ANGLE_MAPS:
            raise ValueError(f"unknown angle map '{angle_map}'; valid: {', '.join(ANGLE_MAPS)}")
        self.backbone, features = make_backbone(backbone, channels)
        self.to_angles = nn.Linear(features, n)
        self.bounded = head != "linear"
        self.angle_map = angle_map
        # no module for tanh: the state dicts of runs made before angle maps existed load unchanged
        self.normalise = nn.BatchNorm1d(n, affine=False) if self.bounded and angle_map != "tanh" else None
        self.scale = math.pi / 2 if angle_map == "batchnorm-half" else math.pi
        if head == "linear":  # the plain baseline: backbone features straight to the classes
            self.to_angles, self.head = nn.Identity(), nn.Identity()
            outputs = features
        elif head == "quantum":
            if not head_on or "estimator" not in head_on:
                raise ValueError("a quantum head needs head_on={'estimator': ...}")
            self.head: nn.Module = QuantumHead(spec, **head_on)
        elif head == "classical":
            self.head = ClassicalHead(n, len(spec.observables), len(spec.weights))
        else:
            raise ValueError(f"unknown head '{head}'; valid: {', '.join(HEADS)}")
        if head != "linear":
            outputs = self.head.num_outputs
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(outputs, num_classes)

    def angles(self, images: torch.Tensor) -> torch.Tensor:
        """The head's inputs: bounded angles in (-π, π), or (-π/2, π/2) for ``batchnorm-half`` (for
        the linear head: the raw features)."""
        features = self.to_angles(_autocast(self.backbone, images) if self.amp else self.backbone(images))
        if not self.bounded:
            return features
        if self.normalise is not None:
            features = self.normalise(features)
        return self.scale * torch.tanh(features)

    def head_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """The head's outputs (expectation values for a quantum head)."""
        return self.head(self.angles(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.head_outputs(images)))

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters split into the head's and everything else."""
        head = sum(p.numel() for p in self.head.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        quantum = head if isinstance(self.head, QuantumHead) else 0
        return {"head": head, "rest": total - head, "total": total,
                "quantum": quantum, "classical": total - quantum}



def _autocast(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``network(images)`` under float16 autocast on the images' (CUDA) device, returned as float32."""
    with torch.autocast(images.device.type, dtype=torch.float16):
        return network(images).float()


class Baseline(nn.Module):
    """The classical reference networks of the seed papers' tables.

    ``resnet18``: torchvision's ResNet-18 (11.2 M parameters) with, for ``stem="3x3"``, MedMNIST v2's
    adaptation to 28×28 images (3×3 stride-1 first convolution, no max-pool), or for ``"imagenet"``
    torchvision's own 7×7 stride-2 convolution and max-pool (what MedMNIST v2 used at 224×224; 10-18×
    faster to train at 64 and 128 than the 3×3 stem, whose first maps stay full-size: 272 vs 28
    samples/s at 64, 97 vs 5.3 at 128 on 2 CPU cores, ``benchmarks/size_throughput.py``). ``vgg16``:
    torchvision's VGG-16 (its five poolings need images of 64×64 or more). ``amp``: as
    :class:`HybridNet`'s, for the whole network."""

    spec = None
    amp = False

    def __init__(self, name: str, channels: int, num_classes: int, stem: str = "3x3"):
        super().__init__()
        import torchvision

        if name == "resnet18":
            if stem not in STEMS:
                raise ValueError(f"unknown stem '{stem}'; valid: {', '.join(STEMS)}")
            self.net = torchvision.models.resnet18(num_classes=num_classes)
            if stem == "3x3":
                self.net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
                self.net.maxpool = nn.Identity()
            else:
                self.net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        elif name == "vgg16":
            self.net = torchvision.models.vgg16(num_classes=num_classes)
            self.net.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
        else:
            raise ValueError(f"unknown baseline '{name}'; valid: {', '.join(BASELINE_SIZES)}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _autocast(self.net, images) if self.amp else self.net(images)

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"head": 0, "rest": total, "total": total, "quantum": 0, "classical": total}


# ------------------------------------------------------------------------------------------------
# Applying a network to images (evaluation mode, batch by batch, on the network's device; numpy out)


@torch.no_grad()
def predict_probs(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of a model in eval mode, batch by batch."""
    model.eval()
    device = model_device(model)
    out = [torch.softmax(model(to_tensor(images[i : i + batch_size]).to(device)), dim=1).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


@torch.no_grad()
def head_angles(model: HybridNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The quantum head's input angles (N, n) for ``images``: the only per-image numbers a backend sees."""
    model.eval()
    device = model_device(model)
    return torch.cat([model.angles(to_tensor(images[i : i + batch_size]).to(device)).cpu()
                      for i in range(0, len(images), batch_size)]).double().numpy()


@torch.no_grad()
def ideal_head_values(model: HybridNet, angles: np.ndarray) -> np.ndarray:
    """The trained head's outputs (N, O) for ``angles`` (N, n) on the estimator it was built with (exact,
    as trained; or its classical head): the reference every backend is compared against."""
    return model.head(torch.from_numpy(angles).float().to(model_device(model))).cpu().double().numpy()


@torch.no_grad()
def probs_from_head(model: HybridNet, head_values: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) from the head's outputs (N, O) through the run's classifier."""
    logits = model.classifier(torch.from_numpy(head_values).float().to(model_device(model)))
    return torch.softmax(logits, dim=1).cpu().double().numpy()


def head_weights(model: HybridNet) -> np.ndarray:
    """The quantum head's trained circuit weights, float64 (what a backend binds besides the angles)."""
    return model.head.connector.weight.detach().cpu().double().numpy()


def participation_ratio(values: np.ndarray) -> float:
    """(Σλ)²/Σλ² over the eigenvalues λ of the covariance of ``values`` (samples, features): 1 when
    they vary along one direction, the number of features when they vary equally in all; 0 if constant."""
    eigenvalues = np.clip(np.linalg.eigvalsh(np.atleast_2d(np.cov(values, rowvar=False))), 0, None)
    total = eigenvalues.sum()
    return float(total**2 / (eigenvalues**2).sum()) if total > 0 else 0.0


def head_usage(model: nn.Module, images: np.ndarray) -> dict | None:
    """Is the head used? On ``images``: the effective dimension of its outputs (participation ratio
    of their covariance's eigenvalues, (Σλ)²/Σλ²: 1 when they carry one number, O when all O carry
    their own), each output's spread, each input angle's mean, spread and share saturated (|angle|
    above 0.95 of its bound, π or π/2, where tanh is flat), and for a quantum head the circuit weights
    whose gradient is zero on every image and output (exact values). None for networks without a
    bounded head."""
    if not isinstance(model, HybridNet) or not model.bounded:
        return None
    angles = head_angles(model, images)
    outputs = ideal_head_values(model, angles)
    usage = {"images": int(len(images)), "outputs": int(outputs.shape[1]),
             "effective_dimension": round(participation_ratio(outputs), 3),
             "output_std": outputs.std(0).round(4).tolist(), "angle_mean": angles.mean(0).round(4).tolist(),
             "angle_std": angles.std(0).round(4).tolist(),
             "angle_saturated": (np.abs(angles) > 0.95 * model.scale).mean(0).round(4).tolist()}
    if isinstance(model.head, QuantumHead):
        from qmedimg.quantum.exact import ExactEstimator

        exact = QuantumHead(model.spec, ExactEstimator())  # the trained weights on exact values
        _, grads = exact.qnn.backward(angles, head_weights(model))  # (images, outputs, weights)
        zero = np.abs(grads).max(axis=(0, 1)) < 1e-9
        usage["weights"] = len(model.spec.weights)
        usage["zero_gradient_weights"] = [w.name for w, z in zip(model.spec.weights, zero) if z]
    return usage
