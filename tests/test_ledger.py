"""The QPU ledger as a write-ahead log: every interleaving of submit, save, wait and a second process,
counting submissions to a stand-in for IBM's cloud (account, job lookup by id and by tag, job
status). The jobs themselves run for real in Runtime's local testing mode on FakeManilaV2."""

import fcntl
import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime.executor_estimator import Estimator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qmedimg.backends import jobs
from qmedimg.errors import QmedimgError
from qmedimg.quantum.gradients import column


class Cloud:
    """Stands in for IBM's cloud only: jobs filed by id and by tag, each with a status."""

    filed: dict = {}
    submitted = 0
    lookups = 0
    kill_after_submit = False  # KeyboardInterrupt right after Runtime returned the job (id not yet saved)
    kill_before_submit = False  # KeyboardInterrupt before the job reached IBM
    fail_save_after_submit = False  # the save of the id fails (disk full)
    drop_next_wait = False  # a dropped connection while waiting for a job that runs fine
    drop_wait_of = None  # ...while waiting for the n-th submitted job
    error_next = False  # the next job submitted fails on IBM's side (status ERROR)
    lookup_down = False

    def job(self, job_id):
        return Cloud.filed[job_id]

    def jobs(self, limit=10, job_tags=None, descending=True, **_):
        Cloud.lookups += 1
        if Cloud.lookup_down:
            raise ConnectionError("connection reset by peer")
        found = [j for j in Cloud.filed.values() if set(job_tags or []) <= set(j.tags)]
        return (found[::-1] if descending else found)[:limit]


class RemoteJob:
    def __init__(self, job, tags, state="DONE"):
        self._job, self.tags, self.state, self.ordinal = job, tags, state, Cloud.submitted

    def job_id(self):
        return self._job.job_id()

    def status(self):
        return self.state

    def result(self):
        if Cloud.drop_next_wait:
            Cloud.drop_next_wait = False
            raise ConnectionError("connection reset by peer")
        if Cloud.drop_wait_of == self.ordinal:
            Cloud.drop_wait_of = None
            raise ConnectionError("connection reset by peer")
        if self.state == "ERROR":
            raise RuntimeError("Job failed: calibration in progress")
        return self._job.result()

    def usage(self):
        return 1.5


class RemoteEstimator:
    """The real executor Estimator (local mode); its jobs filed in the cloud under the tags its
    ``options.environment.job_tags`` held at submission."""

    def __init__(self):
        self._estimator = Estimator(mode=FakeManilaV2(), options={"default_shots": 400, "resilience_level": 0})

    @property
    def options(self):
        return self._estimator.options

    def run(self, pubs):
        if Cloud.kill_before_submit:
            Cloud.kill_before_submit = False
            raise KeyboardInterrupt
        Cloud.submitted += 1
        tags = list(self._estimator.options.environment.job_tags)
        job = RemoteJob(self._estimator.run(pubs), tags, "ERROR" if Cloud.error_next else "DONE")
        Cloud.error_next = False
        Cloud.filed[job.job_id()] = job
        if Cloud.kill_after_submit:
            Cloud.kill_after_submit = False
            raise KeyboardInterrupt
        if Cloud.fail_save_after_submit:
            Cloud.fail_save_after_submit = False
            Cloud.failing_save = True
        return job


@pytest.fixture
def cloud(monkeypatch):
    for name, value in {"filed": {}, "submitted": 0, "lookups": 0, "kill_after_submit": False,
                        "kill_before_submit": False, "fail_save_after_submit": False, "failing_save": False,
                        "drop_next_wait": False, "drop_wait_of": None, "error_next": False, "lookup_down": False}.items():
        monkeypatch.setattr(Cloud, name, value, raising=False)
    real = jobs.write_json

    def write_json(path, data):
        if Cloud.failing_save:
            Cloud.failing_save = False
            raise QmedimgError(f"{path}: cannot write (No space left on device)")
        return real(path, data)

    monkeypatch.setattr(jobs, "write_json", write_json)
    return Cloud


@pytest.fixture(scope="module")
def pubs():
    """Two jobs of a small circuit laid out on qubits 0-1 of FakeManilaV2: 3 rows, then 2."""
    theta = ParameterVector("t", 2)
    qc = QuantumCircuit(2)
    qc.ry(theta[0], 0)
    qc.ry(theta[1], 1)
    qc.cx(0, 1)
    isa = generate_preset_pass_manager(0, FakeManilaV2(), initial_layout=[0, 1]).run(qc)
    observables = column([SparsePauliOp("ZI").apply_layout(isa.layout), SparsePauliOp("ZZ").apply_layout(isa.layout)])
    values = np.linspace(0.1, 2.0, 10).reshape(5, 2)
    return [(isa, observables, values[0:3], 0), (isa, observables, values[3:5], 3)]


def run(tmp_path, pubs, local=False):
    """One "process": open the ledger, run the jobs (the service is the stand-in cloud)."""
    ledger = jobs.Ledger.open(tmp_path / "ledger-qpu.json", {"run": "r", "backend": "qpu", "request": "abc"},
                              resume=False)
    service = (lambda: pytest.fail("local mode has no service to ask")) if local else Cloud
    return jobs.run_jobs(ledger, RemoteEstimator, service, pubs, local=local, progress=False)


def stored(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "ledger-qpu.json").read_text())["jobs"]


def collected_correctly(evs):
    theta = np.linspace(0.1, 2.0, 10).reshape(5, 2)
    exact = np.stack([np.cos(theta[:, 0]) * np.cos(theta[:, 1]), np.cos(theta[:, 1])])  # <ZI>, <ZZ> after the CX
    assert evs.shape == (2, 5) and np.abs(evs - exact).max() < 0.3  # FakeManila's noise, 400 shots


