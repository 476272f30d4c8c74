"""Runtime's local testing mode (the `ibm` code path offline): time and error per resilience level.

    python benchmarks/local_mode.py [--rows 20] [--devices FakeManilaV2,FakeBrisbane] [--shots 4096]

For each device and resilience level 0/1/2, runs the `sel` head on random angles through the same
executor-based Runtime Estimator qmedimg uses for QPUs, and prints seconds and the mean |Δ| of the
expectation values against the exact ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qmedimg.backends import backend_for, runtime
from qmedimg.backends.ibm import IbmEntry
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.exact import ExactEstimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--shots", type=int, default=4096)
    parser.add_argument("--devices", default="FakeManilaV2,FakeBrisbane")
    args = parser.parse_args()
    spec = load_circuit("sel")
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (args.rows, spec.circuit.num_parameters))
    exact = ExactEstimator().run([(spec.circuit, [[o] for o in spec.observables], values)]).result()[0].data.evs
    for device in args.devices.split(","):
        for level in (0, 1, 2):
            entry = IbmEntry(kind="ibm", device="local", local=device, shots=args.shots,
                             options={"resilience_level": level})
            backend = backend_for(f"local-{device}", entry)
            circuit, observables = backend.prepare(spec)
            estimator = runtime.runtime_estimator(entry, runtime.runtime_backend(entry))  # what the backend runs on
            start = time.perf_counter()
            evs = estimator.run([(circuit, [[o] for o in observables], values)]).result()[0].data.evs
            seconds = time.perf_counter() - start
            print(f"{device:<14} resilience_level {level}: {args.rows} rows x {args.shots} shots in {seconds:6.1f} s, "
                  f"mean |Δ expectation| {np.abs(np.asarray(evs) - exact).mean():.4f}")


if __name__ == "__main__":
    main()
