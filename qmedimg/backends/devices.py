"""The calibrated devices of ``qiskit_ibm_runtime.fake_provider``, found by any spelling of their name.

Example::

    from qmedimg.backends.devices import fake_device, fake_device_name, two_qubit_gate
    device = fake_device(fake_device_name("brisbane"))     # FakeBrisbane, loaded now (~0.3 s): BackendContext.device keeps one
    two_qubit_gate(device)                                  # 'ecr'
"""

from __future__ import annotations

import inspect


def fake_devices() -> dict[str, type]:
    """Every device class in ``qiskit_ibm_runtime.fake_provider`` by its class name (FakeBrisbane, …)."""
    import qiskit_ibm_runtime.fake_provider as provider

    return {name: cls for name, cls in inspect.getmembers(provider, inspect.isclass)
            if name.startswith("Fake") and not name.startswith("FakeProvider")}


def fake_device_name(value: str) -> str:
    """'FakeBrisbane', 'fake_brisbane' or 'brisbane' -> 'FakeBrisbane' (V2 suffix optional);
    a ValueError listing the valid names otherwise."""
    def key(name: str) -> str:
        name = name.lower().replace("_", "")
        name = name[4:] if name.startswith("fake") else name
        return name[:-2] if name.endswith("v2") else name

    matches = [name for name in fake_devices() if key(name) == key(value)]
    if not matches:
        raise ValueError(f"unknown fake device '{value}'; valid: {', '.join(sorted(fake_devices()))}")
    return matches[0]


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
