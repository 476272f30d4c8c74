"""`qmedimg compare`: the hybrid against its classical baselines, as a user runs it."""

import csv

import pytest

from qmedimg.cli import main


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "compare"
    assert main(["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0,1",
                 "--models", "hybrid,classical,linear,resnet18", "--out", str(out), "--quiet"]) == 0
    return out


def test_compare_writes_the_table_curves_and_confusions(compared):
    for name in ("comparison.md", "comparison.csv", "runs.csv", "learning_curves.png"):
        assert (compared / name).is_file(), name
    rows = {r["model"]: r for r in csv.DictReader(open(compared / "comparison.csv"))}
    assert list(rows) == ["hybrid", "classical", "linear", "resnet18"]
    assert int(rows["hybrid"]["quantum_parameters"]) == 24
    assert rows["hybrid"]["parameters"] == rows["classical"]["parameters"]  # equal-size ablation
    assert int(rows["hybrid"]["parameters"]) <= 0.01 * int(rows["resnet18"]["parameters"])
    assert int(rows["resnet18"]["parameters"]) > 11_000_000
    for model in rows:
        assert (compared / f"confusion-{model}.png").is_file()
        assert rows[model]["seeds"] == "2"
    runs = list(csv.DictReader(open(compared / "runs.csv")))
    assert len(runs) == 8 and {r["seed"] for r in runs} == {"0", "1"}
    table = (compared / "comparison.md").read_text()
    assert "| hybrid |" in table and " ± " in table and "Ablation: hybrid − classical" in table


def test_rerunning_reuses_finished_runs(compared):
    stamps = {p: p.stat().st_mtime_ns for p in compared.glob("*-seed*/metrics.json")}
    assert main(["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0,1",
                 "--models", "hybrid,classical,linear,resnet18", "--out", str(compared), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in compared.glob("*-seed*/metrics.json")} == stamps


@pytest.mark.parametrize("argv, expected", [
    (["--models", "hybrid,alexnet"], "--models: unknown 'alexnet'; valid: hybrid, classical, linear, resnet18, vgg16"),
    (["--seeds", ""], "--seeds: '' is not a comma-separated list"),
    (["--seeds", "0,x"], "--seeds: '0,x' is not a comma-separated list"),
    (["--models", "vgg16"], "vgg16 cannot take 28×28 images; it can take sizes 64, 128, 224"),
])
def test_bad_input_is_one_line_and_trains_nothing(tmp_path, capsys, argv, expected):
    out = tmp_path / "c"
    assert main(["compare", "--dataset", "synthetic", "--limit", "8", "--epochs", "1", "--out", str(out),
                 "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_baseline_runs_evaluate_and_predict(compared, tmp_path):
    from PIL import Image

    from qmedimg.workflows.evaluate import evaluate_run
    from qmedimg.workflows.predict import predict
    from qmedimg.rundir import load_run

    for model in ("resnet18", "linear"):
        run = compared / f"{model}-seed0"
        result = evaluate_run(run)
        assert result["test"] == result["ideal_test"] and result["mean_abs_expectation_error"] == 0.0
        image = load_run(run).dataset.test.images[0]
        Image.fromarray(image[0]).save(tmp_path / f"{model}.png")
        rows = predict(run, [tmp_path / f"{model}.png"])["rows"]
        assert len(rows) == 1 and rows[0]["expectations"] == []


def test_a_finished_cell_of_an_edited_circuit_file_is_not_reused(tmp_path, capsys):
    """The cell's run pinned its circuit: after the file changed, the same --circuits names another
    circuit, so compare refuses to count the old run as this recipe's (one line, nothing trained)."""
    import shutil

    from qmedimg.quantum.circuits import CIRCUITS_DIR

    mine = tmp_path / "mine.qasm"
    shutil.copy(CIRCUITS_DIR / "sel.qasm", mine)
    argv = ["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0",
            "--models", "hybrid", "--circuits", str(mine), "--out", str(tmp_path / "c"), "--quiet"]
    assert main(argv) == 0
    mine.write_text(mine.read_text().replace("ry(w{{ w + 1 }})", "rx(w{{ w + 1 }})"))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("metrics.json")}
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mine.qasm: edited since the run was trained" in err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("metrics.json")} == stamps


def test_an_undefined_test_auc_is_a_dash_over_seeds_also_when_read_back_as_null(tmp_path, one_class_test_npz):
    """A test split of one class leaves the AUC undefined: NaN from training, null in metrics.json once
    read back; over two seeds statistics.stdev used to crash on the NaN."""
    data = one_class_test_npz
    out = tmp_path / "compare"
    argv = ["compare", "--data-file", str(data), "--epochs", "1", "--batch-size", "16", "--seeds", "0,1",
            "--models", "linear", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "| linear | " in (out / "comparison.md").read_text()
    for metrics in out.glob("linear-seed*/metrics.json"):  # as a strict JSON writer records it
        metrics.write_text(metrics.read_text().replace("NaN", "null"))
    (out / "comparison.md").unlink()
    assert main(argv) == 0  # the finished runs are read back
    row = next(line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("| linear |"))
    assert row.split(" | ")[2] == "—"  # the AUC cell
