"""Multi-class data with a wide head, as a user runs it: generated 9-class MedMNIST-format data (like
PathMNIST), an 8-qubit ``sel`` head (8 outputs), through ``compare`` (which trains), the noise study on
exact/aer and a fake device; and read-outs naming a qubit the circuit lacks, refused in one line."""

import csv
import json

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.model import participation_ratio

CLASSES = 9
SPLITS = (36, 18, 18)  # the test split holds every class twice: MedMNIST's multi-class AUC is defined
# (an even test split on purpose: Aer 0.18.2 segfaults on an 8-qubit noisy density matrix when the device
# estimator's two parallel experiments get unequal row counts, e.g. 27 = 14 + 13; see the session report)


def write_nine_class_npz(path, seed=0):
    """PathMNIST's file format (uint8 gray images (N, 28, 28), uint8 labels (N, 1), no label names)
    with 9 learnable classes: a bright blob in one cell of a 3×3 grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    arrays = {}
    for split, n in zip(("train", "val", "test"), SPLITS):
        labels = rng.permutation(np.arange(n) % CLASSES)
        images = np.empty((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            cy, cx = 5 + 9 * (label // 3) + rng.integers(-1, 2), 5 + 9 * (label % 3) + rng.integers(-1, 2)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
            images[i] = np.clip(20 + 200 * blob + rng.normal(0, 15, blob.shape), 0, 255)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.uint8)[:, None]
    np.savez_compressed(path, **arrays)
    return path


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """``qmedimg compare`` of an 8-qubit hybrid, its classical twin and a linear head on 9 classes
    (one seed, one epoch); the hybrid's run directory is a normal run (read-only here)."""
    folder = tmp_path_factory.mktemp("nine")
    data = write_nine_class_npz(folder / "nine.npz")
    out = folder / "compare"
    assert main(["compare", "--data-file", str(data), "--qubits", "8", "--epochs", "1", "--seeds", "0",
                 "--models", "hybrid,classical,linear", "--out", str(out), "--quiet"]) == 0
    return out


def test_an_8_qubit_head_trains_on_9_classes_with_multiclass_metrics(compared):
    metrics = json.loads((compared / "hybrid-seed0" / "metrics.json").read_text())
    assert metrics["parameters"]["quantum"] == 3 * 8 * 2  # sel at 8 qubits, 2 layers
    test = metrics["test"]
    assert np.array(test["confusion"]).shape == (CLASSES, CLASSES) and np.sum(test["confusion"]) == SPLITS[2]
    assert 0 <= test["acc"] <= 1 and 0 <= test["auc"] <= 1  # every class is in the test split: AUC defined
    usage = metrics["head_usage"]["test"]
    assert usage["outputs"] == 8 and len(usage["angle_std"]) == 8 and 0 < usage["effective_dimension"] <= 8
    assert usage["weights"] == 48 and len(usage["zero_gradient_weights"]) == 8  # sel's last Rz layer, per qubit


def test_compare_tables_a_wide_head_on_nine_classes(compared):
    table = {r["model"]: r for r in rows(compared / "comparison.csv")}
    assert table["hybrid"]["quantum_parameters"] == "48" and table["hybrid"]["head_outputs"] == "8"
    assert table["classical"]["head_outputs"] == "8" and table["linear"]["head_outputs"] == ""
    assert table["hybrid"]["zero_gradient_weights_min"] == "8" and table["hybrid"]["circuit_weights"] == "48"
    text = (compared / "comparison.md").read_text()
    hybrid = next(line for line in text.splitlines() if line.startswith("| hybrid |"))
    assert " of 8 |" in hybrid and "| 8 of 48 |" in hybrid and "nan" not in text
    assert (compared / "confusion-hybrid.png").is_file()


