"""The backends of one context build a device's noise once per (device, scale, qubits) and share it: a study's
point and its mitigated variant compile no error twice, and nothing is shared where the noise differs. A head run
again on the same backend is not prepared again. None of it changes a value."""

import numpy as np
import pytest

from qmedimg.backends import BackendContext, HeadRequest, JobOptions, get_backend
from qmedimg.backends import device_estimator, noise, trajectories
from qmedimg.quantum.circuits import load_circuit

SPEC = load_circuit("sel", qubits=4, layers=1)
RNG = np.random.default_rng(3)
WEIGHTS = RNG.uniform(0, 2 * np.pi, len(SPEC.weights))
ANGLES = RNG.uniform(-np.pi, np.pi, (3, len(SPEC.inputs)))


def point(name, context, scale, mitigation):
    base = get_backend(name, simulator="trajectories", trajectories=64, context=context)
    return base.study.point(scale=scale, mitigation=mitigation, shots=None, opt_level=1, repeat=0)


def values(backend):
    return backend.run_head(HeadRequest(SPEC, WEIGHTS, ANGLES), JobOptions()).values


@pytest.fixture
def counted(monkeypatch):
    """Calls of Aer's gate errors, of the sampler's branches of an error, and of a circuit's preparation."""
    calls = {"gate_errors": 0, "branches": 0, "trim_idle": 0}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(noise, "gate_errors")
    counting(trajectories, "branches")
    counting(device_estimator, "trim_idle")
    return calls


def test_a_point_and_its_mitigated_variant_build_the_noise_and_its_branches_once(counted):
    context = BackendContext()
    plain = values(point("fake_manila", context, 1.0, "none"))
    built = dict(counted)
    assert built["gate_errors"] == 1 and built["branches"] > 0
    mitigated = values(point("fake_manila", context, 1.0, "readout+zne"))  # the ×1, ×3 and ×5 folds: the same errors
    assert counted["gate_errors"] == built["gate_errors"] and counted["branches"] == built["branches"]
    assert np.array_equal(plain, values(point("fake_manila", BackendContext(), 1.0, "none")))
    assert np.array_equal(mitigated, values(point("fake_manila", BackendContext(), 1.0, "readout+zne")))


@pytest.mark.parametrize("other", [("fake_manila", 2.0), ("fake_brisbane", 1.0)], ids=["another scale", "another device"])
def test_noise_is_not_shared_where_it_differs(counted, other):
    context = BackendContext()
    values(point("fake_manila", context, 1.0, "none"))
    shared = values(point(*other[:1], context, other[1], "none"))
    assert counted["gate_errors"] == 2
    assert np.array_equal(shared, values(point(*other[:1], BackendContext(), other[1], "none")))
    assert not np.array_equal(shared, values(point("fake_manila", BackendContext(), 1.0, "none")))


def test_a_head_run_again_on_the_same_backend_is_not_prepared_again(counted):
    backend = point("fake_manila", BackendContext(), 1.0, "none")
    first = values(backend)
    prepared = counted["trim_idle"]
    again = values(backend)  # a new TorchConnector head: another circuit object of the same content
    assert counted["trim_idle"] == prepared
    assert first.shape == again.shape  # later draws: other trajectories, the same head
