"""Is the head used? ``compare`` and the noise study show the effective dimension of the head's outputs
(and the circuit weights without gradient) next to accuracy; an older results.csv still resumes."""

import csv
import json

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.model import head_angles, ideal_head_values, participation_ratio
from qmedimg.report.noise_study import summary
from qmedimg.rundir import load_run
from qmedimg.workflows.noise_study import ADDED_COLUMNS, COLUMNS, RESULTS_SCHEMAS, noise_study


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------- compare

COMPARE = ["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0,1",
           "--models", "hybrid,classical,linear", "--quiet"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("usage") / "compare"
    assert main([*COMPARE, "--out", str(out)]) == 0
    return out


def recorded(out, label):
    return [json.loads((out / f"{label}-seed{s}" / "metrics.json").read_text())["head_usage"]["test"]
            for s in (0, 1)]


def test_compare_shows_the_heads_effective_dimension_and_dead_weights_next_to_accuracy(compared):
    table = {r["model"]: r for r in rows(compared / "comparison.csv")}
    for label in ("hybrid", "classical"):
        dims = [u["effective_dimension"] for u in recorded(compared, label)]
        assert float(table[label]["effective_dimension"]) == pytest.approx(np.mean(dims))
        assert float(table[label]["effective_dimension_std"]) == pytest.approx(np.std(dims, ddof=1))
        assert table[label]["head_outputs"] == "4"
    # sel: the last layer's final Rz angles get no gradient through a Z read-out (w14, w17, w20, w23)
    assert (table["hybrid"]["zero_gradient_weights_min"], table["hybrid"]["circuit_weights"]) == ("4", "24")
    assert table["classical"]["zero_gradient_weights_min"] == "" and table["linear"]["effective_dimension"] == ""
    runs = {(r["model"], r["seed"]): r for r in rows(compared / "runs.csv")}
    assert runs[("hybrid", "1")]["zero_gradient_weights"] == "4" and runs[("linear", "0")]["head_outputs"] == ""
    lines = {line.split(" |")[0][2:]: line for line in (compared / "comparison.md").read_text().splitlines()
             if line.startswith("| ")}
    header = [c.strip() for c in lines["model"].split("|")[1:-1]]
    assert header[:5] == ["model", "ACC", "AUC", "head effective dimension", "zero-gradient circuit weights"]
    hybrid = [c.strip() for c in lines["hybrid"].split("|")[1:-1]]
    mean = float(table["hybrid"]["effective_dimension"])
    assert hybrid[3].startswith(f"{mean:.2f} ± ") and hybrid[3].endswith(" of 4") and hybrid[4] == "4 of 24"
    classical = [c.strip() for c in lines["classical"].split("|")[1:-1]]
    assert classical[3].endswith(" of 4") and classical[4] == "—"
    assert [c.strip() for c in lines["linear"].split("|")[1:-1]][3:5] == ["—", "—"]


def test_compare_measures_head_usage_of_a_reused_run_that_never_recorded_it(compared):
    metrics_file = compared / "hybrid-seed0" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    expected = metrics.pop("head_usage")["test"]["effective_dimension"]
    metrics_file.write_text(json.dumps(metrics))  # as a run trained before head_usage existed
    before = metrics_file.read_bytes()
    assert main([*COMPARE, "--out", str(compared)]) == 0
    run = next(r for r in rows(compared / "runs.csv") if (r["model"], r["seed"]) == ("hybrid", "0"))
    assert float(run["effective_dimension"]) == pytest.approx(expected, abs=1e-3)  # measured, not "—"
    assert run["zero_gradient_weights"] == "4"
    assert metrics_file.read_bytes() == before  # the user's run is not written into


# ---------------------------------------------------------------------------------------- noise study


def test_noise_study_records_the_effective_dimension_of_the_heads_outputs_per_point(tiny_run_copy):
    out = noise_study([tiny_run_copy], backends=["exact", "fake_manila"], scales=[0.0, 4.0], shots=[None, 64],
                      limit=16, progress=False)
    run = load_run(tiny_run_copy)
    ideal = participation_ratio(ideal_head_values(run.model, head_angles(run.model, run.dataset.test.images[:16])))
    table = rows(out / "results.csv")
    assert all(r["head_outputs"] == "4" and float(r["ideal_effective_dimension"]) == pytest.approx(ideal, abs=1e-4)
               for r in table)
    by = {(r["backend"], r["scale"], r["shots"]): float(r["effective_dimension"]) for r in table}
    assert by[("exact", "", "")] == pytest.approx(ideal, abs=1e-4)
    assert by[("fake_manila", "0.0", "")] == pytest.approx(ideal, abs=1e-4)  # no noise: the ideal head
    assert by[("fake_manila", "4.0", "")] != pytest.approx(ideal, abs=1e-3)  # noise reshapes the outputs
    assert by[("fake_manila", "0.0", "64")] > ideal  # shot noise spreads them over more directions
    text = (out / "summary.md").read_text()
    assert f"effective dimension of the head's outputs {ideal:.2f} of 4" in text
    assert "## Accuracy and the head's effective dimension per noise scale" in text
    line = next(t for t in text.splitlines() if t.startswith("| fake_manila, mitigation none, no shot noise")
                and "| 4 |" in t)
    assert f"{by[('fake_manila', '4.0', '')]:.2f} of 4 ({ideal:.2f})" in line


def test_an_older_results_csv_without_the_column_resumes_and_keeps_its_rows(tiny_run_copy):
    args = dict(backends=["fake_manila"], scales=[0, 1], limit=8, progress=False)
    out = noise_study([tiny_run_copy], **args)
    results = out / "results.csv"
    current = rows(results)
    with open(results, "w", newline="") as handle:  # what qmedimg wrote before the columns existed
        writer = csv.DictWriter(handle, fieldnames=RESULTS_SCHEMAS[1], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(current)
    legacy = rows(results)
    noise_study([tiny_run_copy], **args)  # the same grid: every row reused, none recomputed
    upgraded = rows(results)
    assert list(upgraded[0]) == COLUMNS and len(upgraded) == 2
    assert [{k: r[k] for k in RESULTS_SCHEMAS[1]} for r in upgraded] == legacy  # wall_s, inputs, ... kept
    assert all(r[c] == "" for r in upgraded for c in ADDED_COLUMNS)
    text = (out / "summary.md").read_text()
    assert "2 reused from results.csv, 0 computed now" in text and "Effective dimension — : not recorded" in text
    noise_study([tiny_run_copy], **{**args, "scales": [0, 1, 2]})  # a new point: appended, with its dimension
    grown = rows(results)
    assert grown[:2] == upgraded and len(grown) == 3 and float(grown[2]["effective_dimension"]) > 0


def test_summary_says_dash_for_an_undefined_auc_and_an_unrecorded_dimension():
    row = {column: "" for column in COLUMNS}
    row.update({"run": "runs/a", "circuit": "sel", "trained_on": "exact", "backend": "fake_manila",
                "scale": "1.0", "mitigation": "none", "opt_level": "1", "repeat": "0", "acc": "0.5", "auc": "nan",
                "f1": "0.4", "ideal_acc": "0.6", "ideal_auc": "nan", "mean_abs_expectation_error": "0.1",
                "shot_cost": "exact"})
    text = summary([row])
    assert "nan" not in text and "AUC —" in text and "some classes are absent" in text
    assert "Effective dimension — : not recorded" in text
    assert "| fake_manila, mitigation none, no shot noise, opt 1 | 1 | 0.5000 | — | — |" in text
