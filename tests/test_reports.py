"""What the written reports claim is true of the runs behind them: comparison.md quotes a published
anchor only on that anchor's data and says whether the ablation's heads are the same size, summary.md
names the ZNE that ran, and metrics.json gives each head's real parameter count."""

import csv
import json
from pathlib import Path

import pytest

from qmedimg.quantum.circuits import load_circuit
from qmedimg.report.comparison import ANCHORS, write_comparison
from qmedimg.report.noise_study import summary
from qmedimg.rundir import build_model, load_data, load_run, make_config
from qmedimg.workflows.noise_study import COLUMNS
from qmedimg.workflows.train import train

# ------------------------------------------------------------------------------- comparison.md


def record(model: str, seed: int, *, head: int = 24, quantum: int = 0, total: int = 35318,
           dataset: str = "pathmnist", acc: float = 0.8) -> dict:
    """One trained run as ``write_comparison`` reads it, without training anything."""
    test = {"acc": acc + seed / 100, "auc": 0.9, "precision": 0.8, "recall": 0.75, "f1": 0.77,
            "confusion": [[5, 1], [2, 4]]}
    metrics = {"test": test, "dataset": dataset, "train_seconds": 3.0 + seed, "train_samples_per_s": 100.0,
               "parameters": {"head": head, "rest": total - head, "total": total, "quantum": quantum,
                              "classical": total - quantum}}
    history = [{"epoch": str(e), "val_acc": str(0.5 + e / 10), "train_loss": str(1 / e)} for e in (1, 2)]
    return {"model": model, "seed": seed, "run": f"runs/{model}-seed{seed}", "metrics": metrics, "history": history}


def comparison(tmp_path: Path, data: dict, records: list[dict] | None = None) -> str:
    if records is None:
        records = [record("hybrid", s, quantum=24, dataset=data.get("dataset", "custom")) for s in (0, 1)]
    write_comparison(tmp_path, records, [0, 1], data)
    return (tmp_path / "comparison.md").read_text()


def quotes_anchor(text: str) -> bool:
    return "BreastMNIST" in text or "Yang et al." in text or "0.863" in text


@pytest.mark.parametrize("data", [
    {"dataset": "pathmnist", "size": 28},
    {"dataset": "synthetic"},
    {"data_file": "hospital.npz", "size": 28},
    {"dataset": "breastmnist", "size": 28, "classes": [1, 0]},
    {"dataset": "breastmnist", "size": 28, "limit": 200},
    {"dataset": "breastmnist", "size": 64},
], ids=["pathmnist", "synthetic", "own-file", "breast-classes", "breast-limit", "breast-64"])
def test_comparison_quotes_no_breastmnist_anchor_on_other_data(tmp_path, data):
    text = comparison(tmp_path, data)
    assert not quotes_anchor(text), text


@pytest.mark.parametrize("data", [{"dataset": "breastmnist", "size": 28}, {"dataset": "breastmnist"},
                                  {"dataset": "BreastMNIST", "size": 28, "data_root": "../shared/data"}])
def test_comparison_quotes_the_anchor_on_the_full_28px_breastmnist(tmp_path, data):
    text = comparison(tmp_path, data)
    assert ANCHORS["breastmnist"] in text


def test_ablation_says_same_head_size_only_when_it_is(tmp_path):
    same = comparison(tmp_path / "sel", {"dataset": "pathmnist"},
                      [record("hybrid", 0, head=24, quantum=24), record("classical", 0, head=24)])
    assert "same number of head parameters" in same
    differ = comparison(tmp_path / "fqa", {"dataset": "pathmnist"},
                        [record("hybrid", 0, head=22, quantum=22, total=35316), record("classical", 0, head=24)])
    assert "Ablation: hybrid − classical" in differ and "same number of head parameters" not in differ
    ablation = next(line for line in differ.splitlines() if line.startswith("Ablation"))
    assert "22" in ablation and "24" in ablation


# --------------------------------------------------------------------------------- summary.md


def study_row(mitigation: str, *, scale: str = "1.0", zne: str = "", backend: str = "fake_manila",
              err: float = 0.1) -> dict:
    row = {column: "" for column in COLUMNS}
    row.update({"run": "runs/a", "circuit": "sel", "trained_on": "exact", "backend": backend, "device": backend,
                "scale": scale, "mitigation": mitigation, "shots": "", "opt_level": "1", "repeat": "0",
                "acc": "0.80", "auc": "0.85", "f1": "0.8", "ideal_acc": "0.90", "ideal_auc": "0.95",
                "mean_abs_expectation_error": str(err), "zne_factors": zne, "shot_cost": "exact", "wall_s": "0.1"})
    return row


def test_summary_without_zne_rows_claims_no_zne_cost():
    rows = [study_row(m, scale=s, err=e) for m, e in (("none", 0.2), ("readout", 0.1)) for s in ("0.0", "1.0")]
    text = summary(rows)
    assert "ZNE" not in text and "noise factors" not in text
    assert "Readout mitigation uses the device's calibration" in text


