"""One meaning per flag, as a user meets it: the first N test images are `--test-limit` in every command
(`--limit` is N samples per split), evaluate collects QPU jobs with `--collect-jobs` (`--resume DIR` is
the run train continues), `--device` is torch's everywhere, and a `--threshold` given on a multi-class
task is refused whatever its value. The old spellings still work for one release, with one line saying
what replaces them."""

import argparse
import csv
import json
from pathlib import Path

import pytest

from qmedimg.cli import main
from qmedimg.cli.parser import build_parser
from qmedimg.data import write_synthetic_npz
from support import one_line_error, snapshot

TIMING = {"setup_s", "wall_time_s", "images_per_s", "wall_s"}  # how long it took: the only fields two calls differ in


def notice(command: str, old: str, new: str) -> str:
    return (f"qmedimg: {old} in {command} is deprecated, use {new} (same meaning); it will be removed in the "
            "next release\n")


def commands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def visible(command: str, parser=None) -> dict:
    """{option string: action} of what `qmedimg COMMAND --help` shows (of ``parser``, a command's own)."""
    return {option: action for action in (parser or commands()[command])._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings}


def said(capsys) -> tuple[dict, str]:
    """(the eval file an `evaluate` says it wrote, without its timings; what it printed on stderr)."""
    out, err = capsys.readouterr()
    path = out.rsplit("written to ", 1)[1].strip()
    return {k: v for k, v in json.loads(Path(path).read_text()).items() if k not in TIMING}, err


