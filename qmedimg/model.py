"""The hybrid network: CNN backbone -> n angles -> quantum head (or its classical twin) -> classes;
the classical baselines; and applying a network to images.

Example::

    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator
    from qmedimg.model import HybridNet, predict_probs

    spec = load_circuit("sel")                       # 4 qubits, 4 inputs, 24 weights
    net = HybridNet(channels=1, num_classes=2, spec=spec, head_on={"estimator": ExactEstimator()})
    logits = net(torch.rand(8, 1, 28, 28))           # (8, 2)
    net.parameter_counts()                           # {'quantum': 24, 'classical': ..., 'total': ...}
    probs = predict_probs(net, uint8_images)         # (N, 2), eval mode, batch by batch
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from qmedimg.data.images import to_tensor
from qmedimg.quantum.circuits import CircuitSpec, check_inputs
from qmedimg.quantum.qnn import QuantumHead

BACKBONES = ("compact", "hqcnn")
HEADS = ("quantum", "classical", "linear")
BASELINE_SIZES = {"resnet18": (28, 64, 128, 224), "vgg16": (64, 128, 224)}  # image sizes each can take


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
    """backbone -> Linear(F, n) -> π·tanh (bounded angles) -> head -> dropout -> Linear(O, classes).

    ``head_on``: the quantum head's execution — ``estimator`` and optionally the ``circuit``
    (ISA) and ``observables`` (layout-mapped) to send it and the ``precision`` (keyword arguments
    of :class:`QuantumHead`)."""

    def __init__(self, *, channels: int, num_classes: int, spec: CircuitSpec,
                 head_on: dict | None = None, backbone: str = "hqcnn",
                 head: str = "quantum", dropout: float = 0.0):
        super().__init__()
        self.spec = spec
        n = spec.num_qubits  # the model feeds one angle per qubit
        check_inputs(spec, n)
        self.backbone, features = make_backbone(backbone, channels)
        self.to_angles = nn.Linear(features, n)
        self.bounded = head != "linear"
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
        """The head's inputs: bounded angles in (-π, π) (for the linear head: the raw features)."""
        features = self.to_angles(self.backbone(images))
        return math.pi * torch.tanh(features) if self.bounded else features

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



class Baseline(nn.Module):
    """The classical reference networks of the seed papers' tables.

    ``resnet18``: torchvision's ResNet-18 adapted to small images as MedMNIST v2's benchmark does
    (3×3 stride-1 stem, no max-pool; 11.2 M parameters). ``vgg16``: torchvision's VGG-16 (its five
    poolings need images of 64×64 or more)."""

    spec = None

    def __init__(self, name: str, channels: int, num_classes: int):
        super().__init__()
        import torchvision

        if name == "resnet18":
            self.net = torchvision.models.resnet18(num_classes=num_classes)
            self.net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
            self.net.maxpool = nn.Identity()
        elif name == "vgg16":
            self.net = torchvision.models.vgg16(num_classes=num_classes)
            self.net.features[0] = nn.Conv2d(channels, 64, 3, padding=1)
        else:
            raise ValueError(f"unknown baseline '{name}'; valid: {', '.join(BASELINE_SIZES)}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"head": 0, "rest": total, "total": total, "quantum": 0, "classical": total}


# ------------------------------------------------------------------------------------------------
# Applying a network to images (evaluation mode, batch by batch)


@torch.no_grad()
def predict_probs(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of a model in eval mode, batch by batch."""
    model.eval()
    out = [torch.softmax(model(to_tensor(images[i : i + batch_size])), dim=1)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


@torch.no_grad()
def head_angles(model: HybridNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The quantum head's input angles (N, n) for ``images``: the only per-image numbers a backend sees."""
    model.eval()
    return torch.cat([model.angles(to_tensor(images[i : i + batch_size]))
                      for i in range(0, len(images), batch_size)]).double().numpy()


@torch.no_grad()
def ideal_head_values(model: HybridNet, angles: np.ndarray) -> np.ndarray:
    """The trained head's expectation values (N, O) on the estimator it was built with (exact, as
    trained): the reference every backend is compared against."""
    return model.head(torch.from_numpy(angles).float()).double().numpy()


@torch.no_grad()
def probs_from_head(model: HybridNet, head_values: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) from the head's outputs (N, O) through the run's classifier."""
    logits = model.classifier(torch.from_numpy(head_values).float())
    return torch.softmax(logits, dim=1).double().numpy()


def head_weights(model: HybridNet) -> np.ndarray:
    """The quantum head's trained circuit weights, float64 (what a backend binds besides the angles)."""
    return model.head.connector.weight.detach().double().numpy()


def participation_ratio(values: np.ndarray) -> float:
    """(Σλ)²/Σλ² over the eigenvalues λ of the covariance of ``values`` (samples, features): 1 when
    they vary along one direction, the number of features when they vary equally in all; 0 if constant."""
    eigenvalues = np.clip(np.linalg.eigvalsh(np.atleast_2d(np.cov(values, rowvar=False))), 0, None)
    total = eigenvalues.sum()
    return float(total**2 / (eigenvalues**2).sum()) if total > 0 else 0.0


def head_usage(model: nn.Module, images: np.ndarray) -> dict | None:
    """Is the head used? On ``images``: the effective dimension of its outputs (participation ratio
    of their covariance's eigenvalues, (Σλ)²/Σλ²: 1 when they carry one number, O when all O carry
    their own), each output's spread, each input angle's mean, spread and share saturated
    (|angle| > 0.95π, where π·tanh is flat), and for a quantum head the circuit weights whose gradient
    is zero on every image and output (exact values). None for networks without a bounded head."""
    if not isinstance(model, HybridNet) or not model.bounded:
        return None
    angles = head_angles(model, images)
    with torch.no_grad():
        outputs = model.head(torch.from_numpy(angles).float()).double().numpy()
    usage = {"images": int(len(images)), "outputs": int(outputs.shape[1]),
             "effective_dimension": round(participation_ratio(outputs), 3),
             "output_std": outputs.std(0).round(4).tolist(), "angle_mean": angles.mean(0).round(4).tolist(),
             "angle_std": angles.std(0).round(4).tolist(),
             "angle_saturated": (np.abs(angles) > 0.95 * math.pi).mean(0).round(4).tolist()}
    if isinstance(model.head, QuantumHead):
        from qmedimg.quantum.exact import ExactEstimator

        exact = QuantumHead(model.spec, ExactEstimator())  # the trained weights on exact values
        _, grads = exact.qnn.backward(angles, head_weights(model))  # (images, outputs, weights)
        zero = np.abs(grads).max(axis=(0, 1)) < 1e-9
        usage["weights"] = len(model.spec.weights)
        usage["zero_gradient_weights"] = [w.name for w, z in zip(model.spec.weights, zero) if z]
    return usage
