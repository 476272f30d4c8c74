"""Where a grid's cells run: one after another in this process (``local``), or as Ray tasks on a Ray
cluster (``ray``: one started on this machine, or one joined with ``address``).

A cell is a picklable description of independent work (train one run, evaluate some noise-study
points) and a module-level function that does it. Both executors give every cell the same number
of cores (``Resources.cpus``; torch's threads follow it, see :mod:`qmedimg.cores`), so a cell's
result does not depend on where it ran. Results come back as cells finish, in completion order, for
the caller to write down as they arrive. A cell that raises is reported by name (after Ray's own
retries) while the other cells finish: :class:`Outcome` holds the value or the error.

Example::

    from qmedimg.executor import Resources, get_executor
    executor = get_executor("ray")                     # starts a local Ray; "auto" or "ray://host:10001" join one
    for outcome in executor.map(work, cells, names=[c.name for c in cells], resources=Resources(cpus=1)):
        print(outcome.name, outcome.value if outcome.ok else outcome.error)

Ray is optional (``pip install -e ".[ray]"``). A worker killed mid-cell (``kill -9``) is a system
failure Ray retries on another worker; cells are written to be repeatable (a training run resumes
from its last checkpoint), so nothing finished is lost.
"""

from __future__ import annotations

import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from qmedimg.cores import available_cores, cores, using_cores
from qmedimg.errors import GridIncomplete, QmedimgError

EXECUTORS = ("local", "ray")
RETRIES = 2
"""Ray retries a failed cell this many times (a raised error or a lost worker) before reporting it."""
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Resources:
    """What one cell asks for: CPU cores (= its torch threads) and GPUs (a fraction shares one)."""

    cpus: int = 1
    gpus: float = 0.0

    def describe(self) -> str:
        return f"{self.cpus} CPU" + (f", {self.gpus:g} GPU" if self.gpus else "")


@dataclass
class Outcome:
    """One finished cell: ``value`` if it succeeded, else ``error`` (one line) and ``detail`` (traceback);
    ``user_error``: the cause is something the user can fix (a ``QmedimgError`` or an ``OSError``)."""

    index: int
    name: str
    value: Any = None
    error: str | None = None
    detail: str = ""
    user_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def run_with_cores(function: Callable, cell: Any, cpus: int) -> Any:
    """``function(cell)`` using ``cpus`` cores (torch threads included); the process's share is put back."""
    with using_cores(cpus):
        return function(cell)


