"""The noise study as a user runs it: a tiny trained run, a small grid on fake devices."""

import csv

import numpy as np
import pytest

from qmedimg.cli import main


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory, trainer):
    """The shared tiny run's settings with the ``ring`` circuit (the shared ``tiny_run`` is ``sel``);
    read-only, studies of it write elsewhere (--out)."""
    return trainer(tmp_path_factory.mktemp("runs") / "ring", circuit="ring")[1]


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def study(run, *extra):
    return main(["noise-study", str(run), "--backend", "fake_manila", "--scales", "0,1,3",
                 "--mitigation", "none,zne", "--test-limit", "16", "--quiet", *extra])


def test_noise_study_writes_its_files_and_the_physics_holds(tiny_run_copy, capsys):
    assert study(tiny_run_copy) == 0
    out = tiny_run_copy / "noise-study"
    for name in ("results.csv", "accuracy_vs_noise.png", "expectation_error.png", "summary.md", "study.json"):
        assert (out / name).is_file(), name
    table = rows(out / "results.csv")
    assert len(table) == 3 * 2
    by = {(r["scale"], r["mitigation"]): r for r in table}
    for mitigation in ("none", "zne"):
        ideal = by[("0.0", mitigation)]
        assert float(ideal["acc"]) == float(ideal["ideal_acc"]) and float(ideal["auc"]) == float(ideal["ideal_auc"])
        errors = [float(by[(s, mitigation)]["mean_abs_expectation_error"]) for s in ("0.0", "1.0", "3.0")]
        assert errors[0] < 1e-9 < errors[1] < errors[2]
    assert float(by[("1.0", "zne")]["mean_abs_expectation_error"]) < float(by[("1.0", "none")]["mean_abs_expectation_error"])
    assert int(by[("1.0", "none")]["two_qubit_gates"]) > 0
    summary = (out / "summary.md").read_text()
    assert "ideal test ACC" in summary and "−5 points" in summary and "mean abs Δ ×" in summary
    assert "written to" in capsys.readouterr().out


def test_rerunning_continues_instead_of_starting_over(tiny_run_copy):
    out = tiny_run_copy / "noise-study"
    assert study(tiny_run_copy) == 0
    before = rows(out / "results.csv")
    assert study(tiny_run_copy) == 0  # same grid: nothing recomputed
    assert rows(out / "results.csv") == before
    assert study(tiny_run_copy, "--shots", "none,500", "--repeats", "2") == 0  # larger grid: only new points added
    after = rows(out / "results.csv")
    assert after[: len(before)] == before
    sampled = [r for r in after if r["shots"] == "500"]
    assert len(sampled) == 3 * 2 * 2 and {r["repeat"] for r in sampled} == {"0", "1"}
    first, second = (np.array([float(r["mean_abs_expectation_error"]) for r in sampled if r["repeat"] == k])
                     for k in "01")
    assert not np.array_equal(first, second)  # repeats draw new shots


def test_several_runs_compare_circuits_on_one_plot(tiny_run, ring_run, tmp_path):
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run), "--compare-run", str(ring_run), "--backend", "fake_manila",
                 "--scales", "0,2", "--mitigation", "none", "--test-limit", "8", "--out", str(out), "--quiet"]) == 0
    table = rows(out / "results.csv")
    assert {r["circuit"] for r in table} == {"sel", "ring"}
    assert (out / "circuits.png").is_file()


def test_bad_input_is_one_line_and_overwrites_nothing(tiny_run, tmp_path, capsys):
    out = tmp_path / "keep"
    assert main(["noise-study", str(tiny_run), "--backend", "fake_manila", "--scales", "0",
                 "--mitigation", "none", "--test-limit", "4", "--out", str(out), "--quiet"]) == 0
    kept = (out / "results.csv").read_bytes()
    capsys.readouterr()
    cases = [
        (["--backend", "fake_manila,nope"], "unknown backend 'nope'"),
        (["--scales", "0,-1"], "noise scales must be finite numbers >= 0"),
        (["--backend", "aer", "--mitigation", "zne"], "needs a fake or ibm backend"),
        (["--mitigation", "magic"], "unknown 'magic'; valid: none, readout, zne, readout+zne"),
        (["--backend", "ibm_brisbane"], "--allow-qpu"),
        (["--optimization-levels", "5"], "unknown value '5'"),
    ]
    for extra, expected in cases:
        argv = ["noise-study", str(tiny_run), "--scales", "0", "--test-limit", "4", "--out", str(out), "--quiet"]
        assert main(argv + extra) == 2, extra
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, (extra, err)
    assert main(["noise-study", str(tmp_path), "--out", str(out)]) == 2
    assert "not a qmedimg run directory" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == kept


