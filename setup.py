"""Ship the top-level ``circuits/`` templates and ``backends.yaml`` inside the wheel (everything else is in pyproject.toml).

Both files stay at the top of the repository, where users edit them without touching Python. A wheel has
no top level, so ``build_py`` copies them into the built package as ``qmedimg/_shipped/``; the code finds
that copy through importlib.resources when it runs from a wheel, and the top-level files in a checkout or
an editable install (``qmedimg.quantum.circuits.CIRCUITS_DIR``, ``qmedimg.backends.registry.DEFAULT_FILE``).
MANIFEST.in puts the same files in the sdist, so a wheel built from the sdist holds them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = Path("qmedimg", "_shipped")


def shipped_files() -> list[Path]:
    """The top-level files a wheel ships, relative to the repository: every ``circuits/*.qasm``,
    ``circuits/README.md`` and ``backends.yaml``. A missing one stops the build (a wheel without them
    cannot load its default circuit)."""
    files = sorted(p.relative_to(ROOT) for p in (ROOT / "circuits").glob("*.qasm"))
    files += [Path("circuits", "README.md"), Path("backends.yaml")]
    missing = [str(f) for f in files if not (ROOT / f).is_file()]
    if missing or len(files) == 2:
        raise SystemExit(f"qmedimg build: missing {', '.join(missing) or 'circuits/*.qasm'} in {ROOT}")
    return files


class BuildPyShipped(build_py):
    """``build_py`` that also puts :func:`shipped_files` in the built package as ``qmedimg/_shipped/``: copies
    in a wheel; in an editable install, entries of the output mapping (a strict editable install links them
    to the top-level files; the default one needs nothing, the code reads the top-level files there)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            for target, source in self._shipped().items():
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)  # editable: the mapping's keys, ours included
        return outputs if self.editable_mode else outputs + list(self._shipped())

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), **self._shipped()}

    def _shipped(self) -> dict[str, str]:
        """{file in the built package: top-level source file}."""
        return {str(Path(self.build_lib, SHIPPED, f)): str(ROOT / f) for f in shipped_files()}


setup(cmdclass={"build_py": BuildPyShipped})
