"""A trained run as one file to hand over: ``qmedimg export RUN_DIR FILE`` writes a zip archive of exactly the
run's ``config.json``, ``checkpoint.pt`` and ``metrics.json`` (when it has one), and :func:`opened_run` reads such
a file back as a run directory for predict and explain.

Example::

    from qmedimg.workflows.export import export_run, opened_run
    from qmedimg.workflows.predict import predict
    export_run("runs/breast", "breast.zip")            # checked to load first; an existing file is never replaced
    with opened_run("breast.zip") as run_dir:          # extracted to a temporary folder, removed afterwards
        rows = predict(run_dir, ["scan.png"])["rows"]  # (a run directory is used as it is)

The archive is a plain zip: ``unzip breast.zip -d runs/breast`` gives the run directory back, which evaluate,
noise-study and ``train --resume`` need (they write into it). The training data is not in it: what config.json
records of the data builds the network (:mod:`qmedimg.artifact`). Both files state their format version
(``schema``): the receiving qmedimg migrates an older one and refuses a newer one in one line. Reading one never
runs code from it: the checkpoint loads with ``torch.load(weights_only=True)``, and an archive holding anything
but those three names (another file, a folder, a path with ``/`` or ``..``) is refused before anything is
extracted.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterator

from qmedimg.errors import QmedimgError
from qmedimg.files import os_error, write_atomic
from qmedimg.rundir import load_run, require_run

MEMBERS = ("config.json", "checkpoint.pt", "metrics.json")
"""What an exported run holds, in this order; metrics.json only when the run has one (an interrupted run has not)."""
REQUIRED = ("config.json", "checkpoint.pt")
STAMP = (1980, 1, 1, 0, 0, 0)  # every member's date: the same run directory exports the same bytes


def export_run(run_dir: str | Path, file: str | Path) -> Path:
    """Write ``file``, the run in ``run_dir`` as one zip archive (:data:`MEMBERS`), atomically; returns its path.

    The run is loaded first as its receiver will load it (config.json read and migrated, the checkpoint with
    ``weights_only``, its weights fitted to the network config.json describes, metrics.json read): one line, and
    nothing written, when it would not load; likewise when ``file`` exists (an export never replaces a file)."""
    path, file = require_run(run_dir), Path(file).expanduser()
    if file.exists() or file.is_symlink():
        raise QmedimgError(f"{file}: already exists; export never replaces a file: choose another FILE or move it away")
    load_run(path, device="cpu")
    names = [name for name in MEMBERS if (path / name).is_file()]
    return write_atomic(file, lambda handle: _write_archive(handle, path, names))


def _write_archive(handle: IO[bytes], path: Path, names: list[str]) -> None:
    with zipfile.ZipFile(handle, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            info.file_size = (path / name).stat().st_size  # decides ZIP64 for a checkpoint over 2 GiB
            with open(path / name, "rb") as source, archive.open(info, "w") as target:
                shutil.copyfileobj(source, target)


def is_exported(run: str | Path) -> bool:
    """Whether ``run`` names a file (an exported run, if anything) rather than a run directory."""
    return Path(run).expanduser().is_file()


def beside(run: str | Path, name: str) -> Path:
    """Where a command's default output ``name`` goes: inside a run directory, or beside an exported run's file,
    named after it (``breast.zip``, ``predictions.csv`` -> ``breast-predictions.csv``)."""
    path = Path(run).expanduser()
    return path.parent / f"{path.stem}-{name}" if is_exported(path) else path / name


@contextlib.contextmanager
def opened_run(run: str | Path) -> Iterator[Path]:
    """``run`` as a run directory to read from: a directory as it is; an exported run's file checked (only
    :data:`MEMBERS`, config.json and checkpoint.pt among them) and extracted into a temporary directory, removed
    when the block ends. A one-line error inside the block names the file rather than that directory."""
    path = Path(run).expanduser()
    if not is_exported(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="qmedimg-run-") as folder:
        _extract(path, Path(folder))
        try:
            yield Path(folder)
        except QmedimgError as exc:
            exc.args = (str(exc).replace(folder, str(path)),)
            raise


def _extract(file: Path, folder: Path) -> None:
    """``file``'s members into ``folder``, or one line naming ``file`` when it is not an archive export wrote."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            bad = next((name for name in names if name not in MEMBERS), None)  # a path, a folder, another file
            twice = next((name for name in names if names.count(name) > 1), None)
            missing = [name for name in REQUIRED if name not in names]
            if bad is not None or twice is not None or missing:
                what = (f"a member {bad!r}" if bad is not None else f"{twice} twice" if twice is not None
                        else f"no {' or '.join(missing)}")
                raise QmedimgError(f"{file}: holds {what:.80}; an exported run holds only {', '.join(MEMBERS)} "
                                   "(`qmedimg export RUN_DIR FILE` writes one): nothing read from it")
            for name in names:
                with archive.open(name) as source, open(folder / name, "xb") as target:
                    shutil.copyfileobj(source, target)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:  # RuntimeError: encrypted
        raise QmedimgError(f"{file}: not a run directory nor a readable exported run (a zip archive `qmedimg export` "
                           f"writes): {' '.join(str(exc).split())[:120]}") from None
    except OSError as exc:
        raise os_error(file, exc, "cannot read") from None
