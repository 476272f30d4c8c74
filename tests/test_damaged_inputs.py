"""Inputs that cannot succeed, and files damaged on disk: one line naming the file or value, exit 2,
before any output folder is made (so a retry is never blocked by a half-made directory)."""

import json

import numpy as np
import pytest
import torch

from qmedimg.cli import main
from qmedimg.data import write_synthetic_npz
from qmedimg.errors import QmedimgError
from qmedimg.files import write_atomic
from qmedimg.workflows import noise_study


def one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("drop", ["best_model", "model"])
def test_a_checkpoint_without_weights_is_one_line_in_every_command(tiny_run_copy, capsys, drop):
    path = tiny_run_copy / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state[drop]
    torch.save(state, path)
    commands = [["train", "--resume", str(tiny_run_copy)]]
    if drop == "best_model":
        commands += [["evaluate", str(tiny_run_copy)], ["transpile", str(tiny_run_copy), "--backend", "fake_manila"],
                     ["explain", str(tiny_run_copy), "--out", str(tiny_run_copy / "x")]]
    for argv in commands:
        assert main(argv) == 2, argv
        one_line(capsys, "checkpoint.pt: not a complete qmedimg checkpoint", drop)
    assert not (tiny_run_copy / "x").exists()


def test_weights_of_another_network_are_one_line(tiny_run_copy, capsys):
    config = tiny_run_copy / "config.json"
    record = json.loads(config.read_text())
    record["config"]["qubits"] = 6  # edited by hand: the checkpoint holds a 4-qubit head
    record["circuit"].pop("qasm")
    config.write_text(json.dumps(record))
    assert main(["evaluate", str(tiny_run_copy)]) == 2
    one_line(capsys, "checkpoint.pt: its weights do not fit the network config.json describes")
    assert main(["train", "--resume", str(tiny_run_copy), "--quiet"]) == 2
    one_line(capsys, "its weights do not fit")


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_empty_split_is_refused_before_the_run_directory_exists(tmp_path, capsys, split):
    path = write_synthetic_npz(tmp_path / "d.npz")
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays[f"{split}_images"], arrays[f"{split}_labels"] = arrays[f"{split}_images"][:0], arrays[f"{split}_labels"][:0]
    np.savez(path, **arrays)
    out = tmp_path / "run"
    assert main(["train", "--data-file", str(path), "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    one_line(capsys, f"the {split} split is empty")
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--lr", "inf"], "lr"), (["--weight-decay", "inf"], "weight_decay"),
    (["--backend", "fake_manila", "--noise-scale", "inf"], "noise_scale"),
    (["--backend", "fake_manila", "--noise-scale", "1e308"], "noise_scale"),
])
def test_non_finite_or_absurd_numbers_are_refused_before_training(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--out", str(out), *argv]) == 2
    one_line(capsys, needle)
    assert not out.exists()


def test_absurd_noise_scales_are_one_line_in_evaluate_the_registry_and_the_noise_study(tiny_run_copy, tmp_path,
                                                                                           capsys):
    assert main(["evaluate", str(tiny_run_copy), "--backend", "fake_manila", "--noise-scale", "inf"]) == 2
    one_line(capsys, "noise_scale")
    registry = tmp_path / "b.yaml"
    registry.write_text("noisy:\n  kind: fake\n  device: FakeManilaV2\n  noise_scale: .inf\n")
    assert main(["evaluate", str(tiny_run_copy), "--backend", "noisy", "--backends", str(registry)]) == 2
    one_line(capsys, "b.yaml: entry 'noisy': key 'noise_scale'")
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--scales", "0,1e308",
                 "--out", str(out)]) == 2
    one_line(capsys, "--scales: noise scales must be finite numbers >= 0 and at most 1000")
    assert not out.exists() and not list(tiny_run_copy.glob("eval-*.json"))


