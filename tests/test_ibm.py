"""The ibm path: Runtime's local testing mode for execution, a stand-in only for IBM's cloud
(``QiskitRuntimeService``: account, backend lookup, fetching a job by id)."""

import json
import logging
import time

import numpy as np
import pytest
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmedimg.backends import jobs, runtime
from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.workflows.evaluate import evaluate_run

SECRET = "qmedimg-test-secret-0123456789"


@pytest.fixture
def trained(tiny_run_copy):
    """This test's own copy of the session's tiny run (conftest): QPU paths write ledgers and eval
    files into the run, so no test sees another's."""
    return tiny_run_copy


def registry(tmp_path, **extra):
    lines = ["qpu:", "  kind: ibm", "  device: ibm_fakecity", "  shots: 2000", "  options: {resilience_level: 0}"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    path = tmp_path / "backends.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Cloud:
    """Stands in for IBM's cloud only: the account, the backend lookup and job retrieval by id.
    Jobs themselves run for real in Runtime's local testing mode on FakeManilaV2."""

    jobs: dict = {}
    submitted = 0
    interrupt_next_wait = False
    fail_next = False
    fail_job = None  # the n-th submitted job (0-based) fails on IBM's side

    def __init__(self, channel=None, instance=None, **_):
        import os

        self.token = os.environ.get("QISKIT_IBM_TOKEN")  # as the real service reads it

    def backend(self, name):
        return FakeManilaV2()

    def job(self, job_id):
        return Cloud.jobs[job_id]


class RemoteJob:
    def __init__(self, job, ordinal=None):
        self._job, self.ordinal = job, ordinal

    def job_id(self):
        return self._job.job_id()

    def result(self):
        if Cloud.interrupt_next_wait:
            Cloud.interrupt_next_wait = False
            raise KeyboardInterrupt  # the user hits Ctrl-C while waiting
        if Cloud.fail_next:
            Cloud.fail_next = False
            raise RuntimeError("Job failed: backend went offline")
        if Cloud.fail_job is not None and Cloud.fail_job == self.ordinal:
            raise RuntimeError("Job failed: calibration in progress")
        return self._job.result()

    def usage(self):
        return 1.5


class RemoteEstimator:
    """The real Runtime Estimator (local mode), with jobs also filed in the fake cloud by id."""

    def __init__(self, estimator):
        self._estimator = estimator

    def run(self, pubs):
        job = RemoteJob(self._estimator.run(pubs), Cloud.submitted)
        Cloud.submitted += 1
        Cloud.jobs[job.job_id()] = job
        return job


@pytest.fixture
def cloud(monkeypatch):
    Cloud.jobs, Cloud.submitted, Cloud.interrupt_next_wait, Cloud.fail_next, Cloud.fail_job = {}, 0, False, False, None
    monkeypatch.setattr(runtime, "QiskitRuntimeService", Cloud)
    real = runtime.runtime_estimator
    monkeypatch.setattr(runtime, "runtime_estimator", lambda entry, device: RemoteEstimator(real(entry, device)))
    monkeypatch.setenv("QISKIT_IBM_TOKEN", SECRET)
    return Cloud


def test_local_testing_mode_runs_the_ibm_path_offline(trained):
    result = evaluate_run(trained, "ibm_local", limit=6)
    assert result["local_testing_mode"] and result["jobs"][0]["status"] == "done"
    assert result["images"] == 6 and result["mean_abs_expectation_error"] < 0.2
    assert result["transpile"]["physical_qubits"] == [0, 1, 2, 3]
    ledger = json.loads((trained / "ledger-ibm_local.json").read_text())
    assert ledger["jobs"][0]["job_id"] == result["jobs"][0]["job_id"]


def test_local_mode_says_what_it_cannot_apply(trained, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("q:\n  kind: ibm\n  device: x\n  local: FakeManilaV2\n"
                    "  options: {resilience: {pec_mitigation: true}}\n")
    with pytest.raises(QmedimgError, match="local testing mode cannot apply PEC"):
        evaluate_run(trained, "q", backends_file=path, limit=2)


def test_dry_run_reports_the_payload_and_submits_nothing(trained, tmp_path, cloud, capsys):
    path = registry(tmp_path)
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nothing submitted" in out and "parameter rows" in out and "estimated QPU time" in out
    assert "planned on ibm_fakecity's live calibration" in out  # credentials found: the device itself
    assert cloud.submitted == 0 and not (trained / "ledger-qpu.json").exists()


def test_jobs_respect_ibm_limits_on_two_qubit_gates_and_executions():
    from qmedimg.backends import get_backend
    from qmedimg.quantum.circuits import load_circuit

    spec = load_circuit("sel")
    plain = get_backend("ibm_local", options={"resilience_level": 0}, max_rows_per_job=100000)
    circuit, _ = plain.prepare(spec)
    two_qubit = sum(1 for inst in circuit.data if inst.operation.num_qubits == 2)
    rows = jobs.rows_per_job(plain.entry, circuit)
    assert rows * two_qubit < jobs.MAX_TWO_QUBIT_GATES and rows * plain.entry.shots <= jobs.MAX_EXECUTIONS
    folded = get_backend("ibm_local", options={"resilience_level": 2}, max_rows_per_job=100000)
    assert jobs.rows_per_job(folded.entry, circuit) * two_qubit * 5 < jobs.MAX_TWO_QUBIT_GATES
    assert jobs.rows_per_job(folded.entry, circuit) < rows


def test_jobs_are_split_recorded_before_waiting_and_never_submitted_twice(trained, tmp_path, cloud):
    path = registry(tmp_path, max_rows_per_job=3)
    cloud.interrupt_next_wait = True
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(trained, "qpu", backends_file=path, limit=7)
    ledger = json.loads((trained / "ledger-qpu.json").read_text())
    assert [j["rows"] for j in ledger["jobs"]] == [[0, 3], [3, 6], [6, 7]]
    assert all(j["job_id"] for j in ledger["jobs"]) and cloud.submitted == 3

    result = evaluate_run(trained, "qpu", backends_file=path, limit=7, resume=True)  # collects, no resubmission
    assert cloud.submitted == 3
    assert [j["status"] for j in result["jobs"]] == ["done"] * 3 and result["qpu_seconds"] == 4.5
    assert result["mean_abs_expectation_error"] < 0.2

    again = evaluate_run(trained, "qpu", backends_file=path, limit=7)  # all done: from the ledger
    assert cloud.submitted == 3 and again["test"] == result["test"]


def test_a_failed_job_is_reported_and_only_it_is_resubmitted(trained, tmp_path, cloud):
    path = registry(tmp_path, max_rows_per_job=4)
    cloud.fail_next = True
    with pytest.raises(QmedimgError, match=r"1 of 2 jobs failed .*backend went offline.*re-run"):
        evaluate_run(trained, "qpu", backends_file=path, limit=8)
    assert cloud.submitted == 2
    evaluate_run(trained, "qpu", backends_file=path, limit=8)
    assert cloud.submitted == 3


def test_a_ledger_from_another_request_is_refused(trained, tmp_path, cloud, capsys):
    path = registry(tmp_path)
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--test-limit", "3",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--test-limit", "4",
                 "--collect-jobs"]) == 2
    err = capsys.readouterr().err
    assert "holds jobs of another request (differs in: request, jobs)" in err and err.count("\n") == 1
    # without --collect-jobs, a finished ledger is kept aside and the new request gets its own
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--test-limit", "4",
                 "--quiet"]) == 0
    assert len(list(trained.glob("ledger-qpu.*.json"))) == 1 and cloud.submitted == 2
    capsys.readouterr()
    (trained / "ledger-qpu.json").unlink()
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--collect-jobs"]) == 2
    assert "no ledger" in capsys.readouterr().err


