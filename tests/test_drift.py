"""Drift over calibration snapshots (issue 25 item 3): a noise study over several calibrations of one device plots
accuracy against calibration date and says how far the prediction moved, with a paired interval over the same
test images, claiming a shift only where that interval excludes zero."""

import csv
import re
from datetime import datetime, timezone

import numpy as np
import pytest

from qmedimg.report.drift import drift_curves, drift_section
from qmedimg.report.intervals import correct, seeded_difference
from qmedimg.workflows.noise_study import COLUMNS, noise_study
from qmedimg.workflows.study_points import read_point

JANUARY, MARCH = "2025-01-10T08:00:00+00:00", "2025-03-10T08:00:00+00:00"


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two calibration snapshots of FakeManilaV2 (January as the provider has it; March with every gate error ×3)
    as two fake entries, in a registry of their own."""
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qmedimg.backends.snapshots import scaled_errors, take_snapshot, write_snapshot

    folder = tmp_path_factory.mktemp("calibrations")
    january = take_snapshot(FakeManilaV2(), taken_at=datetime(2025, 1, 10, 9, tzinfo=timezone.utc))
    january["properties"]["last_update_date"] = JANUARY
    march = scaled_errors(january, 3, readout=False)  # gate errors × 3
    march["taken_at"], march["properties"]["last_update_date"] = "2025-03-10T09:00:00+00:00", MARCH
    write_snapshot(folder / "manila-jan.json", january)
    write_snapshot(folder / "manila-mar.json", march)
    path = folder / "backends.yaml"
    path.write_text("manila_mar:\n  kind: fake\n  calibration: manila-mar.json\n"
                    "manila_jan:\n  kind: fake\n  calibration: manila-jan.json\n")
    return path


def test_a_study_over_two_snapshots_of_one_device_plots_accuracy_against_calibration_and_says_how_far_it_moved(
        tiny_run, registry, tmp_path):
    out = noise_study([tiny_run], backends=["manila_mar", "manila_jan"], backends_file=registry, scales=[1],
                      limit=12, out=tmp_path / "study", progress=False)
    table = {row["backend"]: row for row in rows(out / "results.csv")}
    assert list(next(iter(table.values()))) == COLUMNS
    assert (table["manila_jan"]["calibration_date"], table["manila_mar"]["calibration_date"]) == (JANUARY, MARCH)
    assert table["manila_jan"]["device"] == table["manila_mar"]["device"] == "fake_manila"
    assert float(table["manila_mar"]["mean_abs_expectation_error"]) > \
        1.5 * float(table["manila_jan"]["mean_abs_expectation_error"])  # March's calibration is the one simulated
    assert (out / "accuracy_vs_calibration.png").stat().st_size > 0
    text = (out / "summary.md").read_text()
    (line,) = [t for t in text.splitlines() if t.startswith("- fake_manila, mitigation none")
               and "calibration of" in t]
    assert line.index(JANUARY) < line.index("`manila_jan`") < line.index(MARCH) < line.index("`manila_mar`")
    new, old = read_point(out, table["manila_mar"]), read_point(out, table["manila_jan"])
    moved = seeded_difference([(correct(new["labels"], new["decision"]), correct(old["labels"], old["decision"]))])
    moved = moved.scaled(100)
    if moved.all_zero:
        assert "the prediction did not move (0.0 points" in line
    else:
        assert f"moved by {moved.estimate:+.1f} points [{moved.low:+.1f}, {moved.high:+.1f}]" in line


def drift_row(backend: str, date: str, acc: float, *, device: str = "fake_brisbane", scale: str = "1.0") -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update({"run": "runs/a", "backend": backend, "device": device, "calibration_date": date, "scale": scale,
                "mitigation": "none", "shots": "", "opt_level": "1", "repeat": "0", "acc": str(acc),
                "acc_low": str(acc - 0.05), "acc_high": str(acc + 0.05)})
    return row


def test_drift_needs_two_calibration_dates_of_one_device_at_calibrated_noise():
    assert drift_curves([drift_row("b1", JANUARY, 0.8), drift_row("b2", MARCH, 0.7, device="fake_torino")]) == {}
    assert drift_curves([drift_row("b1", JANUARY, 0.8), drift_row("b2", JANUARY, 0.7)]) == {}  # one calibration
    assert drift_curves([drift_row("b1", JANUARY, 0.8), drift_row("b2", "", 0.7)]) == {}  # a row without a date
    assert drift_curves([drift_row("b1", JANUARY, 0.8, scale="2.0"), drift_row("b2", MARCH, 0.7, scale="2.0")]) == {}
    (dated,) = drift_curves([drift_row("b2", MARCH, 0.7), drift_row("b1", JANUARY, 0.8)]).values()
    assert [(date, name) for date, name, _ in dated] == [(JANUARY, "b1"), (MARCH, "b2")]  # oldest first


def _planted(shift: int, seed: int = 3):
    """Per-image arrays of two calibrations on the same 120 images: the newer one turns ``shift`` right decisions of
    the older one wrong (0: a null, where 6 images flip each way)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 120)
    old = np.where(rng.random(120) < 0.8, labels, 1 - labels)
    right, wrong = np.flatnonzero(old == labels), np.flatnonzero(old != labels)
    flips = right[:shift] if shift else np.concatenate([right[:6], wrong[:6]])
    new = old.copy()
    new[flips] = 1 - new[flips]
    return ({"labels": labels, "index": np.arange(120), "decision": d} for d in (old, new))


@pytest.mark.parametrize("shift", [10, 0], ids=["planted-shift", "null"])
def test_the_drift_sentence_claims_a_shift_only_where_the_paired_interval_excludes_zero(shift):
    old, new = _planted(shift)
    rows_ = [drift_row("brisbane_0105", JANUARY, correct(old["labels"], old["decision"]).mean()),
             drift_row("brisbane_0310", MARCH, correct(new["labels"], new["decision"]).mean())]
    text = drift_section(rows_, lambda row: {"brisbane_0105": old, "brisbane_0310": new}[row["backend"]])
    if shift:
        found = re.search(r"moved by (-\d+\.\d) points \[(-\d+\.\d), (-\d+\.\d)\], an interval that excludes zero",
                          text)
        assert found and float(found[1]) == pytest.approx(-100 * shift / 120, abs=0.05), text
    else:
        assert "moved by +0.0 points" in text and "the interval includes zero: no shift is shown" in text
        assert "excludes zero:" not in text
    assert "±" not in text
