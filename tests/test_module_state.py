"""State that lives as long as some work belongs to an object the caller creates, not to a module (issue 22,
item 3). This test runs the commands a user runs (train, evaluate on a fake device, a noise study) in this
process and lists every module global of qmedimg (and class attribute of its classes) that the work rebinds
or fills, and every environment variable it sets. KNOWN is what main still has (nothing): the list may only shrink.
The one variable qmedimg sets is OMP_WAIT_POLICY, by the command line for its own process (issue 23; the last
test here); importing qmedimg sets none."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import qmedimg
from qmedimg.cli import main

KNOWN: dict[str, str] = {}  # what main still keeps in modules: nothing (issue 22 item 3); the list may only shrink
NOT_IN_THE_WORKLOAD: dict[str, str] = {}  # caches the workload below does not touch: none either
# Thread pools and the cores a grid cell uses are not seen by this workload (a pool made at import keeps its
# identity; a cell puts its share back): test_a_grid_cell_and_the_row_threads_leave_no_module_state looks.


def modules():
    for info in pkgutil.walk_packages(qmedimg.__path__, "qmedimg."):
        importlib.import_module(info.name)
    return {name: module for name, module in sys.modules.items()
            if name == "qmedimg" or name.startswith("qmedimg.")}


def snapshot() -> dict[str, tuple]:
    """{'module.NAME' or 'module.Class.attr': (identity, size)} for what qmedimg's modules define, and
    {'$VAR': value} for the environment."""
    seen = {}
    for name, module in modules().items():
        for key, value in list(vars(module).items()):
            if key.startswith("__") or getattr(value, "__module__", name) != name and isinstance(value, type):
                continue
            if isinstance(value, type) and value.__module__ == name:
                for attr, member in list(vars(value).items()):
                    if not attr.startswith("__") and not callable(member) and not isinstance(member, property):
                        seen[f"{name}.{key}.{attr}"] = (id(member), _size(member))
            elif hasattr(value, "cache_info") and getattr(value, "__module__", None) == name:  # functools caches
                seen[f"{name}.{key}()"] = (id(value), value.cache_info().currsize)
            elif not callable(value) and type(value).__name__ != "module":
                seen[f"{name}.{key}"] = (id(value), _size(value))
    seen.update({f"${k}": (v, None) for k, v in os.environ.items()})
    return seen


def _size(value):
    try:
        return len(value)
    except TypeError:
        return None


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in after if before.get(k) != after[k]}


def work(run: str, out: str) -> set[str]:
    """What the commands change, in this process."""
    modules()  # import everything first: importing is not work
    before = snapshot()
    assert main(["evaluate", run, "--backend", "fake_manila", "--test-limit", "4", "--quiet"]) == 0
    assert main(["noise-study", run, "--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none",
                 "--test-limit", "4", "--out", f"{out}/study", "--quiet"]) == 0
    assert main(["train", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--batch-size", "12",
                 "--out", f"{out}/run", "--quiet"]) == 0
    return changed(before, snapshot())


def test_no_module_state_beyond_the_known_list(tiny_run_copy, tmp_path):
    # a fresh process: caches other tests filled in this one would hide what the work fills
    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_module_state import work; "
            f"print('FOUND', json.dumps(sorted(work({str(tiny_run_copy)!r}, {str(tmp_path)!r}))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    found = set(json.loads(next(l for l in done.stdout.splitlines() if l.startswith("FOUND "))[6:]))
    assert found - set(KNOWN) == set(), f"work changed module-level state: {sorted(found - set(KNOWN))}"
    assert set(KNOWN) - found == set(), f"no longer changed (drop from KNOWN): {sorted(set(KNOWN) - found)}"


def threads_held() -> list[str]:
    """qmedimg's module globals and class attributes that are thread pools or threads."""
    from concurrent.futures import Executor
    from threading import Thread

    held = []
    for name, module in modules().items():
        for key, value in list(vars(module).items()):
            members = vars(value).items() if isinstance(value, type) and value.__module__ == name else ()
            held += [f"{name}.{key}{'.' + attr if attr else ''}" for attr, member in [("", value), *members]
                     if isinstance(member, (Executor, Thread))]
    return held


def test_every_module_level_cache_is_listed():
    """Whatever a workload happens to touch: every functools cache a qmedimg module defines is listed (KNOWN or
    NOT_IN_THE_WORKLOAD), so the lists can only shrink."""
    caches = {f"{name}.{key}()" for name, module in modules().items() for key, value in vars(module).items()
              if hasattr(value, "cache_info") and getattr(value, "__module__", None) == name}
    listed = set(KNOWN) | set(NOT_IN_THE_WORKLOAD)
    assert caches - listed == set(), f"module-level caches not listed: {sorted(caches - listed)}"
    assert listed - caches == set(), f"listed caches that are gone (drop them): {sorted(listed - caches)}"


