"""The option records shared by backend kinds in ``backends.yaml``: transpilation, dynamical
decoupling, zero-noise extrapolation and local error mitigation. Validated by pydantic; an unknown
key is an error (``extra="forbid"``), so a typo never passes silently.

Example::

    from qmedimg.backends.options import TranspileOptions
    TranspileOptions(optimization_level=3, initial_layout=[0, 1, 2, 3])
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator

from qmedimg.errors import QmedimgError


MAX_SHOTS = 5_000_000  # IBM's limit on executions per job; Aer fails on more (a C++ int, then vector::reserve)
Shots = Annotated[int, Field(gt=0, le=MAX_SHOTS, description=f"shots per parameter row, 1..{MAX_SHOTS}")]
"""The ``shots`` of every kind that samples (``aer``, ``fake``, ``ibm``): a whole number from 1 to MAX_SHOTS."""


class Strict(BaseModel):
    """A registry record: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class DynamicalDecoupling(Strict):
    """Pad idle windows of the scheduled circuit with a DD sequence."""

    sequence: Literal["XX", "XY4"] = "XX"
    scheduling: Literal["alap", "asap"] = "alap"


class TranspileOptions(Strict):
    """Passed to ``generate_preset_pass_manager`` (plus a DD pass when asked)."""

    optimization_level: Literal[0, 1, 2, 3] = 1
    layout_method: Literal["default", "trivial", "dense", "sabre"] | None = None
    routing_method: Literal["default", "basic", "lookahead", "sabre", "none"] | None = None
    initial_layout: list[NonNegativeInt] | None = None
    seed_transpiler: int | None = 0
    approximation_degree: float | None = Field(None, ge=0, le=1)
    dynamical_decoupling: DynamicalDecoupling | None = None


MAX_NOISE_FACTOR = 100  # a ZNE factor folds every 2-qubit gate into that many: the circuit grows by it


class ZneOptions(Strict):
    """Zero-noise extrapolation: fold 2-qubit gates to each noise factor, extrapolate to factor 0."""

    noise_factors: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0], min_length=2)
    extrapolator: Literal["linear", "exponential"] = "exponential"
    folding: Literal["random", "front", "back"] = "random"

    @field_validator("noise_factors")
    @classmethod
    def _factors(cls, factors: list[float]) -> list[float]:
        # NaN passes "< 1" and set() (NaN != NaN), inf folds without end: each factor multiplies the circuit
        if any(not 1 <= f <= MAX_NOISE_FACTOR for f in factors) or len(set(factors)) != len(factors):
            raise ValueError(f"noise_factors must be distinct numbers from 1 to {MAX_NOISE_FACTOR} (e.g. [1, 3, 5]), "
                             f"got {factors}")
        return sorted(factors)


class Mitigation(Strict):
    """Local error mitigation for the ``fake`` kind."""

    readout: bool = Field(False, description="invert each qubit's calibrated readout confusion matrix")
    zne: ZneOptions | None = Field(None, description="zero-noise extrapolation by 2-qubit gate folding")
    twirls: PositiveInt | None = Field(None, description="average this many Pauli-twirled circuit copies")


def quoted(value) -> str:
    """A name, key or value from a registry file as a message shows it: 'text' in quotes, with a newline
    or control character escaped (``repr``), so the message stays one line."""
    return repr(str(value))


def entry_error(path: Path | str, name: str, raw: dict, error: ValidationError,
                model: type[BaseModel] | None) -> QmedimgError:
    """pydantic's first complaint about entry ``name`` as one line naming the file, entry and key."""
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    kind = raw.get("kind")
    if loc and loc[0] == kind:  # a discriminated union puts the kind first
        loc = loc[1:]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        valid = ", ".join(model.model_fields) if model is not None and len(loc) == 1 else None
        hint = f"; for kind '{kind}' the valid keys are: {valid}" if valid else ""
        if kind == "ibm" and loc[-1] == "mitigation":
            hint += " (ibm mitigation goes in options: resilience_level, resilience.*, twirling.*)"
        if kind == "aer" and loc[-1] in ("mitigation", "noise_scale", "device"):
            hint += " (aer is noiseless; use kind 'fake' for a noisy device)"
        return QmedimgError(f"{path}: entry {quoted(name)}: unknown key {quoted(key)}{hint}")
    message = " ".join(first["msg"].removeprefix("Value error, ").split())  # Runtime's options model: many lines
    return QmedimgError(f"{path}: entry {quoted(name)}: key {quoted(key)}: {message}")


def with_keys(entry: BaseModel, overrides: dict, name: str) -> BaseModel:
    """``entry`` with keys replaced (nested mappings merged one level deep), validated as if they
    were in the file; an error names the entry and the key given on the command line."""
    raw = entry.model_dump(exclude_unset=True)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    try:
        return type(entry).model_validate(raw)
    except ValidationError as exc:
        raise entry_error("command line", name, raw, exc, type(entry)) from None
