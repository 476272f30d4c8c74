"""The head's recipe options: the angle map (π·tanh or batch-normalised), the data re-uploading
circuit, richer read-outs (Z plus ZZ), and old runs that predate them loading as they were trained."""

import json
import math

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from qmedimg.cli import main
from qmedimg.model import HybridNet, head_usage, predict_probs, with_readout
from qmedimg.quantum.circuits import load_circuit
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.quantum.qnn import QuantumHead
from qmedimg.rundir import load_run, read_record


def _net(angle_map: str, scale: float, offset: float = 0.0, head: str = "classical") -> HybridNet:
    torch.manual_seed(0)
    net = HybridNet(channels=1, num_classes=2, spec=load_circuit("sel"), head=head, angle_map=angle_map)
    with torch.no_grad():
        net.to_angles.weight.mul_(scale)  # features shrunk towards a constant, or blown up
        net.to_angles.bias.fill_(offset)
    return net


def _images(n: int) -> torch.Tensor:
    """Random images of random brightness (the backbone's features vary between them)."""
    return torch.rand(n, 1, 1, 1) * torch.rand(n, 1, 28, 28)


@pytest.mark.parametrize("angle_map, bound", [("batchnorm", math.pi), ("batchnorm-half", math.pi / 2)])
@pytest.mark.parametrize("scale, offset", [(0.1, 1.0), (100.0, 0.0)])
def test_batchnorm_angle_maps_keep_every_angle_spread_and_unsaturated(angle_map, bound, scale, offset):
    images = _images(64)
    tanh, normed = _net("tanh", scale, offset), _net(angle_map, scale, offset)
    a_tanh, a_norm = tanh.angles(images).detach(), normed.angles(images).detach()  # training mode
    assert a_norm.abs().max() < bound and a_tanh.abs().max() <= math.pi
    # normalised over the batch: each angle's pre-tanh value has mean 0 and variance 1
    pre = torch.atanh(a_norm / bound)
    assert torch.allclose(pre.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(pre.var(0, unbiased=False), torch.ones(4), atol=0.05)
    assert (a_norm.abs() > 0.95 * bound).float().mean() < 0.1
    if scale < 1:  # π·tanh passes a near-constant feature on as a near-constant angle (issue 14: std 0.05)
        assert a_tanh.std(0).max() < 0.1 < 0.5 * bound / math.pi < a_norm.std(0).min()
    else:  # ... and a large one saturates
        assert (a_tanh.abs() > 0.95 * math.pi).float().mean() > 0.5


def test_batchnorm_angle_map_uses_running_statistics_in_evaluation():
    net = _net("batchnorm", 1.0)
    for module in net.modules():  # plain averages of the batches' statistics: a few batches suffice
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.momentum = None
    for _ in range(4):
        net.angles(_images(32))  # training mode
    net.eval()
    one = net.angles(_images(1))  # one image: only running statistics make this defined
    many = net.angles(_images(256))
    assert one.shape == (1, 4) and torch.atanh(many / math.pi).std(0).min() > 0.5


def test_reup_uploads_the_data_in_every_layer_and_its_gradient_matches_finite_differences():
    spec = load_circuit("reup", layers=2)
    uses = [sum(1 for i in spec.circuit.data for p in i.operation.params
                if getattr(p, "parameters", None) and x in p.parameters) for x in spec.inputs]
    assert uses == [2, 2, 2, 2] and len(spec.weights) == 16
    head = QuantumHead(spec, ExactEstimator())
    rng = np.random.default_rng(1)
    x, w = rng.uniform(-3, 3, (3, 4)), rng.uniform(-3, 3, 16)
    grad_x, grad_w = head.qnn.backward(x, w)
    eps = 1e-6

    def central(shift_x, shift_w):
        return (head.qnn.forward(x + shift_x, w + shift_w) - head.qnn.forward(x - shift_x, w - shift_w)) / (2 * eps)

    fd_w = np.stack([central(0, eps * np.eye(16)[k]) for k in range(16)], -1)
    fd_x = np.stack([central(eps * np.eye(4)[k][None], 0) for k in range(4)], -1)
    np.testing.assert_allclose(grad_w, fd_w, atol=1e-7)
    np.testing.assert_allclose(grad_x, fd_x, atol=1e-7)
    assert np.abs(grad_w).max(axis=(0, 1)).min() > 1e-3  # no dead weights (sel has n of them)


@pytest.mark.parametrize("readout, outputs", [("circuit", 4), ("z+zz", 8), ("z+zz-all", 10)])
def test_readout_sets_the_heads_outputs_and_they_are_the_zz_expectations(readout, outputs):
    spec = with_readout(load_circuit("sel"), readout)
    assert len(spec.observables) == outputs
    torch.manual_seed(0)
    net = HybridNet(channels=1, num_classes=3, spec=spec, head_on={"estimator": ExactEstimator()})
    twin = HybridNet(channels=1, num_classes=3, spec=spec, head="classical")
    assert net.classifier.in_features == twin.classifier.in_features == outputs
    # the ablation's (n + O)·h weights nearest the circuit's 24: equal up to 8 outputs, 28 at 10
    assert twin.parameter_counts()["head"] == {"circuit": 24, "z+zz": 24, "z+zz-all": 28}[readout]
    angles = torch.rand(8, 4) * 3
    values = net.head(angles).detach().double().numpy()
    weights = net.head.connector.weight.detach().double().numpy()
    for row, a in zip(values, angles.double().numpy()):
        state = Statevector(spec.circuit.assign_parameters(dict(zip([*spec.inputs, *spec.weights], [*a, *weights]))))
        np.testing.assert_allclose(row, [state.expectation_value(o).real for o in spec.observables], atol=1e-5)
    if readout != "circuit":  # ⟨Z0Z1⟩ is not ⟨Z0⟩⟨Z1⟩ on an entangled state: each is a number of its own
        second = "IZZI" if readout == "z+zz" else "IZIZ"  # ring neighbours 1-2, or the next pair 0-2
        assert [o.paulis[0].to_label() for o in spec.observables[4:6]] == ["IIZZ", second]
        assert np.abs(values[:, 4] - values[:, 0] * values[:, 1]).max() > 0.05


def test_new_options_train_evaluate_on_a_fake_device_and_are_recorded(trainer, tmp_path):
    metrics, out = trainer(tmp_path / "reup", circuit="reup", layers=2, angle_map="batchnorm", readout="z+zz",
                           epochs=1, limit=24, batch_size=12, backbone="compact")
    record = json.loads((out / "config.json").read_text())
    assert (record["config"]["angle_map"], record["config"]["readout"]) == ("batchnorm", "z+zz")
    assert record["circuit"]["outputs"] == 8 and (metrics["angle_map"], metrics["readout"]) == ("batchnorm", "z+zz")
    usage = metrics["head_usage"]["test"]
    assert usage["outputs"] == 8 and usage["zero_gradient_weights"] == []
    run = load_run(out)
    assert run.model.normalise is not None and len(run.model.spec.observables) == 8
    # the noisy device gets the 8 observables mapped to its layout; at noise scale 0 it is exact
    assert main(["evaluate", str(out), "--backend", "fake_manila", "--noise-scale", "0", "--test-limit", "6",
                 "--quiet"]) == 0
    result = json.loads(next(out.glob("eval-fake_manila*.json")).read_text())
    assert result["mean_abs_expectation_error"] < 1e-6 and result["test"] == result["ideal_test"]


def test_cli_train_takes_the_options_and_rejects_a_bad_one_in_one_line(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--angle-map", "batchnorm", "--readout", "z+zz-all", "--out", str(out), "--quiet"]) == 0
    assert "effective dimension" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["config"]["readout"] == "z+zz-all"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "synthetic", "--readout", "zz", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "--readout" in err and "'zz'" in err
    assert not (tmp_path / "bad").exists()


def test_a_run_made_before_the_options_existed_loads_as_it_was_trained(trainer, tmp_path):
    _, old = trainer(tmp_path / "old", angle_map="tanh", readout="circuit", epochs=1)  # the recipe they had
    config_file = old / "config.json"
    record = json.loads(config_file.read_text())
    del record["schema"]  # written before config.json recorded its format version (version 1)
    for key in ("angle_map", "readout"):  # what config.json held before these options existed
        record["config"].pop(key)
    config_file.write_text(json.dumps(record))
    assert {k: read_record(old)["config"][k] for k in ("angle_map", "readout")} == {
        "angle_map": "tanh", "readout": "circuit"}
    run = load_run(old)  # strict state-dict load: no normalisation layer, 4 outputs
    assert run.model.normalise is None and run.model.classifier.in_features == 4
    probs = predict_probs(run.model, run.dataset.test.images)
    recorded = json.loads((old / "metrics.json").read_text())
    assert head_usage(run.model, run.dataset.test.images)["effective_dimension"] == pytest.approx(
        recorded["head_usage"]["test"]["effective_dimension"])
    assert (probs.argmax(1) == run.dataset.test.labels).mean() == pytest.approx(recorded["test"]["acc"])
