"""Predicted vs measured on a QPU, the target experiment of issue 25 item 2, offline: a trained BreastMNIST run's
156 test images at 4,096 shots measured in Runtime's local testing mode (it simulates FakeManilaV2: no live QPU is
used), predicted on the calibration snapshot taken at submission, and again on a wrong snapshot (every gate and
readout error × 3). Prints ACC of the exact head, the prediction and the measurement with 95 % bootstrap
intervals, measured − predicted with its paired interval, and each verdict.

    qmedimg train --data-file ../shared/data/breastmnist.npz --out /tmp/breast --quiet
    python benchmarks/qpu_vs_simulator.py /tmp/breast --resilience-level 0    # raw values (entry local_level0)
    python benchmarks/qpu_vs_simulator.py /tmp/breast --resilience-level 1    # TREX, as backends.yaml's ibm entries

The run directory gets the ledger, the snapshot and the eval file (the wrong snapshot's evaluation runs first; the
second collects its jobs from the ledger: nothing is measured twice, and the eval file and ``qmedimg report``'s
``qpu_vs_simulator.md``/``.png`` are the snapshot at submission's).
Target: |ACC(measured) − ACC(predicted)| within the bootstrap interval on the right snapshot; ``disagrees`` on the
wrong one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmedimg.backends.snapshots import scaled_errors, take_snapshot, write_snapshot
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.qpu_report import qpu_report


def entry(level: int) -> str:
    """A registry entry for local mode on FakeManilaV2 at 4096 shots and this resilience level."""
    return (f"local_level{level}:\n  kind: ibm\n  device: ibm_manila\n  local: FakeManilaV2\n  shots: 4096\n"
            f"  options: {{resilience_level: {level}}}\n")


def wrong_snapshot(path: Path, factor: float = 3.0) -> Path:
    """FakeManilaV2's snapshot with every gate error and readout error × ``factor``."""
    return write_snapshot(path, scaled_errors(take_snapshot(FakeManilaV2()), factor))


def line(label: str, result: dict) -> str:
    compared, agreement = result["qpu_vs_simulator"], result["prediction"]["agreement"]
    acc = {k: (compared[k]["acc"], compared[k]["intervals"]["acc"]) for k in ("ideal", "predicted", "measured")}
    diff = compared["measured_minus_predicted"]["acc"]
    text = ", ".join(f"{k} ACC {v:.3f} [{i[0]:.3f}, {i[1]:.3f}]" for k, (v, i) in acc.items())
    return (f"{label}: {text}; measured-predicted {diff['estimate']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]; "
            f"|diff| within interval: {compared['acc_difference_within_interval']}; chi2 {agreement['chi2']:.1f} on "
            f"{agreement['dof']} (p={agreement['p']:.3g}) -> {agreement['verdict']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained BreastMNIST run (written into: ledger, snapshot, eval files)")
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all 156)")
    parser.add_argument("--resilience-level", type=int, default=1, choices=[0, 1],
                        help="Runtime's resilience level (1: TREX, as the registry's ibm entries; 0: raw values)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        registry = Path(scratch) / "backends.yaml"
        wrong_snapshot(Path(scratch) / "wrong.json")
        name, text = f"local_level{args.resilience_level}", entry(args.resilience_level)
        registry.write_text(text + "  snapshot: wrong.json\n")
        start = time.perf_counter()
        wrong = evaluate_run(args.run_dir, name, backends_file=registry, limit=args.limit)
        measured_s = time.perf_counter() - start
        print(f"{wrong['images']} images, {wrong['shots']} shots, Runtime local testing mode (FakeManilaV2; no live "
              f"QPU), measured and predicted in {measured_s:.0f} s")
        registry.write_text(text)  # the same request: its jobs are collected from the ledger, never resubmitted
        right = evaluate_run(args.run_dir, name, backends_file=registry, limit=args.limit)
        print(line("snapshot at submission", right))
        print(line("wrong snapshot (errors x3)", wrong))
    right_ok = right["qpu_vs_simulator"]["acc_difference_within_interval"] and \
        right["prediction"]["agreement"]["verdict"] == "agrees"
    print(f"target: right snapshot agrees with |ACC diff| within interval: {right_ok}; wrong snapshot flagged: "
          f"{wrong['prediction']['agreement']['verdict'] == 'disagrees'}")
    md, png = qpu_report(args.run_dir)  # the last evaluation (on the snapshot at submission) is reported (on the snapshot at submission) is reported
    print(f"written {md} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
