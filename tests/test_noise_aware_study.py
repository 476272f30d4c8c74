"""The experiment as one command (issue 21): ``width-study --noise-aware`` trains each head ideally and
under a device's noise, evaluates both, keeps per-image data per point, and compares the strategies with
paired bootstrap intervals. Tiny and offline: synthetic data, 4-qubit heads on FakeManila (real Aer),
one epoch, 16 test images; plus the bootstrap on hand-made scores."""

import csv
import hashlib
import json

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.metrics import compute_metrics, decisions
from qmedimg.report.intervals import correct, paired_difference, seeded_difference
from qmedimg.report.width_study import noise_aware_section, strategy_losses
from qmedimg.workflows.noise_study import RESULTS_SCHEMAS
from qmedimg.workflows.study_points import point_file, read_point

ARGS = ["--dataset", "synthetic", "--limit", "32", "--batch-size", "16", "--epochs", "1", "--test-limit", "16",
        "--qubits", "4", "--layers", "1", "--backend", "fake_manila", "--scales", "0,1", "--quiet"]


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def computed(study_dir):
    return json.loads((study_dir / "noise-study" / "study.json").read_text())["computed"]


def runs(out):
    """{run directory name: its path} of a width study."""
    return {p.name: p for p in sorted((out / "runs").iterdir())}


