"""The backend registry: ``backends.yaml`` validated, and what each entry builds.

Example::

    from qmedimg.backends import get_backend
    from qmedimg.circuits import load_circuit
    backend = get_backend("fake_brisbane")            # ./backends.yaml, QMEDIMG_BACKENDS or the repo's
    spec = load_circuit("sel")
    isa, observables = backend.prepare(spec)          # transpiled once, layout applied to observables
    evs = backend.estimator.run([(isa, [[o] for o in observables], values)]).result()[0].data.evs

The YAML file is the registry (data, not code); this module only validates it (pydantic) and builds
estimators: ``exact`` -> :class:`~qmedimg.exact.ExactEstimator`, ``aer``/``fake`` ->
:class:`~qmedimg.simulators.DeviceEstimator`, ``ibm`` -> Qiskit Runtime (:mod:`qmedimg.ibm`).
"""

from __future__ import annotations

import inspect
import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, TypeAdapter, ValidationError, field_validator

from qmedimg.errors import QmedimgError

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "backends.yaml"
SECRET_KEY = re.compile(r"token|api[_-]?key|secret|password|credential", re.IGNORECASE)
CREDENTIALS_HINT = ("credentials never go in a backends file: set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE) "
                    "or run QiskitRuntimeService.save_account(token=..., instance=...) once")


@lru_cache(maxsize=1)
def fake_devices() -> dict[str, type]:
    """Every device class in ``qiskit_ibm_runtime.fake_provider`` by its class name (FakeBrisbane, …)."""
    import qiskit_ibm_runtime.fake_provider as provider

    return {name: cls for name, cls in inspect.getmembers(provider, inspect.isclass)
            if name.startswith("Fake") and not name.startswith("FakeProvider")}


def _fake_device_name(value: str) -> str:
    """'FakeBrisbane', 'fake_brisbane' or 'brisbane' -> 'FakeBrisbane' (V2 suffix optional)."""
    def key(name: str) -> str:
        name = name.lower().replace("_", "")
        name = name[4:] if name.startswith("fake") else name
        return name[:-2] if name.endswith("v2") else name

    matches = [name for name in fake_devices() if key(name) == key(value)]
    if not matches:
        raise ValueError(f"unknown fake device '{value}'; valid: {', '.join(sorted(fake_devices()))}")
    return matches[0]


@lru_cache(maxsize=None)
def fake_device(name: str):
    """One instance per fake device class name (loading a calibration takes ~0.3 s)."""
    return fake_devices()[name]()


_PREPARED: dict[tuple, tuple] = {}  # (circuit id, device, transpile options, local) -> (circuit, isa, observables)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DynamicalDecoupling(_Strict):
    """Pad idle windows of the scheduled circuit with a DD sequence."""

    sequence: Literal["XX", "XY4"] = "XX"
    scheduling: Literal["alap", "asap"] = "alap"


class TranspileOptions(_Strict):
    """Passed to ``generate_preset_pass_manager`` (plus a DD pass when asked)."""

    optimization_level: Literal[0, 1, 2, 3] = 1
    layout_method: Literal["default", "trivial", "dense", "sabre"] | None = None
    routing_method: Literal["default", "basic", "lookahead", "sabre", "none"] | None = None
    initial_layout: list[NonNegativeInt] | None = None
    seed_transpiler: int | None = 0
    approximation_degree: float | None = Field(None, ge=0, le=1)
    dynamical_decoupling: DynamicalDecoupling | None = None


class ZneOptions(_Strict):
    noise_factors: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0], min_length=2)
    extrapolator: Literal["linear", "exponential"] = "exponential"
    folding: Literal["random", "front", "back"] = "random"

    @field_validator("noise_factors")
    @classmethod
    def _factors(cls, factors: list[float]) -> list[float]:
        if any(f < 1 for f in factors) or len(set(factors)) != len(factors):
            raise ValueError(f"noise_factors must be distinct and >= 1 (e.g. [1, 3, 5]), got {factors}")
        return sorted(factors)


