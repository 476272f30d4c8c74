"""Planning a grid before running it (``--dry-run``): every cell with its state and resource request,
its expected time, and the wall time on N workers.

A cell's time is measured, never assumed: a finished cell's recorded wall time when there is one
(``measured``), else a few timed steps of the real work on this machine (``timed``), scaled up. The
wall time on N workers schedules the remaining cells longest first onto the least-loaded worker, as
a cluster would; it leaves out Ray's start-up and data loading, and a machine unlike this one.

Example::

    from qmedimg.workflows.grid_plan import wall_on_workers
    wall_on_workers([60, 60, 30], workers=2)   # 90.0
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from qmedimg.data import to_tensor
from qmedimg.executor import Resources, run_with_cores
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


def plan_text(title: str, cells: list[PlannedCell], resources: Resources, executor: str,
              executor_workers: int, unit: str = "cells") -> str:
    """The dry run's printout: a line per cell, then the estimated wall time on 1..16 workers."""
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
    return "\n".join(lines)


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
