"""The width × depth × noise study as a user runs it: tiny generated data, heads of 4 and 6 qubits,
one 5-qubit fake device (so the 6-qubit head is skipped there) and the noiseless Aer backend."""

import csv
import hashlib
import json
import pickle

import pytest

from qmedimg.cli import main
from qmedimg.executor import LocalExecutor

TINY = ["--dataset", "synthetic", "--limit", "24", "--batch-size", "12", "--epochs", "1", "--test-limit", "8", "--quiet"]
GRID = ["--qubits", "4,6", "--layers", "1", "--backend", "fake_manila,aer", "--scales", "0,1", "--mitigation", "none"]


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One small study through the command line, shared read-only by the tests that only look at it."""
    out = tmp_path_factory.mktemp("width") / "study"
    assert main(["width-study", *TINY, *GRID, "--out", str(out)]) == 0
    return out


def test_width_study_writes_results_plots_and_a_verdict_per_device(study):
    for name in ("results.csv", "accuracy_vs_circuit.png", "accuracy_lost.png", "summary.md", "study.json"):
        assert (study / name).is_file(), name
    table = rows(study / "results.csv")
    points = {(r["backend"], r["qubits"], r["layers"], r["scale"]) for r in table}
    # fake_manila: the 4-qubit head at both scales; aer (noiseless, no scales): both heads once
    assert points == {("fake_manila", "4", "1", "0.0"), ("fake_manila", "4", "1", "1.0"),
                      ("aer", "4", "1", ""), ("aer", "6", "1", "")}
    for run in ("q4-l1-s0", "q6-l1-s0"):
        assert json.loads((study / "runs" / run / "metrics.json").read_text())["test"]
    by = {(r["backend"], r["qubits"], r["scale"]): r for r in table}
    ideal, noisy = by[("fake_manila", "4", "0.0")], by[("fake_manila", "4", "1.0")]
    assert float(ideal["acc"]) == float(ideal["ideal_acc"]) and float(ideal["estimated_fidelity"]) == 1.0
    assert float(noisy["estimated_fidelity"]) < 1.0 and int(noisy["two_qubit_gates"]) > 0
    assert float(noisy["mean_abs_expectation_error"]) > 1e-6 > float(by[("aer", "6", "")]["mean_abs_expectation_error"])
    summary = (study / "summary.md").read_text()
    for backend in ("fake_manila", "aer"):
        line = next(x for x in summary.splitlines() if x.startswith(f"- **{backend}"))
        assert "within 1 point of its ideal accuracy at calibrated noise" in line, line
    assert "| fake_manila | 4×1 |" in summary and "| aer | 6×1 |" in summary and "| fake_manila | 6×1 |" not in summary


def test_a_head_wider_than_a_device_is_skipped_for_it_with_a_note(study):
    summary = (study / "summary.md").read_text()
    assert "Skipped 6 qubits: wider than fake_manila (5 qubits)" in summary
    skipped = json.loads((study / "study.json").read_text())["skipped"]
    assert skipped == [{"backend": "fake_manila", "device": "fake_manila", "device_qubits": 5, "qubits": 6}]
    assert not any(r["backend"] == "fake_manila" and r["qubits"] == "6" for r in rows(study / "results.csv"))


class PickledExecutor(LocalExecutor):
    """Cells and their function travel pickled, as to a Ray worker, then run here."""

    def map(self, function, cells, **options):
        yield from super().map(pickle.loads(pickle.dumps(function)), [pickle.loads(pickle.dumps(c)) for c in cells],
                               **options)


def test_rerunning_reuses_finished_runs_resumes_interrupted_ones_and_recomputes_only_lost_rows(tmp_path, monkeypatch):
    from qmedimg.workflows import train as training
    from qmedimg.workflows import width_study as module

    out = tmp_path / "study"
    kwargs = dict(qubits=[4], layers=[1], backends=["fake_manila"], scales=[0, 1], mitigations=["none"],
                  epochs=1, batch_size=12, test_limit=8, out=out, progress=False, executor=PickledExecutor())
    data = {"dataset": "synthetic", "limit": 24}
    module.width_study(data, **kwargs)
    run = out / "runs" / "q4-l1-s0"
    checkpoint, metrics, first = digest(run / "checkpoint.pt"), digest(run / "metrics.json"), rows(out / "results.csv")

    def refuse(*args, **kwargs):
        raise AssertionError("a run was trained from scratch instead of reused or resumed")

    monkeypatch.setattr(training, "train", refuse)
    module.width_study(data, **kwargs)  # everything finished: nothing trained, no row recomputed
    assert rows(out / "results.csv") == first  # wall_s included: a recomputed row would differ
    assert digest(run / "metrics.json") == metrics  # not even finished again
    # killed after the last epoch's checkpoint, before metrics.json: resumed, not retrained from epoch 1
    (run / "metrics.json").unlink()
    # and killed while appending a study row: the torn line is cut off, only that point computed again
    study_csv = run / "noise-study" / "results.csv"
    lines = study_csv.read_text().splitlines(keepends=True)
    study_csv.write_text("".join(lines[:-1]) + lines[-1][:25])
    module.width_study(data, **kwargs)
    assert digest(run / "checkpoint.pt") == checkpoint and (run / "metrics.json").is_file()
    again = rows(out / "results.csv")
    assert again[:-1] == first[:-1] and len(again) == len(first)
    assert {k: v for k, v in again[-1].items() if k != "wall_s"} == {k: v for k, v in first[-1].items() if k != "wall_s"}


@pytest.mark.parametrize("extra, message", [
    (["--qubits", "4,x"], "--qubits: 'x' in '4,x' is not an integer"),
    (["--layers", "0"], "--layers: 0 must be >= 1"),
    (["--qubits", "4,4"], "--qubits: '4,4' repeats 4"),
    (["--scales", "0,2"], "--scales: finite numbers >= 0 including 1"),
    (["--mitigation", "readout"], "--mitigation must include 'none'"),
    (["--qubits", "6,8"], "backend 'fake_manila' (fake_manila) has 5 qubits, fewer than every head in --qubits 6,8"),
    (["--backend", "ibm_brisbane"], "width-study runs on simulators only"),
    (["--max-memory", "0.000001"], "the grid does not fit in memory: 4 qubits × 1 layer on fake_manila"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "study"
    grid = ["--qubits", "4", "--layers", "1", "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none"]
    assert main(["width-study", *TINY, *grid, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_the_memory_estimate_is_a_density_matrix_under_noise_and_a_statevector_without(tmp_path, capsys):
    # 4 qubits: a density matrix is 16·4^4 = 4 KiB per experiment, a statevector 256 bytes
    args = ["width-study", *TINY, "--qubits", "4", "--layers", "1", "--scales", "0,1", "--mitigation", "none",
            "--max-memory", "0.000003"]
    assert main([*args, "--backend", "fake_manila", "--out", str(tmp_path / "noisy")]) == 2
    assert "density matrix" in capsys.readouterr().err
    assert main([*args, "--backend", "aer", "--out", str(tmp_path / "noiseless")]) == 0


def test_a_run_directory_made_with_other_settings_is_refused_before_anything_trains(tmp_path, capsys):
    from qmedimg.files import write_json
    from qmedimg.rundir import make_config

    out = tmp_path / "study"
    run = out / "runs" / "q4-l1-s0"
    run.mkdir(parents=True)
    other = make_config(dataset="synthetic", limit=24, qubits=4, layers=1, epochs=5, out=str(run))
    write_json(run / "config.json", {"config": other.model_dump()})
    assert main(["width-study", *TINY, "--qubits", "4", "--layers", "1", "--backend", "aer", "--mitigation", "none",
                 "--scales", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a run made with other settings" in err and "epochs: 5 -> 1" in err
    assert sorted(p.name for p in out.rglob("*")) == ["config.json", "q4-l1-s0", "runs"]


def _row(backend, qubits, mitigation, acc, scale="1.0", seed=0):
    return {"backend": backend, "qubits": qubits, "layers": 1, "seed": seed, "scale": scale, "mitigation": mitigation,
            "shots": "", "acc": acc, "auc": acc, "ideal_acc": 0.8, "ideal_auc": 0.8, "two_qubit_gates": 4 * qubits,
            "estimated_fidelity": 1 - qubits / 20}


def test_the_verdict_names_the_largest_head_within_one_point_and_what_mitigation_extends_it_to():
    from qmedimg.report.width_study import summary

    rows_ = [_row("fake_a", 4, "none", 0.8), _row("fake_a", 8, "none", 0.78), _row("fake_a", 12, "none", 0.7),
             _row("fake_a", 4, "readout", 0.8), _row("fake_a", 8, "readout", 0.795), _row("fake_a", 12, "readout", 0.75),
             _row("fake_b", 4, "none", 0.799), _row("fake_b", 8, "none", 0.8)]
    text = summary(rows_, [], devices={"fake_a": "FakeA", "fake_b": "FakeB"})
    a = next(x for x in text.splitlines() if x.startswith("- **fake_a"))
    assert "the largest head that stays within 1 point of its ideal accuracy at calibrated noise is 4 qubits × 1 layer" in a
    assert "noise first costs ≥ 1 point at 8 qubits × 1 layer (loses 2.0 points" in a
    assert "mitigation readout extends it to 8 qubits × 1 layer" in a
    b = next(x for x in text.splitlines() if x.startswith("- **fake_b"))
    assert "is 8 qubits × 1 layer" in b
    assert "Calibrated noise costs ≥ 1 point of ACC on: fake_a from 8 qubits × 1 layer." in text
    quiet = summary([r for r in rows_ if r["backend"] == "fake_b"], [], devices={"fake_b": "FakeB"})
    assert "No head of the grid loses ≥ 1 point of ACC at calibrated noise on any device; the largest losses: " \
           "fake_b 4×1 0.1 points" in quiet
