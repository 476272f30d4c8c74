"""Calibration snapshots (issue 25, item 1), as a user meets them: `qmedimg backends snapshot NAME` saves an ibm
entry's device as it is now; a fake entry with `calibration: FILE` then simulates it exactly as the device
itself would be simulated (same Target, noise model, transpiled circuit and noisy values)."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qiskit_aer.noise import NoiseModel
from qiskit_ibm_runtime import IBMBackend
from qiskit_ibm_runtime.fake_provider import FakeBrisbane
from qiskit_ibm_runtime.utils.backend_decoder import configuration_from_server_data

from qmedimg.backends import BackendContext, HeadRequest, get_backend, load_backends
from qmedimg.backends import runtime
from qmedimg.backends.snapshots import (SNAPSHOT_SCHEMA, calibration_date, read_snapshot, snapshot_device,
                                        take_snapshot, write_snapshot)
from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import load_circuit
from support import one_line_error, snapshot

ROOT = Path(__file__).resolve().parents[1]
MARKER = "tok-SNAPSHOT-MARKER-7f3a"  # stands for the user's IBM Quantum token
INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/INSTANCE-MARKER::"


def target_view(device) -> dict:
    """Everything a Target says that transpilation and Aer's noise model read: per instruction and qubits its
    error and duration, the qubits' T1/T2/frequency, dt and the operations."""
    target = device.target
    return {"num_qubits": target.num_qubits, "dt": target.dt, "operations": sorted(target.operation_names),
            "instructions": {(name, qargs): (None if p is None else (p.error, p.duration))
                             for name in target.operation_names for qargs, p in (target[name] or {}).items()},
            "qubits": [(q.t1, q.t2, q.frequency) for q in target.qubit_properties]}


def noise_view(device) -> tuple:
    """Aer's noise model of the device (``NoiseModel.from_backend``), as comparable data: its dict (every gate and
    readout error) without the random ids Aer gives each error, and its relaxation pass's T1, T2, excited
    populations and dt (``NoiseModel.__eq__`` says the same but takes a minute on 127 qubits)."""
    model = NoiseModel.from_backend(device)

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k != "id"}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value.tolist() if hasattr(value, "tolist") else value

    passes = [(type(p).__name__, *(plain(getattr(p, k)) for k in ("_t1s", "_t2s", "_p1s", "_dt")))
              for p in model._custom_noise_passes]
    return plain(model.to_dict()), sorted(model.basis_gates), passes


def registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backends.yaml"
    path.write_text(text)
    return path


class Api:
    """Stands in for Runtime's REST client only: it answers the properties request with FakeBrisbane's file, dated in
    UTC as IBM's server sends them."""

    def __init__(self, props: dict):
        self.props = props

    def backend_properties(self, name, datetime=None, calibration_id=None):
        return json.loads(json.dumps(self.props))


def runtime_backend_from_fakebrisbane() -> IBMBackend:
    """A real ``qiskit_ibm_runtime.IBMBackend`` built the way the service builds one from server data (here:
    FakeBrisbane's files), its configuration carrying a service URL and its account an instance, as a live one
    might."""
    device = FakeBrisbane()
    conf = json.loads(Path(device.dirname, device.conf_filename).read_text())
    props = json.loads(Path(device.dirname, device.props_filename).read_text())
    conf["url"] = f"https://quantum.cloud.ibm.com/api/{MARKER}"
    return IBMBackend(configuration_from_server_data(conf, instance=INSTANCE), service=object(),
                      api_client=Api(props), instance=INSTANCE)


class Service:
    """Stands in for QiskitRuntimeService only (the account and the backend lookup); it holds the token as the real
    client does."""

    hang_s = 0.0

    def __init__(self, channel=None, instance=None, token=None, **_):
        time.sleep(Service.hang_s)
        self.token = token or os.environ.get("QISKIT_IBM_TOKEN")

    def backend(self, name):
        return runtime_backend_from_fakebrisbane()


