"""The architecture holds: layers only import downwards, no import cycles, no module reaches into
another's private names, workflows never ask which kind a backend is, a new kind is one module plus
one registry line, and files stay small enough to read in one sitting."""

import ast
from functools import cached_property
from pathlib import Path
from typing import Literal

import pytest

from qmedimg.backends import KINDS
from qmedimg.backends.base import Backend
from qmedimg.backends.options import Strict

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qmedimg"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_import_linter_contracts_are_kept(monkeypatch):
    """pyproject.toml's contracts: layers (cli -> workflows -> ... -> errors), independent backend
    kinds, no cycles. Fails on any upward import or import cycle inside qmedimg."""
    import logging

    from importlinter.cli import lint_imports

    for logger in list(logging.root.manager.loggerDict.values()):  # lint_imports' dictConfig disables every
        if isinstance(logger, logging.Logger):  # existing logger for the rest of the session: restore them after
            monkeypatch.setattr(logger, "disabled", logger.disabled)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_layers_contract_covers_every_module():
    """exhaustive = true: a new top-level module must be given a layer, not slip past the contract."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")
    assert layers["exhaustive"] is True and layers["containers"] == ["qmedimg"]
    declared = {name.strip() for layer in layers["layers"] for name in layer.replace(":", "|").split("|")}
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert top == declared


def private_uses(path: Path) -> list[str]:
    """Names starting with one underscore that ``path`` takes from another qmedimg module."""
    tree = ast.parse(path.read_text())
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qmedimg"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qmedimg"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_uses_another_modules_private_names(path):
    assert private_uses(path) == []


def test_the_private_name_check_sees_both_forms(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from qmedimg.backends.base import _PREPARED\nimport qmedimg.quantum.exact as ex\nex._thing\n")
    assert private_uses(probe) == ["from qmedimg.backends.base import _PREPARED", "ex._thing"]


def kind_questions(path: Path) -> list[str]:
    """Places where ``path`` asks a backend which kind (or entry name) it is."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "kind":
            found.append(f"line {node.lineno}: .kind")
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                values = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                for value in values:
                    if isinstance(value, ast.Constant) and value.value in KINDS:
                        found.append(f"line {node.lineno}: compares with '{value.value}'")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
                and "Backend" in ast.unparse(node.args[1])):
            found.append(f"line {node.lineno}: isinstance of a backend class")
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "workflows").glob("*.py")), ids=lambda p: p.stem)
def test_workflows_never_branch_on_a_backend_kind(path):
    assert kind_questions(path) == []


def test_the_kind_check_sees_the_old_branches(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("if target.kind == 'ibm':\n    pass\nif backend in (None, 'exact'):\n    pass\n"
                     "if isinstance(target, FakeBackend):\n    pass\n")
    assert len(kind_questions(probe)) == 4


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_modules_stay_readable_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_every_module_says_what_it_is_for(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"


# ---- a fifth kind: one module (here, two classes) and one registry line --------------------------


class StatevectorEntry(Strict):
    kind: Literal["statevector"]
    description: str = ""


class StatevectorBackend(Backend):
    """Qiskit's reference ``StatevectorEstimator``: what a new kind needs to say, and nothing else."""

    kind = "statevector"
    Entry = StatevectorEntry

    @cached_property
    def _estimator(self):  # the one hook a kind must give
        from qiskit.primitives import StatevectorEstimator

        return StatevectorEstimator()


@pytest.fixture
def fifth_kind(monkeypatch, tmp_path):
    monkeypatch.setitem(KINDS, "statevector", StatevectorBackend)  # the one registry line
    registry = tmp_path / "backends.yaml"
    registry.write_text("reference:\n  kind: statevector\n  description: Qiskit's reference estimator\n")
    return registry


def test_a_fifth_kind_runs_in_every_workflow_without_touching_them(fifth_kind, tiny_run_copy, tmp_path, capsys):
    from qmedimg.cli import main
    from qmedimg.workflows.evaluate import evaluate_run

    tiny_run = tiny_run_copy  # conftest's shared run, copied: evaluating writes eval-reference.json into it

    result = evaluate_run(tiny_run, "reference", backends_file=fifth_kind, limit=8)
    assert result["kind"] == "statevector" and result["images"] == 8
    assert result["mean_abs_expectation_error"] < 1e-5  # the same circuit, exactly
    assert result["test"]["acc"] == result["ideal_test"]["acc"]
    out = tmp_path / "study"
    assert main(["noise-study", str(tiny_run), "--backend", "reference", "--backends", str(fifth_kind),
                 "--mitigation", "none", "--test-limit", "8", "--out", str(out), "--quiet"]) == 0
    assert (out / "results.csv").read_text().count("\n") == 2  # header + one point (no scales, levels)
    assert main(["evaluate", str(tiny_run), "--backend", "reference", "--backends", str(fifth_kind),
                 "--dry-run"]) == 2
    assert "--dry-run is for ibm backends" in capsys.readouterr().err
    assert main(["backends", "--backends", str(fifth_kind)]) == 0
    assert "statevector" in capsys.readouterr().out


def test_an_unknown_kind_lists_the_registered_ones(fifth_kind, tmp_path):
    from qmedimg.backends import load_backends
    from qmedimg.errors import QmedimgError

    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  kind: warp\n")
    with pytest.raises(QmedimgError, match="valid: exact, aer, fake, ibm, statevector"):
        load_backends(bad)