class Mitigation(_Strict):
    """Local error mitigation for the ``fake`` kind."""

    readout: bool = Field(False, description="invert each qubit's calibrated readout confusion matrix")
    zne: ZneOptions | None = Field(None, description="zero-noise extrapolation by 2-qubit gate folding")
    twirls: PositiveInt | None = Field(None, description="average this many Pauli-twirled circuit copies")


class ExactEntry(_Strict):
    kind: Literal["exact"]
    description: str = ""


class AerEntry(_Strict):
    kind: Literal["aer"]
    description: str = ""
    shots: PositiveInt | None = Field(None, description="None: exact expectation values")
    seed: int | None = Field(0, description="seeds shot sampling")


class FakeEntry(_Strict):
    kind: Literal["fake"]
    description: str = ""
    device: str
    noise_scale: float = Field(1.0, ge=0, description="0 = ideal, 1 = as calibrated, 2 = twice the error rates")
    shots: PositiveInt | None = None
    seed: int | None = 0
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    mitigation: Mitigation = Field(default_factory=Mitigation)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return _fake_device_name(value)


class IbmEntry(_Strict):
    kind: Literal["ibm"]
    description: str = ""
    device: str = Field(description="the QPU's name, e.g. ibm_brisbane")
    channel: Literal["ibm_quantum_platform", "ibm_cloud"] = "ibm_quantum_platform"
    instance: str | None = None
    mode: Literal["batch", "session", "job"] = "batch"
    local: str | None = Field(None, description="a fake device: run in Runtime's local testing mode")
    shots: PositiveInt | None = 4096
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    options: dict[str, Any] = Field(default_factory=dict, description="Qiskit Runtime EstimatorOptions")
    max_rows_per_job: PositiveInt = Field(1000, description="at most this many images per Runtime job "
                                          "(lowered further to respect IBM's job limits)")
    timeout_s: float = Field(15.0, gt=0, description="give up reaching IBM Quantum after this long")

    @field_validator("local")
    @classmethod
    def _local(cls, value):
        return None if value is None else _fake_device_name(value)

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict) -> dict:
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions

        EstimatorOptions(**options)  # raises a ValidationError naming the bad option
        return options


Entry = Annotated[Union[ExactEntry, AerEntry, FakeEntry, IbmEntry], Field(discriminator="kind")]
KINDS = {"exact": ExactEntry, "aer": AerEntry, "fake": FakeEntry, "ibm": IbmEntry}
_ENTRY = TypeAdapter(Entry)


def registry_path(path: str | Path | None = None) -> Path:
    """``path``, else $QMEDIMG_BACKENDS, else ./backends.yaml, else the one shipped with qmedimg."""
    if path is not None:
        return Path(path)
    if os.environ.get("QMEDIMG_BACKENDS"):
        return Path(os.environ["QMEDIMG_BACKENDS"])
    return Path("backends.yaml") if Path("backends.yaml").is_file() else DEFAULT_FILE


def _find_secret(value, trail: str) -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if SECRET_KEY.search(str(key)):
                return f"{trail}.{key}".lstrip(".")
            found = _find_secret(item, f"{trail}.{key}")
            if found:
                return found
    return None


def _entry_error(path: Path, name: str, raw: dict, error: ValidationError) -> QmedimgError:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    kind = raw.get("kind")
    if loc and loc[0] == kind:  # the discriminated union puts the kind first
        loc = loc[1:]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        model = KINDS.get(kind)
        valid = ", ".join(model.model_fields) if model is not None and len(loc) == 1 else None
        hint = f"; for kind '{kind}' the valid keys are: {valid}" if valid else ""
        if kind == "ibm" and loc[-1] == "mitigation":
            hint += " (ibm mitigation goes in options: resilience_level, resilience.*, twirling.*)"
        if kind == "aer" and loc[-1] in ("mitigation", "noise_scale", "device"):
            hint += " (aer is noiseless; use kind 'fake' for a noisy device)"
        return QmedimgError(f"{path}: entry '{name}': unknown key '{key}'{hint}")
    if first["type"] == "union_tag_invalid":
        return QmedimgError(f"{path}: entry '{name}': unknown kind '{kind}'; valid: {', '.join(KINDS)}")
    if first["type"] == "union_tag_not_found":
        return QmedimgError(f"{path}: entry '{name}': missing key 'kind' (one of {', '.join(KINDS)})")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error" and "validation error" in message:  # Runtime's options model
        message = " ".join(message.split())
    return QmedimgError(f"{path}: entry '{name}': key '{key}': {message}")