def argv(out, *extra, mitigation="none"):
    return ["width-study", *ARGS, "--mitigation", mitigation, "--noise-aware", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One noise-aware study with readout+zne, through the command line; read by several tests."""
    out = tmp_path_factory.mktemp("aware") / "study"
    assert main(argv(out, mitigation="none,readout+zne")) == 0
    return out


def test_rows_for_both_trainings_exist_with_the_right_training_column(study):
    table = rows(study / "results.csv")
    aware = [r for r in table if r["training"] == "noise-aware"]
    ideal = [r for r in table if r["training"] == "ideal"]
    assert len(table) == len(ideal) + len(aware) and len(ideal) == 4  # 2 scales × 2 mitigations
    assert [(r["backend"], r["scale"], r["mitigation"], r["trained_on"]) for r in aware] == [
        ("fake_manila", "1.0", "none", "fake_manila")]
    assert {r["trained_on"] for r in ideal} == {"exact"}
    named = runs(study)
    assert sorted(named) == ["q4-l1-s0", next(n for n in named if n.startswith("q4-l1-s0-aware-fake_manila-"))]
    aware_run = named[next(n for n in named if "-aware-" in n)]
    assert aware[0]["run"] == str(aware_run.resolve())
    ideal_config = json.loads((named["q4-l1-s0"] / "config.json").read_text())["config"]
    aware_config = json.loads((aware_run / "config.json").read_text())["config"]
    differ = {k for k in ideal_config if ideal_config[k] != aware_config[k]}
    assert differ == {"backend", "noise_scale", "out"}  # same seed, recipe and data
    assert (aware_config["backend"], aware_config["noise_scale"]) == ("fake_manila", 1.0)
    assert rows(aware_run / "noise-study" / "results.csv")[0]["training"] == "noise-aware"
    record = json.loads((study / "study.json").read_text())
    assert record["noise_aware"] and record["intervals"] == {"resamples": 2000, "level": 0.95, "seed": 0}
    assert (study / "accuracy_lost_by_strategy.png").stat().st_size > 0


def test_every_point_has_an_npz_that_recomputes_its_row_acc_exactly(study):
    for run in runs(study).values():
        folder = run / "noise-study"
        for row in rows(folder / "results.csv"):
            assert point_file(folder, row).is_file()
            data = read_point(folder, row)
            threshold = None if np.isnan(data["threshold"]) else float(data["threshold"])
            assert list(data["index"]) == list(range(16)) and len(data["labels"]) == 16
            for probs, prefix in ((data["probs"], ""), (data["ideal_probs"], "ideal_")):
                metrics = compute_metrics(data["labels"], probs, str(data["task"]), threshold)
                assert metrics["acc"] == float(row[prefix + "acc"]), (row["scale"], prefix)
                assert metrics["auc"] == pytest.approx(float(row[prefix + "auc"]), rel=1e-12, nan_ok=True)
            at = () if threshold is None else (threshold,)
            assert (data["decision"] == decisions(data["probs"], str(data["task"]), *at)).all()
            assert correct(data["labels"], data["decision"]).mean() == pytest.approx(float(row["acc"]), abs=1e-12)


def test_summary_says_per_device_what_each_strategy_loses_with_intervals(study):
    summary = (study / "summary.md").read_text()
    assert "## Noise-aware training (paired 95 % intervals)" in summary
    assert "B = 2000 resamples, seed 0" in summary
    lines = summary.splitlines()
    line = lines[lines.index("- **fake_manila**:") + 1]  # one sentence per head under its device
    assert line.startswith("  - A 4×1 head trained ideally") and "at calibrated noise" in line
    assert "; trained under noise" in line and line.endswith(", at 3× the shots.")
    # the figures are the paired bootstrap of the rows' own per-image files
    table = {}
    for run in runs(study).values():
        for row in rows(run / "noise-study" / "results.csv"):
            table[run.name, row["scale"], row["mitigation"]] = read_point(run / "noise-study", row)
    aware = next(name for name, _, _ in table if "-aware-" in name)
    ideal = table["q4-l1-s0", "1.0", "none"]
    base = correct(ideal["labels"], ideal["ideal_decision"])
    for key, subject in ((("q4-l1-s0", "1.0", "none"), "trained ideally"), ((aware, "1.0", "none"), "trained under noise")):
        lost = paired_difference(base, correct(table[key]["labels"], table[key]["decision"])).scaled(100)
        clause = next(part for part in line.split("; ") if subject in part)
        if lost.all_zero:
            assert "shows no difference" in clause, clause
        elif lost.excludes_zero:
            assert f"{abs(lost.estimate):.1f} points" in clause and f"{min(abs(lost.low), abs(lost.high)):.1f}" in clause
        else:
            assert f"{lost.estimate:+.1f} points [{lost.low:+.1f}, {lost.high:+.1f}], the interval includes zero" in clause


def test_a_rerun_computes_nothing(study, monkeypatch):
    from qmedimg.workflows import train as training

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train", refuse)
    monkeypatch.setattr(training, "resume", refuse)
    before = rows(study / "results.csv")
    checkpoints = {name: digest(run / "checkpoint.pt") for name, run in runs(study).items()}
    assert main(argv(study, mitigation="none,readout+zne")) == 0
    assert rows(study / "results.csv") == before  # wall_s included: a recomputed row would differ
    assert {name: digest(run / "checkpoint.pt") for name, run in runs(study).items()} == checkpoints
    assert all(computed(run) == 0 for run in runs(study).values())


def test_a_killed_study_resumes_without_redoing_finished_work(tmp_path, monkeypatch):
    from qmedimg.workflows import train as training
    from qmedimg.workflows import width_study as module

    out = tmp_path / "study"
    real_study, killed = module.noise_study, []

    def killed_once(run_dirs, **options):  # killed after the noise-aware run trained, before it was evaluated
        if "-aware-" in str(run_dirs[0]) and not killed:
            killed.append(run_dirs[0])
            raise RuntimeError("killed")
        return real_study(run_dirs, **options)

    monkeypatch.setattr(module, "noise_study", killed_once)
    assert main(argv(out)) != 0 and killed
    named = runs(out)
    assert all((run / "metrics.json").is_file() for run in named.values())  # both trained
    assert {r["training"] for r in rows(out / "results.csv")} == {"ideal"}
    checkpoints = {name: digest(run / "checkpoint.pt") for name, run in named.items()}

    trained = []
    monkeypatch.setattr(training, "train", lambda *a, **k: trained.append(a) or pytest.fail("trained twice"))
    monkeypatch.setattr(training, "resume", lambda *a, **k: trained.append(a) or pytest.fail("resumed"))
    assert main(argv(out)) == 0
    assert not trained and {name: digest(run / "checkpoint.pt") for name, run in runs(out).items()} == checkpoints
    assert {name: computed(run) for name, run in named.items()} == {
        name: 0 if name == "q4-l1-s0" else 1 for name in named}  # only the noise-aware point was left
    table = rows(out / "results.csv")
    assert sorted(r["training"] for r in table) == ["ideal", "ideal", "noise-aware"]

    # a row whose per-image file is gone is computed again, and only that one
    ideal = named["q4-l1-s0"] / "noise-study"
    lost = next(r for r in rows(ideal / "results.csv") if r["scale"] == "1.0")
    point_file(ideal, lost).unlink()
    assert main(argv(out)) == 0
    assert computed(named["q4-l1-s0"]) == 1 and point_file(ideal, lost).is_file()
    assert "1 recomputed because their per-image file" in (ideal / "summary.md").read_text()


def test_an_older_results_csv_without_the_training_column_reads_ideal(tmp_path):
    out = tmp_path / "study"
    assert main(argv(out)) == 0
    for run in runs(out).values():  # what qmedimg wrote before the column existed
        path = run / "noise-study" / "results.csv"
        current = rows(path)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RESULTS_SCHEMAS[3], extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(current)
    assert main(argv(out)) == 0
    for name, run in runs(out).items():
        table = rows(run / "noise-study" / "results.csv")
        assert "training" in table[0]
        if "-aware-" in name:  # its old row reads ideal: not this point, which is computed (and appended)
            assert computed(run) == 1 and [r["training"] for r in table] == ["ideal", "noise-aware"]
        else:  # upgraded in place and reused
            assert computed(run) == 0 and {r["training"] for r in table} == {"ideal"}


def test_noise_aware_without_a_noisy_device_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    args = [a if a != "fake_manila" else "aer" for a in argv(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--noise-aware trains under a device's noise" in err and err.count("\n") == 1, err
    assert not out.exists()


# ---- the summary's sentence, on hand-made per-image data -------------------------------------------


def _row(seed, training, mitigation, decision, ideal_decision, labels, error=""):
    return {"backend": "fake_x", "qubits": "8", "layers": "2", "seed": str(seed), "scale": "1.0", "shots": "",
            "repeat": "0", "cross_check": "", "training": training, "mitigation": mitigation,
            "zne_factors": "1;3;5" if "zne" in mitigation else "", "acc_statistical_error": error,
            "per_image": {"labels": labels, "decision": decision, "ideal_decision": ideal_decision}}


def test_the_sentence_concludes_only_where_the_interval_excludes_zero():
    labels = np.array([0, 1] * 100)
    wrong = np.where(np.arange(200) < 60, 1 - labels, labels)  # 30 % of the images flipped by noise: a clear loss
    mitigated = np.where(np.arange(200) < 20, 1 - labels, labels)  # 10 % still flipped: 20 points recovered
    rows_ = [_row(0, "ideal", "none", wrong, labels, labels, error="0.0042"),
             _row(0, "noise-aware", "none", labels.copy(), wrong, labels),  # measured against the ideal run's exact ACC
             _row(0, "ideal", "readout+zne", mitigated, labels, labels)]
    lines = noise_aware_section(rows_, {"fake_x": "FakeX"}).splitlines()
    line = lines[lines.index("- **fake_x (FakeX)**:") + 1]
    table = strategy_losses(rows_, "fake_x")[(8, 2)]
    lost, recovered = table["ideal"], table["recovered"]
    assert lost.estimate == pytest.approx(30.0) and lost.low > 0
    assert (f"An 8×2 head trained ideally loses 30.0 points at calibrated noise [{lost.low:.1f}, {lost.high:.1f}] "
            "(statistical error of ACC ≤ 0.42 points)") in line
    assert "trained under noise it shows no difference (0.0 points: every image decided the same)" in line
    assert recovered.estimate == pytest.approx(20.0) and recovered.low > 0
    assert line.endswith(f"readout+zne recovers 20.0 points [{recovered.low:.1f}, {recovered.high:.1f}], at 3× the "
                         "shots.")
    # an interval that includes zero: no conclusion word
    even = np.where(np.arange(200) % 10 == 0, 1 - labels, labels)
    back = np.where(np.arange(200) % 10 == 5, 1 - labels, labels)  # as many images lost as gained
    rows_ = [_row(0, "ideal", "none", even, back, labels)]
    lines = noise_aware_section(rows_, {"fake_x": "fake_x"}).splitlines()
    line = lines[lines.index("- **fake_x**:") + 1]
    assert "An 8×2 head trained ideally: ACC lost at calibrated noise +0.0 points [" in line
    assert "the interval includes zero" in line and "loses" not in line and "gains" not in line
    assert "no noise-aware run of it was evaluated" in line and "readout+zne" not in line


# ---- the bootstrap ---------------------------------------------------------------------------------


def test_a_clear_paired_difference_has_an_interval_that_excludes_zero():
    a, b = np.ones(100), np.r_[np.ones(60), np.zeros(40)]  # b wrong on 40 of 100 images a gets right
    interval = paired_difference(a, b)
    assert interval.estimate == pytest.approx(0.4) and interval.excludes_zero and interval.low > 0.25
    half = 1.96 * np.std(a - b) / np.sqrt(100)  # the normal approximation, for a sanity check of the width
    assert interval.low == pytest.approx(0.4 - half, abs=0.03) and interval.high == pytest.approx(0.4 + half, abs=0.03)
    assert (interval.resamples, interval.level, interval.seed, interval.seeds, interval.images) == (2000, 0.95, 0, 1, 100)


def test_a_balanced_paired_difference_has_an_interval_that_includes_zero():
    a = np.r_[np.ones(10), np.zeros(10), np.ones(80)]
    b = np.r_[np.zeros(10), np.ones(10), np.ones(80)]  # 10 images each way: no difference on average
    interval = paired_difference(a, b)
    assert interval.estimate == 0 and interval.low < 0 < interval.high and not interval.excludes_zero


def test_seeds_that_disagree_widen_the_interval_of_their_mean_to_include_zero():
    n = 200
    up, down = np.r_[np.ones(40), np.zeros(n - 40)], np.zeros(n)
    seeds = [(up, down), (down, up), (up, down)]  # +20, −20, +20 points: each seed alone excludes zero
    assert all(paired_difference(a, b).excludes_zero for a, b in seeds)
    pooled = paired_difference(np.concatenate([a for a, _ in seeds]), np.concatenate([b for _, b in seeds]))
    mean = seeded_difference(seeds)
    assert mean.estimate == pytest.approx(pooled.estimate) and mean.seeds == 3
    assert pooled.excludes_zero and not mean.excludes_zero  # resampling the seeds shows their spread
    agree = seeded_difference([(up, down)] * 3)
    assert agree.excludes_zero and agree.estimate == pytest.approx(0.2)
    # seeds drawn twice in one replicate count twice: constant per-seed differences give exactly their range
    constant = seeded_difference([(np.full(50, c), np.zeros(50)) for c in (0.1, 0.2, 0.6)])
    assert constant.estimate == pytest.approx(0.3)
    assert 0.1 - 1e-12 <= constant.low < 0.3 < constant.high <= 0.6 + 1e-12, constant


def test_the_bootstrap_is_deterministic_given_its_seed():
    rng = np.random.default_rng(7)
    a, b = (rng.random(150) < 0.8).astype(float), (rng.random(150) < 0.7).astype(float)
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)
    assert paired_difference(a, b, seed=3) != paired_difference(a, b, seed=4)
    assert paired_difference(a, b, seed=3).seed == 3
    pairs = [(a, b), (b, a), (a, a)]
    assert seeded_difference(pairs, seed=1) == seeded_difference(pairs, seed=1)
    assert seeded_difference(pairs, seed=1) != seeded_difference(pairs, seed=2)
