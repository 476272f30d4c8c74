"""The QPU ledger across real processes: the real ``qmedimg`` CLI in subprocesses against a stand-in
for IBM's cloud that survives between them (``cloud_standin``: account, backend lookup, jobs by id
and by tag, status, usage, on disk), killed with SIGKILL right after a submit, with a job IBM reports
as ERROR, and with two processes at once. The jobs run for real in Runtime's local testing mode on
FakeManilaV2; every submission is counted by the cloud, not by the process that made it."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cloud_standin
from cloud_standin import configure, read_state

SECRET = "qmedimg-test-secret-0123456789"
STANDIN = Path(cloud_standin.__file__).resolve()
FRESH = "QMEDIMG_TEST_CLOUD_EXEC"  # =1: a fresh interpreter per invocation instead of the fork server


class Processes:
    """Runs the real ``qmedimg`` CLI against the stand-in cloud, every invocation a process of its own:
    forked from ``cloud_standin --serve``, which imported everything once (seconds saved per process,
    nothing else shared), or with ``QMEDIMG_TEST_CLOUD_EXEC=1`` a fresh interpreter each."""

    def __init__(self):
        self.count, self.server = 0, None
        if not os.environ.get(FRESH):
            self.server = subprocess.Popen([sys.executable, str(STANDIN), "--serve"], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)

    def _ask(self, request: dict, timeout: float) -> dict:
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], timeout)
        assert ready, f"the fork server did not answer {request['op']} within {timeout} s"
        line = self.server.stdout.readline()
        assert line, f"the fork server exited ({self.server.poll()})"
        return json.loads(line)

    def start(self, argv: list[str], env: dict, cwd: Path):
        """Start ``cloud_standin ARGV`` (the CLI's arguments) in ``cwd``; its output goes to files there."""
        self.count += 1
        out, err = cwd / f"process-{self.count}.out", cwd / f"process-{self.count}.err"
        if self.server is None:
            with open(out, "w") as stdout, open(err, "w") as stderr:
                handle = subprocess.Popen([sys.executable, str(STANDIN), *argv], env=env, cwd=cwd, stdout=stdout,
                                          stderr=stderr, stdin=subprocess.DEVNULL)
        else:
            handle = self._ask({"op": "spawn", "argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out),
                                "stderr": str(err)}, 120)["pid"]
        return handle, argv, out, err

    def wait(self, started, timeout: float = 240) -> subprocess.CompletedProcess:
        handle, argv, out, err = started
        code = handle.wait(timeout) if self.server is None else self._ask({"op": "wait", "pid": handle}, timeout)[
            "returncode"]
        return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()  # end of requests: the server exits
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


@pytest.fixture(scope="module")
def processes():
    runner = Processes()
    yield runner
    runner.close()


def registry(folder: Path, max_rows_per_job: int) -> Path:
    """An ``ibm`` entry (as tests/test_ibm.py's): the stand-in cloud's device, 2000 shots, no mitigation."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "backends.yaml"
    path.write_text("qpu:\n  kind: ibm\n  device: ibm_fakecity\n  shots: 2000\n  options: {resilience_level: 0}\n"
                    f"  max_rows_per_job: {max_rows_per_job}\n")
    return path


def environment(cloud: Path, **extra) -> dict:
    return {**os.environ, cloud_standin.ENV: str(cloud), "QISKIT_IBM_TOKEN": SECRET, **extra}


def evaluate(run: Path, backends: Path, limit: int) -> list[str]:
    return ["evaluate", str(run), "--backend", "qpu", "--backends", str(backends), "--test-limit", str(limit), "--quiet"]


def qmedimg(processes: Processes, cloud: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """One process of the real CLI against the stand-in cloud, waited for."""
    return processes.wait(processes.start(argv, environment(cloud), cloud.parent))


def ledger(run: Path) -> list[dict]:
    return json.loads((run / "ledger-qpu.json").read_text())["jobs"]


def by_ordinal(cloud: Path) -> list[dict]:
    """The cloud's jobs in the order they were submitted."""
    return sorted(read_state(cloud)["jobs"].values(), key=lambda r: r["ordinal"])


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def no_token_anywhere(tmp_path: Path, procs) -> None:
    """The token lives in the environment and the service object only: in no file written (the run with
    its ledger and eval files, the cloud's state) and in no output."""
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "cloud.json" for p in files) and any(p.name == "ledger-qpu.json" for p in files)
    for file in files:
        assert SECRET.encode() not in file.read_bytes(), file
    for proc in procs:
        assert SECRET not in (proc.stdout or "") + (proc.stderr or "")