def test_the_payload_is_circuits_and_numbers_only(trained, tmp_path, cloud, monkeypatch):
    sent = []
    original = RemoteEstimator.run
    monkeypatch.setattr(RemoteEstimator, "run", lambda self, pubs: (sent.extend(pubs), original(self, pubs))[1])
    evaluate_run(trained, "qpu", backends_file=registry(tmp_path), limit=5)
    from qiskit import QuantumCircuit

    for circuit, observables, values in sent:
        assert isinstance(circuit, QuantumCircuit)
        assert isinstance(values, np.ndarray) and values.dtype == np.float64 and values.shape[0] == 5
        assert values.shape[1] == circuit.num_parameters == 28  # 4 angles per image + 24 trained weights


def capture_all_logging(caplog, monkeypatch) -> None:
    """Every logger at DEBUG into ``caplog``, those that do not propagate to the root logger too, and
    those a ``logging.config`` call disabled (import-linter's does) enabled again."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
            monkeypatch.setattr(logger, "disabled", False)
            if not logger.propagate:
                monkeypatch.setattr(logger, "handlers", [*logger.handlers, caplog.handler])


def test_no_token_reaches_any_file_output_or_log(trained, tmp_path, cloud, capsys, caplog, recwarn, monkeypatch):
    """The token is where IBM's client keeps it (the environment, the service object). Every qmedimg
    path on an ibm entry runs: evaluate (ledger-*.json, eval-*.json), its dry run, predict (the same
    ledger path, a CSV) and its dry run, `backends check` (credentials, device), a noise-study dry run
    (dry-run.json); none may write, print, log or warn the token anywhere."""
    from PIL import Image

    from qmedimg.rundir import load_run

    capture_all_logging(caplog, monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # anything written to ~ is scanned too
    (tmp_path / "home").mkdir()
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(load_run(trained).dataset.test.images[:3]):
        Image.fromarray(image[0]).save(images / f"case{i}.png")
    qpu = ["--backend", "qpu", "--backends", str(registry(tmp_path))]
    commands = [
        ["evaluate", str(trained), *qpu, "--test-limit", "3"],
        ["evaluate", str(trained), *qpu, "--dry-run"],
        ["predict", str(trained), str(images), *qpu, "--out", str(tmp_path / "predictions.csv")],
        ["predict", str(trained), str(images), *qpu, "--dry-run"],
        ["backends", "check", "qpu", "--backends", str(registry(tmp_path))],
        ["noise-study", str(trained), *qpu, "--mitigation", "none", "--test-limit", "3", "--out",
         str(tmp_path / "study"), "--dry-run", "--quiet"],
    ]
    for argv in commands:
        assert main(argv) == 0, argv
    assert cloud.submitted == 2  # evaluate and predict really ran jobs through the ledger
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert {"ledger-qpu.json", "eval-qpu-limit3.json", "predictions.csv", "dry-run.json"} <= written, written
    assert any(name.startswith("ledger-qpu.") and name.endswith(".json") and name != "ledger-qpu.json" for name in written)  # kept aside

    captured = capsys.readouterr()
    assert "credentials: found" in captured.out and "nothing submitted" in captured.out
    assert SECRET not in captured.out + captured.err
    for name in ("qmedimg.backends.runtime", "qiskit_ibm_runtime", "qiskit.transpiler"):  # capture works there
        logging.getLogger(name).debug("canary")
    assert {r.name for r in caplog.records if r.getMessage() == "canary"} == {
        "qmedimg.backends.runtime", "qiskit_ibm_runtime", "qiskit.transpiler"}
    assert [r.getMessage() for r in caplog.records if SECRET in r.getMessage()] == []
    assert [str(w.message) for w in recwarn if SECRET in str(w.message)] == []
    for file in tmp_path.rglob("*"):  # the run (ledgers, eval files), the CSV, the study, ~
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_real_service_without_credentials_or_offline_fails_fast_in_one_line(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved account
    assert main(["backends", "check", "ibm_brisbane"]) == 2
    assert "no IBM Quantum credentials found: set QISKIT_IBM_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("QISKIT_IBM_TOKEN", SECRET)
    start = time.perf_counter()
    assert main(["evaluate", str(trained), "--backend", "ibm_brisbane", "--test-limit", "2"]) == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "IBM Quantum" in err and err.count("\n") == 1 and SECRET not in err
    assert not (trained / "ledger-ibm_brisbane.json").exists()


def test_a_hanging_connection_times_out():
    with pytest.raises(QmedimgError, match="no answer from IBM Quantum within 0.2 s"):
        runtime.with_timeout(lambda: time.sleep(5), 0.2, "connecting")


def test_a_noise_study_on_a_qpu_needs_a_dry_run_of_that_grid_and_allow_qpu(trained, tmp_path, cloud, capsys):
    path = registry(tmp_path)
    out = tmp_path / "study"
    base = ["noise-study", str(trained), "--backend", "qpu", "--backends", str(path), "--mitigation", "none",
            "--test-limit", "3", "--out", str(out), "--quiet"]
    assert main(base) == 2
    assert "--dry-run first" in capsys.readouterr().err
    assert main(base + ["--allow-qpu"]) == 2
    assert "no dry run of this exact grid" in capsys.readouterr().err
    assert main(base + ["--dry-run"]) == 0
    assert "estimated QPU time" in capsys.readouterr().out and cloud.submitted == 0
    assert main(base + ["--allow-qpu", "--mitigation", "none,readout"]) == 2  # another grid: dry-run it again
    assert cloud.submitted == 0
    assert main(base + ["--allow-qpu"]) == 0
    assert cloud.submitted == 1 and (out / "results.csv").read_text().count("\n") == 2


def test_a_resubmitted_job_never_scores_other_images_when_the_job_split_changed(trained, tmp_path, cloud, capsys):
    """Jobs [0,4) [4,8) [8,10); the third fails; the re-run with another max_rows_per_job must not pair
    the failed job with another split's rows (it was resubmitted with images 4-5 and scored as 8-9)."""
    cloud.fail_job = 2
    args = ["evaluate", str(trained), "--backend", "qpu", "--test-limit", "10", "--quiet"]
    assert main(args + ["--backends", str(registry(tmp_path, max_rows_per_job=4))]) == 2
    assert "1 of 3 jobs failed" in capsys.readouterr().err and cloud.submitted == 3
    cloud.fail_job = None
    other = tmp_path / "other"
    other.mkdir()
    assert main(args + ["--backends", str(registry(other, max_rows_per_job=2))]) == 2
    err = capsys.readouterr().err
    assert "holds jobs of another request (differs in: jobs" in err and err.count("\n") == 1
    assert cloud.submitted == 3 and not list(trained.glob("eval-*.json"))
    # the split that made the ledger resubmits only its failed job, and scores every image on its own values
    assert main(args + ["--backends", str(registry(tmp_path, max_rows_per_job=4))]) == 0
    assert cloud.submitted == 4
    ledger = json.loads((trained / "ledger-qpu.json").read_text())
    assert [j["rows"] for j in ledger["jobs"]] == [[0, 4], [4, 8], [8, 10]]
    exact = evaluate_run(trained, "exact", limit=10)
    measured = json.loads(next(trained.glob("eval-qpu*.json")).read_text())
    assert measured["mean_abs_expectation_error"] < 0.2 and exact["images"] == measured["images"] == 10