def test_a_grid_cell_and_the_row_threads_leave_no_module_state():
    """A grid cell sets its share of cores (executor.run_with_cores) and the exact estimator splits a PUB's rows
    over threads: neither the share nor the pool may be a module global, however made (at import, at first
    use, rebound per cell). Checked inside the cell and after it, with more cores than outside it."""
    import numpy as np

    from qmedimg.cores import cores
    from qmedimg.executor import run_with_cores
    from qmedimg.quantum.adjoint import AdjointGradient
    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator
    from qmedimg.quantum.gradients import column

    spec = load_circuit("ring", qubits=4, layers=1)
    values = np.random.default_rng(1).uniform(-np.pi, np.pi, (800, spec.circuit.num_parameters))  # 3 chunks

    def cell(count: int) -> dict:
        assert cores() == count
        estimator = ExactEstimator()
        estimator.run([(spec.circuit, column(spec.observables), values)]).result()
        AdjointGradient(estimator, method="adjoint").gradients(spec.circuit, spec.observables, values[:8])
        return snapshot()

    outside = cores()
    run_with_cores(cell, outside, outside)  # everything imported and compiled first
    before = snapshot()
    inside = run_with_cores(cell, outside + 1, outside + 1)
    assert cores() == outside
    assert changed(before, inside) == set() and changed(before, snapshot()) == set()
    assert threads_held() == []


def variables_set(body: str, environ: dict | None = None) -> list[str]:
    """The environment variables qmedimg's own code assigns while a fresh process runs ``body`` (Python, 8
    spaces deep): every assignment to os.environ is traced to the code that made it."""
    code = """if True:
        import json, os, sys
        from pathlib import Path
        package = Path(sys.argv[1])
        setters, set_item, set_default = [], os._Environ.__setitem__, os._Environ.setdefault

        def note(key):
            frame = sys._getframe(2)
            while frame.f_globals.get("__name__") in ("os", "_collections_abc"):  # os.environ.setdefault, update
                frame = frame.f_back
            if Path(frame.f_code.co_filename).is_relative_to(package):
                setters.append(f"{key} ({frame.f_code.co_filename}:{frame.f_lineno})")

        def traced(self, key, value):
            note(key)
            set_item(self, key, value)

        def traced_default(self, key, value=None):  # noted even where the variable came with the environment: the
            if key in self:                        # test's own process may have imported (and set) it first
                note(key)
            return set_default(self, key, value)

        os._Environ.__setitem__, os._Environ.setdefault = traced, traced_default
        sys.path.insert(0, "tests")
""" + body + """
        print("SET", json.dumps(setters))
    """
    done = subprocess.run([sys.executable, "-c", code, str(Path(qmedimg.__file__).parent)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1], env=environ)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(next(l for l in done.stdout.splitlines() if l.startswith("SET "))[4:])


def test_importing_qmedimg_and_choosing_a_device_set_no_environment_variable():
    """Only the libraries qmedimg imports may set variables (scikit-learn sets two KMP_ ones); importing every
    qmedimg module, the command line's included, sets none."""
    assert variables_set("""
        from test_module_state import modules
        modules()
        from qmedimg.model import torch_device
        torch_device("auto"), torch_device("cpu")  # with a GPU, "auto" is CUDA: checked then too
    """) == []


def test_the_command_line_sets_exactly_omp_wait_policy_and_only_where_it_acts():
    """The one variable qmedimg sets, deliberately: the ``qmedimg`` command (``main``) sets OMP_WAIT_POLICY=PASSIVE
    for its own process, before torch (or Aer, scikit-learn) loads an OpenMP runtime that reads it, when the user
    has not set it. A user's value is kept, and a process that imported torch first (a Python session calling
    ``main``) gets nothing: it would not act there."""
    unset = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    command = """
        from qmedimg.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        setters.append(f"value {os.environ.get('OMP_WAIT_POLICY')}")
    """
    found = variables_set(command, unset)
    assert [line.split(" (")[0] for line in found] == ["OMP_WAIT_POLICY", "value PASSIVE"], found
    assert "qmedimg/cli/threads.py" in found[0]
    assert variables_set(command, {**unset, "OMP_WAIT_POLICY": "ACTIVE"}) == ["value ACTIVE"]
    assert variables_set(command, {**unset, "OMP_WAIT_POLICY": ""}) == ["value "]
    assert variables_set("        import torch" + command, unset) == ["value None"]
