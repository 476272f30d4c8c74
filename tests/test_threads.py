"""A command's CPU cores as a user meets them (issue 23): ``--threads N`` means one thing in every command
that computes, the command runs on exactly that many torch threads (recorded in metrics.json), and the
commands that only list or explain load neither torch nor Qiskit."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import qmedimg.cli
from qmedimg.cli import main
from qmedimg.cli.parser import build_parser
from qmedimg.cores import available_cores, default_cores

ROOT = Path(__file__).resolve().parents[1]
SINGLE = {  # each single command that computes, with the fewest arguments it parses
    "train": ["train", "--out", "unused"], "evaluate": ["evaluate", "RUN"], "predict": ["predict", "RUN", "a.png"],
    "explain": ["explain", "RUN"], "transpile": ["transpile", "sel", "--backend", "fake_manila"],
    "backends": ["backends", "check", "exact"],
}
GRID = {"noise-study": ["noise-study", "RUN"], "width-study": ["width-study", "--out", "unused"],
        "compare": ["compare", "--out", "unused"]}


def help_of(command: str, option: str) -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a.help for a in sub.choices[command]._actions if option in a.option_strings)


def test_every_command_that_computes_takes_threads_with_one_meaning():
    for command, argv in {**SINGLE, **GRID}.items():
        assert build_parser().parse_args([*argv, "--threads", "3"]).threads == 3, command
        text = help_of(command, "--threads")
        assert "torch threads, qmedimg's row threads and Aer's parallel experiments" in text, command
        assert ("per cell" in text) == (command in GRID), command
        assert f"{default_cores()} here" in text, command  # the default, said as a number


def test_a_single_command_runs_on_its_threads_and_puts_them_back(monkeypatch):
    """Each command body is replaced by one that notes the cores and torch threads it runs on: --threads N,
    else $OMP_NUM_THREADS where set, else every available core."""
    import torch

    from qmedimg.cores import cores

    seen = []
    for name in SINGLE:
        monkeypatch.setitem(qmedimg.cli.COMMANDS, name, lambda args: seen.append((cores(), torch.get_num_threads())))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    more = available_cores() + 1  # neither the default nor torch's own count
    for command, argv in SINGLE.items():
        seen.clear()
        assert main([*argv, "--threads", str(more)]) == 0
        assert main(argv) == 0
        with monkeypatch.context() as env:
            env.setenv("OMP_NUM_THREADS", str(more + 1))
            assert main(argv) == 0
        assert seen == [(more, more), (available_cores(), available_cores()), (more + 1, more + 1)], command
        assert torch.get_num_threads() == before, command


def test_train_records_the_threads_it_ran_on(tmp_path):
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--threads", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["torch_threads"] == 1
    assert main(["evaluate", str(tmp_path / "run"), "--threads", "1", "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "eval-exact.json").read_text())["torch_threads"] == 1


def loaded_after(code: str) -> dict:
    """{'torch': bool, 'qiskit': bool}: whether a fresh process had imported them after ``code``."""
    probe = f"""if True:
        import json, sys
        from qmedimg.cli import main
        def run(argv):
            try:
                main(argv)
            except SystemExit:
                pass
        {code}
        print("LOADED", json.dumps({{m: m in sys.modules for m in ("torch", "qiskit")}}))
    """
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("LOADED "))[7:])


@pytest.mark.parametrize("code", [
    "import qmedimg.cli.parser; qmedimg.cli.parser.build_parser()",
    "run(['--help'])",
    "run(['train', '--help']); run(['evaluate', '--help']); run(['backends', '--help'])",
    "run(['train', '--threads', '0'])",  # a usage error
])
def test_help_and_parsing_load_neither_torch_nor_qiskit(code):
    assert loaded_after(code) == {"torch": False, "qiskit": False}


def test_listing_the_circuits_loads_no_torch():
    assert loaded_after("run(['circuits'])")["torch"] is False


def test_listing_the_backends_loads_neither_torch_nor_qiskit():
    """The listing reads backends.yaml and each fake device's calibration files; it builds no backend (issue 23)."""
    assert loaded_after("run(['backends'])") == {"torch": False, "qiskit": False}
