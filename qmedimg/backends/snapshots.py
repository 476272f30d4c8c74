"""Calibration snapshots: an IBM device's calibration as it is now, kept in a file and simulated later exactly as
the device would be. A snapshot is one JSON file in the fake provider's own layout (its ``conf_*.json`` and
``props_*.json`` as the ``configuration`` and ``properties`` members), with the time it was taken; a ``fake`` entry
with ``calibration: FILE`` runs on it as ``device: FakeXxx`` runs on the provider's frozen files.

Example::

    from qiskit_ibm_runtime.fake_provider import FakeBrisbane
    from qmedimg.backends.snapshots import read_snapshot, snapshot_device, take_snapshot, write_snapshot
    write_snapshot("calibrations/brisbane.json", take_snapshot(FakeBrisbane()))   # or a QPU's IBMBackend
    device = snapshot_device(read_snapshot("calibrations/brisbane.json"))        # same Target, same noise model
    calibration_date(device)                                                      # '2025-02-26T19:33:06+00:00'

The file (``"format": "qmedimg-calibration-snapshot"``, ``"schema": 1``)::

    {"schema": 1, "format": "qmedimg-calibration-snapshot", "device": "ibm_brisbane",
     "taken_at": "2026-01-05T09:12:00+00:00", "qiskit_ibm_runtime": "0.51.0",
     "configuration": {...BackendConfiguration.to_dict()...}, "properties": {...BackendProperties.to_dict()...}}

Datetimes are ISO strings; no credential, instance or service URL is ever in it (keys that look like one are
dropped). Reading one (:func:`read_snapshot`, :func:`snapshot_summary`) needs only the standard library, so
listing the registry stays light; :func:`snapshot_device` and :func:`take_snapshot` import Qiskit.
:func:`entry_snapshot` is what ``qmedimg backends snapshot NAME`` saves: an ``ibm`` entry's QPU through Qiskit
Runtime, under the entry's timeout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from qmedimg.backends.devices import TWO_QUBIT_GATES
from qmedimg.errors import QmedimgError
from qmedimg.files import check_schema, os_error, write_text

SNAPSHOT_SCHEMA = 1
"""The newest snapshot file format this qmedimg reads and the one it writes."""
SNAPSHOT_FORMAT = "qmedimg-calibration-snapshot"
"""The ``format`` member every snapshot file carries."""
PRIVATE_KEY = re.compile(r"token|api[_-]?key|secret|password|credential|instance|crn|account|(^|_)url$",
                         re.IGNORECASE)
"""Keys dropped from a device's configuration and properties, however deep: credentials, the account's instance
and service URLs never go into a snapshot."""
VALID = f"a calibration snapshot is a JSON file written by `qmedimg backends snapshot` (format {SNAPSHOT_FORMAT})"


def take_snapshot(device, *, taken_at: datetime | None = None) -> dict:
    """``device``'s calibration now, as a JSON-able snapshot dict (see the module docstring for its members).
    ``device``: a fake device (``FakeBrisbane()``) or a Qiskit Runtime ``IBMBackend`` (its ``configuration()`` and
    ``properties()``; on a QPU ``properties()`` asks IBM Quantum, so call it under a timeout). A device without
    a configuration or calibrated properties is one line.

    Example::

        snapshot = take_snapshot(FakeBrisbane())
        snapshot["device"], snapshot["properties"]["last_update_date"]   # 'fake_brisbane', '2025-02-26T14:33:06-05:00'
    """
    from importlib.metadata import version

    from qiskit_ibm_runtime.fake_provider.backend_encoder import BackendEncoder

    name = getattr(device, "name", None) or type(device).__name__
    configuration = device.configuration() if callable(getattr(device, "configuration", None)) else None
    properties = device.properties() if callable(getattr(device, "properties", None)) else None
    if configuration is None or properties is None:
        missing = "configuration" if configuration is None else "calibration (properties)"
        raise QmedimgError(f"device {name}: no {missing} to snapshot; a snapshot is of an IBM device (an ibm entry's "
                           "QPU or a fake device)")
    moment = (taken_at or datetime.now(timezone.utc)).astimezone(timezone.utc)

    def plain(model) -> dict:  # datetimes as ISO strings, complex numbers as [re, im]: the provider's own files
        return _public(json.loads(json.dumps(model.to_dict(), cls=BackendEncoder)))

    return {"schema": SNAPSHOT_SCHEMA, "format": SNAPSHOT_FORMAT, "device": str(name),
            "taken_at": moment.isoformat(timespec="seconds"), "qiskit_ibm_runtime": version("qiskit-ibm-runtime"),
            "configuration": plain(configuration), "properties": plain(properties)}


def scaled_errors(snapshot: dict, factor: float, *, readout: bool = True) -> dict:
    """A copy of ``snapshot`` with every gate error (and, with ``readout``, every readout error) × ``factor``, capped
    at 1 (readout: 0.5): a deliberately wrong or a what-if calibration, e.g. to check that a prediction made on it
    is told apart from one made on the right snapshot."""
    scaled = copy.deepcopy(snapshot)
    for gate in scaled["properties"]["gates"]:
        for item in gate["parameters"]:
            if item["name"] == "gate_error":
                item["value"] = min(1.0, item["value"] * factor)
    for qubit in scaled["properties"]["qubits"] if readout else ():
        for item in qubit:
            if item["name"] in ("readout_error", "prob_meas0_prep1", "prob_meas1_prep0"):
                item["value"] = min(0.5, item["value"] * factor)
    return scaled


def _public(value):
    """``value`` without any mapping key that looks private (:data:`PRIVATE_KEY`), however deep."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not PRIVATE_KEY.search(str(k))}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def write_snapshot(path: str | Path, snapshot: dict) -> Path:
    """Write ``snapshot`` to ``path`` atomically (a reader never sees half of it; on failure nothing is left),
    creating its folder. Returns the path."""
    path = Path(path).expanduser()
    _check(path, snapshot)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(path.parent, exc, "cannot create folder") from None
    return write_text(path, json.dumps(snapshot, indent=1) + "\n")