def test_killed_between_submit_and_saving_the_id_the_next_run_finds_the_job_by_its_tag(tmp_path, pubs, cloud):
    cloud.kill_after_submit = True
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, pubs)
    first = stored(tmp_path)[0]
    assert cloud.submitted == 1 and first["status"] == "submitting" and first["job_id"] is None
    assert [first["tag"]] == next(iter(cloud.filed.values())).tags  # the intent names the tag it went with

    evs, done = run(tmp_path, pubs)
    assert cloud.submitted == 2  # job 1 only: job 0 was found by its tag and collected
    assert [j["status"] for j in done] == ["done", "done"] and set(cloud.filed) == {j["job_id"] for j in done}
    collected_correctly(evs)


def test_a_failing_save_of_the_id_is_resolved_by_the_tag_too(tmp_path, pubs, cloud):
    cloud.fail_save_after_submit = True
    with pytest.raises(QmedimgError, match="No space left"):
        run(tmp_path, pubs)
    assert cloud.submitted == 1 and stored(tmp_path)[0]["status"] == "submitting"
    evs, _ = run(tmp_path, pubs)
    assert cloud.submitted == 2
    collected_correctly(evs)


def test_killed_before_the_job_reached_ibm_it_is_submitted_once_after_looking(tmp_path, pubs, cloud):
    cloud.kill_before_submit = True
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, pubs)
    assert cloud.submitted == 0 and stored(tmp_path)[0]["status"] == "submitting"
    evs, _ = run(tmp_path, pubs)
    assert cloud.submitted == 2 and cloud.lookups == 1
    collected_correctly(evs)


def test_when_the_lookup_fails_nothing_is_submitted(tmp_path, pubs, cloud):
    cloud.kill_after_submit = True
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, pubs)
    cloud.lookup_down = True
    with pytest.raises(QmedimgError, match="cannot look up job .* nothing was resubmitted"):
        run(tmp_path, pubs)
    assert cloud.submitted == 1
    cloud.lookup_down = False
    run(tmp_path, pubs)
    assert cloud.submitted == 2


def test_a_dropped_connection_while_waiting_is_collected_next_time_not_resubmitted(tmp_path, pubs, cloud):
    cloud.drop_next_wait = True
    with pytest.raises(QmedimgError, match=r"1 of 2 jobs could not be collected .*connection reset.*re-run to "
                                           r"collect them \(nothing is resubmitted\)"):
        run(tmp_path, pubs)
    assert cloud.submitted == 2 and [j["status"] for j in stored(tmp_path)] == ["waiting", "done"]
    evs, done = run(tmp_path, pubs)
    assert cloud.submitted == 2 and [j["status"] for j in done] == ["done", "done"]
    collected_correctly(evs)


def test_only_a_job_runtime_reports_failed_is_resubmitted_exactly_once(tmp_path, pubs, cloud):
    cloud.error_next = True  # job 0 fails on IBM's side
    cloud.drop_wait_of = 2  # waiting for job 1 (the second submission, which runs fine) drops
    with pytest.raises(QmedimgError, match=r"1 of 2 jobs failed .*calibration.*resubmit only the failed jobs; "
                                           r"1 of 2 jobs could not be collected .*connection reset"):
        run(tmp_path, pubs)
    assert cloud.submitted == 2 and [j["status"] for j in stored(tmp_path)] == ["failed", "waiting"]

    evs, done = run(tmp_path, pubs)
    assert cloud.submitted == 3  # job 0 once more, with a tag of its own; job 1 collected
    assert done[0]["tag"].endswith("-0-1") and len(done[0]["previous_ids"]) == 1
    collected_correctly(evs)
    run(tmp_path, pubs)
    assert cloud.submitted == 3


def test_a_second_process_on_the_same_ledger_is_refused(tmp_path, pubs, cloud):
    with open(tmp_path / "ledger-qpu.json.lock", "a") as held:  # the first process holds the ledger
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(QmedimgError, match="another qmedimg process is using .*ledger-qpu.json; wait for it"):
            run(tmp_path, pubs)
        assert cloud.submitted == 0
    run(tmp_path, pubs)  # released: the next one proceeds
    assert cloud.submitted == 2


def test_the_second_process_sees_what_the_first_wrote_after_it_opened_the_ledger(tmp_path, pubs, cloud):
    late = jobs.Ledger.open(tmp_path / "ledger-qpu.json", {"run": "r", "backend": "qpu", "request": "abc"},
                            resume=False)  # opened before the first process wrote anything
    run(tmp_path, pubs)
    jobs.run_jobs(late, RemoteEstimator, Cloud, pubs, local=False, progress=False)
    assert cloud.submitted == 2


def test_the_cli_refuses_a_second_process_in_one_line(tiny_run_copy, tmp_path, monkeypatch, capsys):
    from qmedimg.cli import main

    monkeypatch.setenv("QISKIT_IBM_TOKEN", "unused")
    with open(tiny_run_copy / "ledger-ibm_local.json.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["evaluate", str(tiny_run_copy), "--backend", "ibm_local", "--test-limit", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "another qmedimg process is using" in err and err.count("\n") == 1


def test_local_testing_mode_has_nothing_to_look_up_and_simply_runs_again(tmp_path, pubs, cloud):
    cloud.kill_after_submit = True
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, pubs, local=True)
    assert stored(tmp_path)[0]["status"] == "submitting"
    evs, _ = run(tmp_path, pubs, local=True)  # local jobs cost no QPU time: no look-up, run again
    assert cloud.submitted == 3 and cloud.lookups == 0
    collected_correctly(evs)