def outcome(run: Path, name: str) -> dict:
    """An eval file less what differs between two runs of one request (timings)."""
    data = json.loads((run / name).read_text())
    return {k: v for k, v in data.items() if k not in ("setup_s", "wall_time_s", "images_per_s")}


def test_killed_right_after_a_submit_the_next_process_finds_the_job_by_its_tag(processes, tiny_run_copy, tmp_path):
    run, cloud, backends = tiny_run_copy, tmp_path / "cloud", registry(tmp_path, max_rows_per_job=2)
    configure(cloud, kill_after_submit=2)  # jobs [0,2) [2,4) [4,6): killed once the second reached IBM
    first = qmedimg(processes, cloud, evaluate(run, backends, 6))
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr)
    held, filed = ledger(run), by_ordinal(cloud)
    assert read_state(cloud)["submitted"] == 2 and len(filed) == 2
    assert held[0]["status"] == "submitted" and held[0]["job_id"] == filed[0]["job_id"]
    assert held[1]["status"] == "submitting" and held[1]["job_id"] is None  # died before the id was saved
    assert filed[1]["tags"] == [held[1]["tag"]]  # ...but the intent names the tag it went to IBM with
    assert held[2]["status"] == "new" and not list(run.glob("eval-*.json"))

    # a new process: looks the intent without an id up by its tag, collects, submits only the rest
    second = qmedimg(processes, cloud, evaluate(run, backends, 6))
    assert second.returncode == 0, second.stderr
    state, done, filed = read_state(cloud), ledger(run), by_ordinal(cloud)
    assert state["submitted"] == 3 == len(done)  # each job reached IBM exactly once
    assert state["lookups"] == 1  # the one intent without an id was looked up by its tag
    assert [j["job_id"] for j in done] == [r["job_id"] for r in filed] and all(j["status"] == "done" for j in done)
    assert [j["evs"] for j in done] == [r["pubs"][0]["evs"] for r in filed]  # the values IBM computed, each once
    evaluated = outcome(run, "eval-qpu-limit6.json")
    assert evaluated["images"] == 6 and evaluated["qpu_seconds"] == 4.5
    assert evaluated["mean_abs_expectation_error"] < 0.2

    third = qmedimg(processes, cloud, evaluate(run, backends, 6))
    assert third.returncode == 0, third.stderr
    assert read_state(cloud)["submitted"] == 3 and read_state(cloud)["lookups"] == 1  # nothing sent or asked
    assert outcome(run, "eval-qpu-limit6.json") == evaluated
    no_token_anywhere(tmp_path, (first, second, third))


def test_a_job_reported_error_is_named_and_only_it_is_resubmitted_by_the_next_process(processes, tiny_run_copy,
                                                                                      tmp_path):
    run, cloud, backends = tiny_run_copy, tmp_path / "cloud", registry(tmp_path, max_rows_per_job=2)
    configure(cloud, error_job=2)  # IBM reports the second of the three jobs as ERROR
    first = qmedimg(processes, cloud, evaluate(run, backends, 6))
    err = one_line(first)
    failed = by_ordinal(cloud)[1]
    assert failed["status"] == "ERROR" and read_state(cloud)["submitted"] == 3
    assert "1 of 3 jobs failed" in err and f"{failed['job_id']}: " in err and "calibration in progress" in err
    assert "re-run to resubmit only the failed jobs" in err
    before = ledger(run)
    assert [j["status"] for j in before] == ["done", "failed", "done"] and not list(run.glob("eval-*.json"))

    second = qmedimg(processes, cloud, evaluate(run, backends, 6))
    assert second.returncode == 0, second.stderr
    assert read_state(cloud)["submitted"] == 4  # the failed job once more, nothing else
    after, again = ledger(run), by_ordinal(cloud)[3]
    assert [j["job_id"] for j in after] == [before[0]["job_id"], again["job_id"], before[2]["job_id"]]
    assert after[1]["previous_ids"] == [failed["job_id"]] and again["tags"] == [after[1]["tag"]] != failed["tags"]
    assert again["sent"] == failed["sent"]  # the same images' parameter rows, resubmitted
    assert outcome(run, "eval-qpu-limit6.json")["mean_abs_expectation_error"] < 0.2

    third = qmedimg(processes, cloud, evaluate(run, backends, 6))
    assert third.returncode == 0, third.stderr
    assert read_state(cloud)["submitted"] == 4
    no_token_anywhere(tmp_path, (first, second, third))


