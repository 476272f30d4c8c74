"""Is the quantum head used? Every run reports its head's effective dimension, input-angle spread and
saturation, and the circuit weights that get no gradient."""

import json

import numpy as np
import pytest

from qmedimg.cli import main
from qmedimg.model import participation_ratio


def test_every_run_reports_how_much_its_head_carries(tiny_run):
    usage = json.loads((tiny_run / "metrics.json").read_text())["head_usage"]
    for split in ("val", "test"):
        u = usage[split]
        assert u["outputs"] == 4 and 0 <= u["effective_dimension"] <= 4
        assert len(u["angle_std"]) == len(u["angle_saturated"]) == len(u["output_std"]) == 4
        # sel: the last layer's final Rz angles cannot change a Z readout (README, Known issues)
        assert u["weights"] == 24 and u["zero_gradient_weights"] == ["w14", "w17", "w20", "w23"]


def test_effective_dimension_counts_the_directions_the_outputs_vary_in():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(500, 1))
    assert participation_ratio(one @ np.array([[1.0, -0.5, 2.0, 0.3]])) == pytest.approx(1.0)
    assert participation_ratio(rng.normal(size=(5000, 4))) == pytest.approx(4.0, abs=0.1)
    assert participation_ratio(np.ones((10, 4))) == 0.0


def test_ring_has_no_dead_weights_and_the_console_says_so(trainer, tmp_path, capsys):
    out = tmp_path / "ring"
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--circuit", "ring", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "effective dimension" in printed and "zero-gradient weights 0 of 24" in printed
    assert json.loads((out / "metrics.json").read_text())["head_usage"]["test"]["zero_gradient_weights"] == []


def test_plain_linear_heads_report_no_head_usage(trainer, tmp_path):
    metrics, _ = trainer(tmp_path / "linear", head="linear", epochs=1)
    assert "head_usage" not in metrics
