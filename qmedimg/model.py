"""The hybrid network: CNN backbone -> n angles -> quantum head (or its classical twin) -> classes;
the head's read-out and angle map; the classical baselines; applying a network to images; and its
checkpoint (saved atomically, loaded with ``weights_only``, checked for its keys and its network's shapes)
and the memory a training step needs.

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
    net3d = HybridNet(channels=1, num_classes=11, spec=spec, dims=3,   # volumes: a Conv3d backbone
                      head_on={"estimator": ExactEstimator()})
    net3d(torch.rand(2, 1, 28, 28, 28))              # (2, 11)
    net.to(torch_device("auto"))                     # cuda if torch sees a GPU, else cpu; batches follow

The backbones and the baselines' torchvision networks, 2D and 3D, are in :mod:`qmedimg.backbones`.
On a GPU the CNN (and the baselines, the classical heads) run there; a quantum head's angles go to its
estimator on the CPU and its values come back to the GPU (:mod:`qmedimg.quantum.qnn`).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from qmedimg.backbones import autocast, baseline_network, make_backbone
from qmedimg.data.images import to_tensor
from qmedimg.errors import QmedimgError
from qmedimg.files import check_schema, write_atomic
from qmedimg.quantum.circuits import CircuitSpec, check_inputs
from qmedimg.quantum.qnn import QuantumHead

HEADS = ("quantum", "classical", "linear")
ANGLE_MAPS = ("tanh", "batchnorm", "batchnorm-half")
READOUTS = ("circuit", "z+zz", "z+zz-all")
DEVICES = ("auto", "cpu", "cuda")


def torch_device(name: str | torch.device = "auto") -> torch.device:
    """Where the networks run: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` (or
    ``cuda:N``) without one is refused in one line. Choosing CUDA sets cuBLAS's workspace to the 32 MiB
    of ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (unless that is set) through torch's own setting; only a torch
    too old to have it gets the variable (its deterministic mode refuses cuBLAS without it).

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
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:  # the workspace CUDA runs have always had
            if hasattr(torch.backends.cuda, "cublas_workspace_size"):
                torch.backends.cuda.cublas_workspace_size(4096 * 1024 * 8)  # before the first matrix product
            else:  # an older torch reads it from the variable only, when cuBLAS starts
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
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

    ``amp`` (this network's own attribute, off by default; training on CUDA turns it on for ``--amp`` on
    the copy it trains, off before evaluating): the backbone runs under float16 autocast, everything after
    it (angles, head, classifier) in float32."""

    def __init__(self, *, channels: int, num_classes: int, spec: CircuitSpec,
                 head_on: dict | None = None, backbone: str = "hqcnn",
                 head: str = "quantum", dropout: float = 0.0, angle_map: str = "tanh", multi_label: bool = False,
                 dims: int = 2, amp: bool = False):
        super().__init__()
        self.amp = amp
        self.spec = spec
        self.multi_label = multi_label  # one sigmoid per output (multi-label data), else a softmax over classes
        n = spec.num_qubits  # the model feeds one angle per qubit
        check_inputs(spec, n)
        if angle_map not in ANGLE_MAPS:
            raise ValueError(f"unknown angle map '{angle_map}'; valid: {', '.join(ANGLE_MAPS)}")
        self.backbone, features = make_backbone(backbone, channels, dims)  # dims 3: volumes (B, C, D, H, W)
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
        features = self.to_angles(autocast(self.backbone, images) if self.amp else self.backbone(images))
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



class Baseline(nn.Module):
    """The classical reference networks of the seed papers' tables.

    ``resnet18``: torchvision's ResNet-18 (11.2 M parameters) with, for ``stem="3x3"``, MedMNIST v2's
    adaptation to 28×28 images (3×3 stride-1 first convolution, no max-pool), or for ``"imagenet"``
    torchvision's own 7×7 stride-2 convolution and max-pool (what MedMNIST v2 used at 224×224; 10-18×
    faster to train at 64 and 128 than the 3×3 stem, whose first maps stay full-size: 272 vs 28
    samples/s at 64, 97 vs 5.3 at 128 on 2 CPU cores, ``benchmarks/size_throughput.py``). ``vgg16``:
    torchvision's VGG-16 (its five poolings need images of 64×64 or more). On volumes (``dims=3``):
    torchvision's 3D ResNet-18 ``r3d_18`` (33.2 M parameters; :func:`~qmedimg.backbones.baseline_network`);
    VGG-16 is refused. ``amp``: as :class:`HybridNet`'s, for the whole network."""

    spec = None

    def __init__(self, name: str, channels: int, num_classes: int, stem: str = "3x3", multi_label: bool = False,
                 dims: int = 2, amp: bool = False):
        super().__init__()
        self.amp = amp
        self.multi_label = multi_label  # one sigmoid per output (multi-label data), else a softmax over classes
        self.net = baseline_network(name, channels, num_classes, stem=stem, dims=dims)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return autocast(self.net, images) if self.amp else self.net(images)

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"head": 0, "rest": total, "total": total, "quantum": 0, "classical": total}


# ------------------------------------------------------------------------------------------------
# Applying a network to images (evaluation mode, batch by batch, on the network's device; numpy out)


VALUES_PER_BATCH = 2**22
"""Evaluation batches hold at most this many input values (256 images up to 128×128; 191 volumes of
28³, 16 of 64³), so large images and volumes do not exhaust memory."""


def _batch(images: np.ndarray, batch_size: int) -> int:
    return max(1, min(batch_size, VALUES_PER_BATCH // max(1, images[0].size if len(images) else 1)))


def probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """The network's logits as probabilities: a softmax over classes, or a sigmoid per label when the
    network was built for multi-label data."""
    return torch.sigmoid(logits) if getattr(model, "multi_label", False) else torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_probs(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, K) of a model in eval mode, batch by batch (multi-label: one
    probability per label, :func:`probabilities`)."""
    model.eval()
    device, batch_size = model_device(model), _batch(images, batch_size)
    out = [probabilities(model, model(to_tensor(images[i : i + batch_size]).to(device))).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


@torch.no_grad()
def head_angles(model: HybridNet, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The quantum head's input angles (N, n) for ``images``: the only per-image numbers a backend sees."""
    model.eval()
    device, batch_size = model_device(model), _batch(images, batch_size)
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
    return probabilities(model, logits).cpu().double().numpy()


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


CHECKPOINT_KEYS = ("epoch", "model", "averaged", "best_model", "best", "optimizer", "scheduler", "generator",
                   "torch_rng", "history", "train_seconds", "trained_samples", "wall_seconds")
"""What every checkpoint holds (train.py writes them all, every epoch; typed: :class:`qmedimg.artifact.Checkpoint`)."""
CHECKPOINT_SCHEMA = 2
"""checkpoint.pt's format version, its ``"schema"``: one without it is version 1 (the same keys otherwise)."""


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("epoch", "best_model")) -> dict:
    """The run's checkpoint (``torch.load(weights_only=True)``, every tensor on the CPU whatever device
    wrote it), or one line why not: unreadable, of a newer ``schema``, or missing one of ``keys`` (loading the
    kept weights needs the default ones; resuming needs :data:`CHECKPOINT_KEYS`)."""
    file = path / "checkpoint.pt"
    try:
        state = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file
        raise QmedimgError(f"{file}: cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise QmedimgError(f"{file}: not a qmedimg checkpoint (holds a {type(state).__name__}, not a dict)")
    check_schema(file, state.get("schema", 1), CHECKPOINT_SCHEMA)  # version 1 -> 2 only added the key
    missing = [key for key in keys if key not in state]
    if missing:
        raise QmedimgError(f"{file}: not a complete qmedimg checkpoint (no {', '.join(missing)}); restore it, or "
                           "train the run again")
    return state


def load_weights(model: torch.nn.Module, weights: dict, file: Path) -> None:
    """``model.load_state_dict(weights)``, or one line when they belong to another network (another
    architecture, or a config.json edited since: e.g. ``qubits``)."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise QmedimgError(f"{file}: its weights do not fit the network config.json describes ({detail}); was "
                           "config.json edited, or the checkpoint copied from another run?") from None
    bad = next((name for name, value in weights.items() if torch.is_tensor(value) and value.is_floating_point()
                and not bool(torch.isfinite(value).all())), None)
    if bad is not None:
        raise QmedimgError(f"{file}: weight {bad} holds NaN or infinite values (training diverged, or the file was "
                           "damaged); restore it, or train the run again with a lower --lr")


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a unique temporary file, then a rename: a checkpoint is never half written,
    and a failed write (full disk, read-only directory) is one line with the previous one intact."""
    write_atomic(path, lambda handle: torch.save(obj, handle))


def saved_epoch(run_dir: str | Path) -> int | None:
    """The last finished epoch a run directory's checkpoint holds; None when it has none (or it
    cannot be read)."""
    path = Path(run_dir)
    if not (path / "checkpoint.pt").is_file():
        return None
    try:
        return int(load_checkpoint(path)["epoch"])
    except (QmedimgError, KeyError, TypeError, ValueError):
        return None


TRAINING_BYTES_PER_VOXEL = 400
"""A lower bound of a training step's peak memory per input pixel (voxel) of a batch: measured 555–1,447
bytes on the hqcnn backbone at 64–256 px, batch 32 (activations and their gradients at full resolution)."""


def training_memory(batch_size: int, size: int, dims: int = 2) -> int:
    """The least peak memory (bytes) of one training step on ``batch_size`` inputs of ``size`` pixels a side."""
    return TRAINING_BYTES_PER_VOXEL * batch_size * size**dims