@pytest.fixture
def service(monkeypatch):
    Service.hang_s = 0.0
    monkeypatch.setattr(runtime, "QiskitRuntimeService", Service)
    monkeypatch.setenv("QISKIT_IBM_TOKEN", MARKER)
    return Service


QPU = "qpu:\n  kind: ibm\n  device: ibm_brisbane\n  timeout_s: {timeout}\n"


# -- the round trip -----------------------------------------------------------------------------------------------
def test_a_snapshot_of_fakebrisbane_is_fakebrisbane_exactly(tmp_path):
    brisbane = FakeBrisbane()
    path = write_snapshot(tmp_path / "brisbane.json", take_snapshot(brisbane))
    loaded = read_snapshot(path)
    assert loaded["schema"] == SNAPSHOT_SCHEMA and loaded["device"] == "fake_brisbane"
    device = snapshot_device(loaded)
    assert target_view(device) == target_view(brisbane)
    assert noise_view(device) == noise_view(brisbane)
    assert calibration_date(device) == calibration_date(brisbane) == "2025-02-26T19:33:06+00:00"


def test_a_snapshot_entry_transpiles_and_simulates_a_head_as_its_device(tmp_path):
    write_snapshot(tmp_path / "snaps" / "brisbane.json", take_snapshot(FakeBrisbane()))
    path = registry(tmp_path, "fb:\n  kind: fake\n  device: FakeBrisbane\n"
                              "snap:\n  kind: fake\n  calibration: snaps/brisbane.json\n")  # relative to the registry
    context = BackendContext()
    fake, snap = (get_backend(name, path, context=context) for name in ("fb", "snap"))
    spec = load_circuit("sel")
    (isa_fake, obs_fake), (isa_snap, obs_snap) = fake.prepare(spec), snap.prepare(spec)
    assert isa_snap is not isa_fake  # transpiled for each device, not shared through the context
    assert isa_snap == isa_fake and isa_snap.layout.final_index_layout() == isa_fake.layout.final_index_layout()
    assert obs_snap == obs_fake
    weights = np.random.default_rng(1).uniform(-1, 1, len(spec.weights))
    angles = np.random.default_rng(2).uniform(-np.pi, np.pi, (5, spec.num_qubits))
    values = [b.run_head(HeadRequest(spec, weights, angles)).values for b in (fake, snap)]
    assert np.abs(values[0] - values[1]).max() <= 1e-12 and np.abs(values[0]).max() > 0.01
    record = snap.describe(spec).record()
    digest = hashlib.sha256((tmp_path / "snaps" / "brisbane.json").read_bytes()).hexdigest()
    assert record["calibration"] == {"file": str(tmp_path / "snaps" / "brisbane.json"), "sha256": digest,
                                     "taken_at": read_snapshot(tmp_path / "snaps" / "brisbane.json")["taken_at"]}
    assert record["calibration_date"] == fake.describe(spec).record()["calibration_date"] == "2025-02-26T19:33:06+00:00"


