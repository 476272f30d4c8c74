"""The CPU cores this process may use (and the memory free for it): one number that torch's threads, the exact estimator's row
threads and Aer's parallel experiments all follow.

A process starts with every core it may run on. A grid cell sets its own share (``use_cores``) before
it runs, wherever it runs (this process, or a Ray worker with ``num_cpus`` cores), so two cells on
one machine do not each spread over every core, and a cell's arithmetic is the same wherever it ran:
torch's reductions depend on its thread count (the same training with 1 and 2 threads ends with
different float32 rounding), the row splitting does not.

Example::

    from qmedimg.cores import cores, use_cores
    use_cores(1)   # torch.get_num_threads() == 1, cores() == 1
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def available_cores() -> int:
    """The cores the operating system lets this process run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_cores = available_cores()


def cores() -> int:
    """The cores this process uses now (``use_cores``; at start, every available core)."""
    return _cores


def use_cores(count: int) -> None:
    """Use ``count`` cores from now on: torch's intra-op threads, row threads, Aer's parallel experiments."""
    global _cores
    if count < 1:
        raise ValueError(f"cores must be >= 1, got {count}")
    _cores = count
    torch.set_num_threads(count)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), else the machine's physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
