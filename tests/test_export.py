"""`qmedimg export RUN_DIR FILE`: a trained run as one file to hand over, which predict and explain take in place
of the run directory once the directory is gone; it holds exactly config.json, checkpoint.pt and metrics.json, is
never written over an existing file nor from a run that would not load, and a tampered archive is refused before
anything is extracted from it."""

import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import qmedimg
from qmedimg.cli import main
from qmedimg.rundir import load_run
from qmedimg.workflows.export import export_run, opened_run
from qmedimg.workflows.predict import predict
from support import one_line_error, snapshot

MEMBERS = ["config.json", "checkpoint.pt", "metrics.json"]


@pytest.fixture
def scans(tiny_run, tmp_path) -> Path:
    """A folder of three of the run's test images as PNG files."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, image in enumerate(load_run(tiny_run).dataset.test.images[:3]):
        Image.fromarray(image[0]).save(folder / f"case{i}.png")
    return folder


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The temporary folder an exported run is extracted under, this test's own (to see it emptied)."""
    folder = tmp_path / "scratch" / "tmp"
    folder.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_an_exported_run_predicts_and_explains_as_its_directory_did_once_the_directory_is_gone(
        tiny_run_copy, scans, scratch, tmp_path, capsys):
    run, file = tiny_run_copy, tmp_path / "breast.zip"
    png = scans / "case0.png"
    expected = predict(run, sorted(scans.iterdir()))["rows"]
    assert main(["predict", str(run), str(scans), "--out", str(tmp_path / "before.csv"), "--quiet"]) == 0
    assert main(["explain", str(run), str(png), "--out", str(tmp_path / "explained")]) == 0
    assert main(["export", str(run), str(file)]) == 0
    shutil.rmtree(run)  # handed over: only the file is there
    with opened_run(file) as run_dir:
        assert predict(run_dir, sorted(scans.iterdir()))["rows"] == expected  # every probability and head value
    assert main(["predict", str(file), str(png)]) == 0
    assert main(["predict", str(file), str(scans), "--quiet"]) == 0  # a folder's CSV goes beside the file
    assert (tmp_path / "breast-predictions.csv").read_bytes() == (tmp_path / "before.csv").read_bytes()
    assert main(["explain", str(file), str(png)]) == 0
    drawn = (tmp_path / "breast-explain" / "case0-gradcam.png").read_bytes()
    assert drawn == (tmp_path / "explained" / "case0-gradcam.png").read_bytes()
    assert list(scratch.iterdir()) == []  # each extracted copy removed when the command ended


def test_the_archive_holds_exactly_the_run_s_config_checkpoint_and_metrics(tiny_run_copy, tmp_path):
    run = tiny_run_copy
    for extra in ("eval-exact.json", "ledger-ibm_brisbane.json", "noise-study/results.csv", "explain/a.png"):
        (run / extra).parent.mkdir(exist_ok=True)
        (run / extra).write_text("{}")
    file = qmedimg.export_run(run, tmp_path / "run.zip")
    with zipfile.ZipFile(file) as archive:
        assert archive.namelist() == MEMBERS
        assert all(archive.read(name) == (run / name).read_bytes() for name in MEMBERS)
    assert export_run(run, tmp_path / "again.zip").read_bytes() == file.read_bytes()  # the same run, the same bytes
    (run / "metrics.json").unlink()  # interrupted before its end: no metrics yet
    with zipfile.ZipFile(export_run(run, tmp_path / "interrupted.zip")) as archive:
        assert archive.namelist() == MEMBERS[:2]


@pytest.mark.parametrize("existing", ["file", "folder"])
def test_an_existing_file_is_refused_exit_2_and_left_unchanged(tiny_run, tmp_path, capsys, existing):
    file = tmp_path / "run.zip"
    file.mkdir() if existing == "folder" else file.write_bytes(b"someone else's")
    before = snapshot(tmp_path)
    assert main(["export", str(tiny_run), str(file)]) == 2
    assert f"{file}: already exists" in one_line_error(capsys)
    assert snapshot(tmp_path) == before
    assert existing == "folder" or file.read_bytes() == b"someone else's"


@pytest.mark.parametrize("damage, says", [
    ("no checkpoint", "not a qmedimg run directory"), ("config not JSON", "config.json: not valid JSON"),
    ("newer config", "config.json: written by a newer qmedimg"),
    ("checkpoint damaged", "checkpoint.pt: cannot be read"),
    ("a file", "a file, not a run directory")])
def test_a_run_that_is_not_complete_or_would_not_load_is_refused_and_nothing_written(tiny_run_copy, tmp_path, capsys,
                                                                                     damage, says):
    run = tiny_run_copy
    if damage == "no checkpoint":
        (run / "checkpoint.pt").unlink()
    elif damage == "config not JSON":
        (run / "config.json").write_text('{"config": ')
    elif damage == "newer config":
        (run / "config.json").write_text('{"schema": 99, "config": {}}')
    elif damage == "checkpoint damaged":
        (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    else:
        run = _archive(tmp_path / "given.zip", {})
    assert main(["export", str(run), str(tmp_path / "out.zip")]) == 2
    assert says in one_line_error(capsys)
    assert not (tmp_path / "out.zip").exists() and not list(tmp_path.glob(".out.zip*"))


@pytest.mark.parametrize("tamper", ["extra member", "../x", "sub/config.json", "twice", "no checkpoint", "not a zip"])
def test_a_tampered_archive_is_refused_in_one_line_before_anything_is_extracted(tiny_run, scans, scratch, tmp_path,
                                                                                capsys, tamper):
    members = {name: (tiny_run / name).read_bytes() for name in MEMBERS}
    file = tmp_path / "run.zip"
    if tamper == "not a zip":
        file.write_bytes(members["config.json"])
    elif tamper == "twice":
        with pytest.warns(UserWarning, match="Duplicate name"):
            _archive(file, members)
            with zipfile.ZipFile(file, "a") as archive:
                archive.writestr("config.json", b'{"config": {}}')
    elif tamper == "no checkpoint":
        _archive(file, {k: v for k, v in members.items() if k != "checkpoint.pt"})
    else:
        name = {"extra member": "run.py", "../x": "../x", "sub/config.json": "sub/config.json"}[tamper]
        _archive(file, {**members, name: b"import os"})
    assert main(["predict", str(file), str(scans / "case0.png")]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"qmedimg: error: {file}: ") and ("holds" in err or "not a run directory nor" in err)
    assert [p.name for p in scratch.parent.rglob("*")] == ["tmp"]  # nothing extracted, not even beside the folder


def test_an_error_inside_an_exported_run_names_the_file_not_the_temporary_copy(tiny_run, scans, tmp_path, capsys):
    file = _archive(tmp_path / "run.zip", {"config.json": (tiny_run / "config.json").read_bytes(),
                                           "checkpoint.pt": b"not a checkpoint"})
    assert main(["predict", str(file), str(scans / "case0.png")]) == 2
    assert one_line_error(capsys).startswith(f"qmedimg: error: {file}/checkpoint.pt: cannot be read")


@pytest.mark.parametrize("command", [["evaluate"], ["noise-study", "--backend", "exact", "--scales", "0"]])
def test_commands_that_write_into_the_run_say_to_unzip_an_exported_run_first(tiny_run, tmp_path, capsys, command):
    file = export_run(tiny_run, tmp_path / "run.zip")
    before = snapshot(tmp_path)
    assert main([command[0], str(file), *command[1:]]) == 2
    assert f"{file}: a file, not a run directory" in (err := one_line_error(capsys)) and f"unzip {file} -d DIR" in err
    assert snapshot(tmp_path) == before
