"""A stand-in for IBM's cloud that survives between processes, so the real ``qmedimg`` CLI can be run
(and killed) in subprocesses against it.

It stands in for IBM's cloud ONLY: the account, the backend lookup by name (FakeManilaV2), job
retrieval by id, job lookup by tags, job status and usage. The jobs themselves run for real: each
submitted PUB goes through Runtime's executor-based ``Estimator`` in local testing mode on
FakeManilaV2 at submission, and its values are filed in the cloud, so a later process that fetches
the job by id or tag gets exactly what was computed.

State lives in the directory ``$QMEDIMG_TEST_CLOUD`` (``cloud.json``, written atomically under
``cloud.lock``): the submission counter, the tag look-up counter, every job (id, tags, status, usage,
each PUB's parameter rows as sent and its values) and fault switches a test sets with :func:`configure`:

- ``kill_after_submit: N``: SIGKILL the submitting process right after the N-th submission (1-based,
  counted over all processes) was filed, before Runtime's return reaches qmedimg;
- ``error_job: N``: the N-th submission fails on IBM's side (status ERROR, its result raises);
- ``submit_delay_s: S``: each submission takes S seconds to reach the cloud (network latency).

The token is read from QISKIT_IBM_TOKEN, as the real client does, kept in memory and never written.

Driver (``tests/`` is on ``sys.path`` when the file is run as a script)::

    QMEDIMG_TEST_CLOUD=/tmp/x/cloud python tests/cloud_standin.py evaluate RUN --backend qpu ...

With ``QMEDIMG_TEST_CLOUD_GO=PATH`` the driver, once everything is imported, touches
``PATH.ready-<pid>`` and waits for ``PATH`` to exist: processes started together begin within
milliseconds of each other. ``python tests/cloud_standin.py --serve`` is a fork server that pays the
imports (seconds) once and runs each invocation as a forked process of its own (see :func:`serve`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

ENV = "QMEDIMG_TEST_CLOUD"
GO_ENV = "QMEDIMG_TEST_CLOUD_GO"
STATE, LOCK = "cloud.json", "cloud.lock"
FAULTS = ("kill_after_submit", "error_job", "submit_delay_s")
USAGE_S = 1.5  # QPU seconds each job reports
ERROR_MESSAGE = "Job failed: calibration in progress (stand-in cloud)"


# ------------------------------------------------------------------------------------------------
# The cloud's state, on disk


def cloud_dir(directory: str | Path | None = None) -> Path:
    directory = directory or os.environ.get(ENV)
    if not directory:
        raise RuntimeError(f"the stand-in cloud needs its directory in ${ENV}")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _empty() -> dict:
    return {"submitted": 0, "lookups": 0, "jobs": {}, "faults": {}}


def read_state(directory: str | Path | None = None) -> dict:
    """The cloud as the last complete write left it (a fresh cloud if nothing was written yet)."""
    path = cloud_dir(directory) / STATE
    return json.loads(path.read_text()) if path.is_file() else _empty()


def _write(directory: Path, state: dict) -> None:
    """Atomically: a temp file in the same folder, fsynced, renamed over ``cloud.json``."""
    tmp = directory / f".{STATE}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, directory / STATE)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(directory: str | Path | None = None):
    """The cloud's state for a read-modify-write, one process at a time; written back on exit."""
    directory = cloud_dir(directory)
    with open(directory / LOCK, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            state = read_state(directory)
            yield state
            _write(directory, state)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def configure(directory: str | Path | None = None, **faults) -> None:
    """Set the fault switches (``None`` clears one); the rest of the cloud is kept."""
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault switch(es) {sorted(unknown)}; known: {FAULTS}")
    with _locked(directory) as state:
        state["faults"].update(faults)
        state["faults"] = {k: v for k, v in state["faults"].items() if v is not None}


# ------------------------------------------------------------------------------------------------
# Jobs as Runtime returns them (``RuntimeJobV2``-like)


class CloudJob:
    """A job filed in the cloud, read from disk on every call (any process may hold one)."""

    def __init__(self, job_id: str, directory: str | Path | None = None):
        self._id, self._dir = job_id, cloud_dir(directory)

    def _record(self) -> dict:
        from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound

        record = read_state(self._dir)["jobs"].get(self._id)
        if record is None:
            raise RuntimeJobNotFound(f"Job not found: {self._id}")
        return record

    def job_id(self) -> str:
        return self._id

    @property
    def tags(self) -> list[str]:
        return list(self._record()["tags"])

    def status(self) -> str:
        return self._record()["status"]  # "DONE" / "ERROR", as RuntimeJobV2.status() returns them

    def usage(self) -> float:
        return float(self._record()["usage_s"])

    def result(self, timeout=None):
        """The job's ``PrimitiveResult``, rebuilt from the values filed at submission."""
        import numpy as np
        from qiskit.primitives.containers import DataBin, PrimitiveResult, PubResult
        from qiskit_ibm_runtime.exceptions import RuntimeJobFailureError

        record = self._record()
        if record["status"] != "DONE":
            raise RuntimeJobFailureError(f"Unable to retrieve job result. {record['error']}")
        pubs = []
        for pub in record["pubs"]:
            evs, stds = np.asarray(pub["evs"], dtype=float), np.asarray(pub["stds"], dtype=float)
            pubs.append(PubResult(DataBin(evs=evs, stds=stds, shape=evs.shape), metadata={"shots": pub["shots"]}))
        return PrimitiveResult(pubs, metadata={"job_id": self._id, "stand_in": True})


# ------------------------------------------------------------------------------------------------
# The service (what ``QiskitRuntimeService`` is for qmedimg)


class CloudService:
    """``QiskitRuntimeService`` for the stand-in cloud: account, backends, jobs by id and by tags, usage."""

    def __init__(self, channel: str | None = None, instance: str | None = None, token: str | None = None, **_):
        from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

        token = token or os.environ.get("QISKIT_IBM_TOKEN")  # as the real service reads it
        if not token:
            raise AccountNotFoundError("Unable to find account.")
        self._token = token  # in memory only, as the real client keeps it
        self.channel, self._instance, self._dir = channel, instance, cloud_dir()

    def backend(self, name: str, instance: str | None = None):
        from qiskit.providers.exceptions import QiskitBackendNotFoundError
        from qiskit_ibm_runtime.fake_provider import FakeManilaV2

        if not name.startswith("ibm_"):
            raise QiskitBackendNotFoundError(f"No backend matches the criteria: {name}")
        return FakeManilaV2()

    def job(self, job_id: str) -> CloudJob:
        job = CloudJob(job_id, self._dir)
        job._record()  # raises RuntimeJobNotFound for an unknown id, as the real service does
        return job

    def jobs(self, limit: int | None = 10, skip: int = 0, backend_name=None, pending=None, program_id=None,
             instance=None, job_tags: list[str] | None = None, descending: bool = True, **_) -> list[CloudJob]:
        """Jobs carrying all of ``job_tags``, newest first (``descending``), as Runtime filters them."""
        with _locked(self._dir) as state:
            state["lookups"] += 1
            records = sorted(state["jobs"].values(), key=lambda r: r["ordinal"], reverse=descending)
        found = [r for r in records if set(job_tags or []) <= set(r["tags"])][skip:]
        return [CloudJob(r["job_id"], self._dir) for r in found[:limit]]

    def usage(self) -> dict:
        state = read_state(self._dir)
        return {"usage_consumed_seconds": sum(r["usage_s"] for r in state["jobs"].values()),
                "usage_limit_seconds": None, "usage_limit_reached": False}


# ------------------------------------------------------------------------------------------------
# Submission: the real local-mode Estimator, every run filed in the cloud


class CloudEstimator:
    """Runtime's executor ``Estimator`` (built by qmedimg, local mode on the device the service gave),
    whose ``run`` files the job in the cloud under ``options.environment.job_tags``."""

    def __init__(self, estimator, device_name: str):
        self._estimator, self._device = estimator, device_name

    @property
    def options(self):
        return self._estimator.options  # qmedimg tags each job here

    def run(self, pubs, **kwargs) -> CloudJob:
        faults = read_state()["faults"]
        if faults.get("submit_delay_s"):
            time.sleep(float(faults["submit_delay_s"]))
        tags = list(self.options.environment.job_tags or [])
        with _locked() as state:  # one submission at a time reaches the cloud
            ordinal = state["submitted"] + 1
            faults = state["faults"]
            record = {"job_id": f"standin{ordinal:03d}{uuid.uuid4().hex[:12]}", "ordinal": ordinal, "tags": tags,
                      "backend": self._device, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
                      "status": "DONE", "usage_s": USAGE_S, "error": None,
                      "sent": [_payload(pub) for pub in pubs], "pubs": []}
            if faults.get("error_job") == ordinal:
                record.update(status="ERROR", error=ERROR_MESSAGE)
            else:
                result = self._estimator.run(pubs, **kwargs).result()  # really run, in local mode
                record["pubs"] = [{"evs": pub.data.evs.tolist(), "stds": pub.data.stds.tolist(),
                                   "shots": pub.metadata.get("executor", {}).get("shots")} for pub in result]
            state["jobs"][record["job_id"]] = record
            state["submitted"] = ordinal
        if faults.get("kill_after_submit") == ordinal:  # filed on IBM's side; Runtime's answer never arrives
            os.kill(os.getpid(), signal.SIGKILL)
        return CloudJob(record["job_id"])


def _payload(pub) -> dict:
    """What IBM keeps of a submitted PUB: the circuit's size and the parameter rows, one per image."""
    import numpy as np

    circuit, values = pub[0], (pub[2] if len(pub) > 2 else None)
    return {"num_qubits": circuit.num_qubits, "num_parameters": circuit.num_parameters,
            "values": None if values is None else np.asarray(values, dtype=float).tolist()}


_installed: dict = {}


def install(directory: str | Path | None = None) -> None:
    """Point qmedimg's Runtime module at the stand-in cloud: ``QiskitRuntimeService`` is the cloud's
    service and ``runtime_estimator`` the real one, each job filed in the cloud."""
    from qmedimg.backends import runtime

    if directory is not None:
        os.environ[ENV] = str(directory)
    cloud_dir()  # refuses without a directory
    if _installed:
        return
    real = runtime.runtime_estimator

    def runtime_estimator(entry, device):
        if entry.local:
            return real(entry, device)  # Runtime's own local mode: no cloud involved
        return CloudEstimator(real(entry, device), entry.device)

    _installed.update(service=runtime.QiskitRuntimeService, estimator=real)
    runtime.QiskitRuntimeService = CloudService
    runtime.runtime_estimator = runtime_estimator


def _import_everything() -> None:
    """What an ``evaluate`` on an ``ibm`` entry imports, loaded before the go-file (or the fork)."""
    import qiskit_ibm_runtime.executor_estimator  # noqa: F401
    import qmedimg.backends.ibm  # noqa: F401
    import qmedimg.cli  # noqa: F401
    import qmedimg.workflows.evaluate  # noqa: F401


def main(argv: list[str]) -> int:
    """Run the real ``qmedimg`` CLI against the stand-in cloud (after the go-file, if one is named)."""
    install()
    _import_everything()
    from qmedimg.cli import main as cli

    go = os.environ.get(GO_ENV)
    if go:
        Path(f"{go}.ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while not Path(go).exists():
            if time.monotonic() > deadline:
                print("cloud_standin: no go-file within 120 s", file=sys.stderr)
                return 3
            time.sleep(0.002)
    return cli(argv)


# ------------------------------------------------------------------------------------------------
# A fork server: the imports (seconds) paid once, every invocation still a process of its own


def serve() -> int:
    """Import everything once, then for each request read on stdin (one JSON object a line) fork a child
    that runs :func:`main` as a fresh process would: its own pid, environment, working directory, stdout
    and stderr files, locks and memory; nothing of it outlives it but what it wrote to disk. The server
    itself only imports: it runs no qmedimg code, no simulation and holds no lock.

    ``{"op": "spawn", "argv": [...], "env": {...}, "cwd": DIR, "stdout": FILE, "stderr": FILE}`` answers
    ``{"pid": PID}``; ``{"op": "wait", "pid": PID}`` answers ``{"returncode": RC}`` (``-9``: SIGKILL)."""
    _import_everything()
    protocol_in, protocol_out = sys.stdin, sys.stdout
    for line in protocol_in:
        request = json.loads(line)
        if request["op"] == "spawn":
            protocol_out.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)  # never returns
            reply = {"pid": pid}
        elif request["op"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            reply = {"returncode": os.waitstatus_to_exitcode(status)}
        else:
            reply = {"error": f"unknown op {request['op']!r}"}
        protocol_out.write(json.dumps(reply) + "\n")
        protocol_out.flush()
    return 0


def _child(request: dict) -> None:
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the server's protocol pipes are not the child's
        for fd, key in ((1, "stdout"), (2, "stderr")):
            out = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
            os.close(out)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = main(request["argv"])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        raise SystemExit(serve())
    raise SystemExit(main(sys.argv[1:]))
