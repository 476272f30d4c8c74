"""How a ``fake`` entry's noisy heads are simulated (``simulator: auto | aer | trajectories``, ``aer_device``), what
eval files record about it, and the settings that cannot work refused in one line, nothing written."""

import json

import numpy as np
import pytest

from qmedimg.backends import get_backend
from qmedimg.backends.trajectories import memory_estimate
from qmedimg.cli import main
from qmedimg.quantum.circuits import load_circuit

REGISTRY = """\
sampled:
  kind: fake
  device: FakeManilaV2
  noise_scale: 2
  simulator: trajectories
  trajectories: 300
on_aer:
  kind: fake
  device: FakeManilaV2
  noise_scale: 2
  simulator: aer
on_gpu:
  kind: fake
  device: FakeManilaV2
  aer_device: GPU
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "backends.yaml"
    path.write_text(REGISTRY)
    return path


def test_eval_files_record_the_simulator_its_trajectories_and_statistical_error(tiny_run_copy, registry, capsys):
    for name in ("sampled", "on_aer"):
        assert main(["evaluate", str(tiny_run_copy), "--backend", name, "--backends", str(registry)]) == 0
    sampled_file = json.loads((tiny_run_copy / "eval-sampled.json").read_text())
    on_aer_file = json.loads((tiny_run_copy / "eval-on_aer.json").read_text())
    sampled, on_aer = sampled_file["simulation"], on_aer_file["simulation"]
    spread = sampled_file["test_statistical_error"]  # what the trajectories' error does to ACC and AUC
    assert set(spread) == {"acc", "auc"} and 0 <= spread["acc"] < 0.5 and "test_statistical_error" not in on_aer_file
    assert "statistical error of the noise trajectories: ACC" in capsys.readouterr().out
    assert sampled["simulator"] == "qmedimg" and sampled["method"] == "trajectories"
    assert sampled["trajectories"] == 300 and 0 < sampled["statistical_error"] < 0.1
    assert on_aer == {"method": "density_matrix", "simulator": "aer", "active_qubits": on_aer["active_qubits"],
                      "trajectories": None, "statistical_error": None}  # exact: no statistical error


def test_auto_keeps_aer_density_matrix_up_to_10_active_qubits_and_the_sampler_above():
    small, wide = load_circuit("sel", qubits=4, layers=1), load_circuit("sel", qubits=12, layers=1)
    backend = get_backend("fake_brisbane")
    assert backend.describe(small).simulation["simulator"] == "aer"
    record = backend.describe(wide).simulation
    assert record["simulator"] == "qmedimg" and record["active_qubits"] > 10
    aer = backend.with_overrides(simulator="aer")  # the same context: wide is transpiled once
    assert aer.describe(wide).simulation["simulator"] == "aer"  # Aer's trajectories


def test_the_dry_run_memory_estimate_follows_the_simulator():
    rules = get_backend("fake_brisbane").study
    assert rules.simulation_memory(12, True)[1].startswith("trajectory sampler")
    assert get_backend("fake_brisbane", simulator="aer").study.simulation_memory(8, True)[1].startswith("density matrix")
    assert rules.simulation_memory(12, True)[0] == memory_estimate(12, 1000)
    gpu = get_backend("fake_brisbane", aer_device="GPU").study  # Aer takes every width there: density matrix up to 14
    assert gpu.simulation_memory(12, True) == (16 * 4**12, "density matrix on the GPU")
    assert gpu.simulation_memory(16, True)[1].startswith("statevector")
    assert memory_estimate(16, 1000) > 16 * memory_estimate(12, 1000) / 2  # a state per checkpoint: 2^n


@pytest.mark.parametrize("keys, named", [
    ("simulator: trajectories\n  shots: 100", "simulator"),  # the sampler computes means, not shots
    ("simulator: gpu", "simulator"),
    ("trajectories: 1", "trajectories"),
    ("simulator: trajectories\n  aer_device: GPU", "aer_device"),  # the sampler runs on the CPU
])
def test_settings_a_fake_entry_cannot_use_are_one_line_and_nothing_is_written(tiny_run_copy, tmp_path, capsys, keys,
                                                                              named):
    path = tmp_path / "bad.yaml"
    path.write_text(f"bad:\n  kind: fake\n  device: FakeManilaV2\n  {keys}\n")
    before = sorted(p.name for p in tiny_run_copy.iterdir())
    assert main(["evaluate", str(tiny_run_copy), "--backend", "bad", "--backends", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"'{named}'" in err and "bad" in err
    assert sorted(p.name for p in tiny_run_copy.iterdir()) == before


def test_a_gpu_entry_without_cuda_is_one_line_and_nothing_is_written(tiny_run_copy, registry, tmp_path, capsys):
    before = sorted(p.name for p in tiny_run_copy.iterdir())
    assert main(["evaluate", str(tiny_run_copy), "--backend", "on_gpu", "--backends", str(registry)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "aer_device GPU" in err and "qiskit-aer-gpu" in err
    assert sorted(p.name for p in tiny_run_copy.iterdir()) == before
    out = tmp_path / "gpu-run"
    assert main(["train", "--dataset", "synthetic", "--limit", "16", "--epochs", "1", "--backend", "on_gpu",
                 "--backends", str(registry), "--out", str(out), "--quiet"]) == 2
    assert "aer_device GPU" in capsys.readouterr().err and not out.exists()


def test_predict_runs_on_the_sampler_and_the_noise_moves_its_values(tiny_run_copy, registry, tmp_path):
    from PIL import Image

    from qmedimg.rundir import load_run

    images = tmp_path / "images"
    images.mkdir()
    for i, array in enumerate(load_run(tiny_run_copy).dataset.test.images[:3, 0]):
        Image.fromarray(array).save(images / f"case{i}.png")
    csv = tmp_path / "sampled.csv"
    assert main(["predict", str(tiny_run_copy), str(images), "--backend", "sampled", "--backends", str(registry),
                 "--out", str(csv), "--quiet"]) == 0
    exact = tmp_path / "exact.csv"
    assert main(["predict", str(tiny_run_copy), str(images), "--out", str(exact), "--quiet"]) == 0
    rows = csv.read_text().splitlines()
    assert len(rows) == 4 and rows[0] == exact.read_text().splitlines()[0]
    assert rows[1:] != exact.read_text().splitlines()[1:]  # noise scale 2 moves the head's values


@pytest.mark.parametrize("simulator", ["trajectories", "aer"])  # above 3 active qubits: qmedimg's or Aer's trajectories
def test_a_head_on_trajectories_hands_each_images_covariance_of_its_values_to_its_result(simulator, monkeypatch):
    from qmedimg.backends import HeadRequest, device_estimator

    monkeypatch.setattr(device_estimator, "DENSITY_MATRIX_MAX_QUBITS", 3)
    spec = load_circuit("sel", layers=1)
    angles = np.random.default_rng(0).uniform(-1, 1, (5, spec.circuit.num_qubits))
    weights = np.random.default_rng(1).uniform(-np.pi, np.pi, len(spec.weights))
    sampled = get_backend("fake_manila", simulator=simulator, trajectories=200, noise_scale=2)
    result = sampled.run_head(HeadRequest(spec, weights, angles), chunk=3)  # two chunks, joined in order
    covariance = result.arrays["value_covariance"]
    outputs = len(spec.observables)
    assert covariance.shape == (5, outputs, outputs)
    np.testing.assert_allclose(covariance, np.swapaxes(covariance, 1, 2))
    largest = np.sqrt(np.max(np.diagonal(covariance, axis1=1, axis2=2)))
    assert largest == pytest.approx(sampled.describe(spec).simulation["statistical_error"])  # the same errors
    assert np.abs(covariance[:, 0, 1]).max() > 0  # the outputs' errors are not taken to be independent
    monkeypatch.undo()  # 4 active qubits: Aer's density matrix again
    exact = get_backend("fake_manila", noise_scale=2).run_head(HeadRequest(spec, weights, angles))
    assert "value_covariance" not in exact.arrays  # the density matrix: exact values, nothing to carry