def load_backends(path: str | Path | None = None) -> dict[str, Entry]:
    """Read and validate a backends file: ``{name: entry}``; every problem is one line naming file,
    entry and key."""
    path = registry_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise QmedimgError(f"{path}: cannot read backends file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise QmedimgError(f"{path}:{where}: malformed YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise QmedimgError(f"{path}: expected a mapping of backend names to entries")
    entries = {}
    for name, raw in data.items():
        if not isinstance(raw, dict):
            raise QmedimgError(f"{path}: entry '{name}' must be a mapping with at least 'kind'")
        secret = _find_secret(raw, "")
        if secret:
            raise QmedimgError(f"{path}: entry '{name}': key '{secret}' looks like a secret; {CREDENTIALS_HINT}")
        try:
            entries[str(name)] = _ENTRY.validate_python(raw)
        except ValidationError as exc:
            raise _entry_error(path, str(name), raw, exc) from None
    return entries


def get_backend(name: str, path: str | Path | None = None, **overrides) -> Backend:
    """The registry entry ``name`` as a :class:`Backend`; ``overrides`` replace entry keys
    (e.g. ``shots=1024``, ``noise_scale=2``, ``transpile={"optimization_level": 3}``), validated
    as if they were in the file."""
    path = registry_path(path)
    entries = load_backends(path)
    if name not in entries:
        raise QmedimgError(f"unknown backend '{name}' in {path}; valid: {', '.join(entries)}")
    entry = entries[name]
    if overrides:
        raw = entry.model_dump(exclude_unset=True)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        try:
            entry = _ENTRY.validate_python(raw)
        except ValidationError as exc:
            raise _entry_error(Path("command line"), name, raw, exc) from None
    return Backend(name, entry)


class Backend:
    """One registry entry, built: ``device``, ``estimator``, ``prepare(spec)`` and ``precision``."""

    def __init__(self, name: str, entry: Entry):
        self.name, self.entry = name, entry

    @property
    def kind(self) -> str:
        return self.entry.kind

    @cached_property
    def device(self):
        """The ``BackendV2`` circuits are transpiled for (None for exact/aer)."""
        if self.kind == "fake":
            return fake_device(self.entry.device)
        if self.kind == "ibm":
            from qmedimg.ibm import runtime_backend

            return runtime_backend(self.entry)
        return None

    @property
    def device_name(self) -> str:
        return self.device.name if self.device is not None else self.kind

    @property
    def precision(self) -> float | None:
        """What the QNN asks the estimator for: exact (0.0) locally, the entry's shots on Runtime."""
        return None if self.kind == "ibm" else 0.0

    @cached_property
    def estimator(self):
        entry = self.entry
        if self.kind == "exact":
            from qmedimg.exact import ExactEstimator

            return ExactEstimator()
        from qmedimg.simulators import ZNE, DeviceEstimator

        if self.kind == "aer":
            return DeviceEstimator(None, shots=entry.shots, seed=entry.seed)
        if self.kind == "fake":
            m = entry.mitigation
            zne = ZNE(tuple(m.zne.noise_factors), m.zne.extrapolator, m.zne.folding) if m.zne else None
            return DeviceEstimator(self.device, noise_scale=entry.noise_scale, shots=entry.shots, seed=entry.seed,
                                   readout_mitigation=m.readout, zne=zne, twirls=m.twirls)
        from qmedimg.ibm import runtime_estimator

        return runtime_estimator(self.entry, self.device)

    def pass_manager(self, num_qubits: int):
        """The preset pass manager of the entry's transpile options (+ DD), for a circuit this wide."""
        from qiskit.transpiler import generate_preset_pass_manager

        options = self.entry.transpile
        device = self.device
        if num_qubits > device.num_qubits:
            raise QmedimgError(f"the circuit has {num_qubits} qubits but {self.name} ({device.name}) has only "
                               f"{device.num_qubits}; use a smaller --qubits or a larger device")
        layout = options.initial_layout
        if layout is not None and (len(set(layout)) != num_qubits or len(layout) != num_qubits
                                   or max(layout) >= device.num_qubits):
            raise QmedimgError(f"backend '{self.name}': transpile.initial_layout {layout} must list {num_qubits} "
                               f"distinct physical qubits below {device.num_qubits}")
        if self.kind == "ibm" and self.entry.local and layout is None:
            layout = list(range(num_qubits))  # local mode simulates physical qubits 0..k-1 only (see qmedimg.ibm)
        pm = generate_preset_pass_manager(
            optimization_level=options.optimization_level, backend=device, initial_layout=layout,
            layout_method=None if options.layout_method == "default" else options.layout_method,
            routing_method=None if options.routing_method == "default" else options.routing_method,
            seed_transpiler=options.seed_transpiler, approximation_degree=options.approximation_degree)
        dd = options.dynamical_decoupling
        if dd is not None:
            pm.scheduling = _dd_passes(device, dd)
        return pm

    def prepare(self, spec) -> tuple:
        """(circuit, observables) to send: the ISA circuit and layout-mapped observables for a device,
        the circuit as written otherwise. Transpiled once per (circuit, options)."""
        if self.device is None:
            return spec.circuit, list(spec.observables)
        key = (id(spec.circuit), self.device_name, self.entry.transpile.model_dump_json(),
               getattr(self.entry, "local", None))
        hit = _PREPARED.get(key)
        if hit is None or hit[0] is not spec.circuit:
            isa = self.pass_manager(spec.num_qubits).run(spec.circuit)
            observables = [o.apply_layout(isa.layout) for o in spec.observables]
            if self.kind == "ibm" and self.entry.local:
                from qmedimg.ibm import trim_for_local

                isa, observables = trim_for_local(isa, observables, self.name)
            hit = (spec.circuit, isa, observables)
            _PREPARED[key] = hit
        return hit[1], hit[2]

    def describe(self) -> dict:
        """One row for ``qmedimg backends``: kind, device, qubits, 2-qubit gate, options."""
        entry = self.entry
        row = {"name": self.name, "kind": self.kind, "device": "-", "qubits": "-", "2q gate": "-",
               "options": "", "description": entry.description}
        if self.kind in ("fake", "ibm") and (self.kind == "fake" or entry.local):
            device = fake_device(entry.device if self.kind == "fake" else entry.local)
            row.update(device=device.name, qubits=device.num_qubits, **{"2q gate": two_qubit_gate(device)})
        elif self.kind == "ibm":
            row.update(device=entry.device)
        skip = {"kind", "description", "device"}
        row["options"] = " ".join(f"{k}={v}" for k, v in _flat(entry.model_dump(exclude_unset=True)).items()
                                  if k not in skip)
        return row


def _flat(data: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def two_qubit_gate(device) -> str:
    names = [name for name in device.operation_names
             if (op := device.target.operation_from_name(name)) is not None and getattr(op, "num_qubits", 0) == 2
             and name not in ("swap",)]
    return ",".join(sorted(names)) or "-"


def _dd_passes(device, dd: DynamicalDecoupling):
    from qiskit.circuit.library import XGate, YGate
    from qiskit.transpiler import PassManager
    from qiskit.transpiler.passes import ALAPScheduleAnalysis, ASAPScheduleAnalysis, PadDynamicalDecoupling

    if dd.sequence == "XY4" and "y" not in device.operation_names:
        raise QmedimgError(f"dynamical_decoupling.sequence XY4 needs a 'y' gate, which {device.name} does not "
                           "have; use XX")
    sequence = [XGate(), XGate()] if dd.sequence == "XX" else [XGate(), YGate(), XGate(), YGate()]
    schedule = ALAPScheduleAnalysis if dd.scheduling == "alap" else ASAPScheduleAnalysis
    return PassManager([schedule(target=device.target),
                        PadDynamicalDecoupling(target=device.target, dd_sequence=sequence)])


def transpile_report(backend: Backend, spec) -> dict:
    """Physical qubits, depth, 2-qubit gate count and the calibration's estimated circuit fidelity
    (product of (1 - error) over every instruction and the measured qubits' readout)."""
    isa, observables = backend.prepare(spec)
    from qmedimg.simulators import trim_idle

    small, physical = trim_idle(isa)
    two_qubit = sum(1 for inst in small.data if inst.operation.num_qubits == 2)
    report = {"backend": backend.name, "device": backend.device_name, "circuit": spec.name,
              "physical_qubits": physical, "depth": small.depth(), "two_qubit_gates": two_qubit,
              "ops": dict(small.count_ops()), "estimated_fidelity": None}
    target = getattr(backend.device, "target", None)
    if target is not None:
        scale = getattr(backend.entry, "noise_scale", 1.0)
        fidelity = 1.0
        for inst in isa.data:
            name = inst.operation.name
            qargs = tuple(isa.find_bit(q).index for q in inst.qubits)
            if name in target and qargs in (target[name] or {}):
                props = target[name][qargs]
                if props is not None and props.error is not None:
                    fidelity *= max(0.0, 1 - props.error * scale)
        for q in physical:
            props = target["measure"].get((q,)) if "measure" in target else None
            if props is not None and props.error is not None:
                fidelity *= max(0.0, 1 - props.error * scale)
        report["estimated_fidelity"] = round(fidelity, 4)
    return report


def check_backend(backend: Backend) -> list[str]:
    """Build the entry and run the default circuit once on it; lines to print. For ``ibm`` without
    ``local``: credentials present and device reachable (each step under the entry's timeout)."""
    import time

    import numpy as np

    from qmedimg.circuits import load_circuit

    entry = backend.entry
    lines = [f"{backend.name}: kind {backend.kind}" + (f", {entry.description}" if entry.description else "")]
    if backend.kind == "ibm" and not entry.local:
        from qmedimg.ibm import runtime_service

        runtime_service(entry)
        lines.append(f"credentials: found (channel {entry.channel}); account reachable")
        device = backend.device
        lines.append(f"device: {device.name}, {device.num_qubits} qubits, 2-qubit gate {two_qubit_gate(device)}")
        lines.append("ok (nothing submitted)")
        return lines
    if backend.device is not None:
        lines.append(f"device: {backend.device.name}, {backend.device.num_qubits} qubits, "
                     f"2-qubit gate {two_qubit_gate(backend.device)}")
    spec = load_circuit("sel")
    circuit, observables = backend.prepare(spec)
    if backend.device is not None:
        report = transpile_report(backend, spec)
        lines.append(f"sel transpiled: physical qubits {report['physical_qubits']}, depth {report['depth']}, "
                     f"{report['two_qubit_gates']} two-qubit gates, estimated fidelity {report['estimated_fidelity']}")
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (4, circuit.num_parameters))
    pub = (circuit, [[o] for o in observables], values)
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        evs = backend.estimator.run([pub], precision=backend.precision).result()[0].data.evs
        timings.append(time.perf_counter() - start)
    lines.append(f"ran sel (4 rows): first call {timings[0]:.2f} s, next {timings[1]:.2f} s; "
                 f"<Z0> of row 0 = {float(np.asarray(evs)[0, 0]):+.4f}")
    lines.append("ok")
    return lines
