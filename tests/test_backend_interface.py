"""The one interface every backend kind offers, as workflows use it: prepared circuits shared by
content, one noise model per device and qubits, what each kind refuses, and how it describes itself."""

import numpy as np
import pytest

import qmedimg.backends.device_estimator as device_estimator
from qmedimg.backends import HeadRequest, get_backend
from qmedimg.backends.jobs import parameter_values
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import load_circuit


def test_equal_circuits_are_transpiled_once_whichever_backend_object_asks():
    first, second = get_backend("fake_manila"), get_backend("fake_manila")
    a, b = load_circuit("sel"), load_circuit("sel")  # equal content, different objects
    assert a.circuit is not b.circuit
    assert first.prepare(a) is second.prepare(b)
    assert get_backend("fake_manila", transpile={"optimization_level": 3}).prepare(a) is not first.prepare(a)
    assert first.prepare(load_circuit("ring")) is not first.prepare(a)


def test_noise_aware_training_builds_the_device_noise_model_once(monkeypatch, tmp_path):
    """The model, its moving-average copy, and the forward and gradient circuits share one noise model
    (before: the registry was re-read and the noise model rebuilt for each)."""
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import train

    built = []
    real = device_estimator.noise_model
    monkeypatch.setattr(device_estimator, "noise_model", lambda *args: built.append(1) or real(*args))
    train(make_config(dataset="synthetic", limit=16, epochs=1, batch_size=8, backend="fake_manila",
                      out=str(tmp_path / "run")), progress=False)
    assert len(built) == 1


def test_each_kind_refuses_what_it_cannot_do_before_any_work():
    spec = load_circuit("sel")
    for name in ("exact", "aer", "fake_manila"):
        backend = get_backend(name)
        with pytest.raises(QmedimgError, match="--dry-run is for ibm backends"):
            backend.check_request(dry_run=True)
        with pytest.raises(QmedimgError, match="--collect-jobs is for ibm backends"):
            backend.check_request(resume=True)
        assert backend.training_head(spec)["estimator"] is backend.estimator
    qpu = get_backend("ibm_brisbane")
    qpu.check_request(dry_run=True, resume=True)  # what it is for
    assert qpu.spends_qpu_time and not get_backend("ibm_local").spends_qpu_time
    with pytest.raises(QmedimgError, match="training there would spend QPU time"):
        qpu.training_head(spec)


def test_run_head_equals_the_estimator_on_the_prepared_circuit():
    spec = load_circuit("sel")
    rng = np.random.default_rng(0)
    angles, weights = rng.uniform(-np.pi, np.pi, (5, 4)), rng.uniform(-np.pi, np.pi, 24).astype(np.float32)
    for name in ("exact", "fake_manila"):
        backend = get_backend(name)
        values = backend.run_head(HeadRequest(spec, weights.astype(float), angles)).values
        prepared = backend.prepare(spec)
        sent = angles.astype(np.float32).astype(float) if backend.exact else angles  # exact: float32, as trained
        rows = parameter_values(prepared.circuit, spec, sent, weights.astype(float))
        evs = backend.estimator.run([(prepared.circuit, [[o] for o in prepared.observables], rows)],
                                    precision=0.0).result()[0].data.evs
        assert values.shape == (5, 4)
        np.testing.assert_allclose(values, np.asarray(evs).T, atol=1e-6)


def test_records_say_what_ran():
    spec = load_circuit("sel")
    exact, fake = get_backend("exact").record(spec), get_backend("fake_brisbane_mitigated").record(spec)
    assert exact["kind"] == "exact" and exact["transpile"] is None and exact["mitigation"] is None
    assert fake["device"] == "fake_brisbane" and fake["transpile"]["two_qubit_gates"] > 0
    assert fake["mitigation"]["readout"] and fake["mitigation"]["zne"]["noise_factors"] == [1.0, 3.0, 5.0]
    assert get_backend("fake_brisbane_mitigated").zne_factors() == [1.0, 3.0, 5.0]
    assert get_backend("fake_brisbane").zne_factors() == [1.0]


def test_a_study_point_keeps_the_entrys_own_zne_settings(tmp_path):
    registry = tmp_path / "backends.yaml"
    registry.write_text("dev:\n  kind: fake\n  device: FakeManilaV2\n"
                        "  mitigation: {zne: {noise_factors: [1, 2], extrapolator: linear}}\n")
    base = get_backend("dev", registry)
    point = base.study_point(scale=2.0, mitigation="readout+zne", shots=None, opt_level=3, repeat=1)
    m = point.entry.mitigation
    assert m.readout and m.zne.noise_factors == [1.0, 2.0] and m.zne.extrapolator == "linear"
    assert point.entry.noise_scale == 2.0 and point.entry.transpile.optimization_level == 3
    assert point.entry.seed == 1 and base.entry.noise_scale == 1.0  # the base is unchanged
    plain = get_backend("fake_manila").study_point(scale=1.0, mitigation="zne", shots=None, opt_level=None,
                                                   repeat=0)
    assert plain.zne_factors() == [1.0, 3.0, 5.0]  # no settings of its own: the defaults
    with pytest.raises(QmedimgError, match="needs a fake or ibm backend"):
        get_backend("aer").study_point(scale=None, mitigation="readout", shots=None, opt_level=None, repeat=0)
