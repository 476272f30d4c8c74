"""Training throughput (samples/s) of qmedimg's networks at MedMNIST+ image sizes: why a GPU helps.

    python benchmarks/size_throughput.py [--models hybrid,resnet18] [--sizes 28,64,128] [--steps 5]
                                         [--repeats 3] [--device cpu]

Prints, per model and size, samples/s of a training step at batch 32 (forward, label-smoothed
cross-entropy, backward, AdamW step, moving-average update: the step of
``qmedimg.workflows.train``) after warm-up steps; the best of ``--repeats`` timing windows of at
least ``--steps`` steps and ``--seconds`` seconds (the window least disturbed by whatever else the
machine did). Networks are built
exactly as ``qmedimg train`` builds them (``qmedimg.rundir.build_model``): ``hybrid`` is the default
hqcnn backbone with the 4-qubit ``sel`` head on the exact estimator, ``resnet18`` gets the stem its
size gets (3×3 at 28, ImageNet's from 64).

Importable: ``train_samples_per_s("resnet18", 64)`` returns one figure.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from qmedimg.data import load_dataset, to_tensor
from qmedimg.model import torch_device
from qmedimg.rundir import build_model, make_config

# model name -> the train config fields that make it
MODELS = {"hybrid": {}, "hybrid-compact": {"backbone": "compact"}, "classical": {"head": "classical"},
          "linear": {"head": "linear"}, "resnet18": {"model": "resnet18"}, "vgg16": {"model": "vgg16"},
          "resnet18-3x3": {"model": "resnet18", "stem": "3x3"}}  # the 28×28 stem at every size: the stem decision


def training_step(config, dataset, batch_size: int, device=torch.device("cpu")):
    """One training step of ``qmedimg.workflows.train`` (forward, label-smoothed cross-entropy, backward,
    AdamW, moving-average update) of the network ``config`` builds, on ``batch_size`` of ``dataset``'s
    training images (or volumes), as a function returning the samples it took."""
    model, averaged = build_model(config, dataset, device=device), build_model(config, dataset, device=device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x = to_tensor(dataset.train.images[:batch_size]).to(device)
    y = torch.from_numpy(dataset.train.labels[:batch_size]).to(device)

    def step() -> int:
        loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for mine, theirs in zip(averaged.state_dict().values(), model.state_dict().values()):
                if mine.dtype.is_floating_point:
                    mine.lerp_(theirs, 1.0 - config.ema_decay)
        loss.item()  # waits for the device
        return len(y)

    return step


def train_samples_per_s(model_name: str, size: int, steps: int = 5, *, seconds: float = 1.0, batch_size: int = 32,
                        warmup: int = 3, repeats: int = 1, device: str = "cpu", seed: int = 0) -> float:
    """Samples per second of training steps of ``model_name`` (a key of ``MODELS``) at ``size``×``size``,
    batch ``batch_size``, on ``device``, after ``warmup`` steps: the best of ``repeats`` windows of at
    least ``steps`` steps and ``seconds`` seconds."""
    config = make_config(dataset="synthetic", size=size, seed=seed, out="-", **MODELS[model_name])
    dataset = load_dataset("synthetic", size=size, limit=batch_size, seed=seed)
    step = training_step(config, dataset, batch_size, torch_device(device))

    for _ in range(warmup):
        step()
    best = 0.0
    for _ in range(repeats):
        done, samples, start = 0, 0, time.perf_counter()
        while done < steps or time.perf_counter() - start < seconds:
            samples += step()
            done += 1
        best = max(best, samples / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="hybrid,resnet18")
    parser.add_argument("--sizes", default="28,64,128")
    parser.add_argument("--steps", type=int, default=5, help="at least this many steps per timing window")
    parser.add_argument("--seconds", type=float, default=2.0, help="and at least this long")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows; the best is printed")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"training step, batch 32, best of {args.repeats} windows of >= {args.steps} steps and {args.seconds} s; "
          f"device {args.device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models.split(","):
        figures = []
        for size in map(int, args.sizes.split(",")):
            rate = train_samples_per_s(name, size, args.steps, seconds=args.seconds, repeats=args.repeats,
                                       device=args.device)
            figures.append(f"{size:>3}: {rate:8.1f}")
        print(f"{name:<15} samples/s at " + "   ".join(figures), flush=True)


if __name__ == "__main__":
    main()
