"""Shared by the benchmarks: the best of several timed calls (the VM's noise only ever slows a run)."""

import time


def best(function, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``function()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
