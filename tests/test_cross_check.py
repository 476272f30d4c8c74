"""Cross-checking the trajectory sampler against Aer (issue 21): noise-study and width-study run some
points again with ``simulator: aer``, keyed apart from the sampler's rows, and summary.md compares them.
Tiny: synthetic data, 4-qubit heads on FakeManila with ``simulator: trajectories`` (the sampler at
small width), 200 trajectories, a few test images."""

import csv
import json
import re

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.report.noise_study import chance_largest_z, cross_check_section, value_agreement
from qmedimg.workflows.noise_study import COLUMNS, RESULTS_SCHEMAS, noise_study
from qmedimg.workflows.study_points import Point, choose_cross_checks

SAMPLER = "manila:\n  kind: fake\n  device: FakeManilaV2\n  simulator: trajectories\n  trajectories: 200\n"


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def computed(out):
    return json.loads((out / "study.json").read_text())["computed"]


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "backends.yaml"
    path.write_text(SAMPLER)
    return path


def study(run, registry, out, *extra):
    return main(["noise-study", str(run), "--backend", "manila", "--backends", str(registry), "--scales", "0,1",
                 "--mitigation", "none", "--test-limit", "8", "--out", str(out), "--quiet", *extra])


def test_cross_check_rows_are_aer_keyed_apart_and_compared_in_the_summary(tiny_run, registry, tmp_path, capsys):
    out = tmp_path / "study"
    assert study(tiny_run, registry, out) == 0  # the sampler's grid alone: no cross-check, no section
    assert computed(out) == 2 and "Cross-check" not in (out / "summary.md").read_text()
    grid = {r["scale"]: r for r in rows(out / "results.csv")}
    noisy, ideal = grid["1.0"], grid["0.0"]
    assert (noisy["simulator"], noisy["simulation"], noisy["trajectories"]) == ("qmedimg", "trajectories", "200")
    assert 0 < float(noisy["statistical_error"]) < 0.2 and noisy["cross_check"] == ""
    assert (ideal["simulator"], ideal["simulation"], ideal["statistical_error"]) == ("aer", "statevector", "")
    assert float(noisy["acc_statistical_error"]) >= 0 and ideal["acc_statistical_error"] == ""  # ACC's own error
    assert "simulated by noise trajectories carry a statistical error: at most" in (out / "summary.md").read_text()

    assert study(tiny_run, registry, out, "--cross-check", "1") == 0
    assert computed(out) == 1, "the sampler's row was taken for the Aer cross-check, or the grid recomputed"
    table = rows(out / "results.csv")
    assert table[:2] == list(grid.values()) and len(table) == 3
    check = table[2]
    assert (check["cross_check"], check["scale"], check["simulator"], check["simulation"]) == \
        ("aer", "1.0", "aer", "density_matrix")  # the noisy point first: the one the sampler simulates
    assert check["trajectories"] == check["statistical_error"] == "" and check["inputs"] != noisy["inputs"]
    difference = abs(float(noisy["mean_abs_expectation_error"]) - float(check["mean_abs_expectation_error"]))
    assert 0 < difference <= 3 * float(noisy["statistical_error"])  # sampled, yet the same values within noise
    summary = (out / "summary.md").read_text()
    assert "## Cross-check against Aer" in summary
    assert "| manila scale 1.0 none exact opt 1 repeat 0 | mean abs Δ expectation |" in summary
    assert f"Largest difference: {difference:.4f} in mean abs Δ expectation at manila scale 1.0" in summary
    assert "the sampler's statistical error there" in summary
    assert re.search(r"largest \|z\| [0-9.]+ over (8|16|24|32) values", summary)  # 8 images' outputs, one by one
    assert "within what chance gives" in summary
    assert "2 grid points and 1 cross-check point: 2 reused from results.csv, 1 computed now." in summary

    assert study(tiny_run, registry, out, "--cross-check", "1") == 0  # again: nothing new
    assert computed(out) == 0 and rows(out / "results.csv") == table
    assert study(tiny_run, registry, out, "--cross-check", "5") == 0  # more than there are: all of them
    assert computed(out) == 1 and len(rows(out / "results.csv")) == 4
    summary = (out / "summary.md").read_text()
    assert "--cross-check 5 asked for more points than the 2 that can be cross-checked: all 2 were." in summary
    capsys.readouterr()

    # the same entry with simulator: aer is another entry: its grid points are computed, not taken from the
    # cross-check rows (and come out equal to them: same entry, seed and images but the simulator)
    registry.write_text(SAMPLER.replace("trajectories\n  trajectories", "aer\n  trajectories"))
    assert study(tiny_run, registry, out) == 0
    assert computed(out) == 2
    table = rows(out / "results.csv")
    on_aer = next(r for r in table[4:] if r["scale"] == "1.0")
    assert (on_aer["cross_check"], on_aer["simulator"]) == ("", "aer")
    for column in ("acc", "auc", "mean_abs_expectation_error"):
        assert on_aer[column] == check[column], column