def _touch(function: Callable) -> None:
    """Nothing: unpickling ``function`` on a worker imports its modules (seconds, once per worker)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Executor:
    """Runs cells; see the module docstring. ``workers``: how many cells run side by side."""

    name = "local"
    in_process = True

    def workers(self, resources: Resources) -> int:
        return 1

    def default_cpus(self) -> int:
        """Cores per cell when the user gives none: every core this process may use (inside a cell,
        the cell's share); one per task on Ray."""
        return cores()

    def resources(self, threads: int | None, gpus: float = 0.0) -> Resources:
        """What each cell asks for: ``threads`` cores (``--threads``; None: :meth:`default_cpus`) and
        ``gpus`` (from :meth:`place`). Here a cell takes what it asks for, whatever this machine has."""
        return Resources(cpus=threads or self.default_cpus(), gpus=gpus)

    def gpus(self) -> int:
        """CUDA GPUs the cells can be given (here: the ones torch sees)."""
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def place(self, device: str) -> tuple[str, float]:
        """(the device every cell runs its network on, GPUs each cell asks for) for ``--device``:
        ``auto`` is one GPU a cell when the executor has GPUs, else the CPU; ``cuda`` without a GPU
        is refused in one line, before anything runs."""
        name = str(device).strip().lower()
        if name == "cpu":
            return "cpu", 0.0
        if name != "auto" and not name.startswith("cuda"):
            raise QmedimgError(f"--device {device}: unknown device; valid: auto, cpu, cuda")
        if self.gpus():
            return ("cuda" if name == "auto" else name), 1.0
        if name == "auto":
            return "cpu", 0.0
        where = "this machine (torch.cuda.is_available() is False)" if self.in_process else "the Ray cluster"
        raise QmedimgError(f"--device {device}: {where} has no CUDA GPU; use --device cpu or auto")

    def start(self, function: Callable) -> None:
        """Get ready to run ``function`` (Ray: start or join the cluster, and have each worker import
        what ``function`` needs while the caller checks its grid); fails in seconds if it cannot."""

    def map(self, function: Callable, cells: Sequence, *, names: Sequence[str], resources: Resources,
            progress: bool = True, desc: str = "cells") -> Iterator[Outcome]:
        """``function(cell)`` for every cell, one after another in this process."""
        with tqdm(total=len(cells), desc=desc, unit="cell", disable=not progress) as bar:
            for index, (cell, name) in enumerate(zip(cells, names, strict=True)):
                try:
                    value = run_with_cores(function, cell, resources.cpus)
                except Exception as exc:  # reported by name; the other cells go on
                    yield Outcome(index, name, error=_one_line(exc), detail=traceback.format_exc(),
                                  user_error=isinstance(exc, (QmedimgError, OSError)))
                else:
                    yield Outcome(index, name, value)
                bar.update()


LocalExecutor = Executor


class RayExecutor(Executor):
    """Cells as Ray tasks, each with its own resource request; ``address`` None starts a local Ray."""

    name = "ray"
    in_process = False

    def __init__(self, address: str | None = None):
        self.address = address
        self._ray = None
        self._warming = None  # tasks importing a cell function's modules on every worker

    def default_cpus(self) -> int:
        return 1

    def connect(self):
        """Ray, initialised: a local cluster on this machine, or the one at ``address``."""
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:
            raise QmedimgError("--executor ray: Ray is not installed here; install it with "
                               "pip install -e \".[ray]\" (or pip install ray)") from None
        if not ray.is_initialized():
            if self.address is None:
                ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                _check_reachable(self.address)
                try:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise QmedimgError(f"--ray-address {self.address}: could not join a Ray cluster there "
                                       f"({_one_line(exc)}); start one with `ray start --head`") from None
        self._ray = ray
        return ray

    def start(self, function: Callable) -> None:
        ray = self.connect()
        if self._warming is None:
            touch = ray.remote(_touch).options(num_cpus=1)
            self._warming = [touch.remote(function) for _ in range(int(ray.cluster_resources().get("CPU", 1)))]

    def gpus(self) -> int:
        return int(self.connect().cluster_resources().get("GPU", 0))

    def resources(self, threads: int | None, gpus: float = 0.0) -> Resources:
        """What each cell asks for, refused in one line (before anything is written) when it is more
        CPUs or GPUs than the whole Ray cluster has now: Ray would wait for ever for a node that big.
        An autoscaling cluster could add one, but qmedimg keeps it simple and refuses there too: ask
        for what the cluster has, or start it with nodes big enough."""
        wanted = super().resources(threads, gpus)
        total = self.connect().cluster_resources()
        cpus, gpu_count = int(total.get("CPU", 0)), total.get("GPU", 0)
        if wanted.cpus > cpus:
            option = f"--threads {wanted.cpus}: each cell" if threads else "each cell (--threads not given)"
            raise QmedimgError(f"{option} asks for {wanted.cpus} CPU{'s' * (wanted.cpus != 1)} but the Ray cluster "
                               f"has {cpus}" + (f"; use --threads {cpus} or fewer" if cpus else
                                                ": give it CPUs (ray start --num-cpus N)"))
        if wanted.gpus > gpu_count:
            raise QmedimgError(f"each cell asks for {wanted.gpus:g} GPU but the Ray cluster has {gpu_count:g}; "
                               "use --device cpu or add a GPU node")
        return wanted

    def workers(self, resources: Resources) -> int:
        ray = self.connect()
        total = ray.cluster_resources()
        fit = int(total.get("CPU", 1) // max(resources.cpus, 1))
        if resources.gpus:
            fit = min(fit, int(total.get("GPU", 0) // resources.gpus))
        return max(fit, 1)

    def map(self, function: Callable, cells: Sequence, *, names: Sequence[str], resources: Resources,
            progress: bool = True, desc: str = "cells") -> Iterator[Outcome]:
        """Every cell as one task (``resources`` each, Ray's retries); outcomes in completion order."""
        ray = self.connect()
        task = ray.remote(run_with_cores).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                                  max_retries=RETRIES, retry_exceptions=True)
        pending = {task.remote(function, cell, resources.cpus): index for index, cell in enumerate(cells)}
        with tqdm(total=len(cells), desc=desc, unit="cell", disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                try:
                    value = ray.get(done[0])
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                    yield Outcome(index, names[index], error=_one_line(cause), detail=str(exc),
                                  user_error=isinstance(cause, (QmedimgError, OSError)))
                except ray.exceptions.RayError as exc:  # the worker died on every try
                    yield Outcome(index, names[index], error=_one_line(exc), detail=str(exc))
                else:
                    yield Outcome(index, names[index], value)
                bar.update()


def _check_reachable(address: str) -> None:
    """One line within seconds for an address nothing answers at (Ray itself would retry for minutes)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise QmedimgError(f"--ray-address {address}: give auto, HOST:PORT (the head's GCS port, usually 6379) "
                           "or ray://HOST:PORT (Ray Client, usually 10001)")
    start = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        waited = time.monotonic() - start
        raise QmedimgError(f"--ray-address {address}: nothing answers at {host}:{port} "
                           f"({exc.strerror or exc}, after {waited:.1f} s); is the Ray head running "
                           "(`ray start --head`) and the port open?") from None


def failure_report(failed: list[Outcome], cells: int, then: str) -> GridIncomplete:
    """The one-line error for a grid with failed cells: each named with its error, then ``then``."""
    message = f"{len(failed)} of {cells} cells failed: " + "; ".join(f"{o.name} ({o.error})" for o in failed)
    return GridIncomplete(f"{message}. {then}", user_error=all(o.user_error for o in failed))


def get_executor(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``); ``address`` only for Ray."""
    if name not in EXECUTORS:
        raise QmedimgError(f"--executor: unknown '{name}'; valid: {', '.join(EXECUTORS)}")
    if name == "local":
        if address is not None:
            raise QmedimgError("--ray-address needs --executor ray")
        return LocalExecutor()
    return RayExecutor(address)