def spy_on_aer(monkeypatch) -> dict:
    """Count what Aer simulates: every call of ``aer_rows`` (the one place Aer runs circuits) with its
    number of parameter rows, and every ``DeviceEstimator.gradient_rows`` call (the batch-summed
    loss-gradient path) with its batch size and whether it applied."""
    from qmedimg.backends import device_estimator

    seen = {"aer_rows": [], "gradient_rows": [], "rows_in_gradient": 0}
    real_rows, real_gradient = device_estimator.aer_rows, device_estimator.DeviceEstimator.gradient_rows

    def aer_rows(simulator, circuit, values):
        seen["aer_rows"].append(len(values))
        return real_rows(simulator, circuit, values)

    def gradient_rows(self, circuit, values, *args, **kwargs):
        before = sum(seen["aer_rows"])
        rows = real_gradient(self, circuit, values, *args, **kwargs)
        seen["gradient_rows"].append((len(values), rows is not None))
        seen["rows_in_gradient"] += sum(seen["aer_rows"]) - before
        return rows

    monkeypatch.setattr(device_estimator, "aer_rows", aer_rows)
    monkeypatch.setattr(device_estimator.DeviceEstimator, "gradient_rows", gradient_rows)
    return seen


def test_noise_aware_training_runs_the_head_on_the_device_and_compares_in_the_study(
        tiny_run, tmp_path, monkeypatch):
    import json

    from qmedimg.rundir import load_run

    aer = spy_on_aer(monkeypatch)
    out = tmp_path / "noisy"
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--backend", "fake_manila", "--noise-scale", "2", "--out", str(out), "--quiet"]) == 0
    # every training step (24 images, batches of 12) ran its head forward and loss gradient on Aer,
    # through the batch-summed path: 12 rows and each row's shifted inputs at least, per step
    assert aer["aer_rows"], "training on fake_manila never ran Aer"
    assert aer["gradient_rows"] == [(12, True), (12, True)]
    assert aer["rows_in_gradient"] >= 2 * 12 * (1 + 2 * 4)
    assert sum(aer["aer_rows"]) > aer["rows_in_gradient"]  # and evaluation (val, test) too
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["backend"], config["noise_scale"]) == ("fake_manila", 2.0)
    assert json.loads((out / "metrics.json").read_text())["backend"] == "fake_manila"
    from qmedimg.quantum.exact import ExactEstimator

    assert isinstance(load_run(out).model.head.qnn.estimator, ExactEstimator)  # evaluation picks its own backend
    study_out = tmp_path / "compare"
    assert main(["noise-study", str(tiny_run), "--compare-run", str(out), "--backend", "fake_manila",
                 "--scales", "0,2", "--mitigation", "none", "--test-limit", "8", "--out", str(study_out), "--quiet"]) == 0
    assert {r["trained_on"] for r in rows(study_out / "results.csv")} == {"exact", "fake_manila"}


def test_training_on_the_exact_backend_never_runs_aer(tmp_path, monkeypatch):
    aer = spy_on_aer(monkeypatch)
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--out", str(tmp_path / "exact"), "--quiet"]) == 0
    assert aer == {"aer_rows": [], "gradient_rows": [], "rows_in_gradient": 0}


def test_parameter_shift_through_noisy_aer_is_the_exact_gradient_of_the_noisy_values():
    import torch

    from qmedimg.backends import get_backend
    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.qnn import QuantumHead

    spec = load_circuit("sel")
    backend = get_backend("fake_manila")
    head = QuantumHead(spec, **backend.training_head(spec))  # its estimator, ISA circuit, observables, precision
    x = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=torch.float64, requires_grad=True)
    head(x)[0, 1].backward()
    step = 1e-2  # the connector returns float32: a larger step keeps rounding below the tolerance
    for i in range(4):
        shifted = [x.detach().clone() for _ in range(2)]
        shifted[0][0, i] += step
        shifted[1][0, i] -= step
        with torch.no_grad():
            numeric = (head(shifted[0])[0, 1] - head(shifted[1])[0, 1]) / (2 * step)
        assert abs(float(x.grad[0, i]) - float(numeric)) < 1e-4


REUPLOADING = """OPENQASM 3.0;
include "stdgates.inc";
input float[64] x0;
input float[64] x1;
input float[64] w0;
input float[64] w1;
qubit[2] q;
ry(x0) q[0];
ry(x1) q[1];
rz(w0) q[0];
cx q[0], q[1];
ry(x0) q[1];
ry(w1) q[1];
"""


