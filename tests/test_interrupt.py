"""Interrupting `train` anywhere: before its first epoch ends the run can still be resumed, and the
Ctrl-C message says what was actually saved."""

import json

import pytest

import qmedimg.workflows.train as training
from qmedimg.cli import main

ARGS = ["--dataset", "synthetic", "--limit", "32", "--epochs", "2", "--batch-size", "16", "--quiet"]


def interrupt_at_save(monkeypatch, number: int):
    """Ctrl-C arrives while the ``number``-th checkpoint is being written (it is not written)."""
    real, calls = training.save_atomic, []

    def save(obj, path):
        calls.append(path)
        if len(calls) == number:
            raise KeyboardInterrupt
        real(obj, path)

    monkeypatch.setattr(training, "save_atomic", save)


def test_a_run_interrupted_before_its_first_epoch_resumes_and_ends_like_an_uninterrupted_one(
        tmp_path, monkeypatch, capsys):
    assert main(["train", *ARGS, "--out", str(tmp_path / "whole")]) == 0
    with monkeypatch.context() as patch:
        interrupt_at_save(patch, 1)
        assert main(["train", *ARGS, "--out", str(tmp_path / "cut")]) == 130
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if p.name != ".qmedimg.lock") == ["config.json"]
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "cut")]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["test"] == whole["test"] and cut["selected_epoch"] == whole["selected_epoch"] == 2


@pytest.mark.parametrize("number, said", [
    (1, "no epoch had finished, so no checkpoint was saved"),
    (2, "epoch 1 is saved in"),
])
def test_ctrl_c_says_what_was_actually_saved(tmp_path, monkeypatch, capsys, number, said):
    interrupt_at_save(monkeypatch, number)
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert said in err and f"qmedimg train --resume {out}" in err
    assert ("epoch" in err) and ("last finished epoch is saved" not in err)


def test_resume_of_a_folder_without_a_config_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
    assert "no config.json" in capsys.readouterr().err



def test_compare_continues_a_run_interrupted_before_its_first_epoch(tmp_path, monkeypatch):
    """compare used to call train() on such a directory, which refuses a non-empty folder: stuck forever."""
    argv = ["compare", "--dataset", "synthetic", "--limit", "24", "--models", "hybrid", "--seeds", "0",
            "--epochs", "1", "--out", str(tmp_path / "cmp"), "--quiet"]
    with monkeypatch.context() as patch:
        interrupt_at_save(patch, 1)
        assert main(argv) == 130
    assert sorted(p.name for p in (tmp_path / "cmp" / "hybrid-seed0").iterdir() if p.name != ".qmedimg.lock") == ["config.json"]
    assert main(argv) == 0
    assert (tmp_path / "cmp" / "comparison.md").is_file()