def test_a_backends_file_that_is_not_utf8_is_one_line_also_through_the_environment(tiny_run, tmp_path, capsys,
                                                                                       monkeypatch):
    registry = tmp_path / "b.yaml"
    registry.write_bytes(b"exact:\n  kind: exact\n  description: \xff\xfe latin-1\n")
    assert main(["backends", "--backends", str(registry)]) == 2
    one_line(capsys, "b.yaml: not a UTF-8 text file")
    monkeypatch.setenv("QMEDIMG_BACKENDS", str(registry))
    assert main(["evaluate", str(tiny_run)]) == 2
    one_line(capsys, "b.yaml: not a UTF-8 text file")


@pytest.mark.parametrize("damage", ["list", "no identity", "jobs a string", "evs of the wrong shape"])
def test_a_damaged_ledger_is_one_line_and_nothing_is_submitted(tiny_run_copy, capsys, damage):
    argv = ["evaluate", str(tiny_run_copy), "--backend", "ibm_local", "--test-limit", "3", "--quiet"]
    assert main(argv) == 0
    path = tiny_run_copy / "ledger-ibm_local.json"
    ledger = json.loads(path.read_text())
    if damage == "list":
        ledger = []
    elif damage == "no identity":
        del ledger["identity"]
    elif damage == "jobs a string":
        ledger["jobs"] = "done"
    else:
        ledger["jobs"][0]["evs"] = [[0.1, 0.2]]
    path.write_text(json.dumps(ledger))
    (tiny_run_copy / "eval-ibm_local-limit3.json").unlink()
    assert main(argv) == 2
    one_line(capsys, "ledger-ibm_local.json")
    assert not list(tiny_run_copy.glob("eval-*.json"))


def test_a_failure_inside_torch_s_own_writer_is_one_line_and_the_old_file_stays(tmp_path):
    """torch.save's C++ writer reports a full disk as a RuntimeError ("[enforce fail at
    inline_container.cc] ... PytorchStreamWriter failed writing file"): it must not escape as a traceback."""
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")

    def save(handle):
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(QmedimgError, match=r"checkpoint.pt: cannot write \(.*inline_container.*disk full\?\)"):
        write_atomic(target, save)
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    with pytest.raises(RuntimeError, match="a bug"):  # any other RuntimeError is a bug, not the disk
        write_atomic(target, lambda handle: (_ for _ in ()).throw(RuntimeError("a bug")))


def test_zero_shots_in_a_noise_study_is_one_line_before_anything_is_written(tiny_run_copy, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--shots", "none,0",
                 "--out", str(out)]) == 2
    one_line(capsys, "--shots: shot counts must be >= 1")
    assert not out.exists()


def test_images_too_large_for_memory_are_refused_before_the_run_directory_exists(tmp_path, capsys):
    """1024×1024 images at batch 4096 need ~1.7 TB per training step (at least 400 bytes a pixel):
    refused by the estimate in one line, instead of running out of memory with config.json written."""
    path = tmp_path / "big.npz"
    arrays = {}
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        arrays[f"{split}_images"] = np.zeros((n, 1024, 1024), np.uint8)
        arrays[f"{split}_labels"] = np.array([[i % 2] for i in range(n)], np.uint8)
    np.savez_compressed(path, **arrays)
    out = tmp_path / "run"
    assert main(["train", "--data-file", str(path), "--batch-size", "4096", "--device", "cpu", "--epochs", "1",
                 "--out", str(out), "--quiet"]) == 2
    one_line(capsys, "big.npz: 1024×1024 inputs need at least", "GiB per training step at batch size 4096",
             "resize the images")
    assert not out.exists()