def study_rows(folder) -> list[dict]:
    with open(folder / "results.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


# ------------------------------------------------------------------------ each meaning has one spelling


def test_each_meaning_has_one_spelling_in_every_command():
    limit = {name: visible(name).get("--limit") for name in commands()}
    assert {name for name, action in limit.items() if action} == {"train", "compare", "width-study"}
    assert {action.help for action in limit.values() if action} == {"at most N samples per split (seeded)"}
    test_limit = {name: visible(name).get("--test-limit") for name in commands()}
    assert {name for name, action in test_limit.items() if action} == {"evaluate", "noise-study", "width-study"}
    assert {(a.dest, a.metavar, a.help) for a in test_limit.values() if a} == {
        ("test_limit", "N", "evaluate only the first N test images")}
    resume = {name: visible(name).get("--resume") for name in commands()}
    assert [name for name, action in resume.items() if action] == ["train"] and resume["train"].metavar == "DIR"
    assert [name for name in commands() if "--collect-jobs" in visible(name)] == ["evaluate"]


def test_every_device_option_is_the_torch_device_and_the_help_says_which_device_is_which():
    with_device = {name for name in commands() if "--device" in visible(name)}
    assert with_device == {"train", "evaluate", "noise-study", "width-study", "compare", "predict", "explain"}
    for name, parser in commands().items():
        options = visible(name, parser)
        for option in [o for o in options if "device" in o]:
            action = options[option]
            assert (option, action.dest, action.choices) == ("--device", "device", ["auto", "cpu", "cuda"]), name
            assert "torch device" in action.help, name
            group = next(g for g in parser._action_groups if action in g._group_actions)
            assert "quantum device is the --backend entry" in group.title, name
        if "--backend" in options and name in ("evaluate", "transpile"):
            assert "quantum device" in options["--backend"].help, name


# --------------------------------------------------------------- the old spellings, for one release


def test_old_spellings_are_hidden_and_parse_to_what_the_new_one_gives_saying_so_once(capsys):
    renamed = {("evaluate", "--limit", "7"): ("--test-limit", "test_limit", 7),
               ("noise-study", "--limit", "7"): ("--test-limit", "test_limit", 7),
               ("evaluate", "--resume", None): ("--collect-jobs", "collect_jobs", True)}
    for (name, old, value), (new, dest, parsed) in renamed.items():
        assert old not in visible(name) and new in visible(name)
        assert f"{old} " not in commands()[name].format_help().replace(new, "")
        given = [value] if value else []
        args = build_parser().parse_args([name, "RUN", new, *given])
        assert capsys.readouterr().err == ""
        assert build_parser().parse_args([name, "RUN", old, *given, old, *given]) == args
        assert getattr(args, dest) == parsed
        assert capsys.readouterr().err == notice(name, old, new)  # once, though given twice


def test_evaluate_limit_still_works_and_writes_what_test_limit_writes(tiny_run_copy, capsys):
    argv = ["evaluate", str(tiny_run_copy), "--backend", "fake_manila", "--quiet"]
    assert main([*argv, "--test-limit", "8"]) == 0
    new, quiet = said(capsys)
    assert main([*argv, "--limit", "8"]) == 0
    old, err = said(capsys)
    assert new["images"] == 8 and old == new
    assert quiet == "" and err == notice("evaluate", "--limit", "--test-limit")


def test_noise_study_limit_still_works_and_writes_the_rows_test_limit_writes(tiny_run, tmp_path, capsys):
    argv = ["noise-study", str(tiny_run), "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none",
            "--quiet"]
    assert main([*argv, "--test-limit", "4", "--out", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*argv, "--limit", "4", "--out", str(tmp_path / "old")]) == 0
    assert capsys.readouterr().err == notice("noise-study", "--limit", "--test-limit")
    new, old = study_rows(tmp_path / "new"), study_rows(tmp_path / "old")
    assert len(new) == 2 and old == new


def test_evaluate_resume_still_collects_the_jobs_collect_jobs_collects(tiny_run_copy, capsys):
    argv = ["evaluate", str(tiny_run_copy), "--backend", "ibm_local", "--test-limit", "3", "--quiet"]
    before = snapshot(tiny_run_copy)
    assert main([*argv, "--collect-jobs"]) == 2  # nothing was submitted: nothing to collect, nothing submitted
    assert "--collect-jobs: no ledger" in one_line_error(capsys)
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(notice("evaluate", "--resume", "--collect-jobs")) and err.count("\n") == 2
    assert "no ledger" in err and snapshot(tiny_run_copy) == before

    assert main(argv) == 0  # submits, and keeps the job ids in the ledger
    submitted, _ = said(capsys)
    ledger = (tiny_run_copy / "ledger-ibm_local.json").read_text()
    for flag, line in (("--collect-jobs", ""), ("--resume", notice("evaluate", "--resume", "--collect-jobs"))):
        assert main([*argv, flag]) == 0  # collected from the ledger: no job submitted again
        assert said(capsys) == (submitted, line), flag
        assert (tiny_run_copy / "ledger-ibm_local.json").read_text() == ledger, flag


# ----------------------------------------------------------------------------------------- --threshold


@pytest.fixture
def three_classes(tmp_path):
    return write_synthetic_npz(tmp_path / "three.npz", n_train=32, n_val=16, n_test=16, num_classes=3)


def test_a_given_threshold_of_0_5_on_a_multi_class_task_is_one_line_and_writes_nothing(three_classes, tmp_path,
                                                                                       capsys):
    for argv in (["train", "--data-file", str(three_classes), "--out", str(tmp_path / "run")],
                 ["compare", "--data-file", str(three_classes), "--models", "hybrid", "--seeds", "0",
                  "--out", str(tmp_path / "cmp")],
                 ["compare", "--data-file", str(three_classes), "--models", "hybrid", "--seeds", "0", "--dry-run",
                  "--out", str(tmp_path / "cmp")]):
        before = snapshot(tmp_path)
        assert main([*argv, "--threshold", "0.5"]) == 2, argv
        err = one_line_error(capsys)
        assert "--threshold 0.5" in err and "multi-class" in err and "drop --threshold" in err, argv
        assert snapshot(tmp_path) == before, argv


def test_a_given_threshold_of_0_5_on_a_binary_task_trains_as_without_it(tmp_path, capsys):
    data = write_synthetic_npz(tmp_path / "two.npz", n_train=32, n_val=16, n_test=16)
    argv = ["train", "--data-file", str(data), "--epochs", "1", "--batch-size", "16", "--quiet"]
    assert main([*argv, "--threshold", "0.5", "--out", str(tmp_path / "given")]) == 0
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    given, default = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("given", "default"))
    assert given["threshold"] == default["threshold"] == {"value": 0.5, "rule": "fixed"}
    assert given["test"] == default["test"]
