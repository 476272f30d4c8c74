"""Planning a grid before running it (``--dry-run``): every cell with its state and resource request,
its expected time, and the wall time on N workers.

A cell's time is measured, never assumed: a finished cell's recorded wall time when there is one
(``measured``), else a few timed steps of the real work on this machine (``timed``), scaled up: training
steps (:func:`time_training`), a quantum head on a few images (:func:`time_head`). The wall time on N
workers schedules the remaining cells longest first onto the least-loaded worker, as a cluster would;
it leaves out Ray's start-up and data loading, and a machine unlike this one. :func:`simulation_memory`
is what a grid's points need in memory, as their backends simulate them.

Example::

    from qmedimg.workflows.grid_plan import wall_on_workers
    wall_on_workers([60, 60, 30], workers=2)   # 90.0
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from qmedimg.backends import Backend
from qmedimg.data import to_tensor
from qmedimg.executor import Resources, run_with_cores
from qmedimg.quantum.circuits import CircuitSpec
from qmedimg.rundir import TrainConfig, build_model, training_backend

WORKER_COUNTS = (1, 2, 4, 8, 16)


@dataclass
class PlannedCell:
    """One line of a plan: ``state`` is finished (reused), interrupted (resumed) or new."""

    name: str
    state: str
    seconds: float
    basis: str  # "measured" (a finished cell's wall time) or "timed" (steps timed now)


def wall_on_workers(seconds: list[float], workers: int) -> float:
    """Wall time of ``seconds``-long cells on ``workers`` workers, longest first to the least loaded."""
    loads = [0.0] * max(workers, 1)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def memory_size(n: float) -> str:
    """Bytes as a reader takes them in: '1.2 GB', '8.19 MB'."""
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def plan_text(title: str, cells: list[PlannedCell], resources: Resources, executor: str,
              executor_workers: int, unit: str = "cells", memory: str | None = None) -> str:
    """The dry run's printout: a line per cell, then the estimated wall time on 1..16 workers (and ``memory``:
    a line on the memory the grid needs)."""
    todo = [c for c in cells if c.state != "finished"]
    lines = [f"{title}: {len(cells)} {unit}, {len(cells) - len(todo)} finished (reused), {len(todo)} to run; "
             f"each cell asks for {resources.describe()} ({resources.cpus} torch thread{'s' * (resources.cpus > 1)})"]
    width = max((len(c.name) for c in cells), default=4)
    for c in cells:
        lines.append(f"  {c.name:<{width}}  {c.state:<11}  ~{_duration(c.seconds):>8}  ({c.basis})")
    remaining = [c.seconds for c in todo]
    counts = sorted({*WORKER_COUNTS, executor_workers})
    lines.append("estimated wall time of what is to run (timed/measured here; Ray start-up and data loading "
                 "not included):")
    for n in counts:
        mark = f"   <- --executor {executor} here" if n == executor_workers else ""
        lines.append(f"  {n:>3} worker{'s' if n > 1 else ' '}: {_duration(wall_on_workers(remaining, n))}{mark}")
    return "\n".join(lines + ([memory] if memory else []))


def time_head(seconds_for: Callable[[int], float], images: int, sizes: tuple[int, int] = (2, 8)) -> float:
    """Seconds a quantum head would take here on ``images`` images, from ``seconds_for(k)``, the head's wall time
    on its first k images: one call on one image to warm up (transpiling, compiling; not counted), then ``sizes``
    images (1 and 2 for a head slower than a second an image, e.g. Aer's statevector trajectories at 12 qubits), a
    straight line through the two (a cost per call, a cost per image) taken to ``images``. A cost per image
    alone overstates: on the trajectory sampler (12 × 2 head, FakeBrisbane) a call costs 0.12 s beside 0.026 s
    an image, so 8 images scaled to 156 said 5.8 s for 4.0 s."""
    small, large = sizes if seconds_for(1) < 1.0 else (1, 2)
    t_small, t_large = seconds_for(small), seconds_for(large)
    per_image = max(t_large - t_small, 0.0) / (large - small)
    return max(t_small - small * per_image, 0.0) + per_image * images


def simulation_memory(backend: Backend, spec: CircuitSpec, noisy: bool) -> tuple[int, str]:
    """(peak bytes, how) of simulating ``spec`` on a grid point's ``backend``: on the qubits its transpiled
    circuit keeps, as the backend's kind estimates it
    (:meth:`~qmedimg.backends.study_rules.StudyRules.simulation_memory`: e.g. Aer's density matrix per parallel
    experiment under noise up to 10 active qubits, the trajectory sampler's states above)."""
    report = backend.describe(spec).transpile  # transpiled once per circuit content in the backend's context
    simulated = len(report["physical_qubits"]) if report else spec.num_qubits
    need, how = backend.study.simulation_memory(simulated, noisy)
    return need, f"{simulated} simulated qubits: {how}"


def time_training(config: TrainConfig, dataset, cpus: int, steps: int = 3) -> float:
    """Seconds one training run of ``config`` would take here with ``cpus`` cores: ``steps`` timed
    optimiser steps (after one warm-up step) scaled to its epochs, plus its evaluation passes."""
    return run_with_cores(lambda _: _time_training(config, dataset, steps), None, cpus)


def _time_training(config: TrainConfig, dataset, steps: int) -> float:
    model = build_model(config, dataset, training_backend(config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    n = len(dataset.train.labels)
    batch = min(config.batch_size, n)
    rng = np.random.default_rng(0)
    model.train()
    times = []
    for _ in range(steps + 1):
        idx = rng.choice(n, size=max(batch, 2), replace=n < 2)
        x, y = to_tensor(dataset.train.images[idx]), torch.from_numpy(dataset.train.labels[idx])
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step = float(np.median(times[1:]))
    batches = -(-n // batch)
    evaluated = len(dataset.val.labels) * config.epochs + n + len(dataset.val.labels) + len(dataset.test.labels)
    return config.epochs * batches * step + evaluated / batch * step / 3  # a forward pass ~ a third of a step
