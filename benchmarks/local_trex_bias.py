"""Does Runtime's local testing mode apply TREX without bias? Four qubits of FakeManilaV2 each prepared at
⟨Z⟩ = cos 0.5 (0.8776), measured by Runtime's executor ``Estimator`` in local mode at resilience level 1 (TREX)
with several simulator seeds, printed next to the ideal value, the raw level-0 values and qmedimg's own readout
inversion of the same calibration (the prediction ``evaluate --backend ibm_local`` compares with)::

    python benchmarks/local_trex_bias.py            # 20,000 shots, 4 seeds
    python benchmarks/local_trex_bias.py --shots 100000 --seeds 2

Why: docs/backends.md, "Predicted vs measured" (issue 25): at level 1 the agreement test flags physical qubit 2.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=20000)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from qiskit import QuantumCircuit, transpile
    from qiskit.quantum_info import SparsePauliOp
    from qiskit_ibm_runtime.executor_estimator import Estimator
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qmedimg.backends.device_estimator import DeviceEstimator
    from qmedimg.quantum.gradients import column

    device = FakeManilaV2()
    circuit = QuantumCircuit(4)
    for q in range(4):
        circuit.ry(0.5, q)
    isa = transpile(circuit, device, initial_layout=list(range(4)), optimization_level=0, seed_transpiler=0)
    small = QuantumCircuit(4)  # the same gates on the 4 active wires (local mode simulates every wire it gets)
    for instruction in isa.data:
        small.append(instruction.operation, [small.qubits[isa.find_bit(q).index] for q in instruction.qubits])
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 4) for q in range(4)]
    print(f"ideal ⟨Z⟩ on each qubit: {np.cos(0.5):.4f}; {args.shots} shots; physical qubits 0-3 of FakeManilaV2")
    for level in (0, 1):
        for seed in range(args.seeds):
            options = {"resilience_level": level, "default_shots": args.shots, "simulator": {"seed_simulator": seed}}
            result = Estimator(mode=device, options=options).run([(small, observables)]).result()[0]
            print(f"local mode, level {level}, seed {seed}: ⟨Z⟩ {np.round(result.data.evs, 4)}  "
                  f"± {np.round(result.data.stds, 4)}")
    for mitigate in (False, True):
        estimator = DeviceEstimator(device, readout_mitigation=mitigate)
        values = np.asarray(estimator.run([(isa, column([o.apply_layout(isa.layout) for o in observables]))])
                            .result()[0].data.evs).ravel()
        print(f"qmedimg, exact values, readout {'inverted' if mitigate else 'error applied'}: ⟨Z⟩ {np.round(values, 4)}")


if __name__ == "__main__":
    main()
