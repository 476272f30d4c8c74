"""The calibrated devices of ``qiskit_ibm_runtime.fake_provider``, found by any spelling of their name.

Example::

    from qmedimg.backends.devices import fake_device, fake_device_name, fake_twin, two_qubit_gate
    device = fake_device(fake_device_name("brisbane"))     # FakeBrisbane, loaded now (~0.3 s): BackendContext.device keeps one
    two_qubit_gate(device)                                  # 'ecr'
    fake_twin("ibm_brisbane")                               # 'FakeBrisbane': planned on offline, without an account
    device_columns("FakeBrisbane")                          # {'device': 'fake_brisbane', 'qubits': 127, '2q gate': 'ecr'}

Names and listing columns are read from the provider's files (its ``backends/__init__.py``, each device's class
module and ``conf_*.json``) without importing qiskit, so that ``qmedimg backends`` stays light (issue 23); where
those files are not found, the classes are imported and the devices loaded.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
from pathlib import Path

TWO_QUBIT_GATES = {"cx", "cz", "ecr", "rzz", "cy", "ch", "cp", "crx", "cry", "crz", "csx", "iswap", "rxx", "ryy",
                   "rzx", "dcx", "xx_plus_yy", "xx_minus_yy"}
"""Names of 2-qubit gates a device's ``basis_gates`` may list (``swap`` is not a native gate)."""


def fake_devices() -> dict[str, type]:
    """Every device class in ``qiskit_ibm_runtime.fake_provider`` by its class name (FakeBrisbane, …)."""
    import qiskit_ibm_runtime.fake_provider as provider

    return {name: cls for name, cls in inspect.getmembers(provider, inspect.isclass)
            if name.startswith("Fake") and not name.startswith("FakeProvider")}


def _provider_files() -> dict[str, Path]:
    """{class name: its folder in ``fake_provider/backends``}, read without importing qiskit_ibm_runtime (which imports
    qiskit); {} where the provider is not plain files."""
    spec = importlib.util.find_spec("qiskit_ibm_runtime")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return {}
    backends = Path(next(iter(spec.submodule_search_locations))) / "fake_provider" / "backends"
    try:
        text = (backends / "__init__.py").read_text(encoding="utf-8")
    except OSError:
        return {}
    return {name: backends / folder for folder, name in re.findall(r"^from \.(\w+) import (Fake\w+)\s*$", text, re.M)}


def fake_device_names() -> list[str]:
    """Every fake device's class name, from the provider's files (else its classes)."""
    return sorted(_provider_files() or fake_devices())


def device_columns(name: str) -> dict:
    """The device columns of ``qmedimg backends`` for the fake device class ``name``: its device name, qubits and
    2-qubit gate, read from its ``conf_*.json`` (else from the device, loaded)."""
    folder = _provider_files().get(name)
    try:
        code = "".join(path.read_text(encoding="utf-8") for path in sorted(folder.glob("fake_*.py")))
        block = code[code.index(f"class {name}("):]
        conf = re.search(r'conf_filename = "([^"]+)"', block)[1]
        config = json.loads((folder / conf).read_text(encoding="utf-8"))
        gates = sorted({gate for gate in config["basis_gates"] if gate in TWO_QUBIT_GATES})
        return {"device": re.search(r'backend_name = "([^"]+)"', block)[1], "qubits": config["n_qubits"],
                "2q gate": ",".join(gates) or "-"}
    except (AttributeError, OSError, ValueError, KeyError, TypeError):  # not the files this reads: load the device
        device = fake_device(name)
        return {"device": device.name, "qubits": device.num_qubits, "2q gate": two_qubit_gate(device)}


def fake_device_name(value: str) -> str:
    """'FakeBrisbane', 'fake_brisbane' or 'brisbane' -> 'FakeBrisbane' (V2 suffix optional);
    a ValueError listing the valid names otherwise."""
    def key(name: str) -> str:
        name = name.lower().replace("_", "")
        name = name[4:] if name.startswith("fake") else name
        return name[:-2] if name.endswith("v2") else name

    names = fake_device_names()
    matches = [name for name in names if key(name) == key(value)]
    if not matches:
        raise ValueError(f"unknown fake device '{value}'; valid: {', '.join(sorted(names))}")
    return matches[0]


def fake_twin(device: str) -> str | None:
    """The fake device holding a calibration snapshot of the IBM QPU ``device`` ('ibm_brisbane' -> 'FakeBrisbane',
    'ibmq_manila' -> 'FakeManilaV2'), or None when ``qiskit_ibm_runtime.fake_provider`` has none."""
    name = device.strip().lower()
    for prefix in ("ibmq_", "ibm_"):
        name = name.removeprefix(prefix)
    try:
        return fake_device_name(name) if name else None
    except ValueError:
        return None


def fake_device(name: str):
    """A new instance of the fake device class ``name`` (loading a calibration takes ~0.3 s: a workflow's
    backends share one through their :class:`~qmedimg.backends.context.BackendContext`)."""
    return fake_devices()[name]()


def two_qubit_gate(device) -> str:
    """The device's native 2-qubit gate names ('ecr', 'cz', …), or '-'."""
    names = [name for name in device.operation_names
             if (op := device.target.operation_from_name(name)) is not None and getattr(op, "num_qubits", 0) == 2
             and name not in ("swap",)]
    return ",".join(sorted(names)) or "-"
