"""Circuit files: the shipped templates, user files, and every error a user can hit."""

import os
import textwrap

import numpy as np
import pytest
from qiskit.quantum_info import SparsePauliOp, Statevector

from qmedimg.quantum.circuits import (
    CIRCUITS_DIR,
    check_inputs,
    circuit_names,
    circuit_table,
    draw_circuit,
    load_circuit,
)
from qmedimg.errors import QmedimgError

HEAD = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
# weights per circuit as a function of (qubits, layers)
WEIGHTS = {"sel": lambda n, l: 3 * n * l, "ring": lambda n, l: 2 * n * l, "fqa": lambda n, l: (3 * n - 1) * l,
           "reup": lambda n, l: 2 * n * l}
DEFAULT_LAYERS = {"sel": 2, "ring": 3, "fqa": 2, "reup": 3}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def expectations(spec, values):
    state = Statevector(spec.circuit.assign_parameters(values))
    return np.array([state.expectation_value(o).real for o in spec.observables])


def test_shipped_circuits_are_listed():
    assert circuit_names() == ["fqa", "reup", "ring", "sel"]
    assert (CIRCUITS_DIR / "README.md").is_file()


@pytest.mark.parametrize("name, weights", [("sel", 24), ("ring", 24), ("fqa", 22), ("reup", 24)])
def test_shipped_circuit_defaults(name, weights):
    spec = load_circuit(name)
    assert (spec.name, spec.qubits, spec.num_qubits, spec.layers) == (name, 4, 4, DEFAULT_LAYERS[name])
    assert [p.name for p in spec.inputs] == ["x0", "x1", "x2", "x3"]
    assert len(spec.weights) == weights
    assert set(spec.circuit.parameters) == set(spec.inputs) | set(spec.weights)
    assert not set(spec.inputs) & set(spec.weights)
    assert spec.description and spec.depth == spec.circuit.depth() > 0
    assert spec.circuit.num_clbits == 0


@pytest.mark.parametrize("name", ["sel", "ring", "fqa", "reup"])
@pytest.mark.parametrize("qubits, layers", [(3, None), (6, None), (None, 1), (None, 3), (2, 1)])
def test_shipped_circuit_sizes(name, qubits, layers):
    spec = load_circuit(name, qubits=qubits, layers=layers)
    n, l = qubits or 4, layers or DEFAULT_LAYERS[name]
    assert (spec.qubits, spec.layers, len(spec.inputs)) == (n, l, n)
    assert len(spec.weights) == WEIGHTS[name](n, l)
    assert [w.name for w in spec.weights] == [f"w{k}" for k in range(WEIGHTS[name](n, l))]
    assert len(spec.observables) == n


def test_default_observables_are_z_on_each_qubit_little_endian():
    for name in circuit_names():
        obs = load_circuit(name).observables
        assert obs == (SparsePauliOp("IIIZ"), SparsePauliOp("IIZI"), SparsePauliOp("IZII"), SparsePauliOp("ZIII"))


# sel's last layer ends in Rz, which commutes with the CNOTs and the Z readout (as in PennyLane).
DEAD = {"sel": {"w14", "w17", "w20", "w23"}, "ring": set(), "fqa": set(), "reup": set()}


@pytest.mark.parametrize("name", ["sel", "ring", "fqa", "reup"])
def test_every_input_and_weight_changes_some_output(name):
    spec = load_circuit(name)
    rng = np.random.default_rng(0)
    points = [{p: rng.uniform(0, np.pi) for p in spec.circuit.parameters} for _ in range(2)]
    bases = [expectations(spec, v) for v in points]
    dead = set()
    for p in spec.inputs + spec.weights:
        shifts = [np.abs(expectations(spec, {**v, p: v[p] + 0.3}) - b).max() for v, b in zip(points, bases)]
        if max(shifts) < 1e-9:
            dead.add(p.name)
    assert dead == DEAD[name]


def test_sel_one_layer_zero_weights_flips_through_cnot_chain():
    # Ry(pi) sets qubit 0; Rz·Ry·Rz(0) = I; CNOTs 0->1, 1->2, 2->3, 3->0 give |q3 q2 q1 q0> = |1110>.
    spec = load_circuit("sel", layers=1)
    values = {w.name: 0.0 for w in spec.weights} | {"x0": np.pi, "x1": 0.0, "x2": 0.0, "x3": 0.0}
    assert np.allclose(expectations(spec, values), [1, -1, -1, -1])
    values["x0"] = 0.0
    assert np.allclose(expectations(spec, values), [1, 1, 1, 1])


