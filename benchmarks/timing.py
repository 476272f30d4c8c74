"""Shared by the benchmarks: the best of several timed calls (the VM's noise only ever slows a run), and a
head's input angles on real test images."""

import time

import numpy as np


def best(function, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``function()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def angles_on_test_images(data_file: str | None, circuit: str, qubits: int, layers: int) -> np.ndarray:
    """A head's input angles for the test images of ``data_file`` (an untrained model's backbone: the cost
    of simulating a head does not depend on the weights), or 156 rows of random angles without a file."""
    if not data_file:
        return np.random.default_rng(0).uniform(-np.pi, np.pi, (156, qubits))
    from qmedimg.model import head_angles
    from qmedimg.rundir import build_model, load_data, make_config

    config = make_config(data_file=data_file, qubits=qubits, layers=layers, circuit=circuit, out="/tmp/unused")
    dataset = load_data(config)
    return head_angles(build_model(config, dataset), dataset.test.images)
