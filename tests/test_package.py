"""A wheel is a real package: built from the checkout (offline) and installed elsewhere, it holds the
top-level ``circuits/`` templates and ``backends.yaml`` and loads them without the checkout in sight.

The wheel is built from a copy of the project files, so the checkout gets no ``build/`` or egg-info;
the installed copy runs in a subprocess whose only way to qmedimg is ``--target`` site (asserted), from
an empty directory (no ``./backends.yaml``)."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from qmedimg.backends.registry import load_backends
from qmedimg.quantum.circuits import load_circuit

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "backends.yaml", "circuits", "qmedimg")
OFFLINE = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
PROBE = """
import json, sys
import qmedimg
from qmedimg.backends.registry import DEFAULT_FILE, load_backends, registry_path
from qmedimg.quantum.circuits import CIRCUITS_DIR, circuit_names, load_circuit
from qmedimg.rundir import TrainConfig

default = TrainConfig.model_fields["circuit"].default
spec = load_circuit(default)
print(json.dumps({
    "qmedimg": qmedimg.__file__, "circuits_dir": str(CIRCUITS_DIR), "default_file": str(DEFAULT_FILE),
    "registry": str(registry_path()), "readme": (CIRCUITS_DIR / "README.md").is_file(), "names": circuit_names(),
    "default": default, "qubits": spec.qubits, "inputs": len(spec.inputs), "weights": len(spec.weights),
    "observables": [o.paulis[0].to_label() for o in spec.observables], "qasm": spec.qasm,
    "backends": {name: entry.kind for name, entry in load_backends().items()},
}))
"""


def shipped() -> list[str]:
    """The checkout's files a wheel must carry, relative to the repository."""
    return sorted([f"circuits/{p.name}" for p in (ROOT / "circuits").glob("*.qasm")]
                  + ["circuits/README.md", "backends.yaml"])


def pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=OFFLINE, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The project files copied to a temporary directory; its sdist and its wheel, built offline."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    for name in PROJECT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif (ROOT / name).is_file():
            src.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    pip("wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"), cwd=src)
    done = subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; import sys; "
                           "print(b.build_sdist(sys.argv[1]))", str(tmp / "sdist")],
                          cwd=src, env=OFFLINE, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp / "wheel").glob("qmedimg-*.whl")
    return {"tmp": tmp, "wheel": wheel, "sdist": tmp / "sdist" / done.stdout.split()[-1]}


def test_wheel_holds_the_circuits_and_the_registry(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    assert [n for n in shipped() if f"qmedimg/_shipped/{n}" not in names] == []
    with zipfile.ZipFile(built["wheel"]) as wheel:
        assert wheel.read("qmedimg/_shipped/backends.yaml") == (ROOT / "backends.yaml").read_bytes()
        assert wheel.read("qmedimg/_shipped/circuits/sel.qasm") == (ROOT / "circuits" / "sel.qasm").read_bytes()


def test_a_wheel_built_from_the_sdist_holds_them_too(built):
    top = built["sdist"].name.removesuffix(".tar.gz")
    with tarfile.open(built["sdist"]) as sdist:
        members = sdist.getnames()
        sdist.extractall(built["tmp"] / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert [n for n in shipped() if f"{top}/{n}" not in members] == []
    pip("wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(built["tmp"] / "wheel2"),
        cwd=built["tmp"] / "unpacked" / top)
    (wheel,) = (built["tmp"] / "wheel2").glob("qmedimg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in shipped() if f"qmedimg/_shipped/{n}" not in names] == []


def test_installed_wheel_loads_the_default_circuit_and_registry_without_the_checkout(built):
    site, empty = built["tmp"] / "site", built["tmp"] / "empty"
    empty.mkdir()
    pip("install", "--no-deps", "--target", str(site), str(built["wheel"]), cwd=empty)
    env = {**OFFLINE, "PYTHONPATH": str(site)}
    env.pop("QMEDIMG_BACKENDS", None)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])

    package = site / "qmedimg"
    assert Path(got["qmedimg"]).is_relative_to(site)                     # not the checkout's editable install
    assert Path(got["circuits_dir"]) == package / "_shipped" / "circuits" and got["readme"]
    assert Path(got["default_file"]) == Path(got["registry"]) == package / "_shipped" / "backends.yaml"
    assert got["names"] == sorted(Path(n).stem for n in shipped() if n.endswith(".qasm"))

    mine = load_circuit(got["default"])                                  # the checkout's copy, for comparison
    assert (got["default"], got["qubits"], got["inputs"], got["weights"]) == ("sel", 4, 4, 24)
    assert got["observables"] == [o.paulis[0].to_label() for o in mine.observables] == ["IIIZ", "IIZI", "IZII", "ZIII"]
    assert got["qasm"] == mine.qasm
    assert got["backends"] == {name: entry.kind for name, entry in load_backends(ROOT / "backends.yaml").items()}
    assert got["backends"]["fake_manila"] == "fake"
