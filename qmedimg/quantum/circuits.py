"""Variational circuits for the quantum head, read from Jinja2-templated OpenQASM 3 files.

A circuit is a file ``circuits/NAME.qasm`` (format: ``circuits/README.md``). Templates see
``qubits`` and ``layers``; data inputs are ``input float[64] x0 .. x{n-1}``, every other input
is a trainable weight. Final measurements are stripped; any other measurement, reset or
classical bit is rejected (the estimator wants a measurement-free circuit).
"""

from __future__ import annotations

import contextlib
import io
import re
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import jinja2
import jinja2.meta
import jinja2.sandbox
from qiskit import QuantumCircuit, qasm3
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from qmedimg.errors import QmedimgError
from qmedimg.files import shipped

PARAMETER_NAMESPACE = uuid.UUID("6f1c2a9e-3b57-4d0e-9a51-0c7e5d2b8f14")
"""The namespace of circuit parameters' UUIDs (uuid5 of the name): ``x0`` is the same Parameter in every load."""

CIRCUITS_DIR: Path = shipped("circuits")  # the checkout's own, or the wheel's copy

_INPUT = re.compile(r"x(\d+)")
_TOKEN = re.compile(r"(?:([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\*)?((?:[IXYZ]\d+)+)")
_HEADER = re.compile(r"//\s*([A-Za-z_]+)\s*:\s*(.*)")
_POS = re.compile(r"L?(\d+)(?:,|:C)(\d+): (.*)", re.S)  # "4,3: msg" (importer), "L4:C3: msg" (lexer)


@dataclass(frozen=True)
class CircuitSpec:
    """A loaded circuit: the Qiskit circuit plus its inputs, weights and observables."""

    name: str
    path: Path
    description: str
    circuit: QuantumCircuit
    inputs: tuple[Parameter, ...]
    weights: tuple[Parameter, ...]
    observables: tuple[SparsePauliOp, ...]
    qubits: int
    layers: int | None
    qasm: str = ""
    """The OpenQASM 3 text the circuit was built from (a template rendered at its qubits and layers, with
    its header): a run pins it, so later edits of the file never change a trained run."""

    @property
    def num_qubits(self) -> int:
        return self.circuit.num_qubits

    @property
    def depth(self) -> int:
        return self.circuit.depth()


def _fail(path: Path, message: str, line: int | None = None) -> NoReturn:
    raise QmedimgError(f"{path}{f':{line}' if line else ''}: {message}")


def _natural_key(name: str) -> tuple:
    """'w2' < 'w10': digit runs compare as numbers."""
    return tuple(int(c) if i % 2 else c for i, c in enumerate(re.split(r"(\d+)", name)))


def _header(text: str) -> dict[str, tuple[int, str]]:
    """`// key: value` lines at the top of the file -> {key: (line number, value)}."""
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("//"):
            break
        if match := _HEADER.fullmatch(line):
            found[match[1].lower()] = (number, match[2].strip())
    return found


def _defaults(path: Path, header: dict) -> dict[str, int]:
    line, text = header.get("defaults", (None, ""))
    values = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in ("qubits", "layers") or not value.isdigit() or int(value) < 1:
            _fail(path, f"bad default '{item}'; write e.g. '// defaults: qubits=4 layers=2'", line)
        values[key] = int(value)
    return values


