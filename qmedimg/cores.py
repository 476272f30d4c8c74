"""The CPU cores this process may use (and the memory free for it): one number that torch's threads, the exact estimator's row
threads and Aer's parallel experiments all follow.

A process uses every core it may run on (``$OMP_NUM_THREADS`` where set). A grid cell runs inside
``using_cores(n)``, its own share, wherever it runs (this process, or a Ray worker with ``num_cpus`` cores),
so two cells on one machine do not each spread over every core, and a cell's arithmetic is the same
wherever it ran: torch's reductions depend on its thread count (the same training with 1 and 2 threads
ends with different float32 rounding), the row splitting does not.

The share is not a module global: it lives in the running context (a :class:`~contextvars.ContextVar`,
set and put back by ``using_cores``, so it ends with the ``with`` block). torch's thread count cannot
stand in for it: outside a cell it is torch's own default (the physical cores, whatever the process's
CPU affinity allows), not every available core. ``$OMP_NUM_THREADS`` counts for both.

torch is imported by ``using_cores`` only: the command line reads :func:`default_cores` for its help text
without loading it.

Example::

    from qmedimg.cores import cores, using_cores
    with using_cores(1):   # torch.get_num_threads() == 1, cores() == 1
        ...
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator


def available_cores() -> int:
    """The cores the operating system lets this process run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_SHARE: ContextVar[int] = ContextVar("qmedimg_cores")
"""The share of the ``using_cores`` block running now; unset outside one."""


def default_cores() -> int:
    """The cores a process uses when nobody chose: ``$OMP_NUM_THREADS`` where it is a whole number > 0 (the
    variable torch's own default follows), else every available core. ``--threads`` not given means this."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else available_cores()


def cores() -> int:
    """The cores this process uses now: the share of the ``using_cores`` block it runs in, else
    :func:`default_cores`. Read it in the thread that entered the block (a new thread starts outside it)."""
    return _SHARE.get(0) or default_cores()


@contextmanager
def using_cores(count: int) -> Iterator[None]:
    """Use ``count`` cores inside the block (torch's intra-op threads, row threads, Aer's parallel
    experiments); afterwards the share before it, and torch's threads as they were."""
    import torch

    if count < 1:
        raise ValueError(f"cores must be >= 1, got {count}")
    before = torch.get_num_threads()
    token = _SHARE.set(count)
    torch.set_num_threads(count)
    try:
        yield
    finally:
        _SHARE.reset(token)
        torch.set_num_threads(before)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), else the machine's physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