def test_stored_jobs_whose_rows_are_not_the_payloads_are_refused_before_use(tmp_path):
    """A ledger (say, written by version 1, which did not record the split) whose jobs hold other rows
    than this request's payloads: one line, nothing submitted, no values paired with the wrong images."""
    identity = {"run": "r", "backend": "qpu", "request": "abc"}
    path = tmp_path / "ledger-qpu.json"
    path.write_text(json.dumps({"version": 1, "identity": identity, "jobs": [
        {"index": 0, "rows": [0, 4], "job_id": "a", "status": "done", "evs": [[0.5] * 4], "errors": []},
        {"index": 1, "rows": [4, 8], "job_id": "b", "status": "failed", "evs": None, "errors": []}]}))
    ledger = jobs.Ledger.open(path, {**identity, "repeat": 0}, resume=False)
    pubs = [(None, [0], np.zeros((2, 1)), 0), (None, [0], np.zeros((2, 1)), 2), (None, [0], np.zeros((2, 1)), 4)]
    submitted = []
    with pytest.raises(QmedimgError, match=r"jobs hold images \[\[0, 4\], \[4, 8\]\] but this request splits them as "
                                           r"\[\[0, 2\], \[2, 4\], \[4, 6\]\]"):
        jobs.run_jobs(ledger, lambda: submitted.append(1), lambda: None, pubs, local=True, progress=False)
    assert not submitted


