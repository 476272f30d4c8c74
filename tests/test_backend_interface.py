"""The one interface every backend kind offers, as workflows use it: a narrow public surface, prepared
circuits shared by content within one context, one noise model per device and qubits, the job options only
the kind that submits jobs takes, what each kind refuses, and how it describes itself."""

import dataclasses

import numpy as np
import pytest

from qmedimg.backends import KINDS, Backend, BackendContext, HeadRequest, JobOptions, get_backend
from qmedimg.backends.jobs import parameter_values
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import load_circuit

MAX_PUBLIC = 12


@pytest.mark.parametrize("name", ["exact", "aer", "fake_manila", "ibm_local", "ibm_brisbane"])
def test_a_backend_and_its_kind_offer_at_most_twelve_public_members(name):
    """Running a head, describing itself and its study rules: what a workflow may ask of any kind (issue 22)."""
    backend = get_backend(name)  # built, not run: nothing connects
    for what, members in (("Backend", dir(Backend)), (type(backend).__name__, dir(type(backend))),
                          (repr(backend), dir(backend))):
        public = sorted(m for m in members if not m.startswith("_"))
        assert len(public) <= MAX_PUBLIC, f"{what} has {len(public)} public members: {', '.join(public)}"
    assert {"prepare", "training_head", "run_head", "describe", "study"} <= set(dir(backend))


def test_equal_circuits_are_transpiled_once_whichever_backend_of_one_context_asks():
    context = BackendContext()
    first, second = get_backend("fake_manila", context=context), get_backend("fake_manila", context=context)
    a, b = load_circuit("sel"), load_circuit("sel")  # equal content, different objects
    assert a.circuit is not b.circuit
    assert first.prepare(a) is second.prepare(b)
    assert first.with_overrides(shots=100).prepare(b) is first.prepare(a)  # a point of a study: its base's context
    other_level = get_backend("fake_manila", transpile={"optimization_level": 3}, context=context)
    assert other_level.prepare(a) is not first.prepare(a)
    assert first.prepare(load_circuit("ring")) is not first.prepare(a)


def test_two_contexts_share_no_transpiled_circuit_and_a_cleared_one_transpiles_again(monkeypatch):
    from qmedimg.backends.device import DeviceBackend

    transpiled = []
    real = DeviceBackend._transpile
    monkeypatch.setattr(DeviceBackend, "_transpile", lambda self, spec: transpiled.append(1) or real(self, spec))
    spec, one, two = load_circuit("sel"), BackendContext(), BackendContext()
    first, second = get_backend("fake_manila", context=one), get_backend("fake_manila", context=one)
    assert first.prepare(spec) is second.prepare(spec) and len(transpiled) == 1  # one context: once
    elsewhere = get_backend("fake_manila", context=two)
    assert elsewhere.prepare(spec) is not first.prepare(spec) and len(transpiled) == 2  # another: its own
    assert get_backend("fake_manila").prepare(spec) is not first.prepare(spec)  # none given: a fresh one
    one.clear()
    assert first.prepare(spec) is not elsewhere.prepare(spec) and len(transpiled) == 4  # cleared: again


def test_noise_aware_training_builds_the_device_noise_model_once(monkeypatch, tmp_path):
    """The model, its moving-average copy, and the forward and gradient circuits share one noise model
    (before: the registry was re-read and the noise model rebuilt for each)."""
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import train

    from qmedimg.backends import noise

    built = []
    real = noise.noise_model
    monkeypatch.setattr(noise, "noise_model", lambda *args: built.append(1) or real(*args))
    train(make_config(dataset="synthetic", limit=16, epochs=1, batch_size=8, backend="fake_manila",
                      out=str(tmp_path / "run")), progress=False)
    assert len(built) == 1


def test_each_kind_refuses_what_it_cannot_do_before_any_work():
    spec = load_circuit("sel")
    request = HeadRequest(spec, np.zeros(24), np.zeros((2, 4)))
    for name in ("exact", "aer", "fake_manila"):
        backend = get_backend(name)
        with pytest.raises(QmedimgError, match="--dry-run is for ibm backends"):
            JobOptions(dry_run=True).check(backend)
        with pytest.raises(QmedimgError, match="--collect-jobs is for ibm backends"):
            JobOptions(resume=True).check(backend)
        with pytest.raises(QmedimgError, match="--dry-run is for ibm backends"):
            backend.run_head(request, JobOptions(dry_run=True))
        assert backend.run_head(request, JobOptions()).values.shape == (2, 4)  # a run's ledger place: ignored
        assert backend.training_head(spec)["estimator"] is backend.training_head(spec)["estimator"]  # one, kept
    qpu = get_backend("ibm_brisbane")
    for name in ("ibm_brisbane", "ibm_local"):
        JobOptions(dry_run=True, resume=True).check(get_backend(name))  # what the kind is for, QPU or local mode
    assert qpu.spends_qpu_time and not get_backend("ibm_local").spends_qpu_time
    with pytest.raises(QmedimgError, match="training there would spend QPU time"):
        qpu.training_head(spec)