def test_a_circuit_that_cannot_be_trained_is_refused_before_the_run_directory_exists(tmp_path, capsys):
    circuit = tmp_path / "product.qasm"
    circuit.write_text('OPENQASM 3.0;\ninclude "stdgates.inc";\n' + "".join(f"input float[64] x{i};\n" for i in range(4))
                       + "input float[64] w0;\nqubit[4] q;\nry(x0 * w0) q[0];\nry(x1) q[1];\nry(x2) q[2];\n"
                       "ry(x3) q[3];\ncx q[0], q[1];\n")
    out = tmp_path / "run"
    argv = ["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--circuit", str(circuit),
            "--out", str(out), "--quiet"]
    assert main(argv) == 2
    one_line(capsys, "product.qasm: gate angle 'w0*x0' is not affine", "cannot be trained")
    assert not out.exists()
    circuit.write_text(circuit.read_text().replace("x0 * w0", "2 * x0 + w0 - 0.5"))  # affine: trains
    assert main(argv) == 0


ACC = noise_study.COLUMNS.index("acc")  # the field the third damage spoils (no path in the row has commas)


@pytest.mark.parametrize("damage, needle", [
    (lambda line: line + ",extra", "line 2 has more fields than the header"),
    (lambda line: line.rsplit(",", 3)[0], "line 2 has fewer fields than the header"),
    (lambda line: ",".join("abc" if i == ACC else field for i, field in enumerate(line.split(","))),
     "line 2, column acc: 'abc' is not a number"),
])
def test_a_damaged_results_row_is_one_line_naming_the_line_and_field(tiny_run_copy, tmp_path, capsys, damage, needle):
    out = tmp_path / "study"
    argv = ["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none",
            "--test-limit", "4", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    results = out / "results.csv"
    header, first, *rest = results.read_text().splitlines()
    results.write_text("\n".join([header, damage(first), *rest]) + "\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 2
    one_line(capsys, "results.csv: " + needle)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("damage, needle", [
    (lambda r: r["config"].update(lr="fast"), "config.json: config.lr"),
    (lambda r: r["config"].update(epochs=-3), "config.json: config.epochs"),
    (lambda r: r["circuit"].update(qasm="OPENQASM 3.0; garbage"), 'config.json: "circuit" is damaged'),
    (lambda r: r.update(circuit=["sel"]), 'config.json: "circuit" is damaged'),
])
def test_a_damaged_config_json_is_one_line_naming_the_file_and_field(tiny_run_copy, capsys, damage, needle):
    path = tiny_run_copy / "config.json"
    record = json.loads(path.read_text())
    damage(record)
    path.write_text(json.dumps(record))
    before = {p.name: p.read_bytes() for p in tiny_run_copy.iterdir()}
    for argv in (["evaluate", str(tiny_run_copy)], ["train", "--resume", str(tiny_run_copy), "--quiet"]):
        assert main(argv) == 2, argv
        one_line(capsys, needle)
    assert {p.name: p.read_bytes() for p in tiny_run_copy.iterdir()} == before


@pytest.mark.parametrize("field, value", [("status", "exploded"), ("rows", "0-3"), ("job_id", 17),
                                          ("evs", "[[0.1]]"), ("index", None), ("errors", None)])
def test_a_ledger_job_with_a_damaged_field_is_one_line_naming_it(tiny_run_copy, capsys, field, value):
    argv = ["evaluate", str(tiny_run_copy), "--backend", "ibm_local", "--test-limit", "3", "--quiet"]
    assert main(argv) == 0
    path = tiny_run_copy / "ledger-ibm_local.json"
    ledger = json.loads(path.read_text())
    ledger["jobs"][0][field] = value
    path.write_text(json.dumps(ledger))
    (tiny_run_copy / "eval-ibm_local-limit3.json").unlink()
    capsys.readouterr()
    assert main(argv) == 2
    one_line(capsys, f"ledger-ibm_local.json: job 0: field '{field}' is missing or damaged")
    assert json.loads(path.read_text()) == ledger and not list(tiny_run_copy.glob("eval-*.json"))


def test_a_training_that_diverges_stops_in_one_line_at_the_first_non_finite_loss(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--limit", "16", "--epochs", "3", "--lr", "1e30",
                 "--out", str(out), "--quiet"]) == 2
    one_line(capsys, "training diverged in epoch", "lower --lr (this run's: 1e+30)")
    assert not (out / "metrics.json").exists()  # no metrics computed from NaN weights