def test_user_fixed_file_loads_by_path_and_strips_final_measurements(tmp_path):
    path = write(tmp_path, "mine.qasm", """
        OPENQASM 3.0;
        include "stdgates.inc";
        // not header: this comment follows code
        input float[64] x1;
        input float[64] x0;
        input float[64] theta;
        qubit[3] q;
        bit[3] c;
        ry(x0) q[0];
        ry(x1 * 0.5) q[1];
        rx(theta + pi/2) q[2];
        cx q[0], q[2];
        c = measure q;
    """)
    path.write_text("// description: my circuit\n// observables: 0.5*Z0Z1, X2 -1.5*Y1\n" + path.read_text())
    for ref in (path, str(path), "mine"):
        spec = load_circuit(ref, directory=tmp_path)
        assert spec.name == "mine" and spec.path == path.resolve() and spec.layers is None
        assert spec.description == "my circuit"
        assert [p.name for p in spec.inputs] == ["x0", "x1"] and [p.name for p in spec.weights] == ["theta"]
        assert spec.observables == (0.5 * SparsePauliOp("IZZ"), SparsePauliOp("XII"), -1.5 * SparsePauliOp("IYI"))
        assert spec.circuit.num_clbits == 0 and "measure" not in spec.circuit.count_ops()
    assert load_circuit(path, qubits=3).qubits == 3
    assert circuit_names(tmp_path) == ["mine"]
    row = circuit_table(tmp_path)[0]
    assert row == {"name": "mine", "qubits": 3, "layers": None, "inputs": 2, "weights": 1,
                   "observables": "0.5*Z0Z1 X2 -1.5*Y1", "depth": spec.depth, "description": "my circuit"}


def test_user_template_orders_inputs_and_weights_numerically(tmp_path):
    path = write(tmp_path, "wide.qasm", """
        // defaults: qubits=12 layers=1
        // observables: Z0 Z11 {{ "Z%d" % (qubits - 1) }}
        OPENQASM 3.0;
        include "stdgates.inc";
        {% for i in range(qubits) %}
        input float[64] x{{ i }};
        {% endfor %}
        {% for k in range(qubits * layers) %}
        input float[64] w{{ k }};
        {% endfor %}
        qubit[{{ qubits }}] q;
        {% for l in range(layers) %}
        {% for i in range(qubits) %}
        ry(x{{ i }} + w{{ l * qubits + i }}) q[{{ i }}];
        {% endfor %}
        {% endfor %}
    """)
    spec = load_circuit(path)
    assert [p.name for p in spec.inputs] == [f"x{i}" for i in range(12)]
    assert [p.name for p in spec.weights] == [f"w{k}" for k in range(12)]
    assert spec.observables[1] == SparsePauliOp.from_sparse_list([("Z", [11], 1)], 12)
    spec = load_circuit(path, qubits=14, layers=2)
    assert len(spec.inputs) == 14 and spec.weights[-1].name == "w27" and spec.weights[2].name == "w2"
    assert spec.observables[2] == SparsePauliOp("Z" + "I" * 13)


def test_edited_file_is_reloaded_and_results_are_independent_copies(tmp_path):
    path = write(tmp_path, "c.qasm", HEAD + "input float[64] x0;\nqubit[1] q;\nry(x0) q[0];\n")
    first = load_circuit(path)
    first.circuit.h(0)
    assert "h" not in load_circuit(path).circuit.count_ops()
    path.write_text(HEAD + "input float[64] x0;\ninput float[64] x1;\nqubit[2] q;\nry(x0) q[0];\nry(x1) q[1];\n")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert len(load_circuit(path).inputs) == 2


def test_check_inputs_and_drawing():
    spec = load_circuit("sel")
    check_inputs(spec, 4)
    with pytest.raises(QmedimgError, match=r"circuit 'sel' \(.*sel\.qasm\) takes 4 inputs x0\.\.x3 .* feeds it 6"):
        check_inputs(spec, 6)
    drawing = draw_circuit(spec)
    assert "Ry(x0)" in drawing and "Rz(w23)" in drawing and len(drawing.splitlines()) < 4 * 4