def _loss_gradients(head, x, cotangent):
    """(input grad, weight grad) through the head's connector, and the same from the QNN's full
    float64 Jacobians contracted by hand (what TorchConnector does, without its float32 step);
    the connector's outputs (float32) must be the QNN's own forward values."""
    x = x.clone().requires_grad_(True)
    head.connector.zero_grad()
    outputs = head(x)
    (outputs * cotangent).sum().backward()
    weights = head.connector.weight.detach().double().numpy()
    np.testing.assert_allclose(outputs.detach().numpy(), head.qnn.forward(x.detach().numpy(), weights), atol=1e-7)
    jac_in, jac_w = head.qnn.backward(x.detach().numpy(), weights)
    c = cotangent.float().double().numpy()  # the connector's output is float32, so is the gradient it gets
    return ((x.grad.numpy(), head.connector.weight.grad.double().numpy()),
            (np.einsum("bo,boi->bi", c, jac_in), np.einsum("bo,bow->w", c, jac_w)))


@pytest.mark.parametrize("name, device, mitigation", [
    ("sel", "fake_brisbane", False), ("ring", "fake_manila", True), ("fqa", "fake_brisbane", False)])
def test_noisy_loss_gradient_summed_over_the_batch_equals_the_per_row_gradient(name, device, mitigation):
    import torch

    from qmedimg.backends import get_backend
    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.qnn import QuantumHead
    from qmedimg.backends.device_estimator import DeviceEstimator

    spec = load_circuit(name)
    backend = get_backend(device)
    circuit, observables = backend.prepare(spec)
    estimator = DeviceEstimator(backend.training_head(spec)["estimator"].device, noise_scale=2.0,
                                readout_mitigation=mitigation)
    torch.manual_seed(1)
    head = QuantumHead(spec, estimator, 0.0, circuit=circuit, observables=observables)
    x = torch.rand(6, spec.num_qubits, dtype=torch.float64) * 3 - 1.5
    cotangent = torch.randn(6, len(observables), dtype=torch.float64)
    (got_in, got_w), (want_in, want_w) = _loss_gradients(head, x, cotangent)
    assert np.abs(want_w).max() > 0.1 and np.abs(want_in).max() > 0.1
    np.testing.assert_allclose(got_w, want_w, rtol=1e-6, atol=1e-9)  # the connector's weights are float32
    np.testing.assert_allclose(got_in, want_in, atol=1e-10)
    head.qnn.gradient.forward_and_vjp = lambda *args: pytest.fail("gradient work without autograd")
    with torch.no_grad():  # evaluation: the forward pass only
        np.testing.assert_allclose(head(x).numpy(), head.qnn.forward(x.numpy(), head.connector.weight.detach().numpy()),
                                   atol=1e-7)


def test_noisy_loss_gradient_falls_back_to_every_row_when_inputs_come_back_after_weights(tmp_path):
    import torch

    from qmedimg.backends import get_backend
    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.qnn import QuantumHead

    path = tmp_path / "reupload.qasm"
    path.write_text(REUPLOADING)
    spec = load_circuit(path)
    backend = get_backend("fake_manila")
    circuit, observables = backend.prepare(spec)
    estimator = backend.training_head(spec)["estimator"]
    torch.manual_seed(0)  # the head's weights and the cotangent: torch's own seed differs per process
    head = QuantumHead(spec, estimator, 0.0, circuit=circuit, observables=observables)
    plan = head.qnn.gradient.plan(head.qnn._circuit)
    g = np.random.default_rng(0).uniform(-1, 1, (3, plan.jacobian.shape[1])) @ plan.jacobian.T + plan.offset
    inputs = np.flatnonzero(np.any(plan.jacobian[:, :2] != 0, axis=1))
    weights = np.flatnonzero(np.any(plan.jacobian[:, 2:] != 0, axis=1))
    assert estimator.gradient_rows(plan.circuit, g, [{"ZI": 1.0}], inputs, weights) is None
    x = torch.tensor([[0.4, -0.9], [1.3, 0.2], [-0.5, 2.1]], dtype=torch.float64)
    cotangent = torch.randn(3, len(observables), dtype=torch.float64)
    (got_in, got_w), (want_in, want_w) = _loss_gradients(head, x, cotangent)
    # the fallback is TorchConnector's own backward, which contracts both Jacobians in float32: sums of
    # terms up to ~1 round to ~1e-7 (worst over seeds 0-39: 2.6e-7)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_in, want_in, rtol=1e-6, atol=1e-6)
