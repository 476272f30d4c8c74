"""`qmedimg compare`: the hybrid against its classical baselines, as a user runs it."""

import csv
import json

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.metrics import compute_metrics
from qmedimg.workflows.compare import PER_IMAGE_FILE
from qmedimg.workflows.per_image import read_per_image


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


def test_compare_keeps_each_runs_per_image_outputs_from_which_its_test_metrics_recompute(compared):
    for run in sorted(compared.glob("*-seed*")):
        arrays = read_per_image(run / PER_IMAGE_FILE)
        test = json.loads((run / "metrics.json").read_text())["test"]
        recomputed = compute_metrics(arrays["labels"], arrays["probs"], str(arrays["task"]), arrays["threshold"])
        assert (recomputed["acc"], recomputed["auc"]) == pytest.approx((test["acc"], test["auc"])), run.name
        assert np.array_equal(arrays["index"], np.arange(len(arrays["labels"]))) and "images_sha256" in arrays


def test_compare_pairs_the_hybrid_with_each_baseline_per_seed_and_pooled(compared):
    rows = list(csv.DictReader(open(compared / "paired.csv")))
    assert {r["baseline"] for r in rows} == {"classical", "linear", "resnet18"} and {r["model"] for r in rows} == {"hybrid"}
    assert len(rows) == 3 * 3 * 2  # baselines × (seed 0, seed 1, pooled) × (ACC, AUC)
    metrics = {run.name: json.loads((run / "metrics.json").read_text())["test"] for run in compared.glob("*-seed*")}
    by = {(r["baseline"], r["seed"], r["metric"]): r for r in rows}
    for baseline in ("classical", "linear", "resnet18"):
        for metric in ("acc", "auc"):
            seeds = [float(by[baseline, s, metric]["estimate"]) for s in ("0", "1")]
            for s, estimate in zip((0, 1), seeds):
                expected = metrics[f"hybrid-seed{s}"][metric] - metrics[f"{baseline}-seed{s}"][metric]
                assert estimate == pytest.approx(expected)
            pooled = by[baseline, "pooled", metric]
            assert float(pooled["estimate"]) == pytest.approx(np.mean(seeds))
            assert float(pooled["low"]) <= float(pooled["estimate"]) <= float(pooled["high"])
            assert pooled["excludes_zero"] == str(float(pooled["low"]) > 0 or float(pooled["high"]) < 0)
            assert pooled["images_drawn"] == "per seed"  # synthetic data and --limit differ per seed
        assert by[baseline, "0", "auc"]["delong_p"] and not by[baseline, "pooled", "auc"]["delong_p"]
    text = (compared / "comparison.md").read_text()
    assert "## Paired comparison on the same test images" in text and "| hybrid − classical | pooled (2 seeds) |" in text
    verdict = next(line for line in text.splitlines() if line.startswith("Distinguishable from zero"))
    assert all(f"hybrid − {b}: " in verdict for b in ("classical", "linear", "resnet18"))
    assert "B = 2000 resamples, numpy generator seed 0" in text


def test_rerunning_reuses_finished_runs(compared):
    files = ("*-seed*/metrics.json", f"*-seed*/{PER_IMAGE_FILE}")
    stamps = {p: p.stat().st_mtime_ns for pattern in files for p in compared.glob(pattern)}
    paired = (compared / "paired.csv").read_text()
    assert main(["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0,1",
                 "--models", "hybrid,classical,linear,resnet18", "--out", str(compared), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for pattern in files for p in compared.glob(pattern)} == stamps
    assert len(stamps) == 16 and (compared / "paired.csv").read_text() == paired  # seeded: the same intervals


def test_one_seed_prints_single_values_and_an_older_folder_without_per_image_files_still_compares(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0",
            "--models", "hybrid,linear", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = (out / "comparison.md").read_text()
    assert "±" not in text.split("## Paired")[0] and "One seed: single values" in text
    assert "| hybrid − linear | 0 |" in text and "pooled" not in text
    (out / "linear-seed0" / PER_IMAGE_FILE).unlink()  # as a folder from before compare kept them
    stamp = (out / "linear-seed0" / "metrics.json").stat().st_mtime_ns
    assert main(argv) == 0
    text = (out / "comparison.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("Paired comparison"))
    assert line == ("Paired comparison on the same test images: not available: 1 run (linear-seed0) has no per-image "
                    "test outputs (trained before compare kept them).")
    assert "## Paired" not in text and not (out / "paired.csv").read_text().strip().count("\n")
    assert not (out / "linear-seed0" / PER_IMAGE_FILE).exists()  # the reused run is left as it was
    assert (out / "linear-seed0" / "metrics.json").stat().st_mtime_ns == stamp


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


def test_nested_progress_bars_leave_no_cursor_escapes_in_a_log(tmp_path, capsys):
    """With stderr going to a log (not a terminal), each cell's epoch bar is off under compare's own bar: tqdm's
    nested bars would write cursor-up escapes ("\\x1b[A") into the log (issue 23)."""
    assert main(["compare", "--dataset", "synthetic", "--limit", "16", "--models", "hybrid,linear", "--seeds", "0",
                 "--epochs", "1", "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "compare" in err and "\x1b[A" not in err