def read_snapshot(path: str | Path) -> dict:
    """The snapshot in ``path``, validated: a file that cannot be read, is not JSON, is not a snapshot, or was
    written by a newer qmedimg is one line naming the file and what is valid."""
    return read_snapshot_file(path)[0]


def read_snapshot_file(path: str | Path) -> tuple[dict, str]:
    """(the snapshot in ``path``, validated as :func:`read_snapshot` does; the SHA-256 of the file's bytes)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise os_error(path, exc, "cannot read calibration snapshot") from None
    return parse_snapshot(path, data), hashlib.sha256(data).hexdigest()


def parse_snapshot(path: str | Path, data: bytes) -> dict:
    """The snapshot in ``data`` (the bytes of file ``path``, named in errors), validated as :func:`read_snapshot`
    does."""
    try:
        snapshot = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise QmedimgError(f"{path}: not valid JSON{where}, so not a calibration snapshot; {VALID}") from None
    _check(Path(path), snapshot)
    return snapshot


def _check(path: Path, snapshot) -> None:
    """One line naming ``path`` unless ``snapshot`` is a snapshot this qmedimg reads."""
    if not isinstance(snapshot, dict) or snapshot.get("format") != SNAPSHOT_FORMAT:
        found = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
        raise QmedimgError(f"{path}: not a calibration snapshot (format {str(found)[:60]!r}); {VALID}")
    check_schema(path, snapshot.get("schema"), SNAPSHOT_SCHEMA)
    wanted = {"device": str, "taken_at": str, "configuration": dict, "properties": dict}
    for key, kind in wanted.items():
        if not isinstance(snapshot.get(key), kind):
            raise QmedimgError(f"{path}: calibration snapshot without a valid {key!r} ({kind.__name__}); the file is "
                               f"damaged — take a new one; {VALID}")
    for part, keys in (("configuration", ("n_qubits", "basis_gates", "coupling_map")),
                       ("properties", ("last_update_date", "qubits", "gates"))):
        missing = [key for key in keys if key not in snapshot[part]]
        if missing:
            raise QmedimgError(f"{path}: calibration snapshot whose {part} lacks {', '.join(missing)}; the file is "
                               f"damaged — take a new one; {VALID}")


def snapshot_summary(path: str | Path) -> dict:
    """What ``qmedimg backends`` shows of a snapshot file, without importing Qiskit: ``device``, ``qubits``,
    ``2q gate``, ``calibration_date`` (UTC) and ``taken_at``."""
    snapshot = read_snapshot(path)
    conf = snapshot["configuration"]
    gates = sorted({g for g in conf.get("basis_gates") or [] if g in TWO_QUBIT_GATES})
    return {"device": snapshot["device"], "qubits": conf.get("n_qubits"), "2q gate": ",".join(gates) or "-",
            "calibration_date": _utc(snapshot["properties"].get("last_update_date")), "taken_at": snapshot["taken_at"]}


def _utc(moment) -> str | None:
    """A datetime or ISO string as an ISO string in UTC (None stays None; an unreadable string is kept)."""
    if moment is None:
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if moment.tzinfo is None:
        return moment.isoformat()
    return moment.astimezone(timezone.utc).isoformat()


def snapshot_device(snapshot: dict):
    """The device of a snapshot: a ``FakeBackendV2`` fed the snapshot's dicts (no files), built the way the fake
    provider builds ``FakeBrisbane`` from its own, so its Target, noise model and transpilation equal the original
    device's. It carries ``taken_at`` (when the snapshot was taken).

    Example::

        device = snapshot_device(read_snapshot("calibrations/ibm_brisbane-20260105-0912.json"))
        NoiseModel.from_backend(device)            # Aer's noise model of that day's calibration
    """
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2
    from qiskit_ibm_runtime.utils.backend_decoder import decode_backend_configuration, properties_from_server_data

    class SnapshotBackend(FakeBackendV2):
        """A device rebuilt from a calibration snapshot (its configuration and properties as the provider's files
        hold them)."""

        dirname = conf_filename = props_filename = ""  # never read: the snapshot's dicts stand in for the files

        def __init__(self, data: dict):
            self._snapshot, self.backend_name, self.taken_at = data, data["device"], data["taken_at"]
            super().__init__()

        def _get_conf_dict_from_json(self) -> dict:
            conf = copy.deepcopy(self._snapshot["configuration"])
            decode_backend_configuration(conf)
            conf["backend_name"] = self.backend_name
            return conf

        def _set_props_dict_from_json(self) -> None:
            props = copy.deepcopy(self._snapshot["properties"])
            properties_from_server_data(props)
            self._props_dict = props

    try:
        device = SnapshotBackend(snapshot)
        device.target  # built now, so a damaged calibration is refused here and not in the middle of a run
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise QmedimgError(f"calibration snapshot of {snapshot.get('device')}: its configuration or properties cannot "
                           f"be read ({type(exc).__name__}: {str(exc)[:120]}); take a new snapshot") from None
    return device


def calibration_date(device) -> str | None:
    """When ``device`` was calibrated: its properties' ``last_update_date`` as an ISO date-time in UTC, for fake
    devices, snapshots and QPUs alike (a QPU's ``properties()`` may ask IBM Quantum); None where it has none.

    Example::

        calibration_date(FakeBrisbane())          # '2025-02-26T19:33:06+00:00'
    """
    properties = device.properties() if callable(getattr(device, "properties", None)) else None
    return _utc(getattr(properties, "last_update_date", None)) if properties is not None else None


def default_snapshot_path(device: str, now: datetime | None = None) -> Path:
    """Where ``qmedimg backends snapshot`` writes without ``--out``: ``calibrations/<device>-<YYYYMMDD-HHMM>.json``
    (UTC)."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return Path("calibrations") / f"{device}-{moment:%Y%m%d-%H%M}.json"


def entry_snapshot(name: str, entry, *, taken_at: datetime | None = None) -> dict:
    """A snapshot of registry entry ``name``'s device as it is now: an ``ibm`` entry's QPU through Qiskit Runtime
    (each step under the entry's ``timeout_s``: an unreachable device is one line in seconds), its fake device in
    local mode (``local: FakeXxx``), or a ``fake`` entry's fake device. Any other entry is one line."""
    from qmedimg.backends.devices import fake_device

    if entry.kind == "ibm" and entry.local is None:
        from qmedimg.backends import runtime

        device = runtime.runtime_backend(entry)  # never the fake twin: a snapshot is of the live device
        try:
            return runtime.with_timeout(lambda: take_snapshot(device, taken_at=taken_at), entry.timeout_s,
                                        f"reading {entry.device}'s calibration")
        except QmedimgError:
            raise
        except Exception as exc:  # the network, or IBM Quantum's answer: one line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise QmedimgError(f"cannot read {entry.device}'s calibration from IBM Quantum: {first}") from None
    if entry.kind == "ibm" or (entry.kind == "fake" and getattr(entry, "device", None) is not None):
        return take_snapshot(fake_device(entry.local if entry.kind == "ibm" else entry.device), taken_at=taken_at)
    if entry.kind == "fake":
        raise QmedimgError(f"backend '{name}' already runs on a calibration snapshot ({entry.calibration}): copy that "
                           "file rather than snapshot it again")
    raise QmedimgError(f"backend '{name}' is {entry.kind}: it has no device calibration to snapshot; pick an ibm entry "
                       "(its QPU, or its local fake device) or a fake entry with device:")


def snapshot_date(snapshot: dict) -> str | None:
    """When the device of ``snapshot`` was calibrated (its properties' ``last_update_date``, in UTC)."""
    return _utc(snapshot["properties"].get("last_update_date"))