def test_a_negative_cross_check_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run), "--backend", "fake_manila", "--scales", "1", "--mitigation", "none",
                 "--test-limit", "4", "--out", str(out), "--cross-check", "-1", "--quiet"]) == 2
    assert main(["width-study", "--dataset", "synthetic", "--limit", "24", "--qubits", "4", "--layers", "1",
                 "--backend", "fake_manila", "--scales", "1", "--mitigation", "none", "--cross-check", "-2",
                 "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["qmedimg: error: --cross-check must be >= 0 (how many points to run again on Aer), got -1",
                     "qmedimg: error: --cross-check must be >= 0 (how many points to run again on Aer), got -2"]
    assert not out.exists()


def test_a_grid_without_a_sampler_says_why_nothing_was_cross_checked(tiny_run, tmp_path):
    out = noise_study([tiny_run], backends=["aer"], limit=4, out=tmp_path / "study", progress=False, cross_check=2)
    assert len(rows(out / "results.csv")) == 1
    row = rows(out / "results.csv")[0]
    assert row["simulation"] == row["simulator"] == row["cross_check"] == ""  # a kind that does not say
    assert "No point could be cross-checked: no backend of the grid (aer) simulates noise with anything but Aer" \
        in (out / "summary.md").read_text()


def test_the_choice_is_noisy_exact_points_first_then_the_widest_heads_then_grid_order():
    def point(run, scale, shots=None, backend="sampler"):
        return Point(run, backend, scale, "none", shots, 1, 0)

    points = [point("narrow", 0.0), point("narrow", 1.0), point("wide", 0.0), point("wide", 1.0, 64),
              point("wide", 2.0), point("wide", 1.0), point("wide", 1.0, backend="aer_only")]
    widths = {"narrow": (4, 1), "wide": (8, 1)}
    chosen = choose_cross_checks(points, widths, {"sampler"}, 10)
    assert [(p.run, p.scale, p.shots) for p in chosen] == [
        ("wide", 2.0, None), ("wide", 1.0, None), ("narrow", 1.0, None), ("wide", 0.0, None), ("wide", 1.0, 64),
        ("narrow", 0.0, None)]
    assert {p.cross_check for p in chosen} == {"aer"}
    assert choose_cross_checks(points, widths, {"sampler"}, 1) == chosen[:1]
    assert choose_cross_checks(points, widths, set(), 3) == []


@pytest.mark.parametrize("past", [2, 4], ids=["before-simulation-columns", "before-acc-auc-errors"])
def test_a_results_csv_from_before_the_simulation_columns_is_reused_and_upgraded(tiny_run, tmp_path, past):
    out = noise_study([tiny_run], backends=["exact"], limit=4, out=tmp_path / "study", progress=False)
    results = out / "results.csv"
    current = rows(results)
    with open(results, "w", newline="") as handle:  # what qmedimg wrote before the columns existed
        writer = csv.DictWriter(handle, fieldnames=RESULTS_SCHEMAS[past], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(current)
    noise_study([tiny_run], backends=["exact"], limit=4, out=out, progress=False)
    assert computed(out) == 0
    upgraded = rows(results)
    assert list(upgraded[0]) == COLUMNS and upgraded == current


def test_width_study_cross_checks_its_points_and_compares_them(registry, tmp_path):
    out = tmp_path / "width"
    argv = ["width-study", "--dataset", "synthetic", "--limit", "24", "--batch-size", "12", "--epochs", "1",
            "--test-limit", "6", "--qubits", "4", "--layers", "1", "--backend", "manila", "--backends", str(registry),
            "--scales", "0,1", "--mitigation", "none", "--cross-check", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    table = rows(out / "results.csv")
    assert [(r["scale"], r["cross_check"], r["simulator"]) for r in table] == [
        ("0.0", "", "aer"), ("1.0", "", "qmedimg"), ("1.0", "aer", "aer")]
    assert table[2]["qubits"] == "4" and table[2]["simulation"] == "density_matrix"
    summary = (out / "summary.md").read_text()
    assert "## Cross-check against Aer" in summary and "| 4×1 seed 0: manila scale 1.0 none exact opt 1 repeat 0 |" \
        in summary and "Largest difference: " in summary
    assert "| manila | 4×1 |" in summary  # the verdict table holds the grid's point once, not the Aer row
    assert "largest |z|" in summary and "within what chance gives" in summary  # value by value, from its point files
    study_csv = out / "runs" / "q4-l1-s0" / "noise-study" / "results.csv"
    before = rows(study_csv)
    assert main(argv) == 0  # again: nothing new
    assert rows(study_csv) == before and rows(out / "results.csv") == table


def test_a_row_whose_error_was_computed_otherwise_is_computed_again_and_the_rest_reused(tiny_run, registry,
                                                                                      tmp_path, monkeypatch):
    out = tmp_path / "study"
    assert study(tiny_run, registry, out, "--mitigation", "none,readout+zne") == 0
    assert computed(out) == 4
    before = {(r["scale"], r["mitigation"]): r for r in rows(out / "results.csv")}
    assert float(before[("1.0", "readout+zne")]["statistical_error"]) > 0  # the sampler, through the extrapolation
    monkeypatch.setattr("qmedimg.backends.fake.ZNE_ERROR", "the line's weights")  # as rows made before it say
    assert study(tiny_run, registry, out, "--mitigation", "none,readout+zne") == 0
    assert computed(out) == 2  # the two readout+zne rows; the unmitigated ones are reused
    after = {(r["scale"], r["mitigation"]): r for r in rows(out / "results.csv")}
    for key in before:
        assert (after[key]["inputs"] == before[key]["inputs"]) == (key[1] == "none"), key
    monkeypatch.setattr("qmedimg.backends.fake.VALUE_ERROR", "the largest error, independently")  # older rows
    assert study(tiny_run, registry, out, "--mitigation", "none,readout+zne") == 0
    assert computed(out) == 4  # every row states its errors another way: all computed again


def test_a_cross_check_compares_every_value_against_both_sides_errors_and_says_when_chance_cannot_explain_it():
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, (50, 4))
    covariance = np.tile(np.diag([1e-4, 4e-4, 1e-4, 1e-4]), (50, 1, 1))  # standard errors 0.01, 0.02, 0.01, 0.01
    exact = {"values": values}  # Aer's density matrix: no error of its own
    noisy = {"values": values + rng.normal(size=values.shape) * np.sqrt(np.diagonal(covariance, axis1=1, axis2=2)),
             "value_covariance": covariance}
    largest, count = value_agreement(noisy, exact)
    assert count == 200 and 1.0 < largest < chance_largest_z(200, 0.99)
    both = value_agreement(noisy, {**noisy, "values": values})  # an Aer side with the same errors: √2 wider
    assert both[0] == pytest.approx(largest / np.sqrt(2))
    biased = {**noisy, "values": noisy["values"] + np.where(np.arange(4) == 1, 0.1, 0.0)}  # 5σ on one output
    assert value_agreement(biased, exact)[0] > chance_largest_z(200, 0.99)
    assert value_agreement({"probs": values}, exact) is None  # a point written before points kept their values
    assert value_agreement(exact, noisy)[0] == pytest.approx(largest)  # whichever side carries the error
    assert value_agreement(exact, exact) is None  # two exact sides: nothing to judge against
    assert 2.0 < chance_largest_z(24, 0.5) < 2.4 and chance_largest_z(1, 0.5) == pytest.approx(0.6745, abs=1e-4)
    sentence = cross_check_section([("p", {}, {}, value_agreement(biased, exact))], asked=1, eligible=1)
    assert "beyond what chance gives: the two disagree" in sentence