def test_a_qpu_snapshot_through_runtime_equals_the_device_and_never_holds_the_token(tmp_path, service, monkeypatch,
                                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    path = registry(tmp_path, QPU.format(timeout=15))
    assert main(["backends", "snapshot", "qpu", "--backends", str(path)]) == 0
    out = capsys.readouterr().out
    written = sorted((tmp_path / "calibrations").glob("ibm_brisbane-*.json"))
    assert len(written) == 1 and str(written[0].relative_to(tmp_path)) in out and "calibrated 2025-02-26" in out
    text = written[0].read_text()
    assert MARKER not in text and "INSTANCE-MARKER" not in text  # neither the token nor the account's instance
    device = snapshot_device(read_snapshot(written[0]))
    assert device.name == "ibm_brisbane"
    assert target_view(device) == target_view(FakeBrisbane())
    assert noise_view(device) == noise_view(FakeBrisbane())
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_an_unreachable_qpu_is_one_line_in_seconds_and_nothing_is_written(tmp_path, service, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Service.hang_s = 30  # packets dropped: the service never answers
    path = registry(tmp_path, QPU.format(timeout=0.5))
    before, start = snapshot(tmp_path), time.perf_counter()
    assert main(["backends", "snapshot", "qpu", "--backends", str(path), "--out", "snap.json"]) == 2
    assert time.perf_counter() - start < 5
    assert "no answer from IBM Quantum within 0.5 s" in one_line_error(capsys)
    assert snapshot(tmp_path) == before


def test_a_snapshot_is_written_atomically(tmp_path, service, monkeypatch, capsys):
    path = registry(tmp_path, QPU.format(timeout=15))
    out = tmp_path / "snap.json"
    out.write_text("the earlier snapshot")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["backends", "snapshot", "qpu", "--backends", str(path), "--out", str(out)]) == 2
    assert "No space left on device" in one_line_error(capsys)
    assert out.read_text() == "the earlier snapshot" and sorted(p.name for p in tmp_path.iterdir()) == [
        "backends.yaml", "snap.json"]


def test_snapshot_refuses_an_entry_without_a_device_calibration(tmp_path, capsys):
    path = registry(tmp_path, "sim:\n  kind: aer\n")
    assert main(["backends", "snapshot", "sim", "--backends", str(path), "--out", str(tmp_path / "s.json")]) == 2
    assert "is aer: it has no device calibration to snapshot" in one_line_error(capsys)
    assert not (tmp_path / "s.json").exists()


# -- bad files and entries ----------------------------------------------------------------------------------------
def damaged(kind: str, good: dict) -> str:
    if kind == "corrupt":
        return json.dumps(good)[:5000]  # cut off mid-way
    if kind == "wrong format":
        return json.dumps({**good, "format": "qiskit-backend"})
    return json.dumps({**good, "schema": SNAPSHOT_SCHEMA + 1})


@pytest.mark.parametrize("kind, message", [("corrupt", "not valid JSON (line 1), so not a calibration snapshot"),
                                           ("wrong format", "not a calibration snapshot (format 'qiskit-backend')"),
                                           ("future schema", "written by a newer qmedimg (schema 2; this one reads "
                                            "up to 1): upgrade qmedimg")])
def test_a_damaged_or_newer_snapshot_is_one_line_and_nothing_is_written(tiny_run_copy, tmp_path, capsys, kind,
                                                                        message):
    snap = tmp_path / "snap.json"
    snap.write_text(damaged(kind, take_snapshot(FakeBrisbane())))
    with pytest.raises(QmedimgError, match=f"^{snap}: "):
        read_snapshot(snap)
    path = registry(tmp_path, "snap:\n  kind: fake\n  calibration: snap.json\n")
    before = snapshot(tiny_run_copy)
    assert main(["evaluate", str(tiny_run_copy), "--backend", "snap", "--backends", str(path), "--quiet"]) == 2
    err = one_line_error(capsys)
    assert f"entry 'snap': key 'calibration': {snap}: {message}" in err
    assert "qmedimg backends snapshot" in err or kind == "future schema"  # what a valid file is, or: upgrade
    assert snapshot(tiny_run_copy) == before


@pytest.mark.parametrize("keys, gives", [("  device: FakeBrisbane\n  calibration: snap.json\n", "both"),
                                         ("  shots: 100\n", "neither")])
def test_a_fake_entry_takes_exactly_one_of_device_and_calibration(tmp_path, capsys, keys, gives):
    write_snapshot(tmp_path / "snap.json", take_snapshot(FakeBrisbane()))
    path = registry(tmp_path, "x:\n  kind: fake\n" + keys)
    assert main(["backends", "--backends", str(path)]) == 2
    err = one_line_error(capsys)
    assert "entry 'x': key 'calibration': give exactly one of 'device' (a fake device, e.g. FakeBrisbane) and " \
           f"'calibration' (a snapshot file from `qmedimg backends snapshot`); this entry gives {gives}" in err


# -- using it -----------------------------------------------------------------------------------------------------
def test_a_calibration_entry_evaluates_end_to_end_as_its_device(tiny_run_copy, tmp_path, capsys):
    write_snapshot(tmp_path / "snap.json", take_snapshot(FakeBrisbane()))
    path = registry(tmp_path, "fb:\n  kind: fake\n  device: FakeBrisbane\n"
                              "snap:\n  kind: fake\n  calibration: snap.json\n")
    for name in ("fb", "snap"):
        assert main(["evaluate", str(tiny_run_copy), "--backend", name, "--backends", str(path),
                     "--test-limit", "6", "--quiet"]) == 0
    fb, snap = (json.loads(next(tiny_run_copy.glob(f"eval-{n}*.json")).read_text()) for n in ("fb", "snap"))
    assert snap["test"] == fb["test"] and snap["device"] == fb["device"] == "fake_brisbane"
    assert snap["calibration"]["sha256"] == hashlib.sha256((tmp_path / "snap.json").read_bytes()).hexdigest()
    assert snap["calibration_date"] == fb["calibration_date"] == "2025-02-26T19:33:06+00:00" and "calibration" not in fb


def test_the_entry_identity_and_loaded_device_follow_the_snapshot_content(tmp_path):
    snap = take_snapshot(FakeBrisbane())
    write_snapshot(tmp_path / "snap.json", snap)
    path = registry(tmp_path, "snap:\n  kind: fake\n  calibration: snap.json\n")
    context = BackendContext()
    first = get_backend("snap", path, context=context)
    assert get_backend("snap", path, context=context)._device is first._device  # loaded once per content
    identity = load_backends(path)["snap"].model_dump(mode="json")  # what study rows are keyed by
    gate = next(g for g in snap["properties"]["gates"] if g["gate"] == "ecr")
    error = next(p for p in gate["parameters"] if p["name"] == "gate_error")
    error["value"] *= 3  # another day's calibration, written to the same file
    write_snapshot(tmp_path / "snap.json", snap)
    assert load_backends(path)["snap"].model_dump(mode="json") != identity
    second = get_backend("snap", path, context=context)
    assert second._device is not first._device
    qubits = tuple(gate["qubits"])
    assert second._device.target["ecr"][qubits].error == 3 * first._device.target["ecr"][qubits].error
    assert second._transpile_key() != first._transpile_key()
    with pytest.raises(QmedimgError, match="the calibration snapshot changed since the registry was read"):
        context.snapshot(tmp_path / "snap.json", identity["calibration_sha256"])


def test_the_listing_shows_a_snapshot_entry_with_its_calibration_date_without_loading_qiskit(tmp_path):
    write_snapshot(tmp_path / "snap.json", take_snapshot(FakeBrisbane(), taken_at=None))
    path = registry(tmp_path, "snap:\n  kind: fake\n  calibration: snap.json\n  shots: 100\n")
    probe = ("import json, sys; from qmedimg.cli import main; main(['backends', '--backends', sys.argv[1]]); "
             "print('LOADED', json.dumps({m: m in sys.modules for m in ('torch', 'qiskit')}))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("snap "))
    assert row.split()[:5] == ["snap", "fake", "fake_brisbane", "127", "ecr"]
    assert "calibrated=2025-02-26T19:33:06+00:00" in row and "sha256" not in row
    assert done.stdout.splitlines()[-1] == 'LOADED {"torch": false, "qiskit": false}'


def test_an_ibm_record_says_whose_calibration_date_it_planned_on(monkeypatch, tmp_path):
    """Local mode: the fake device's date; no credentials: the fake twin's, named as such (an estimate)."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved account either
    spec = load_circuit("sel")
    local = get_backend("ibm_local").describe(spec).record()
    assert local["calibration_date"] == calibration_date(FakeManilaV2()) and "calibration_twin" not in local
    offline = get_backend("ibm_brisbane").describe(spec).record()
    assert offline["calibration_date"] == calibration_date(FakeBrisbane()) and offline["calibration_twin"] == "FakeBrisbane"
