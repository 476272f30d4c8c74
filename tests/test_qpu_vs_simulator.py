"""Predicted vs measured on a QPU, offline: Runtime's local testing mode measures (it simulates FakeManilaV2), the
calibration snapshot taken at submission predicts, and a snapshot with every error rate × 3 must be caught."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmedimg.backends import prediction, runtime, snapshots
from qmedimg.backends.snapshots import scaled_errors, take_snapshot, write_snapshot
from qmedimg.cli import main
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.per_image import read_per_image
from support import one_line_error, snapshot

IMAGES = 6


def registry(tmp_path, **extra):
    """An ibm entry in local mode, as ``ibm_local`` is (4096 shots, resilience level 1: TREX + measure twirling)."""
    lines = ["q:", "  kind: ibm", "  device: ibm_manila", "  local: FakeManilaV2", "  shots: 4096",
             "  options: {resilience_level: 1}", *[f"  {k}: {v}" for k, v in extra.items()]]
    path = tmp_path / "backends.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wrong_snapshot(path, factor=3.0):
    """FakeManilaV2's snapshot with every gate error and readout error × ``factor``."""
    return write_snapshot(path, scaled_errors(take_snapshot(FakeManilaV2()), factor))


@pytest.fixture
def submitted(monkeypatch):
    """Counts the PUBs sent to Runtime (local testing mode runs them for real)."""
    sent = []
    real = runtime.runtime_estimator

    class Counting:
        def __init__(self, estimator):
            self._estimator, self.options = estimator, estimator.options

        def run(self, pubs):
            sent.append(len(pubs))
            return self._estimator.run(pubs)

    monkeypatch.setattr(runtime, "runtime_estimator", lambda entry, device: Counting(real(entry, device)))
    return sent


def test_local_mode_agrees_with_its_snapshot_and_a_wrong_snapshot_disagrees(tiny_run_copy, tmp_path, submitted,
                                                                             capsys):
    run = tiny_run_copy
    result = evaluate_run(run, "q", backends_file=registry(tmp_path), limit=IMAGES)
    found = result["prediction"]
    assert found["agreement"]["verdict"] == "agrees", found["agreement"]
    assert found["snapshot"]["used"] == "taken at submission" and found["snapshot"]["device"] == "fake_manila"
    assert found["snapshot"]["at_submission"]["taken"] == "before the first job was submitted"
    assert found["simulated_with"]["shots"] == 4096 and found["simulated_with"]["readout_mitigation"] is True
    assert found["simulated_with"]["measured_se"] == "Runtime's standard errors (stds)"
    assert (run / found["snapshot"]["at_submission"]["file"]).is_file() and len(submitted) == 1
    arrays = read_per_image(run / result["per_image"])
    assert arrays["predicted_values"].shape == arrays["values"].shape == arrays["measured_se"].shape == (IMAGES, 4)
    assert 0.005 < arrays["predicted_se"].mean() < 0.05 and 0.005 < arrays["measured_se"].mean() < 0.05
    compared = result["qpu_vs_simulator"]
    for head in ("ideal", "predicted", "measured"):
        assert len(compared[head]["intervals"]["acc"]) == 2 and compared[head]["acc"] is not None
    assert {"estimate", "low", "high"} <= set(compared["measured_minus_predicted"]["acc"])
    assert result["qpu_usage"]["qpu_seconds"] is None and result["qpu_usage"]["estimated_qpu_seconds"] > 0

    # the same request, predicted on a pinned snapshot with error rates × 3: collected, never resubmitted
    wrong_snapshot(tmp_path / "wrong.json")
    wrong = evaluate_run(run, "q", backends_file=registry(tmp_path, snapshot="wrong.json"), limit=IMAGES)
    assert len(submitted) == 1 and wrong["test"] == result["test"]
    assert wrong["prediction"]["snapshot"]["used"] == "pinned by the entry's snapshot key"
    assert wrong["prediction"]["agreement"]["verdict"] == "disagrees", wrong["prediction"]["agreement"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--backend", "q", "--backends", str(registry(tmp_path, snapshot="wrong.json")),
                 "--test-limit", str(IMAGES), "--quiet"]) == 0  # the command says it too; still nothing submitted
    said = capsys.readouterr().out
    assert "measured vs predicted values: disagrees" in said and "wrong.json (calibrated" in said
    assert len(submitted) == 1

    assert main(["report", str(run)]) == 0
    text = (run / "qpu_vs_simulator.md").read_text()
    assert "**Verdict: disagrees**" in text and "no live QPU was used" in text and "days old at submission" in text
    assert (run / "qpu_vs_simulator.png").stat().st_size > 10_000
    assert "written" in capsys.readouterr().out