def test_job_options_go_apart_from_the_request_to_the_kind_that_submits_jobs(tmp_path):
    """A head request is the same for every kind; the ledger, the dry run and the resume travel only as
    ``run_head(request, jobs)``, which the ibm kind reads (here in Runtime's local mode: a dry run, offline)."""
    assert [f.name for f in dataclasses.fields(HeadRequest)] == ["spec", "weights", "angles", "progress", "repeat"]
    spec = load_circuit("sel")
    request = HeadRequest(spec, np.zeros(24), np.zeros((3, 4)))
    local = get_backend("ibm_local")
    plan = local.run_head(request, JobOptions(ledger_dir=tmp_path, dry_run=True))
    assert plan.values is None and plan.details["dry_run"]["parameter_rows"] == 3 and not list(tmp_path.iterdir())
    with pytest.raises(QmedimgError, match="needs a run directory for its job ledger"):
        local.run_head(request)  # no options: no ledger, and a QPU kind never runs without one


def test_run_head_equals_the_estimator_on_the_prepared_circuit():
    spec = load_circuit("sel")
    rng = np.random.default_rng(0)
    angles, weights = rng.uniform(-np.pi, np.pi, (5, 4)), rng.uniform(-np.pi, np.pi, 24).astype(np.float32)
    for name in ("exact", "fake_manila"):
        backend = get_backend(name)
        values = backend.run_head(HeadRequest(spec, weights.astype(float), angles)).values
        prepared = backend.prepare(spec)
        sent = angles.astype(np.float32).astype(float) if backend.describe().exact else angles  # exact: float32
        rows = parameter_values(prepared.circuit, spec, sent, weights.astype(float))
        evs = backend.training_head(spec)["estimator"].run([(prepared.circuit, [[o] for o in prepared.observables],
                                                             rows)], precision=0.0).result()[0].data.evs
        assert values.shape == (5, 4)
        np.testing.assert_allclose(values, np.asarray(evs).T, atol=1e-6)


def test_records_say_what_ran():
    spec = load_circuit("sel")
    exact = get_backend("exact").describe(spec).record()
    fake = get_backend("fake_brisbane_mitigated").describe(spec).record()
    assert exact["kind"] == "exact" and exact["transpile"] is None and exact["mitigation"] is None
    assert "simulation" not in exact and fake["simulation"]["method"] == "density_matrix"
    assert fake["device"] == "fake_brisbane" and fake["transpile"]["two_qubit_gates"] > 0
    assert fake["mitigation"]["readout"] and fake["mitigation"]["zne"]["noise_factors"] == [1.0, 3.0, 5.0]
    assert get_backend("fake_brisbane_mitigated").describe().zne_factors == [1.0, 3.0, 5.0]
    assert get_backend("fake_brisbane").describe().zne_factors == [1.0]
    row = get_backend("ibm_brisbane").describe().row()  # listing a QPU never connects
    assert row["device"] == "ibm_brisbane" and row["qubits"] == "-" and row["kind"] == "ibm"


def test_a_study_point_keeps_the_entrys_own_zne_settings(tmp_path):
    registry = tmp_path / "backends.yaml"
    registry.write_text("dev:\n  kind: fake\n  device: FakeManilaV2\n"
                        "  mitigation: {zne: {noise_factors: [1, 2], extrapolator: linear}}\n")
    base = get_backend("dev", registry)
    point = base.study.point(scale=2.0, mitigation="readout+zne", shots=None, opt_level=3, repeat=1)
    m = point.entry.mitigation
    assert m.readout and m.zne.noise_factors == [1.0, 2.0] and m.zne.extrapolator == "linear"
    assert point.entry.noise_scale == 2.0 and point.entry.transpile.optimization_level == 3
    assert point.entry.seed == 1 and base.entry.noise_scale == 1.0  # the base is unchanged
    plain = get_backend("fake_manila").study.point(scale=1.0, mitigation="zne", shots=None, opt_level=None,
                                                   repeat=0)
    assert plain.describe().zne_factors == [1.0, 3.0, 5.0]  # no settings of its own: the defaults
    with pytest.raises(QmedimgError, match="needs a fake or ibm backend"):
        get_backend("aer").study.point(scale=None, mitigation="readout", shots=None, opt_level=None, repeat=0)
