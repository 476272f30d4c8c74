"""The ``Entry`` schema of each backend kind: what a ``backends.yaml`` entry of that kind may say, validated
by pydantic. They live apart from the kinds' classes so that reading and listing the registry imports neither
torch nor qiskit (issue 23); each kind module sets its ``Entry`` from here.

Example::

    from qmedimg.backends.entries import ENTRIES
    ENTRIES["fake"].model_validate({"kind": "fake", "device": "brisbane"}).device   # 'FakeBrisbane'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from qmedimg.backends.devices import fake_device_name
from qmedimg.backends.options import Mitigation, Shots, Strict, TranspileOptions
from qmedimg.backends.snapshots import read_snapshot
from qmedimg.errors import QmedimgError

SIMULATORS = ("auto", "aer", "trajectories")
"""How a noisy head is simulated: ``auto`` = Aer's density matrix up to :data:`~qmedimg.backends.device_estimator.DENSITY_MATRIX_MAX_QUBITS`
active qubits, qmedimg's trajectory sampler above; ``aer`` = Aer only (density matrix, then Aer statevector
trajectories); ``trajectories`` = qmedimg's sampler at every width. A circuit the sampler cannot sample
exactly goes to Aer (recorded as ``handed_to_aer``)."""


class ExactEntry(Strict):
    kind: Literal["exact"]
    description: str = ""


class AerEntry(Strict):
    kind: Literal["aer"]
    description: str = ""
    shots: Shots | None = Field(None, description="None: exact expectation values")
    seed: int | None = Field(0, description="seeds shot sampling")


class FakeEntry(Strict):
    kind: Literal["fake"]
    description: str = ""
    device: str | None = Field(None, description="a fake device of qiskit_ibm_runtime.fake_provider (FakeBrisbane, "
                               "fake_torino, ...); or give calibration")
    calibration: str | None = Field(None, validate_default=True, description="a calibration snapshot file (`qmedimg "
                                    "backends snapshot`), in place of device; relative to the registry file's folder")
    calibration_sha256: str | None = Field(None, validate_default=True, description="the snapshot file's SHA-256, "
                                           "filled in when the entry is read; give it to pin the file's content")
    noise_scale: float = Field(1.0, ge=0, le=1000, allow_inf_nan=False,
                               description="0 = ideal, 1 = as calibrated, 2 = twice the error rates (at most "
                               "1000: every error rate is saturated long before)")
    shots: Shots | None = None
    seed: int | None = 0
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    mitigation: Mitigation = Field(default_factory=Mitigation)
    simulator: Literal[SIMULATORS] = Field(
        "auto", description="auto: Aer's density matrix up to 10 active qubits, qmedimg's trajectory sampler "
        "above; aer: Aer only (density matrix, then Aer statevector trajectories); trajectories: qmedimg's "
        "sampler at every width")
    trajectories: int = Field(1000, ge=2, le=1_000_000, description="noise trajectories per image (2..1000000) "
                              "wherever values come from trajectories; the statistical error falls as 1/√N")
    training_trajectories: int = Field(16, ge=1, le=100_000, description="noise-aware training on the sampler: "
                                       "trajectories per sample and step for the forward values, and as many fresh "
                                       "ones for the gradient (unbiased for any count)")

    aer_device: Literal["CPU", "GPU"] = Field(
        "CPU", description="where Aer simulates: GPU needs qiskit-aer-gpu and a CUDA GPU (then Aer takes every "
        "width: density matrix up to 14 active qubits, statevector trajectories above)")

    @field_validator("aer_device")
    @classmethod
    def _gpu_is_aer(cls, value: str, info: ValidationInfo) -> str:
        if value == "GPU" and info.data.get("simulator") == "trajectories":
            raise ValueError("simulator 'trajectories' is qmedimg's sampler, which runs on the CPU; with aer_device "
                             "GPU use simulator: auto or aer")
        return value

    @field_validator("simulator")
    @classmethod
    def _sampler_without_shots(cls, value: str, info: ValidationInfo) -> str:
        if value == "trajectories" and info.data.get("shots") is not None:
            raise ValueError("simulator 'trajectories' computes exact expectation values (means over noise "
                             "trajectories) and cannot sample shots: remove 'shots' or use simulator: auto or aer")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        return None if value is None else fake_device_name(value)

    @field_validator("calibration")
    @classmethod
    def _calibration(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Exactly one of device and calibration; the snapshot file found (relative to the registry file's folder)
        and readable."""
        if "device" not in info.data:  # device itself was refused: that is the error to report
            return value
        if (value is None) == (info.data["device"] is None):
            raise ValueError("give exactly one of 'device' (a fake device, e.g. FakeBrisbane) and 'calibration' (a "
                             f"snapshot file from `qmedimg backends snapshot`); this entry gives "
                             f"{'both' if value is not None else 'neither'}")
        if value is None:
            return None
        return snapshot_path(value, info)

    @field_validator("calibration_sha256")
    @classmethod
    def _digest(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The snapshot file's SHA-256 (what identifies the calibration in results), checked against a pinned one."""
        path = info.data.get("calibration")
        if path is None:
            if value is not None:
                raise ValueError("calibration_sha256 pins a calibration snapshot file: give it with 'calibration'")
            return None
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read calibration snapshot ({exc.strerror or exc})") from None
        if value is not None and value != digest:
            raise ValueError(f"{path} has SHA-256 {digest}, not the {value} this entry pins: the snapshot changed; "
                             "pin the new file or remove calibration_sha256")
        return digest

    def fake_device(self) -> str | None:
        """The fake device whose qubits and 2-qubit gate ``qmedimg backends`` shows (None for a snapshot entry: the
        listing reads its file)."""
        return self.device


class IbmEntry(Strict):
    kind: Literal["ibm"]
    description: str = ""
    device: str = Field(description="the QPU's name, e.g. ibm_brisbane")
    channel: Literal["ibm_quantum_platform", "ibm_cloud"] = "ibm_quantum_platform"
    instance: str | None = None
    mode: Literal["batch", "session", "job"] = "batch"
    local: str | None = Field(None, description="a fake device: run in Runtime's local testing mode")
    shots: Shots | None = 4096
    transpile: TranspileOptions = Field(default_factory=TranspileOptions)
    options: dict[str, Any] = Field(default_factory=dict, description="Qiskit Runtime EstimatorOptions")
    max_rows_per_job: PositiveInt = Field(1000, description="at most this many images per Runtime job "
                                          "(lowered further to respect IBM's job limits)")
    timeout_s: float = Field(15.0, gt=0, description="give up reaching IBM Quantum after this long")
    snapshot: str | None = Field(None, description="a calibration snapshot file (`qmedimg backends snapshot`) the "
                                 "measured values are predicted on, in place of the one taken at submission "
                                 "(relative paths: from the registry file's folder)")

    @field_validator("snapshot")
    @classmethod
    def _snapshot(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The pinned snapshot file found (relative to the registry file's folder) and readable."""
        if value is None:
            return None
        return snapshot_path(value, info)

    @field_validator("local")
    @classmethod
    def _local(cls, value):
        return None if value is None else fake_device_name(value)

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict, info: ValidationInfo) -> dict:
        if (info.context or {}).get("runtime_options") is False:  # the listing: importing Runtime takes seconds
            return options
        from qiskit_ibm_runtime.options_models.estimator import EstimatorOptions

        EstimatorOptions(**options)  # raises a ValidationError naming the bad option
        return options

    def fake_device(self) -> str | None:
        """The fake device whose qubits and 2-qubit gate ``qmedimg backends`` shows (local mode only: listing a
        QPU never connects)."""
        return self.local


ENTRIES: dict[str, type[Strict]] = {"exact": ExactEntry, "aer": AerEntry, "fake": FakeEntry, "ibm": IbmEntry}
"""Every kind's entry schema by its ``kind:`` name."""


def snapshot_path(value: str, info: ValidationInfo) -> str:
    """A calibration snapshot file named in an entry: found (a relative path from the registry file's folder, which
    the registry passes in the validation context) and readable as a snapshot, else the reason as a ValueError."""
    path = Path(value).expanduser()
    registry = (info.context or {}).get("registry")
    if not path.is_absolute() and registry is not None:
        path = Path(registry).parent / path
    try:
        read_snapshot(path)
    except QmedimgError as exc:
        raise ValueError(str(exc)) from None
    return str(path)