def test_noise_study_repeats_on_a_qpu_are_separate_submissions(trained, tmp_path, cloud):
    """--repeats 3 on a QPU: three submissions and three measurements, not repeat 0's values three times."""
    path = registry(tmp_path)
    out = tmp_path / "study"
    base = ["noise-study", str(trained), "--backend", "qpu", "--backends", str(path), "--mitigation", "none",
            "--test-limit", "4", "--repeats", "3", "--out", str(out), "--quiet"]
    assert main(base + ["--dry-run"]) == 0
    assert main(base + ["--allow-qpu"]) == 0
    assert cloud.submitted == 3
    import csv

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["repeat"] for r in rows) == ["0", "1", "2"]
    errors = {r["mean_abs_expectation_error"] for r in rows}
    assert len(errors) == 3  # three measurements with their own shot noise
    assert main(base + ["--allow-qpu"]) == 0 and cloud.submitted == 3  # finished: nothing submitted again


def test_a_request_kept_aside_is_collected_again_not_resubmitted(trained, tmp_path, cloud):
    path = registry(tmp_path)
    first = evaluate_run(trained, "qpu", backends_file=path, limit=3)
    evaluate_run(trained, "qpu", backends_file=path, limit=4)  # another request: the first is kept aside
    assert cloud.submitted == 2
    again = evaluate_run(trained, "qpu", backends_file=path, limit=3)
    assert cloud.submitted == 2 and again["test"] == first["test"]


# ------------------------------------------------------------------------------------------------
# Without an account: a dry run plans on the device's fake twin; a real run is still refused


