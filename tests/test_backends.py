"""The backend registry and the Aer device simulation, as a user meets them."""

import json

import numpy as np
import pytest
from qiskit_ibm_runtime.fake_provider import FakeBrisbane, FakeManilaV2

from qmedimg.backends import get_backend, load_backends
from qmedimg.quantum.circuits import circuit_names, load_circuit
from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.quantum.exact import ExactEstimator
from qmedimg.backends.device_estimator import DeviceEstimator
from qmedimg.backends.noise import calibration, extrapolate, noise_model


def write(tmp_path, text):
    path = tmp_path / "backends.yaml"
    path.write_text(text)
    return path


def rows(spec, n=12, seed=0):
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (n, spec.circuit.num_parameters))


def ideal(spec, values):
    return ExactEstimator().run([(spec.circuit, [[o] for o in spec.observables], values)]).result()[0].data.evs


def on(backend_or_estimator, spec, values, backend=None):
    """Expectation values (O, N) of ``spec`` on a registry backend (its estimator on its ISA circuit, or on
    ``backend``'s) or a bare estimator (the circuit as written)."""
    if hasattr(backend_or_estimator, "training_head"):  # a registry backend
        estimator = backend_or_estimator.training_head(spec)["estimator"]
        circuit, obs = (backend or backend_or_estimator).prepare(spec)
    else:
        circuit, obs = spec.circuit, spec.observables
        estimator = backend_or_estimator
    return np.asarray(estimator.run([(circuit, [[o] for o in obs], values)]).result()[0].data.evs)


# --------------------------------------------------------------------------------------------- registry


def test_shipped_registry_has_every_kind_and_lists_through_the_cli(capsys):
    entries = load_backends()
    assert {e.kind for e in entries.values()} == {"exact", "aer", "fake", "ibm"}
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "fake_brisbane" in out and "127" in out and "ecr" in out and "cz" in out