def _causes(error: BaseException | None):
    """The error, its causes/contexts, and exceptions wrapped as first argument (ANTLR does that)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        args = getattr(error, "args", ())
        wrapped = args[0] if args and isinstance(args[0], BaseException) else None
        error = error.__cause__ or error.__context__ or wrapped


def _qasm_error(path: Path, error: Exception, rendered: str, plain: bool) -> NoReturn:
    """Turn an importer exception into one line with the (rendered) line number when known."""
    line, message = None, None
    for exc in _causes(error):
        text = str(exc).strip()
        if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]  # QASM3ImporterError quotes its message
        if m := _POS.fullmatch(text):
            line, message = int(m[1]), m[3]
        elif (token := getattr(exc, "offendingToken", None)) is not None:
            line, message = token.line, f"syntax error near '{token.text}'"
        if message:
            break
    if message is None:
        message = f"cannot import ({type(error).__name__}: {error})"
        if re.search(r"^\s*for\b", rendered, re.M):
            message += "; QASM 'for' loops are not supported, unroll them with Jinja {% for %}"
    if line is None or plain:
        _fail(path, f"OpenQASM error: {message}", line)
    text = rendered.splitlines()[line - 1].strip() if 0 < line <= len(rendered.splitlines()) else ""
    _fail(path, f"OpenQASM error in rendered line {line} ({text!r}): {message}")


def _observable(path: Path, token: str, n: int, line: int, template: bool) -> SparsePauliOp:
    """One ``// observables:`` token as an n-qubit Pauli operator; a malformed token, a qubit the
    circuit lacks (the message names the token and the circuit's width; for a template, the width it
    was rendered at and how to widen it) or a qubit named twice is one line."""
    match = _TOKEN.fullmatch(token)
    if not match:
        _fail(path, f"bad observable '{token}'; use Pauli letters with qubit indices like Z0, X1Z2 or 0.5*Z0Z1", line)
    terms = [(p, int(i)) for p, i in re.findall(r"([IXYZ])(\d+)", match[2])]
    indices = [i for _, i in terms]
    for i in indices:
        if i >= n:
            widen = (f"; it was rendered at qubits={n}: use --qubits {i + 1} or more, or drop '{token}'" if template
                     else f"; drop '{token}' or widen the circuit")
            _fail(path, f"observable '{token}' uses qubit {i} but the circuit has qubits 0..{n - 1} "
                        f"({n} qubit{'s' if n > 1 else ''}){widen}", line)
        if indices.count(i) > 1:
            _fail(path, f"observable '{token}' names qubit {i} twice", line)
    coeff = float(match[1]) if match[1] else 1.0
    return SparsePauliOp.from_sparse_list([("".join(p for p, _ in terms), indices, coeff)], n)


def _label(op: SparsePauliOp) -> str:
    paulis, indices, coeff = op.to_sparse_list()[0]
    term = "".join(f"{p}{i}" for i, p in sorted(zip(indices, paulis))) or "I0"
    return term if coeff == 1 else f"{coeff.real:g}*{term}"


def _check_size(path: Path, key: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        _fail(path, f"{key} must be an integer >= 1, got {value!r}")


def _render(path: Path, qubits: int | None, layers: int | None) -> tuple[str, str, dict[str, int]]:
    """Read and render the file; returns (source, rendered text, template variables used)."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        _fail(path, f"cannot read circuit file ({type(e).__name__}: {e})")
    # sandboxed: a template is data; it may loop and compute, never reach Python's internals (no
    # ``__globals__``, ``__class__``, ...) nor change anything (immutable sandbox)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(path.parent)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    try:
        used = jinja2.meta.find_undeclared_variables(env.parse(source))
        template = env.get_template(path.name)
    except jinja2.TemplateSyntaxError as e:
        _fail(path, f"Jinja syntax error: {e.message}", e.lineno)
    defaults, values = _defaults(path, _header(source)), {}
    for key, asked in (("qubits", qubits), ("layers", layers)):
        if key in used:
            values[key] = asked if asked is not None else defaults.get(key)
            if values[key] is None:
                _fail(path, f"uses {{{{ {key} }}}} but has no default; add '// defaults: {key}=N' to the header")
        elif key == "layers" and asked is not None:
            _fail(path, f"has no layers (it does not use {{{{ layers }}}}); drop layers={asked}")
    try:
        return source, template.render(**values), values
    except Exception as e:  # noqa: BLE001 - any template runtime error becomes one line
        frames = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
        _fail(path, f"Jinja error: {e}", frames[-1] if frames else None)


def circuit_from_qasm(qasm: str, *, name: str, path: str | Path, layers: int | None = None) -> CircuitSpec:
    """A circuit from the OpenQASM text a run pinned (:attr:`CircuitSpec.qasm`): no template, no file
    read; ``name``, ``path`` and ``layers`` are what the run recorded of it. Errors name ``path``. Built anew on
    each call (~10 ms at 4 qubits): nothing is kept between calls."""
    return replace(_build(Path(path), qasm, {} if layers is None else {"layers": layers}, None, plain=True),
                   name=name)