BAD = {  # name: (file text, load kwargs, expected line number or None, message fragment)
    "jinja_syntax": ("// defaults: qubits=2\n{% for i in range(qubits) %}\nh q[{{ i }}];\n{% endfo %}\n", {}, 4,
                     "Jinja syntax error"),
    "jinja_undefined": ("// defaults: qubits=2\nqubit[{{ qubits }}] q;\nh q[{{ qbits }}];\n", {}, 3,
                        "'qbits' is undefined"),
    "qasm_syntax": (HEAD + "qubit[2] q;\nh q[0]\nx q[1];\n", {}, 5, "syntax error"),
    "qasm_gate": (HEAD + "input float[64] x0;\nqubit[2] q;\nhh q[0];\n", {}, 5, "gate 'hh' is not defined"),
    "qasm_template": ("// defaults: qubits=2\n" + HEAD + "input float[64] x0;\nqubit[{{ qubits }}] q;\n"
                      "{% for i in range(qubits) %}\nfoo q[{{ i }}];\n{% endfor %}\n", {}, None,
                      "rendered line 6 ('foo q[0];')"),
    "qasm_for": (HEAD + "input float[64] x0;\nqubit[2] q;\nfor int i in [0:1] { h q[i]; }\n", {}, None, "for' loops"),
    "no_inputs": (HEAD + "input float[64] w0;\nqubit[1] q;\nry(w0) q[0];\n", {}, None, "no data inputs"),
    "input_gap": (HEAD + "input float[64] x0;\ninput float[64] x2;\nqubit[1] q;\nry(x0 + x2) q[0];\n", {}, None,
                  "x0..x1 without gaps; found x0, x2"),
    "fixed_qubits": (HEAD + "input float[64] x0;\nqubit[2] q;\nry(x0) q[0];\n", {"qubits": 6}, None,
                     "fixed 2-qubit file cannot run with qubits=6; make it a template using {{ qubits }}"),
    "fixed_layers": (HEAD + "input float[64] x0;\nqubit[2] q;\nry(x0) q[0];\n", {"layers": 2}, None,
                     "does not use {{ layers }}"),
    "bad_token": ("// observables: Z0 Q1\n" + HEAD + "input float[64] x0;\nqubit[2] q;\nry(x0) q[0];\n", {}, 1,
                  "bad observable 'Q1'"),
    "token_range": ("// observables: Z0 X1Z2\n" + HEAD + "input float[64] x0;\nqubit[2] q;\nry(x0) q[0];\n", {}, 1,
                    "uses qubit 2 but the circuit has qubits 0..1"),
    "token_repeat": ("// observables: Z0Z0\n" + HEAD + "input float[64] x0;\nqubit[2] q;\nry(x0) q[0];\n", {}, 1,
                     "names qubit 0 twice"),
    "mid_measure": (HEAD + "input float[64] x0;\nqubit[1] q;\nbit c;\nc = measure q[0];\nry(x0) q[0];\n", {}, None,
                    "contains a mid-circuit measurement"),
    "reset": (HEAD + "input float[64] x0;\nqubit[1] q;\nreset q[0];\nry(x0) q[0];\n", {}, None, "contains a reset"),
    "no_default": (HEAD + "input float[64] x0;\nqubit[{{ qubits }}] q;\nry(x0) q[0];\n", {}, None,
                   "add '// defaults: qubits=N'"),
    "bad_default": ("// defaults: qubits=four\n" + HEAD + "qubit[{{ qubits }}] q;\n", {}, 1,
                    "bad default 'qubits=four'"),
    "width_mismatch": ("// defaults: qubits=2\n" + HEAD + "input float[64] x0;\nqubit[2] q;\n"
                       "{% for i in range(qubits) %}\nry(x0) q[0];\n{% endfor %}\n", {"qubits": 3}, None,
                       "rendered with qubits=3 but declares 2 qubits"),
    "no_qubits": (HEAD + "input float[64] x0;\n", {}, None, "declares no qubits"),
    "zero_qubits": (HEAD + "qubit[1] q;\n", {"qubits": 0}, None, "qubits must be an integer >= 1, got 0"),
    "zero_layers": (HEAD + "qubit[1] q;\n", {"layers": 0}, None, "layers must be an integer >= 1, got 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_circuit_files_raise_one_line_naming_the_file(tmp_path, case):
    text, kwargs, line, fragment = BAD[case]
    path = tmp_path / f"{case}.qasm"
    path.write_text(text)
    with pytest.raises(QmedimgError) as info:
        load_circuit(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and fragment in message
    prefix = f"{path.resolve()}:{line}: " if line else f"{path.resolve()}: "
    assert message.startswith(prefix), message


def test_bad_names_paths_and_sizes_of_shipped_circuits(tmp_path):
    valid = r"unknown circuit 'sell'; valid: fqa, reup, ring, sel \(NAME\.qasm files in .*circuits\)"
    with pytest.raises(QmedimgError, match=valid):
        load_circuit("sell")
    with pytest.raises(QmedimgError, match=r"nowhere/x\.qasm: circuit file not found"):
        load_circuit(tmp_path / "nowhere" / "x.qasm")
    with pytest.raises(QmedimgError, match=r"valid: \(none\)"):
        load_circuit("sel", directory=tmp_path)
    for kwargs in ({"qubits": 0}, {"layers": -1}, {"qubits": 2.5}, {"layers": True}):
        with pytest.raises(QmedimgError, match=r"sel\.qasm: (qubits|layers) must be an integer >= 1"):
            load_circuit("sel", **kwargs)


@pytest.mark.parametrize("payload", [
    "{{ cycler.__init__.__globals__.os.system('touch %s') }}",
    "{{ self.__init__.__globals__.__builtins__.open('%s', 'w').write('x') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ lipsum.__globals__.os.system('touch %s') }}",
])
def test_a_template_cannot_run_code_it_is_data(tmp_path, payload, capsys):
    """Templates render in Jinja's sandbox: reaching Python internals is one line, and nothing runs."""
    from qmedimg.cli import main

    marker = tmp_path / "pwned"
    text = "// defaults: qubits=2\n" + HEAD + "input float[64] x0;\nqubit[{{ qubits }}] q;\nry(x0) q[0];\n"
    path = write(tmp_path, "evil.qasm", text + "// " + payload.replace("%s", str(marker)) + "\n")
    assert main(["circuits", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and "evil.qasm" in err and "unsafe" in err


def test_a_trained_run_keeps_its_circuit_when_the_file_is_edited(tmp_path, trainer):
    """config.json pins the circuit's OpenQASM: editing (or upgrading) the file afterwards changes no
    existing run — evaluate, predict and the noise study run the circuit the weights were trained on."""
    import json
    import shutil

    from qmedimg.rundir import load_run
    from qmedimg.workflows.evaluate import evaluate_run
    from qmedimg.workflows.noise_study import noise_study

    mine = tmp_path / "mine.qasm"
    shutil.copy(CIRCUITS_DIR / "sel.qasm", mine)
    metrics, run = trainer(tmp_path / "run", circuit=str(mine), epochs=1)
    pinned = json.loads((run / "config.json").read_text())["circuit"]
    assert pinned["qasm"] == load_circuit(mine).qasm and "ry(w1) q[0];" in pinned["qasm"]
    study = rows(noise_study([run], backends=["fake_manila"], scales=[1.0], limit=8, out=tmp_path / "s1",
                             progress=False))

    mine.write_text(mine.read_text().replace("ry(w{{ w + 1 }})", "rx(w{{ w + 1 }})"))  # one rotation changed
    assert "rx(w1) q[0];" in load_circuit(mine).qasm
    loaded = load_run(run)
    assert "ry(w1) q[0];" in loaded.model.spec.qasm and "rx(" not in loaded.model.spec.qasm
    assert evaluate_run(run)["test"] == metrics["test"]
    again = rows(noise_study([run], backends=["fake_manila"], scales=[1.0], limit=8, out=tmp_path / "s2",
                             progress=False))
    assert [(r["auc"], r["mean_abs_expectation_error"]) for r in again] == \
        [(r["auc"], r["mean_abs_expectation_error"]) for r in study]


def rows(study):
    import csv

    return list(csv.DictReader((study / "results.csv").open()))


def test_a_run_from_before_pinning_still_loads_its_circuit_from_the_file(tiny_run_copy):
    import json

    from qmedimg.rundir import load_run
    from qmedimg.workflows.evaluate import evaluate_run

    path = tiny_run_copy / "config.json"
    record = json.loads(path.read_text())
    for key in ("qasm", "sha256"):
        del record["circuit"][key]
    path.write_text(json.dumps(record))
    assert load_run(tiny_run_copy).model.spec.qasm == load_circuit("sel").qasm
    assert evaluate_run(tiny_run_copy)["test"] == json.loads((tiny_run_copy / "metrics.json").read_text())["test"]