def test_a_rerun_after_the_jobs_are_in_predicts_on_the_stored_snapshot_and_submits_nothing(
        tiny_run_copy, tmp_path, submitted, monkeypatch):
    run, path = tiny_run_copy, registry(tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the measured values are in, before the prediction

    with monkeypatch.context() as patch:
        patch.setattr(prediction, "predict_on", killed)
        with pytest.raises(KeyboardInterrupt):
            evaluate_run(run, "q", backends_file=path, limit=IMAGES)
    ledger = json.loads((run / "ledger-q.json").read_text())
    assert [j["status"] for j in ledger["jobs"]] == ["done"] and not list(run.glob("eval-*"))
    kept = ledger["snapshot"]

    def no_new_snapshot(*args, **kwargs):
        raise AssertionError("a re-run took a new snapshot")

    monkeypatch.setattr(snapshots, "take_snapshot", no_new_snapshot)
    result = evaluate_run(run, "q", backends_file=path, limit=IMAGES, resume=True)
    assert len(submitted) == 1
    used = result["prediction"]["snapshot"]
    assert used["taken_at"] == kept["taken_at"] and used["file"] == str(run / kept["file"])
    assert result["prediction"]["agreement"]["verdict"] == "agrees"


def test_report_without_an_ibm_evaluation_is_one_line_and_writes_nothing(tiny_run, capsys):
    before = snapshot(tiny_run)
    assert main(["report", str(tiny_run)]) == 2
    assert "no eval file of an ibm backend" in one_line_error(capsys)
    assert snapshot(tiny_run) == before


def test_the_agreement_test_accepts_shot_noise_and_flags_a_shrunken_prediction():
    rng = np.random.default_rng(5)
    truth = rng.uniform(-0.9, 0.9, (50, 4))
    se = np.full_like(truth, 0.016)
    measured, predicted = truth + rng.normal(0, 0.016, truth.shape), truth + rng.normal(0, 0.016, truth.shape)
    same = prediction.agreement(measured, predicted, se, se)
    assert same["verdict"] == "agrees" and same["dof"] == 200 and abs(same["mean_z"]) < 0.3
    shrunk = prediction.agreement(measured, 0.93 * predicted, se, se)
    assert shrunk["verdict"] == "disagrees" and shrunk["p"] < 1e-6


def test_the_prediction_simulates_the_entrys_shots_and_readout_mitigation():
    """Four qubits at <Z> = cos 0.5 (FakeManilaV2's qubit 2 reads out wrong 9.6 % of the time): resilience level 1
    (TREX) predicts the mitigated values, level 0 the raw ones, each at the entry's shots."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    from qmedimg.backends import get_backend

    theta, circuit = Parameter("t"), QuantumCircuit(4)
    for q in range(4):
        circuit.ry(theta, q)
    backend = get_backend("ibm_local")
    isa, _ = backend.prepare(SimpleNamespace(circuit=circuit, observables=[], num_qubits=4))  # local: qubits 0..3
    observables = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 4) for q in range(4)]
    values, truth = np.full((8, 1), 0.5), np.full((8, 4), np.cos(0.5))
    snapshot = take_snapshot(FakeManilaV2())
    mitigated = prediction.predict_on(snapshot, {}, backend.entry, isa, observables, values, truth, None)
    assert np.abs(mitigated.values - truth).max() < 0.03 and mitigated.details["simulated_with"]["shots"] == 4096
    assert mitigated.details["agreement"]["verdict"] == "agrees"
    level0 = get_backend("ibm_local", options={"resilience_level": 0}, shots=1024).entry
    raw = prediction.predict_on(snapshot, {}, level0, isa, observables, values, truth, None)
    assert raw.values[:, 2].mean() < 0.75 and raw.details["agreement"]["verdict"] == "disagrees"
    assert 0.01 < raw.se.mean() < 0.03  # 1024 shots
