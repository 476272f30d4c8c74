"""Intervals in the noise study's rows (issue 23 item 3): every row carries bootstrap intervals of its metrics over
the test images and the paired interval of the accuracy it lost against the exact head on the same images;
summary.md concludes that noise costs accuracy only where that paired interval excludes zero."""

import csv
import json
import re

import numpy as np
import pytest

from qmedimg.metrics import bootstrap_intervals
from qmedimg.report.intervals import correct, paired_difference
from qmedimg.report.noise_study import summary
from qmedimg.report.study_intervals import INTERVAL_COLUMNS, row_intervals
from qmedimg.workflows.noise_study import COLUMNS, RESULTS_SCHEMAS, noise_study
from qmedimg.workflows.study_points import read_point

STUDY = dict(backends=["fake_manila"], scales=[0, 1], limit=16, progress=False)


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def study(tiny_run, tmp_path_factory):
    """A tiny noise study of the shared run on fake_manila (scales 0 and 1, 16 test images)."""
    return noise_study([tiny_run], out=tmp_path_factory.mktemp("intervals") / "study", **STUDY)


def test_every_row_has_interval_columns_that_contain_the_point_estimate(study):
    table = rows(study / "results.csv")
    assert table and all(column in table[0] for column in INTERVAL_COLUMNS)
    for row in table:
        for metric in ("acc", "auc", "sensitivity", "specificity", "acc_lost"):
            low, value, high = (float(row[c]) for c in (f"{metric}_low", metric, f"{metric}_high"))
            assert low <= value <= high, (metric, low, value, high)
        assert float(row["acc_high"]) > float(row["acc_low"])  # 16 images, ACC neither 0 nor 1: a real width
        assert float(row["acc_lost"]) == pytest.approx(float(row["ideal_acc"]) - float(row["acc"]), abs=1e-12)
        arrays = read_point(study, row)  # the same computation as a reference, from the row's own images
        reference = bootstrap_intervals(arrays["labels"], arrays["probs"], str(arrays["task"]),
                                        float(arrays["threshold"]), draws=2000, seed=0)
        assert [float(row["acc_low"]), float(row["acc_high"])] == reference["acc"]
        assert [float(row["auc_low"]), float(row["auc_high"])] == reference["auc"]


def test_the_accuracy_lost_interval_pairs_the_exact_and_noisy_decisions_on_the_same_images(study):
    for row in rows(study / "results.csv"):
        arrays = read_point(study, row)
        expected = paired_difference(correct(arrays["labels"], arrays["ideal_decision"]),
                                     correct(arrays["labels"], arrays["decision"]))
        assert (float(row["acc_lost"]), float(row["acc_lost_low"]), float(row["acc_lost_high"])) == \
            (expected.estimate, expected.low, expected.high)
        if np.array_equal(arrays["decision"], arrays["ideal_decision"]):  # paired: nothing differs, no width
            assert float(row["acc_lost_low"]) == float(row["acc_lost_high"]) == 0.0


def test_a_planted_loss_is_flagged_by_the_paired_interval_and_a_shuffled_pairing_would_miss_it():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 120)
    ideal = np.where(rng.random(120) < 0.8, labels, 1 - labels)  # right on about 80 %
    right = np.flatnonzero(ideal == labels)
    noisy = ideal.copy()
    noisy[right[:8]] = 1 - noisy[right[:8]]  # noise turns 8 right decisions wrong, nothing else
    probs = np.stack([1 - noisy, noisy], axis=1).astype(float)
    arrays = {"labels": labels, "probs": probs, "decision": noisy, "ideal_decision": ideal,
              "threshold": np.asarray(0.5), "task": np.asarray("binary-class")}
    got = row_intervals(arrays)
    assert got["acc_lost"] == pytest.approx(8 / 120) and 0 < got["acc_lost_low"] < 8 / 120 < got["acc_lost_high"]
    shuffled = paired_difference(correct(labels, ideal), correct(labels, noisy)[rng.permutation(120)])
    assert shuffled.low < 0 < shuffled.high  # unpaired, the same loss is not distinguishable from zero


def test_an_old_results_csv_is_upgraded_with_intervals_from_its_per_image_files_and_resumed(tiny_run, tmp_path):
    out = noise_study([tiny_run], out=tmp_path / "study", **{**STUDY, "limit": 8})
    results = out / "results.csv"
    current = rows(results)
    with open(results, "w", newline="") as handle:  # what qmedimg wrote before the interval columns (version 5)
        writer = csv.DictWriter(handle, fieldnames=RESULTS_SCHEMAS[5], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(current)
    assert "acc_lost" not in rows(results)[0]
    noise_study([tiny_run], out=out, **{**STUDY, "limit": 8, "scales": [0, 1, 2]})  # one point more: resumed
    upgraded = rows(results)
    assert list(upgraded[0]) == COLUMNS  # intervals recomputed from the point files; the calibration unknown
    assert upgraded[:2] == [{**row, "calibration_date": ""} for row in current]
    assert json.loads((out / "study.json").read_text())["computed"] == 1 and len(upgraded) == 3
    assert all(upgraded[2][c] != "" for c in INTERVAL_COLUMNS)
    assert "ACC [low, high]" in (out / "summary.md").read_text()


def study_row(scale: str, acc: float, lost: tuple[float, float, float] | None, repeat: int = 0) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update({"run": "runs/a", "circuit": "sel", "trained_on": "exact", "backend": "fake_manila",
                "device": "fake_manila", "scale": scale, "mitigation": "none", "shots": "64", "opt_level": "1",
                "repeat": str(repeat), "acc": str(acc), "auc": "0.9", "f1": "0.8", "ideal_acc": "0.80",
                "ideal_auc": "0.9", "mean_abs_expectation_error": "0.1", "shot_cost": "64", "wall_s": "0.1",
                "acc_low": str(acc - 0.05), "acc_high": str(acc + 0.05)})
    if lost is not None:
        row.update(zip(("acc_lost", "acc_lost_low", "acc_lost_high"), map(str, lost)))
    return row


def test_summary_says_noise_costs_accuracy_only_where_the_paired_interval_excludes_zero():
    clear = summary([study_row("0.0", 0.80, (0, 0, 0)), study_row("1.0", 0.70, (0.10, 0.04, 0.16))])
    assert "noise costs 10.0 points of ACC at noise scale 1 [4.0, 16.0]" in clear
    assert "| 0.8000 | 1 |" in clear  # the −1 point column: reached at scale 1, distinguishable
    assert "0.7000 [0.6500, 0.7500]" in clear and "+10.0 [+4.0, +16.0]" in clear

    unclear = summary([study_row("0.0", 0.80, (0, 0, 0)), study_row("1.0", 0.70, (0.10, -0.02, 0.22))])
    assert not re.search(r"noise costs \d", unclear)
    assert "ACC lost at noise scale 1 +10.0 points [-2.0, +22.0], the interval includes zero" in unclear
    assert "| 0.8000 | > 1 | > 1 | > 1 |" in unclear  # a drop whose interval includes zero is not a drop

    repeats = [study_row("1.0", 0.70, (0.10, 0.04, 0.16)), study_row("1.0", 0.74, (0.06, -0.01, 0.13), repeat=1)]
    mixed = summary([study_row("0.0", 0.80, (0, 0, 0)), *repeats])  # one repeat of two excludes zero: no verdict
    assert not re.search(r"noise costs \d", mixed) and "the interval includes zero" in mixed
    for text in (clear, unclear, mixed):
        assert "±" not in text
