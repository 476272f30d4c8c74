"""Bad input and bad luck as a hostile user or a failing machine deals them: one line, exit 2,
nothing half written; a study interrupted mid-row continues cleanly."""

import csv
import json
import socket

import numpy as np
import pytest

from qmedimg.backends import runtime
from qmedimg.cli import main
from qmedimg.data import write_synthetic_npz


def study(run, out, *extra):
    return main(["noise-study", str(run), "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none",
                 "--test-limit", "4", "--out", str(out), "--quiet", *extra])


def test_a_results_row_torn_by_a_crash_is_cut_off_and_the_study_continues(tiny_run_copy, tmp_path, capsys):
    out = tmp_path / "study"
    assert study(tiny_run_copy, out) == 0
    results = out / "results.csv"
    whole = results.read_text()
    header, first, second = whole.splitlines()[:3]
    results.write_text("\n".join([header, first]) + "\n" + second[: len(second) // 2])  # killed mid-write
    assert study(tiny_run_copy, out) == 0
    lines = results.read_text().splitlines()
    assert len(lines) == 3 and lines[:2] == [header, first]  # the torn row is gone, the point computed again
    assert results.read_text().endswith("\n")
    parsed = list(csv.reader(lines))  # the point computed again is the row the crash tore: whole, wall time aside
    assert [len(row) for row in parsed] == [len(parsed[0])] * 3
    wall = parsed[0].index("wall_s")
    again, before = parsed[2], next(csv.reader([second]))
    assert again[:wall] + again[wall + 1:] == before[:wall] + before[wall + 1:]
    capsys.readouterr()


def test_repair_tail_cuts_a_torn_last_row_so_the_row_appended_next_reads_back_whole(tmp_path):
    """The resume path of results.csv without the study around it: a crash tore the last row (no newline);
    repair_tail cuts it off, then the next row is appended as the study appends it. Read back: the header,
    the whole rows before, the appended row — each with the header's field count. Left torn, the half row
    and the appended one would read as one row of too many fields."""
    from qmedimg.files import append_line, repair_tail
    from qmedimg.workflows.noise_study import COLUMNS, _csv_line

    def row(scale):
        return {**{c: f"{c}-{scale}" for c in COLUMNS}, "scale": scale, "acc": 0.75, "inputs": f"id{scale}"}

    line = _csv_line  # as noise_study writes a row
    path = tmp_path / "results.csv"
    whole = line(dict(zip(COLUMNS, COLUMNS))) + line(row("0.0"))
    path.write_text(whole + line(row("1.0"))[:-40])  # killed mid-write: 40 bytes and the newline never written
    repaired = repair_tail(path)
    append_line(path, line(row("2.0")))  # as the study appends its next row
    with open(path, newline="") as handle:
        parsed = list(csv.reader(handle))
    assert [len(r) for r in parsed] == [len(COLUMNS)] * 3  # a row glued to the torn one has too many fields
    assert parsed == [COLUMNS, [str(v) for v in row("0.0").values()], [str(v) for v in row("2.0").values()]]
    assert repaired is True and path.read_text() == whole + line(row("2.0"))
    assert repair_tail(path) is False and path.read_text() == whole + line(row("2.0"))  # a whole file: untouched
    for torn, left in (("scale,ac", ""), ("", ""), ("a,b\n", "a,b\n")):  # one torn line alone; empty; whole
        path.write_text(torn)
        assert repair_tail(path) is (torn != left) and path.read_text() == left
    assert repair_tail(tmp_path / "missing.csv") is False and not (tmp_path / "missing.csv").exists()


def test_an_empty_results_csv_left_by_a_full_disk_is_no_rows_and_the_study_completes(tiny_run_copy, tmp_path,
                                                                                       capsys):
    """A full disk at the study's first write leaves a 0-byte results.csv (as ``: > results.csv`` does):
    it, or one holding the header alone, has no rows — the next run computes them all; a file with
    other columns is one line naming it."""
    def rows(path):
        with open(path, newline="") as handle:
            return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(handle)]

    fresh, out = tmp_path / "fresh", tmp_path / "study"
    assert study(tiny_run_copy, fresh) == 0
    expected = rows(fresh / "results.csv")
    assert len(expected) == 2
    results = out / "results.csv"
    out.mkdir()
    header = (fresh / "results.csv").read_text().splitlines()[0]
    for left in ("", "\n", header + "\n"):  # empty, blank, header alone
        results.write_text(left)
        assert study(tiny_run_copy, out) == 0, repr(left)
        assert rows(results) == expected and (out / "summary.md").is_file()
    results.write_text("patient,score\n")
    capsys.readouterr()
    assert study(tiny_run_copy, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(results) in err and "other columns: 'patient', 'score'" in err
    assert results.read_text() == "patient,score\n"


def test_a_stray_label_is_one_line_before_any_run_directory_exists(tmp_path, capsys):
    """One training label 7 in binary data once made an 8-class task (test AUC NaN, exit 0)."""
    data = write_synthetic_npz(tmp_path / "breast.npz", n_train=32, n_val=16, n_test=16)
    with np.load(data) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "label_names"}  # as MedMNIST ships them
    arrays["train_labels"][3] = 7
    np.savez(data, **arrays)
    out = tmp_path / "run"
    assert main(["train", "--data-file", str(data), "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{data}: train_labels holds label 7" in err and "0, 1" in err
    assert not out.exists()


def test_a_test_split_of_one_class_gives_strict_json_with_the_auc_null_and_why(tmp_path, capsys, one_class_test_npz):
    """metrics.json once held a bare NaN (no JSON value) for an AUC that one class leaves undefined."""
    data = one_class_test_npz
    out = tmp_path / "run"
    assert main(["train", "--data-file", str(data), "--epochs", "1", "--batch-size", "16", "--out", str(out),
                 "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert metrics["test"]["auc"] is None
    assert metrics["test"]["auc_undefined"] == "only class 0 in these labels: an AUC needs images of both classes"
    assert isinstance(metrics["val"]["auc"], float) and "auc_undefined" not in metrics["val"]


def test_infinite_or_nan_noise_scales_are_one_line_and_write_nothing(tiny_run_copy, tmp_path, capsys):
    for scales in ("0,inf", "nan"):
        assert main(["noise-study", str(tiny_run_copy), "--scales", scales, "--out", str(tmp_path / "s"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--scales" in err and "finite" in err
    assert not (tmp_path / "s").exists()


def test_a_circuit_too_wide_for_the_exact_estimator_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "wide"
    assert main(["train", "--dataset", "synthetic", "--qubits", "34", "--epochs", "1", "--limit", "8",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "34 qubits" in err and "at most 20" in err
    assert not out.exists()


def test_offline_an_ibm_entry_blames_the_network_not_the_token(monkeypatch, tmp_path, capsys):
    """Runtime turns a failed DNS look-up into 'check that you are using a valid API token'."""

    class Offline:
        def __init__(self, **_):
            try:
                raise socket.gaierror(-2, "Name or service not known")
            except socket.gaierror as dns:
                raise RuntimeError("Unable to retrieve instances. Please check that you are using a valid "
                                   "API token.") from dns

    monkeypatch.setattr(runtime, "QiskitRuntimeService", Offline)
    registry = tmp_path / "backends.yaml"
    registry.write_text("qpu:\n  kind: ibm\n  device: ibm_fakecity\n")
    assert main(["backends", "--backends", str(registry), "check", "qpu"]) == 2
    err = capsys.readouterr().err
    assert "DNS look-up failed" in err and "valid API token" not in err and err.count("\n") == 1


def test_a_read_only_output_is_one_line_in_every_command_that_writes(tiny_run_copy, tmp_path, monkeypatch, capsys):
    """Tests run as root, where chmod does not stop writes: the file system's refusal is simulated where
    qmedimg writes files (its atomic writer's temporary file) and where matplotlib saves plots."""
    import errno
    import tempfile

    import matplotlib.figure
    from PIL import Image

    from qmedimg.rundir import load_run

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(load_run(tiny_run_copy).dataset.test.images[0, 0]).save(images / "scan.png")

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", refuse)
    run = str(tiny_run_copy)
    commands = {
        "train": ["train", "--dataset", "synthetic", "--limit", "8", "--epochs", "1", "--out", str(tmp_path / "t")],
        "evaluate": ["evaluate", run],
        "noise-study": ["noise-study", run, "--backend", "aer", "--mitigation", "none", "--test-limit", "4",
                        "--out", str(tmp_path / "n")],
        "predict": ["predict", run, str(images)],
        "explain": ["explain", run, str(images / "scan.png"), "--out", str(tmp_path / "x")],
        "compare": ["compare", "--dataset", "synthetic", "--limit", "8", "--models", "linear", "--seeds", "0",
                    "--epochs", "1", "--out", str(tmp_path / "c")],
    }
    for name, argv in commands.items():
        assert main([*argv, "--quiet"] if name not in ("explain",) else argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Read-only file system" in err and "Traceback" not in err, (name, err)
