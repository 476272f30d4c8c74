"""The rows of ``qmedimg backends``: what each registry entry is, read from the entry alone — no backend is
built and no device loaded, so listing imports neither torch nor qiskit (issue 23).

Example::

    from qmedimg.backends.listing import listing_row
    from qmedimg.backends.registry import load_backends
    entries = load_backends(runtime_options=False)       # Runtime's options are checked by `backends check`
    listing_row("fake_brisbane", entries["fake_brisbane"])
    # {'name': 'fake_brisbane', 'kind': 'fake', 'device': 'fake_brisbane', 'qubits': 127, '2q gate': 'ecr', ...}
"""

from __future__ import annotations

from pydantic import BaseModel

from qmedimg.backends.devices import device_columns
from qmedimg.backends.snapshots import snapshot_summary

SKIPPED = {"kind", "description", "device", "calibration_sha256"}
"""Entry keys the options column leaves out (they have columns of their own, or are prose)."""


def listing_row(name: str, entry: BaseModel) -> dict:
    """Entry ``name``'s row: name, kind, device, qubits, 2-qubit gate, options (the keys the file sets), description.
    A fake device's columns come from its calibration files (an entry's ``fake_device()``), a snapshot entry's
    (``calibration: FILE``) from that file, with its calibration date (``calibrated=`` in the options); a QPU shows
    its name only (listing never connects)."""
    options = " ".join(f"{k}={v}" for k, v in _flat(entry.model_dump(exclude_unset=True)).items() if k not in SKIPPED)
    row = {"name": name, "kind": entry.kind, "device": "-", "qubits": "-", "2q gate": "-", "options": options,
           "description": entry.description}
    calibration = getattr(entry, "calibration", None)
    if calibration is not None:
        summary = snapshot_summary(calibration)
        return {**row, **{k: summary[k] for k in ("device", "qubits", "2q gate")},
                "calibration_date": summary["calibration_date"],
                "options": f"{options} calibrated={summary['calibration_date']}".strip()}
    fake = entry.fake_device() if hasattr(entry, "fake_device") else None
    if fake is not None:
        return {**row, **device_columns(fake)}
    return {**row, "device": entry.device} if isinstance(getattr(entry, "device", None), str) else row


def _flat(data: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