class NoNetwork:
    """``QiskitRuntimeService`` that fails the test if anything tries to reach IBM Quantum."""

    made = 0

    def __init__(self, **_):
        NoNetwork.made += 1
        raise AssertionError("IBM Quantum was asked although no credentials exist")


@pytest.fixture
def no_account(tmp_path, monkeypatch):
    """No QISKIT_IBM_* variables and an empty home (no saved account); reaching IBM Quantum fails the test."""
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    NoNetwork.made = 0
    monkeypatch.setattr(runtime, "QiskitRuntimeService", NoNetwork)
    return home


def test_a_dry_run_without_credentials_plans_on_the_fake_twin_and_says_so(trained, no_account, capsys):
    args = ["evaluate", str(trained), "--backend", "ibm_brisbane", "--test-limit", "3", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nothing submitted" in out and "estimated QPU time" in out
    assert "planned on FakeBrisbane's calibration snapshot, not the live device ibm_brisbane" in out
    planned = evaluate_run(trained, "ibm_brisbane", limit=3, dry_run=True)
    assert planned["dry_run"]["planned_on"].startswith("FakeBrisbane's calibration snapshot, not the live device")
    assert planned["device"] == "fake_brisbane" and planned["transpile"]["two_qubit_gates"] > 0
    assert NoNetwork.made == 0 and list(no_account.iterdir()) == []  # nothing asked, nothing written to ~
    assert not list(trained.glob("ledger-*")) and not list(trained.glob("eval-ibm*"))


def test_a_real_run_without_credentials_is_refused_in_one_line_before_any_work(trained, no_account, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--backend", "ibm_brisbane", "--test-limit", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no IBM Quantum credentials found: set QISKIT_IBM_TOKEN" in err
    assert not list(trained.glob("ledger-*")) and not list(trained.glob("eval-ibm*"))
    # a workflow that skips the check still never runs the fake twin as if it were the QPU, nor opens a ledger
    from qmedimg.backends import HeadRequest, JobOptions, get_backend
    from qmedimg.quantum.circuits import load_circuit

    spec = load_circuit("sel")
    request = HeadRequest(spec, np.zeros(len(spec.weights)), np.zeros((2, spec.num_qubits)))
    with pytest.raises(QmedimgError, match="no IBM Quantum credentials found"):
        get_backend("ibm_brisbane").run_head(request, JobOptions(ledger_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists() and NoNetwork.made == 0


def test_a_device_without_a_fake_twin_is_one_line_offline(trained, no_account, tmp_path, capsys):
    path = registry(tmp_path)  # device: ibm_fakecity
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ibm_fakecity has no calibration snapshot" in err and "QISKIT_IBM_TOKEN" in err
    assert NoNetwork.made == 0


def test_a_dry_run_without_credentials_plans_on_the_entrys_pinned_snapshot_where_it_has_one(trained, no_account,
                                                                                             tmp_path, capsys):
    """No fake twin (ibm_fakecity), but a saved calibration: planned on it, and said so (issue 23 item 5)."""
    from qiskit_ibm_runtime.fake_provider import FakeBrisbane

    from qmedimg.backends.snapshots import take_snapshot, write_snapshot

    write_snapshot(tmp_path / "fakecity.json", take_snapshot(FakeBrisbane()))
    path = registry(tmp_path, snapshot="fakecity.json")  # relative to the registry file's folder
    assert main(["evaluate", str(trained), "--backend", "qpu", "--backends", str(path), "--test-limit", "3",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"planned on the calibration snapshot {tmp_path / 'fakecity.json'} (calibrated 2025-02-26" in out
    planned = evaluate_run(trained, "qpu", backends_file=path, limit=3, dry_run=True)
    assert planned["device"] == "fake_brisbane" and planned["transpile"]["two_qubit_gates"] > 0
    assert NoNetwork.made == 0 and not list(trained.glob("ledger-*")) and not list(trained.glob("eval-qpu*"))


def test_a_noise_study_dry_run_without_credentials_records_the_fake_twin(trained, no_account, tmp_path):
    out = tmp_path / "study"
    assert main(["noise-study", str(trained), "--backend", "ibm_brisbane", "--mitigation", "none",
                 "--test-limit", "3", "--out", str(out), "--quiet", "--dry-run"]) == 0
    plans = json.loads((out / "dry-run.json").read_text())["plans"]
    assert plans and all(p["plan"]["planned_on"].startswith("FakeBrisbane's calibration snapshot") for p in plans)
    assert NoNetwork.made == 0
