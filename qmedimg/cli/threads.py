"""The CPU cores a command uses (``--threads N``, one meaning in every command that computes), and how its
idle OpenMP threads wait.

``--threads N`` is the CPU cores the command uses: torch's intra-op threads, qmedimg's row threads and Aer's
parallel experiments all follow it (:func:`qmedimg.cores.using_cores`); in the grid commands (noise-study,
width-study, compare) it is each cell's share. Not given: ``$OMP_NUM_THREADS`` where set (as for torch
itself), else every core this process may run on (:func:`qmedimg.cores.default_cores`; a grid cell on Ray: 1).
The thread count changes float32 rounding, so a seed's metrics are those of its thread count, which
metrics.json records (``torch_threads``) and which is never picked from how busy the machine is.

Idle threads sleep: torch's threads are an OpenMP (libgomp) pool, whose idle threads by default spin for a
while at every barrier before sleeping. Beside another CPU-heavy process a spinning thread takes the core
the thread it waits for needs: 5 epochs of BreastMNIST on 2 threads took 174.6 s beside busy processes,
36.1 s with the threads sleeping (issue 23; ``benchmarks/busy_machine.py`` measures each setting). With
``OMP_WAIT_POLICY=PASSIVE`` they sleep at once: the same arithmetic, so the same metrics. libgomp reads the
variable once, when it loads (torch, qiskit-aer and scikit-learn each load a copy of their own), so the
``qmedimg`` command sets it for its own process before importing any of them, and only when the user has not
set it: ``import qmedimg`` sets nothing.

Example::

    from qmedimg.cli.threads import command_cores, sleep_when_idle
    sleep_when_idle()                       # True: OMP_WAIT_POLICY=PASSIVE set (unset before, torch not loaded)
    with command_cores(args):               # args.threads cores (default: default_cores()) for this command
        ...
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from typing import ContextManager

from qmedimg.cores import default_cores, using_cores

COMPUTING = ("train", "evaluate", "predict", "explain", "transpile", "backends")
"""The single commands with ``--threads`` (``backends`` for ``backends check``); the grid commands have it
among the options that say where their cells run."""
OPENMP = ("torch", "qiskit_aer", "sklearn")
"""The packages that each load their own libgomp, which reads ``OMP_WAIT_POLICY`` once, when it loads."""
MEANING = "torch threads, qmedimg's row threads and Aer's parallel experiments"
SAME_NUMBERS = ("Metrics depend on it (float32 rounding; metrics.json records torch_threads): compare runs with equal "
                "--threads")


def threads_help(grid: bool = False) -> str:
    """``--threads``'s help: the command's cores, or each cell's in a grid command (``grid``)."""
    every = f"$OMP_NUM_THREADS where set, else every core it may run on: {default_cores()} here"
    if grid:
        return f"CPU cores per cell = {MEANING} (default with local: {every}; with ray: 1). {SAME_NUMBERS}"
    return f"CPU cores this command uses = {MEANING} (default: {every}). {SAME_NUMBERS}"


def command_cores(args: argparse.Namespace) -> ContextManager:
    """The block a command runs in: ``using_cores(--threads)`` (default: :func:`~qmedimg.cores.default_cores`)
    for a single command that computes; nothing for the grids (each cell takes its share) and for what only
    reads files (the backends listing, circuits, export), which then load no torch."""
    if args.command not in COMPUTING or args.command == "backends" and args.action != "check":
        return nullcontext()
    return using_cores(args.threads or default_cores())


def sleep_when_idle(environ=os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep at once) in ``environ`` when it is unset and
    none of the packages whose OpenMP runtime reads it (:data:`OPENMP`) is imported yet; True when it did. The
    command line calls it first thing; a user's own value, even an empty one, is kept."""
    if "OMP_WAIT_POLICY" in environ or any(name in sys.modules for name in OPENMP):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
