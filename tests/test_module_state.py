"""State that lives as long as some work belongs to an object the caller creates, not to a module (issue 22,
item 3). This test runs the commands a user runs (train, evaluate on a fake device, a noise study) in this
process and lists every module global of qmedimg (and class attribute of its classes) that the work rebinds
or fills, and every environment variable it sets. KNOWN is what main still has: the list may only shrink."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import qmedimg
from qmedimg.cli import main

KNOWN = {  # what main still keeps in modules (issue 22 item 3 moves each into a context object)
    "qmedimg.backends.base._PREPARED": "the transpile cache, unbounded and never cleared",
    "qmedimg.backends.devices.fake_device()": "an lru_cache of the fake devices (their Target and calibration)",
    "qmedimg.quantum.circuits._pinned()": "an lru_cache of circuits built from pinned OpenQASM text",
    "qmedimg.quantum.circuits._load()": "an lru_cache of circuit templates read from circuits/",
    "qmedimg.backends.devices.fake_devices()": "an lru_cache of the fake provider's device list",
    "qmedimg.backends.registry._entry_schema()": "an lru_cache of the registry entries' schema",
    "qmedimg.quantum.kernel.pauli_tables()": "an lru_cache of the exact kernel's Pauli tables",
    "qmedimg.quantum.kernel._announced": "whether the kernel's first compilation was said on screen",
}
# Not seen by this workload, though module-level: the adjoint kernel's thread pool (created at import,
# qmedimg.quantum.adjoint_kernel._pool) and qmedimg.cores._cores (set per grid cell by use_cores).


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