@pytest.mark.parametrize("text, expected", [
    ("x:\n  kind: fake\n  device: FakeNowhere\n", "entry 'x': key 'device': unknown fake device 'FakeNowhere'; valid:"),
    ("x:\n  kind: fake\n  device: FakeManilaV2\n  noise_scale: -1\n", "key 'noise_scale'"),
    ("x:\n  kind: aer\n  mitigation: {readout: true}\n", "unknown key 'mitigation'; for kind 'aer' the valid keys"),
    ("x:\n  kind: ibm\n  device: ibm_x\n  mitigation: {readout: true}\n", "ibm mitigation goes in options"),
    ("x:\n  kind: ibm\n  device: ibm_x\n  options: {resilience_level: 3}\n", "key 'options.resilience_level': Input should be 0, 1 or 2"),
    ("x:\n  kind: ibm\n  device: ibm_x\n  options: {resilience: {bogus: 1}}\n", "bogus"),
    ("x:\n  kind: fake\n  device: FakeManilaV2\n  mitigation: {zne: {noise_factors: [0.5, 1]}}\n", "noise_factors"),
    ("x:\n  kind: quantum_magic\n", "unknown kind 'quantum_magic'; valid: exact, aer, fake, ibm"),
    ("x:\n  kind: fake\n  device: FakeManilaV2\n  transpile: {optimisation_level: 2}\n", "transpile.optimisation_level"),
    ("x:\n  kind: ibm\n  device: ibm_x\n  token: abc123\n", "looks like a secret; credentials never go in a backends file: set QISKIT_IBM_TOKEN"),
    ("x:\n  kind: ibm\n  device: ibm_x\n  options: {environment: {api_key: abc}}\n", "looks like a secret"),
    ("x:\n  kind: fake\n  device: [unclosed\n", "line 4: malformed YAML"),
])
def test_bad_registry_entries_are_one_clear_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(QmedimgError) as info:
        load_backends(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert "abc123" not in message


def test_unknown_backend_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(QmedimgError, match="unknown backend 'nope' .*valid: exact, aer"):
        get_backend("nope")
    assert main(["backends", "check", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_registry_file_from_environment_and_device_names(tmp_path, monkeypatch):
    path = write(tmp_path, "mine:\n  kind: fake\n  device: fake_manila\n  noise_scale: 0.5\n")
    monkeypatch.setenv("QMEDIMG_BACKENDS", str(path))
    backend = get_backend("mine")
    assert backend.entry.device == "FakeManilaV2" and backend.describe().device_qubits == 5
    assert get_backend("mine", noise_scale=2).entry.noise_scale == 2
    with pytest.raises(QmedimgError, match="command line.*noise_scale"):
        get_backend("mine", noise_scale=-1)


# ---------------------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("name", circuit_names())
def test_aer_kind_agrees_with_exact_on_every_circuit(name):
    """Includes fqa's parameterized controlled phases, which Aer 0.18 binds wrongly unless unrolled."""
    spec = load_circuit(name)
    values = rows(spec)
    backend = get_backend("aer")
    np.testing.assert_allclose(on(backend, spec, values), ideal(spec, values), atol=1e-6)


@pytest.fixture
def cores_set():
    """``cores_set(n)``: use n cores for the rest of one test; the process's share is put back afterwards."""
    from contextlib import ExitStack

    from qmedimg.cores import using_cores

    with ExitStack() as stack:
        yield lambda count: stack.enter_context(using_cores(count))


@pytest.mark.parametrize("cores", [1, 3])
def test_noisy_values_equal_aer_estimator_however_the_rows_are_split(cores_set, cores):
    """The rows run as one Aer experiment per core; values and their order must not depend on it."""
    from qiskit_aer.primitives import EstimatorV2 as AerEstimator

    cores_set(cores)
    spec = load_circuit("sel")
    values = rows(spec, 7)
    estimator = DeviceEstimator(FakeManilaV2())
    small = estimator.prepare(spec.circuit).variants[0][0]
    reference = AerEstimator(options={"default_precision": 0.0, "backend_options": {
        "method": "density_matrix", "noise_model": estimator.prepare(spec.circuit).noise}})
    expected = np.asarray(reference.run([(small, [[o] for o in spec.observables], values)]).result()[0].data.evs)
    readout = estimator.prepare(spec.circuit).readout  # measured Z_q = a_q + b_q Z_q
    expected = (readout[:, 1] - readout[:, 0])[:, None] + (1 - readout.sum(axis=1))[:, None] * expected
    np.testing.assert_allclose(on(estimator, spec, values), expected, atol=1e-12)


def test_noise_scale_zero_is_ideal_and_error_grows_with_scale():
    spec = load_circuit("sel")
    values = rows(spec, 16)
    exact = ideal(spec, values)
    errors = []
    for scale in (0, 0.5, 1, 2):
        backend = get_backend("fake_manila", noise_scale=scale)
        errors.append(np.abs(on(backend, spec, values) - exact).mean())
    assert errors[0] < 1e-9
    assert errors[0] < errors[1] < errors[2] < errors[3]


def test_readout_error_is_modelled_and_mitigation_inverts_it():
    """Exact values include the calibrated readout error (Aer's EstimatorV2 alone reports <Z> = 1)."""
    device = FakeManilaV2()
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

    circuit = QuantumCircuit(5)
    circuit.id(0)  # |0>, only readout error acts
    z0 = SparsePauliOp.from_sparse_list([("Z", [0], 1.0)], 5)
    measured = DeviceEstimator(device).run([(circuit, z0)]).result()[0].data.evs
    p10 = device.target["measure"][(0,)].error  # fake devices report one symmetric readout error
    assert float(measured) == pytest.approx(1 - 2 * p10, abs=1e-3) and float(measured) < 0.999
    mitigated = DeviceEstimator(device, readout_mitigation=True).run([(circuit, z0)]).result()[0].data.evs
    assert float(mitigated) == pytest.approx(1.0, abs=1e-3)


def test_shots_sample_around_the_exact_noisy_value_and_repeat_with_a_seed():
    spec = load_circuit("sel")
    values = rows(spec, 8)
    backend = get_backend("fake_manila")
    circuit, obs = backend.prepare(spec)
    estimator = backend.training_head(spec)["estimator"]
    exact = np.asarray(estimator.run([(circuit, [[o] for o in obs], values)]).result()[0].data.evs)
    sampled = [np.asarray(DeviceEstimator(estimator.device, shots=4000, seed=3)
                          .run([(circuit, [[o] for o in obs], values)]).result()[0].data.evs) for _ in range(2)]
    np.testing.assert_array_equal(sampled[0], sampled[1])
    error = np.abs(sampled[0] - exact)
    assert 0 < error.mean() < 0.05 and error.max() < 5 / np.sqrt(4000) * 2
    # readout mitigation on sampled bits: unbiased, so closer to the readout-free values on average
    free = np.asarray(DeviceEstimator(estimator.device, readout_mitigation=True)
                      .run([(circuit, [[o] for o in obs], values)]).result()[0].data.evs)
    mitigated = np.asarray(DeviceEstimator(estimator.device, shots=20000, seed=1, readout_mitigation=True)
                           .run([(circuit, [[o] for o in obs], values)]).result()[0].data.evs)
    assert np.abs(mitigated - free).mean() < np.abs(exact - free).mean()


def test_zne_reduces_expectation_error_at_scale_one():
    spec = load_circuit("sel")
    values = rows(spec, 16)
    exact = ideal(spec, values)
    plain = get_backend("fake_brisbane")
    mitigated = get_backend("fake_brisbane_mitigated")
    assert mitigated.entry.mitigation.zne is not None
    e_plain = np.abs(on(plain, spec, values) - exact).mean()
    e_zne = np.abs(on(mitigated, spec, values) - exact).mean()
    assert e_zne < 0.5 * e_plain


def test_extrapolation_recovers_exponential_and_linear_decay():
    factors = [1, 3, 5]
    y0 = np.array([0.8, -0.5, 0.0])
    decayed = np.stack([y0 * 0.9**f for f in factors])
    np.testing.assert_allclose(extrapolate(factors, decayed, "exponential"), y0, atol=1e-12)
    lines = np.stack([y0 - 0.05 * f for f in factors])
    np.testing.assert_allclose(extrapolate(factors, lines, "linear"), y0, atol=1e-12)


def test_noise_model_is_restricted_to_the_active_qubits():
    model = noise_model(calibration(FakeBrisbane().target, [103, 104, 105, 111], 1.0))
    assert set(model.noise_qubits) <= {0, 1, 2, 3} and model.noise_qubits


# ------------------------------------------------------------------------------------------ transpile


def test_transpile_maps_observables_honours_options_and_refuses_too_wide(tmp_path, capsys):
    spec = load_circuit("sel")
    backend = get_backend("fake_brisbane", transpile={"initial_layout": [0, 1, 2, 3], "optimization_level": 2})
    circuit, obs = backend.prepare(spec)
    assert circuit.num_qubits == 127 and all(o.num_qubits == 127 for o in obs)
    assert backend.prepare(spec).circuit is circuit  # transpiled once
    np.testing.assert_allclose(on(get_backend("fake_brisbane", noise_scale=0), spec, rows(spec, 4), backend),
                               ideal(spec, rows(spec, 4)), atol=1e-9)
    assert main(["transpile", "sel", "--backend", "fake_manila", "--optimization-level", "3"]) == 0
    out = capsys.readouterr().out
    assert "physical qubits" in out and "estimated circuit fidelity 0." in out
    assert main(["transpile", "sel", "--qubits", "6", "--backend", "fake_manila"]) == 2
    assert "has only 5" in capsys.readouterr().err
    for layout in ("0,1", "0,1,1,2", "0,1,2,9"):
        assert main(["transpile", "sel", "--backend", "fake_manila", "--initial-layout", layout]) == 2
        err = capsys.readouterr().err
        assert "initial_layout" in err and err.count("\n") == 1 and "Traceback" not in err


def test_dynamical_decoupling_pads_idle_windows():
    spec = load_circuit("sel")
    backend = get_backend("fake_fez", transpile={"dynamical_decoupling": {"sequence": "XX"}})
    circuit, _ = backend.prepare(spec)
    assert "delay" in circuit.count_ops()
    values = rows(spec, 4)
    noisy = on(backend, spec, values)
    assert np.abs(noisy - ideal(spec, values)).mean() < 0.1


# ------------------------------------------------------------------------------------------- evaluate


def test_evaluate_on_a_noisy_device_writes_a_comparable_result(tiny_run_copy, capsys):
    assert main(["evaluate", str(tiny_run_copy), "--backend", "fake_manila", "--test-limit", "12", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ideal (exact) on the same images" in out and "Δ ACC" in out
    result = json.loads((tiny_run_copy / "eval-fake_manila-limit12.json").read_text())
    assert result["images"] == 12 and result["device"] == "fake_manila" and result["kind"] == "fake"
    assert result["transpile"]["two_qubit_gates"] > 0 and 0 < result["transpile"]["estimated_fidelity"] < 1
    assert result["mean_abs_expectation_error"] > 0
    assert set(result["test"]) >= {"acc", "auc", "precision", "recall", "f1", "confusion"}


def test_noise_scale_zero_reproduces_the_ideal_metrics_exactly(tiny_run_copy):
    result = evaluate_run(tiny_run_copy, "fake_brisbane", noise_scale=0)
    assert result["test"] == result["ideal_test"]
    assert result["mean_abs_expectation_error"] < 1e-9
    assert result["ideal_test"]["acc"] == json.loads((tiny_run_copy / "metrics.json").read_text())["test"]["acc"]


def test_evaluate_bad_input_is_one_line(tiny_run, tmp_path, capsys):
    cases = [  # each is refused before anything is written: the shared run stays as it was
        (["evaluate", str(tiny_run), "--backend", "nope"], "unknown backend 'nope'"),
        (["evaluate", str(tmp_path), "--backend", "fake_manila"], "not a qmedimg run directory"),
        (["evaluate", str(tiny_run), "--backend", "fake_manila", "--noise-scale", "-1"], "noise_scale"),
        (["evaluate", str(tiny_run), "--dry-run"], "--dry-run is for ibm backends"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