def test_noise_study_takes_the_wide_multiclass_head_on_exact_aer_and_a_device(compared, tmp_path, capsys):
    run, out = compared / "hybrid-seed0", tmp_path / "study"
    assert main(["noise-study", str(run), "--backend", "exact,aer,fake_brisbane", "--scales", "0,1",
                 "--mitigation", "none", "--out", str(out), "--quiet"]) == 0
    table = rows(out / "results.csv")
    by = {(r["backend"], r["scale"]): r for r in table}
    assert set(by) == {("exact", ""), ("aer", ""), ("fake_brisbane", "0.0"), ("fake_brisbane", "1.0")}
    for key in (("exact", ""), ("aer", ""), ("fake_brisbane", "0.0")):  # noiseless: the ideal head, exactly
        row = by[key]
        assert float(row["acc"]) == float(row["ideal_acc"]) and float(row["auc"]) == float(row["ideal_auc"])
        assert float(row["effective_dimension"]) == pytest.approx(float(row["ideal_effective_dimension"]), abs=1e-3)
    noisy = by[("fake_brisbane", "1.0")]
    assert noisy["head_outputs"] == "8" and float(noisy["mean_abs_expectation_error"]) > 1e-4
    assert np.isfinite(float(noisy["auc"])) and int(noisy["two_qubit_gates"]) > 0
    summary = (out / "summary.md").read_text()
    assert " of 8 (" in summary and "nan" not in summary
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------ read-outs on qubits the circuit lacks

FIXED = """// description: four qubits, a read-out on a fifth that is not there
// observables: Z0 Z1 Z7
OPENQASM 3.0;
include "stdgates.inc";
input float[64] x0;
input float[64] x1;
input float[64] x2;
input float[64] x3;
input float[64] w0;
qubit[4] q;
ry(x0) q[0];
ry(x1) q[1];
ry(x2) q[2];
ry(x3 + w0) q[3];
cx q[0], q[1];
"""

TEMPLATE = """// description: a template whose read-out needs 8 qubits
// defaults: qubits=4
// observables: Z0 Z7
OPENQASM 3.0;
include "stdgates.inc";
{% for i in range(qubits) %}
input float[64] x{{ i }};
{% endfor %}
input float[64] w0;
qubit[{{ qubits }}] q;
{% for i in range(qubits) %}
ry(x{{ i }} + w0) q[{{ i }}];
{% endfor %}
"""


@pytest.mark.parametrize("command", ["circuits", "train", "transpile"])
def test_a_readout_on_a_missing_qubit_is_one_line_naming_file_token_and_width(tmp_path, capsys, command):
    path = tmp_path / "z7.qasm"
    path.write_text(FIXED)
    out = tmp_path / "run"
    argv = {"circuits": ["circuits", "show", str(path)],
            "train": ["train", "--dataset", "synthetic", "--limit", "8", "--epochs", "1", "--circuit", str(path),
                      "--out", str(out), "--quiet"],
            "transpile": ["transpile", str(path), "--backend", "fake_manila"]}[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{path.resolve()}:2: observable 'Z7' uses qubit 7 but the circuit has qubits 0..3 (4 qubits)" in err
    assert not out.exists() and captured.out == ""


def test_a_template_readout_says_which_width_it_needs_and_works_at_that_width(tmp_path, capsys):
    path = tmp_path / "wide.qasm"
    path.write_text(TEMPLATE)
    assert main(["transpile", str(path), "--backend", "fake_manila"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'Z7'" in err and "rendered at qubits=4: use --qubits 8 or more" in err
    assert main(["circuits", "show", str(path), "--qubits", "8"]) == 0
    assert "8 qubits" in capsys.readouterr().out


def test_effective_dimension_of_the_wide_head_matches_its_recorded_outputs(compared):
    """The study's ideal effective dimension is the participation ratio of the exact head's outputs."""
    from qmedimg.model import head_angles, ideal_head_values
    from qmedimg.rundir import load_run

    run = load_run(compared / "hybrid-seed0")
    values = ideal_head_values(run.model, head_angles(run.model, run.dataset.test.images))
    recorded = json.loads((compared / "hybrid-seed0" / "metrics.json").read_text())["head_usage"]["test"]
    assert values.shape == (SPLITS[2], 8)
    assert participation_ratio(values) == pytest.approx(recorded["effective_dimension"], abs=1e-3)
