"""Inventory of the noise channels qmedimg's ``fake`` backend simulates (input to a trajectory sampler).

    python benchmarks/noise_channels.py [--devices fake_brisbane fake_torino fake_fez]
                                        [--qubits 12] [--layers 2] [--brief] [--no-timing]

For each device it transpiles ``load_circuit("sel", qubits, layers)`` the way the backend does
(``get_backend(name).prepare(spec)``), builds the noise model exactly as qmedimg does for that circuit's
active qubits (``backend.training_head(spec)["estimator"].prepare(isa)``: ``noise.calibration`` -> ``noise.noise_model`` at the
entry's ``noise_scale``, 1 for the shipped entries) and prints, for every (instruction, qubits) of the
model: the QuantumError's terms (count, probabilities), the operations inside each term classified as
pauli / unitary / reset / kraus / superop, whether the error is a mixture of unitaries, the Kraus rank of
each non-unitary operation and of the whole channel (Choi rank), whether it is unital and trace
preserving; then every ReadoutError matrix, and a per-device summary of the distinct channel kinds.
With timing on, also one FakeBrisbane run each of qmedimg's density-matrix path (10 active qubits) and
its statevector-trajectory path (12 active qubits, 1000 trajectories), one parameter row, and Aer's
density matrix forced on the 12-active-qubit circuit.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np
from qiskit.quantum_info import Choi, Kraus, Operator

from qmedimg.backends import get_backend
from qmedimg.quantum.circuits import load_circuit

PAULI_NAMES = {"id", "x", "y", "z", "pauli", "i"}
TOL = 1e-10


def op_class(op) -> str:
    """pauli / unitary / reset / kraus / superop / other for one operation inside an error term."""
    name = op.name
    if name in PAULI_NAMES:
        return "pauli"
    if name in ("reset", "kraus", "superop"):
        return name
    try:
        u = Operator(op).data
        if np.allclose(u.conj().T @ u, np.eye(len(u)), atol=1e-9):
            return "unitary"
    except Exception:  # noqa: BLE001 - anything Operator cannot read is reported as is
        pass
    return f"other:{name}"


def kraus_facts(op) -> dict:
    """Kraus rank (minimal: rank of the Choi matrix), unital, trace preserving of one operation."""
    choi = Choi(op).data
    rank = int(np.sum(np.linalg.eigvalsh(choi) > TOL))
    ks = Kraus(op).data
    d = ks[0].shape[0]
    unital = np.allclose(sum(k @ k.conj().T for k in ks), np.eye(d), atol=1e-9)
    tp = np.allclose(sum(k.conj().T @ k for k in ks), np.eye(d), atol=1e-9)
    return {"rank": rank, "stored": len(ks), "unital": bool(unital), "tp": bool(tp)}


def describe_error(error) -> dict:
    """Structure of one QuantumError."""
    terms = []
    nonunitary = []
    for circ, p in zip(error.circuits, error.probabilities):
        classes = []
        for inst in circ.data:
            c = op_class(inst.operation)
            classes.append(c)
            if c in ("reset", "kraus", "superop") or c.startswith("other"):
                facts = kraus_facts(inst.operation)
                facts.update(kind=c, qubits=tuple(circ.find_bit(q).index for q in inst.qubits))
                nonunitary.append(facts)
        terms.append((tuple(classes), float(p)))
    channel = error.to_quantumchannel()
    whole = kraus_facts(channel)
    sig = collections.Counter()
    for classes, p in terms:
        kinds = tuple(sorted(set(c for c in classes if c != "pauli"))) or ("pauli",)
        sig[kinds] += 1
    return {"n_terms": len(terms), "probs": [p for _, p in terms], "terms": terms,
            "mixed_unitary": all(c in ("pauli", "unitary") for cl, _ in terms for c in cl),
            "ideal": bool(error.ideal()), "nonunitary": nonunitary, "channel": whole,
            "term_kinds": dict(sig), "num_qubits": error.num_qubits}


def kind_label(info: dict) -> str:
    """A short name of the channel kind, from its structure (not from how it was built)."""
    ops = {n["kind"] for n in info["nonunitary"]}
    parts = [f"{info['num_qubits']}q"]
    if info["mixed_unitary"]:
        parts.append("mixed-unitary (Pauli terms only)")
    else:
        parts.append("terms: " + ", ".join(sorted("+".join(k) for k in info["term_kinds"])))
        parts.append("non-unitary ops: " + ",".join(sorted(ops)))
    parts.append(f"channel {'unital' if info['channel']['unital'] else 'NON-unital'}"
                 f"{'' if info['channel']['tp'] else ' NOT-TP'}")
    return "; ".join(parts)


def inventory(name: str, qubits: int, layers: int, brief: bool) -> dict:
    backend = get_backend(name)
    spec = load_circuit("sel", qubits=qubits, layers=layers)
    prepared = backend.prepare(spec)
    small, physical = prepared.active
    est = backend.training_head(spec)["estimator"]
    p = est.prepare(prepared.circuit)  # exactly qmedimg's path: trim, calibration(scale), noise_model
    model = p.noise
    sim_circuit = p.variants[0][0]
    print(f"\n=== {name}: device {est.device.name}, noise_scale {est.noise_scale}, "
          f"{len(p.qubits)} active qubits {p.qubits}, method {p.method}")
    print(f"ISA ops (active part): {dict(small.count_ops())}; delays in ISA circuit: "
          f"{'delay' in prepared.circuit.count_ops()}")
    target = est.device.target
    t_rows = []
    for i, q in enumerate(p.qubits):
        qp = target.qubit_properties[q]
        t_rows.append((i, q, qp.t1, qp.t2, qp.t2 / qp.t1 if qp.t1 and qp.t2 else float("nan")))
    ratios = np.array([r[4] for r in t_rows])
    print("T2/T1 per active qubit: " + " ".join(f"{q}:{r:.2f}" for _, q, _, _, r in t_rows))
    print(f"  T2<=T1 (reset mixture): {int(np.sum(ratios <= 1))}, T1<T2<=2T1 (Kraus): "
          f"{int(np.sum((ratios > 1) & (ratios <= 2)))}, T2>2T1 (truncated to 2T1 by Aer): {int(np.sum(ratios > 2))}")
    print(f"NoiseModel basis gates: {model.basis_gates}; noisy instructions: {model.noise_instructions}")
    defaults = dict(model._default_quantum_errors)
    print(f"default (all-qubit) quantum errors: {list(defaults)}; default readout error: {model._default_readout_error}")

    used = collections.Counter((inst.operation.name, tuple(sim_circuit.find_bit(q).index for q in inst.qubits))
                               for inst in sim_circuit.data)
    kinds = collections.defaultdict(list)  # label -> [(inst, qubits)]
    max_rank = {"op": 0, "channel": 0}
    rows = []
    for inst_name, per_q in sorted(model._local_quantum_errors.items()):
        for q, error in sorted(per_q.items()):
            info = describe_error(error)
            label = f"{inst_name}: " + kind_label(info)
            kinds[label].append(q)
            max_rank["channel"] = max(max_rank["channel"], info["channel"]["rank"])
            for n in info["nonunitary"]:
                max_rank["op"] = max(max_rank["op"], n["rank"])
            rows.append((inst_name, q, info, used.get((inst_name, q), 0)))
    print(f"{'instr':6} {'qubits':8} {'used':>4} {'terms':>5} {'p(first)':>10} {'mixU':>5} "
          f"{'chanRank':>8} {'unital':>6} {'TP':>3}  non-unitary ops (kind rank/stored unital) ; term kinds")
    for inst_name, q, info, n_used in rows:
        if brief and inst_name not in ("sx", "x", "ecr", "cz") and q not in ((0,), (1,)):
            continue
        nu = collections.Counter((n["kind"], n["rank"], n["stored"], n["unital"]) for n in info["nonunitary"])
        nu_s = ", ".join(f"{k}{'' if u else '(non-unital)'} r{r}/{s}x{c}" for (k, r, s, u), c in sorted(nu.items()))
        tk = ", ".join(f"{'+'.join(k)}:{c}" for k, c in sorted(info["term_kinds"].items()))
        ch = info["channel"]
        print(f"{inst_name:6} {str(q):8} {n_used:>4} {info['n_terms']:>5} {info['probs'][0]:>10.6f} "
              f"{str(info['mixed_unitary']):>5} {ch['rank']:>8} {str(ch['unital']):>6} {'Y' if ch['tp'] else 'N':>3}  "
              f"{nu_s or '-'} ; {tk}")
    print("readout errors  [[p(0|0) p(1|0)] [p(0|1) p(1|1)]]:")
    ro_asym = 0
    for q, ro in sorted(model._local_readout_errors.items()):
        m = np.asarray(ro.probabilities)
        ro_asym += not np.isclose(m[0, 1], m[1, 0])
        print(f"  {q}: [[{m[0, 0]:.4f} {m[0, 1]:.4f}] [{m[1, 0]:.4f} {m[1, 1]:.4f}]]"
              f"  (qmedimg readout map a={m[1, 0] - m[0, 1]:+.4f} b={1 - m[0, 1] - m[1, 0]:.4f};"
              f" estimator.readout row {p.readout[q[0]].round(4).tolist()})")
    nonunitary = [n for _, _, info, _ in rows for n in info["nonunitary"]]
    first = [info["probs"][0] for _, _, info, _ in rows]
    n_terms = [info["n_terms"] for _, _, info, _ in rows]
    prob_sum_ok = all(abs(sum(info["probs"]) - 1) < 1e-9 for _, _, info, _ in rows)
    unused = sorted({(n, q) for n, q, _, u in rows if u == 0 and n in ("sx", "x", "ecr", "cz")})
    circuit_noisy_ops = sorted({n for (n, q) in used if n in model._local_quantum_errors})
    circuit_noiseless_ops = sorted({n for (n, q) in used if n not in model._local_quantum_errors})
    return {"name": name, "device": est.device.name, "kinds": kinds, "max_rank": max_rank,
            "n_readout": len(model._local_readout_errors), "ro_asym": ro_asym, "ratios": ratios,
            "noisy_instr": sorted(model._local_quantum_errors), "circuit_noisy_ops": circuit_noisy_ops,
            "circuit_noiseless_ops": circuit_noiseless_ops, "unused_gate_errors": len(unused),
            "nonunitary_arity": sorted({len(n["qubits"]) for n in nonunitary}),
            "nonunitary_all_tp": all(n["tp"] for n in nonunitary),
            "nonunitary_any_unital": any(n["unital"] for n in nonunitary),
            "any_mixed_unitary": any(info["mixed_unitary"] for _, _, info, _ in rows),
            "n_terms": (min(n_terms), max(n_terms)), "min_first": min(first), "prob_sum_ok": prob_sum_ok,
            "measure_qerror": "measure" in model._local_quantum_errors,
            "delay_qerror": "delay" in model._local_quantum_errors}


def summary(inv: dict) -> None:
    print(f"\n--- SUMMARY {inv['name']} ({inv['device']})")
    print(f"  instructions with quantum errors: {inv['noisy_instr']}  (measure: {inv['measure_qerror']}, "
          f"delay: {inv['delay_qerror']})")
    print(f"  circuit ops hitting a quantum error: {inv['circuit_noisy_ops']}; noiseless: {inv['circuit_noiseless_ops']}")
    r = inv["ratios"]
    print(f"  T2/T1 of active qubits: min {r.min():.2f} max {r.max():.2f}; "
          f"reset-mixture qubits {int(np.sum(r <= 1))}, Kraus qubits {int(np.sum((r > 1) & (r <= 2)))}, "
          f"truncated {int(np.sum(r > 2))}")
    for label, qs in sorted(inv["kinds"].items()):
        print(f"  [{len(qs):>2}x] {label}")
    print(f"  max Kraus rank of a single non-unitary op inside a term: {inv['max_rank']['op']}; "
          f"max Choi rank of a whole error: {inv['max_rank']['channel']}")
    print(f"  terms per error: {inv['n_terms'][0]}..{inv['n_terms'][1]}; smallest first-term probability "
          f"{inv['min_first']:.4f}; probabilities sum to 1: {inv['prob_sum_ok']}; any error a pure Pauli/unitary "
          f"mixture: {inv['any_mixed_unitary']}")
    print(f"  non-unitary ops act on {inv['nonunitary_arity']} qubit(s); each trace preserving: "
          f"{inv['nonunitary_all_tp']}; any of them unital: {inv['nonunitary_any_unital']}")
    print(f"  readout errors: {inv['n_readout']} single-qubit, {inv['ro_asym']} asymmetric (p(1|0) != p(0|1))")


def timing() -> None:
    """One parameter row on FakeBrisbane through qmedimg's own path (``DeviceEstimator.run``), plus Aer's
    density matrix forced on the 12-qubit circuit with the same noise model (the reference a sampler is
    checked against). ``sel`` at 10 logical qubits routes onto 12 active qubits by default, so the
    10-active-qubit case pins ``initial_layout`` to a line of the device (and reports what it got)."""
    from qiskit_aer import AerSimulator

    from qmedimg.backends.aer_rows import aer_rows, save_expectations

    rng = np.random.default_rng(0)
    print("\n--- TIMING (FakeBrisbane, one parameter row, one run each, 2-core machine)")
    cases = [("sel 10q, initial_layout 0..9", 10, {"transpile": {"initial_layout": list(range(10))}}),
             ("sel 10q, default transpile", 10, {}), ("sel 12q, default transpile", 12, {})]
    for label, qubits, overrides in cases:
        backend = get_backend("fake_brisbane", **overrides)
        spec = load_circuit("sel", qubits=qubits, layers=2)
        circuit, observables = backend.prepare(spec)
        est = backend.training_head(spec)["estimator"]
        t0 = time.perf_counter()
        sim = est.simulation(circuit)
        t_prep = time.perf_counter() - t0
        values = rng.uniform(-np.pi, np.pi, size=(1, circuit.num_parameters))
        t0 = time.perf_counter()
        evs = est.run([(circuit, [[o] for o in observables], values)]).result()[0].data.evs
        t_run = time.perf_counter() - t0
        print(f"  {label}: {sim} | noise model + prepare {t_prep:.2f} s, one row {t_run:.2f} s "
              f"({len(observables)} observables; first value {float(np.ravel(evs)[0]):+.4f})")
        if sim["method"] == "trajectories":
            prepared = est.prepare(circuit)
            forced = prepared.variants[0][0].copy()
            k = len(prepared.qubits)
            save_expectations(forced, ["I" * (k - 1 - i) + "Z" + "I" * i for i in range(k)])
            t0 = time.perf_counter()
            aer_rows(AerSimulator(method="density_matrix", noise_model=prepared.noise), forced, values)
            print(f"    same circuit, Aer density_matrix forced ({k} active qubits, {16 * 4**k / 2**20:.0f} MiB): "
                  f"one row {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", default=["fake_brisbane", "fake_torino", "fake_fez"])
    parser.add_argument("--qubits", type=int, default=12)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--brief", action="store_true", help="per-error rows for gates only (and qubits 0, 1)")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    invs = [inventory(d, args.qubits, args.layers, args.brief) for d in args.devices]
    print("\n================ SUMMARY ================")
    for inv in invs:
        summary(inv)
    if not args.no_timing:
        timing()


if __name__ == "__main__":
    main()