def test_summary_names_each_zne_that_ran():
    rows = [study_row("none", err=0.2), study_row("zne", zne="1;2", err=0.1),
            study_row("none", backend="fake_brisbane", err=0.3),
            study_row("readout+zne", backend="fake_brisbane", zne="1;3;5", err=0.05)]
    text = summary(rows)
    assert "ZNE costs 2 circuit executions per value (noise factors 1, 2)" in text
    assert "ZNE costs 3 circuit executions per value (noise factors 1, 3, 5)" in text


ONE_NUMBER = "carries about one number"
NO_SHOTS = "exact expectation values: on hardware each value is estimated from N shots"


@pytest.mark.parametrize("dimension, shots, says", [
    ("1.02", "", {ONE_NUMBER, NO_SHOTS}),
    ("1.49", "4096", {ONE_NUMBER}),
    ("1.50", "", {NO_SHOTS}),
    ("2.70", "4096", set()),
    ("", "4096", set()),  # a row from before qmedimg recorded the dimension: nothing claimed
], ids=["one-number-exact", "one-number-shots", "at-threshold-exact", "wide-shots", "unrecorded-shots"])
def test_summary_says_what_a_one_number_head_or_exact_values_mean_only_when_they_apply(dimension, shots, says):
    """The default study (exact values, a head of effective dimension ~1) drew a flat "noise costs nothing"
    curve without a word on either."""
    rows = [study_row("none", scale=s) for s in ("0.0", "1.0")]
    for row in rows:
        row.update(ideal_effective_dimension=dimension, effective_dimension=dimension, head_outputs="4", shots=shots,
                   shot_cost="exact" if not shots else shots)
    text = summary(rows)
    assert {sentence for sentence in (ONE_NUMBER, NO_SHOTS) if sentence in text} == says
    assert ("## Reading these numbers" in text) == bool(says)
    if ONE_NUMBER in says:
        assert f"The head carries about one number (effective dimension {float(dimension):.1f} of 4)" in text
    mixed = summary([*rows[:1], {**rows[1], "shots": "" if shots else "4096"}])  # exact and sampled rows
    assert 'The rows without shots ("no shot noise") are exact expectation values' in mixed
    assert ("Without shots these are exact expectation values" in text) == (NO_SHOTS in says)


# ------------------------------------------------------------------------------ head parameters


def head_size(model) -> int:
    return sum(p.numel() for p in model.head.parameters() if p.requires_grad)


@pytest.mark.parametrize("circuit", ["sel", "ring"])
def test_classical_head_has_exactly_the_circuits_weight_count(circuit, tmp_path):
    config = make_config(dataset="synthetic", limit=8, circuit=circuit, head="classical", out=str(tmp_path / "x"))
    dataset = load_data(config)
    classical = build_model(config, dataset)
    hybrid = build_model(config.model_copy(update={"head": "quantum"}), dataset)
    weights = len(load_circuit(circuit).weights)
    assert head_size(classical) == weights == head_size(hybrid) == hybrid.parameter_counts()["quantum"]
    assert classical.parameter_counts()["total"] == hybrid.parameter_counts()["total"]


@pytest.fixture(scope="module")
def fqa_runs(tmp_path_factory) -> Path:
    """A tiny quantum and classical-head run of fqa (22 circuit weights; the classical head gets 24)."""
    root = tmp_path_factory.mktemp("fqa")
    for head in ("quantum", "classical"):
        train(make_config(dataset="synthetic", limit=24, epochs=1, batch_size=16, circuit="fqa", head=head,
                          out=str(root / head)), progress=False)
    return root


def test_fqa_runs_report_their_true_head_sizes(fqa_runs):
    assert len(load_circuit("fqa").weights) == 22
    reported = {head: json.loads((fqa_runs / head / "metrics.json").read_text())["parameters"]
                for head in ("quantum", "classical")}
    assert (reported["quantum"]["head"], reported["quantum"]["quantum"]) == (22, 22)
    assert (reported["classical"]["head"], reported["classical"]["quantum"]) == (24, 0)
    assert reported["classical"]["total"] - reported["quantum"]["total"] == 2
    for head, counts in reported.items():
        model = load_run(fqa_runs / head).model
        assert counts == model.parameter_counts() and counts["head"] == head_size(model), head


def test_fqa_comparison_reports_both_head_sizes_instead_of_claiming_equality(fqa_runs, tmp_path):
    records = []
    for model, head in (("hybrid", "quantum"), ("classical", "classical")):
        run = fqa_runs / head
        with open(run / "history.csv", newline="") as handle:
            history = list(csv.DictReader(handle))
        records.append({"model": model, "seed": 0, "run": str(run), "history": history,
                        "metrics": json.loads((run / "metrics.json").read_text())})
    text = comparison(tmp_path, {"dataset": "synthetic", "limit": 24}, records)
    rows = {r["model"]: r for r in csv.DictReader(open(tmp_path / "comparison.csv"))}
    assert (rows["hybrid"]["quantum_parameters"], rows["classical"]["quantum_parameters"]) == ("22", "0")
    assert int(rows["classical"]["parameters"]) - int(rows["hybrid"]["parameters"]) == 2
    assert "same number of head parameters" not in text