def test_two_processes_at_once_on_one_run_and_backend_one_is_refused_in_one_line(processes, tiny_run_copy, tmp_path):
    run, cloud, backends = tiny_run_copy, tmp_path / "cloud", registry(tmp_path, max_rows_per_job=2)
    # each submission takes a second to reach IBM: the first process still holds the ledger when the
    # second, started at the same moment and doing the same work, reaches it
    configure(cloud, submit_delay_s=1.0)
    go = tmp_path / "go"
    started = [processes.start(evaluate(run, backends, 6), environment(cloud, **{cloud_standin.GO_ENV: str(go)}),
                               tmp_path) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both imported everything: they start within milliseconds of each other
    results = [processes.wait(one) for one in started]
    assert sorted(r.returncode for r in results) == [0, 2], [(r.returncode, r.stderr) for r in results]
    loser = one_line(next(r for r in results if r.returncode == 2))
    assert "another qmedimg process is using" in loser and "ledger-qpu.json" in loser
    assert read_state(cloud)["submitted"] == 3 == len(ledger(run))  # each job once, by the winner
    assert all(j["status"] == "done" for j in ledger(run)) and (run / "eval-qpu-limit6.json").is_file()
    no_token_anywhere(tmp_path, results)


def test_a_resubmission_after_the_job_split_changed_scores_each_image_on_its_own_values(processes, tiny_run_copy,
                                                                                       tmp_path):
    """Issue 24 item 1, across processes: jobs [0,4) [4,8) [8,10), the third ERROR. A re-run with another
    max_rows_per_job must not pair the failed job with another split's rows (images 4-5 sent and scored
    as 8-9); the split that made the ledger resubmits exactly images 8-9 and scores them on their values."""
    from qmedimg.model import head_angles, ideal_head_values
    from qmedimg.rundir import load_run

    run, cloud = tiny_run_copy, tmp_path / "cloud"
    four, two = registry(tmp_path / "four", max_rows_per_job=4), registry(tmp_path / "two", max_rows_per_job=2)
    configure(cloud, error_job=3)
    first = qmedimg(processes, cloud, evaluate(run, four, 10))
    assert "1 of 3 jobs failed" in one_line(first) and read_state(cloud)["submitted"] == 3
    written = (run / "ledger-qpu.json").read_bytes()

    other = qmedimg(processes, cloud, evaluate(run, two, 10))  # only max_rows_per_job changed
    err = one_line(other)
    assert "holds jobs of another request (differs in: " in err and "jobs" in err.split("differs in: ")[1]
    assert read_state(cloud)["submitted"] == 3 and read_state(cloud)["lookups"] == 0
    assert (run / "ledger-qpu.json").read_bytes() == written and not list(run.glob("eval-*.json"))

    last = qmedimg(processes, cloud, evaluate(run, four, 10))  # the split that made the ledger
    assert last.returncode == 0, last.stderr
    assert read_state(cloud)["submitted"] == 4
    jobs, filed = ledger(run), by_ordinal(cloud)
    assert [j["rows"] for j in jobs] == [[0, 4], [4, 8], [8, 10]] and jobs[2]["job_id"] == filed[3]["job_id"]
    # what was sent: exactly the failed job's rows, i.e. images 8-9's angles, not images 4-5's
    assert filed[3]["sent"] == filed[2]["sent"]
    sent = np.asarray(filed[3]["sent"][0]["values"])
    trained = load_run(run)
    angles = head_angles(trained.model, trained.dataset.test.images[:10])
    for row, image in zip(sent, (8, 9)):
        assert all(np.isclose(row, a, rtol=0, atol=1e-7).any() for a in angles[image])
        assert not all(np.isclose(row, a, rtol=0, atol=1e-7).any() for a in angles[image - 4])
    # what was scored: images 8-9 on the values IBM returned for them, close to their exact values (FakeManila's
    # noise and 2000 shots: typically 0.1-0.16 apart at most; this tiny run's head gives every image almost
    # the same values, so which images were scored is checked on the payload above)
    assert jobs[2]["evs"] == filed[3]["pubs"][0]["evs"]
    exact = ideal_head_values(trained.model, angles)  # (images, outputs)
    assert np.abs(np.asarray(jobs[2]["evs"]) - exact[8:10].T).max() < 0.3
    measured = json.loads((run / "eval-qpu-limit10.json").read_text())
    assert measured["images"] == 10 and measured["mean_abs_expectation_error"] < 0.2
    no_token_anywhere(tmp_path, (first, other, last))