def _build(path: Path, rendered: str, values: dict, qubits: int | None, plain: bool) -> CircuitSpec:
    """The circuit, inputs, weights and observables of a rendered file (``values``: the template
    variables it was rendered with)."""
    with contextlib.redirect_stderr(io.StringIO()):  # the ANTLR parser prints syntax errors
        try:
            circuit = qasm3.loads(rendered)
        except Exception as e:  # noqa: BLE001
            _qasm_error(path, e, rendered, plain)
    n = circuit.num_qubits
    if n == 0:
        _fail(path, "declares no qubits; add e.g. 'qubit[{{ qubits }}] q;'")
    if "qubits" not in values and qubits not in (None, n):
        _fail(path, f"fixed {n}-qubit file cannot run with qubits={qubits}; make it a template using {{{{ qubits }}}}")
    if values.get("qubits", n) != n:
        _fail(path, f"rendered with qubits={values['qubits']} but declares {n} qubits; "
                    "declare 'qubit[{{ qubits }}] q;'")
    if circuit.num_clbits:
        circuit = circuit.remove_final_measurements(inplace=False)
    circuit.name = path.stem  # not Qiskit's per-process counter ('circuit-42'): equal files give equal circuits
    # a Parameter compares equal by name and UUID, and qasm3.loads draws new UUIDs: one per name instead, so the
    # parameters of two loads of one file (two runs of one template, a run and its pinned copy) are the same ones
    circuit.assign_parameters({p: Parameter(p.name, uuid=uuid.uuid5(PARAMETER_NAMESPACE, p.name))
                               for p in circuit.parameters}, inplace=True)
    bad = [i.operation.name for i in circuit.data if i.operation.name in ("measure", "reset")]
    if bad or circuit.num_clbits:
        what = {"measure": "a mid-circuit measurement", "reset": "a reset"}[bad[0]] if bad else "classical bits"
        _fail(path, f"contains {what}; the estimator needs a circuit without mid-circuit measurements, "
                    "resets or classical bits (final measurements are stripped)")
    inputs = sorted((p for p in circuit.parameters if _INPUT.fullmatch(p.name)), key=lambda p: int(p.name[1:]))
    if not inputs:
        _fail(path, "has no data inputs; declare 'input float[64] x0;', 'x1', ... one per feature")
    if [int(p.name[1:]) for p in inputs] != list(range(len(inputs))):
        _fail(path, f"inputs must be numbered x0..x{len(inputs) - 1} without gaps; "
                    f"found {', '.join(p.name for p in inputs)}")
    weights = sorted((p for p in circuit.parameters if p not in inputs), key=lambda p: _natural_key(p.name))
    header = _header(rendered)
    if "observables" in header:
        line, text = header["observables"]
        tokens = text.replace(",", " ").split()
        if not tokens:
            _fail(path, "empty '// observables:' line; list tokens like 'Z0 Z1' or drop the line", line)
        observables = tuple(_observable(path, t, n, line, "qubits" in values) for t in tokens)
    else:
        observables = tuple(SparsePauliOp.from_sparse_list([("Z", [i], 1.0)], n) for i in range(n))
    return CircuitSpec(name=path.stem, path=path, description=header.get("description", (0, ""))[1],
                       circuit=circuit, inputs=tuple(inputs), weights=tuple(weights), observables=observables,
                       qubits=n, layers=values.get("layers"), qasm=rendered)


def circuit_names(directory: Path = CIRCUITS_DIR) -> list[str]:
    """Names (file stems) of the ``*.qasm`` circuits in ``directory``, sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.qasm") if p.is_file())


def _resolve(name_or_path: str | Path, directory: Path) -> Path:
    text = str(name_or_path)
    if "/" in text or "\\" in text or text.endswith(".qasm"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise QmedimgError(f"{path}: circuit file not found")
        return path.resolve()
    path = Path(directory) / f"{text}.qasm"
    if not path.is_file():
        names = ", ".join(circuit_names(directory)) or "(none)"
        raise QmedimgError(f"unknown circuit '{text}'; valid: {names} (NAME.qasm files in {directory})")
    return path.resolve()


def load_circuit(name_or_path: str | Path, *, qubits: int | None = None, layers: int | None = None,
                 directory: Path = CIRCUITS_DIR) -> CircuitSpec:
    """Load a circuit by name (``directory/NAME.qasm``) or by file path.

    >>> spec = load_circuit("sel")                     # template defaults: 4 qubits, 2 layers
    >>> len(spec.inputs), len(spec.weights)
    (4, 24)
    >>> load_circuit("ring", qubits=6, layers=1).qubits
    6
    >>> spec = load_circuit("./my_circuits/mine.qasm")  # doctest: +SKIP

    ``qubits``/``layers`` of None mean the template's ``// defaults:``. Bad files, names or
    values raise QmedimgError naming the file. The file is read and the circuit built on each call (20–45 ms from
    4 to 12 qubits): nothing is kept between calls, so an edited template is seen at once.
    """
    path = _resolve(name_or_path, directory)
    _check_size(path, "qubits", qubits)
    _check_size(path, "layers", layers)
    source, rendered, values = _render(path, qubits, layers)
    return _build(path, rendered, values, qubits, plain=rendered.splitlines() == source.splitlines())


def check_inputs(spec: CircuitSpec, num_features: int) -> None:
    """Raise QmedimgError unless the circuit takes exactly ``num_features`` inputs."""
    k = len(spec.inputs)
    if k != num_features:
        raise QmedimgError(f"circuit '{spec.name}' ({spec.path}) takes {k} inputs x0..x{k - 1} but the model "
                           f"feeds it {num_features} features; use a circuit (or --qubits) with {num_features} inputs")


def circuit_table(directory: Path = CIRCUITS_DIR) -> list[dict]:
    """One row per circuit at its defaults (counts for inputs/weights, observables as tokens)."""
    rows = []
    for name in circuit_names(directory):
        s = load_circuit(name, directory=directory)
        rows.append({"name": name, "qubits": s.qubits, "layers": s.layers, "inputs": len(s.inputs),
                     "weights": len(s.weights), "observables": " ".join(_label(o) for o in s.observables),
                     "depth": s.depth, "description": s.description})
    return rows


def draw_circuit(spec: CircuitSpec) -> str:
    """Text drawing of the circuit, unfolded."""
    return str(spec.circuit.draw("text", fold=-1))
