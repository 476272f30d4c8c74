"""Writing result files so that a reader never sees half of one, and two writers never collide: each
write goes to its own temporary file in the target's directory, is flushed and fsynced, then renamed
over the target. Any OSError (read-only directory, full disk, ...) becomes one ``QmedimgError`` line
naming the file and the reason, and the temporary file is removed: nothing half written is left.

Example::

    from qmedimg.files import write_json, write_text, write_atomic
    write_json(Path("runs/breast/eval-exact.json"), {"test": {"acc": 0.86}})
    write_text(Path("runs/breast/summary.md"), "# Summary\\n")
    write_atomic(Path("runs/breast/checkpoint.pt"), lambda handle: torch.save(state, handle))
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import IO, Callable, Iterator

from qmedimg.errors import QmedimgError

_UMASK = os.umask(0o022)  # read once: mkstemp makes 0600 files, results get the usual 0666 & ~umask
os.umask(_UMASK)


def shipped(name: str) -> Path:
    """Where one of qmedimg's own top-level files is (``circuits``, ``backends.yaml``): in the source tree this
    module runs from (a checkout or an editable install, whose ``pyproject.toml`` is there: edits count at
    once), else the copy a wheel ships as ``qmedimg/_shipped/NAME`` (setup.py puts it there), found through
    importlib.resources (pip unpacks a wheel, so that copy is a real file or directory)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / name).exists():
        return root / name
    return Path(str(resources.files("qmedimg") / "_shipped" / name))

def os_error(path: Path | str, exc: OSError, doing: str = "cannot write") -> QmedimgError:
    """One line for an OSError on ``path``: the file and the operating system's reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return QmedimgError(f"{path}: {doing} ({reason})")


@contextlib.contextmanager
def reporting_os_errors(path: Path | str, doing: str = "cannot write") -> Iterator[None]:
    """Turn any OSError inside the block into one ``QmedimgError`` line naming ``path`` (for writers
    that cannot go through :func:`write_atomic`, such as plots)."""
    try:
        yield
    except OSError as exc:
        raise os_error(getattr(exc, "filename", None) or path, exc, doing) from None


def write_atomic(path: Path | str, save: Callable[[IO[bytes]], object]) -> Path:
    """Call ``save(handle)`` on a unique temporary binary file next to ``path``, fsync it and rename
    it over ``path``; on any failure the temporary file is removed and ``path`` is left as it was.
    OSErrors become one ``QmedimgError`` line naming ``path``."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_UMASK)
            save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise os_error(path, exc) from None
    except RuntimeError as exc:  # torch.save wraps a failed write (full disk) in "[enforce fail at inline_container.cc]"
        if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
            raise
        raise QmedimgError(f"{path}: cannot write ({' '.join(str(exc).split())[:160]}; disk full?)") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def clear_torn_temporaries(folder: Path | str) -> None:
    """A run killed while writing its first file (``write_atomic``) leaves only ``.NAME.*.tmp`` files
    in its folder: remove them so the run can start there; a folder holding anything else is left."""
    folder = Path(folder)
    if folder.is_dir():
        entries = [p for p in folder.iterdir() if p.name != LOCK]
        if entries and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in entries):
            for p in entries:
                p.unlink()


LOCK = ".qmedimg.lock"
"""The file in an output folder whose lock a command holds while it writes there."""


@contextlib.contextmanager
def exclusive(lock: Path | str, busy: str) -> Iterator[None]:
    """Hold ``lock`` (``flock``, non-blocking; the file is created if needed) for the block; while
    another process holds it: one ``QmedimgError`` line, ``busy``. The lock goes with the process, so a
    process killed with -9 never leaves a folder locked."""
    import fcntl

    lock = Path(lock)
    try:
        handle = open(lock, "a")
    except OSError as exc:
        raise os_error(lock, exc, "cannot lock") from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QmedimgError(busy) from None
        except OSError as exc:  # a file system without locks: refuse rather than risk two writers
            raise os_error(lock, exc, "cannot lock") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def writing_folder(folder: Path | str) -> Iterator[Path]:
    """Create ``folder`` if needed and hold its lock (:data:`LOCK`) for the block: one qmedimg command
    writes there at a time; a second is refused in one line while the first runs."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(folder, exc, "cannot create") from None
    with exclusive(folder / LOCK, f"{folder}: another qmedimg command is writing there now; wait for it to "
                                  "finish (or stop it), then run this again"):
        yield folder


def holds_files(folder: Path | str) -> bool:
    """Whether ``folder`` exists and holds anything but its lock file."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != LOCK for p in folder.iterdir())


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda handle: handle.write(data))


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically (see :func:`write_atomic`)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, data: dict) -> Path:
    """Write ``data`` as indented JSON atomically: never half a file, never two writers' temp files mixed.
    A NaN or infinite number (an undefined metric, e.g. the AUC of a split with one class) is written
    as null: JSON has no NaN, and strict readers refuse a bare one."""
    return write_text(path, json.dumps(_finite_or_null(data), indent=2, allow_nan=False))


def _finite_or_null(value):
    """``value`` with every NaN or infinite float in it, however deep in dicts and lists, as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def write_csv(path: Path | str, rows: list[list], header: list | None = None) -> Path:
    """Write ``header`` then ``rows`` as CSV atomically."""
    import io

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_json(path: Path | str) -> dict:
    """A JSON file's contents, or one ``QmedimgError`` line naming the file if it cannot be read or
    is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise os_error(path, exc, "cannot read") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise QmedimgError(f"{path}: not valid JSON ({where}); the file is corrupt — restore or "
                           "re-create it") from None


def check_schema(path: Path | str, schema, newest: int) -> int:
    """The format version ``schema`` a qmedimg file records (config.json's, checkpoint.pt's), or one line naming
    ``path`` when this qmedimg cannot read it: written by a newer one (above ``newest``), or damaged."""
    if type(schema) is not int or schema < 1:
        raise QmedimgError(f"{path}: its schema is {schema!r:.40}, not a format version (a whole number >= 1); the "
                           "file is corrupt — restore or re-create it")
    if schema > newest:
        raise QmedimgError(f"{path}: written by a newer qmedimg (schema {schema}; this one reads up to {newest}): "
                           "upgrade qmedimg")
    return schema


def append_line(path: Path | str, line: str) -> None:
    """Append one line (a trailing newline is added if missing) with a single write, then fsync: a
    reader sees the line whole or not at all. A line torn by a crash or a full disk is cut off again
    by :func:`repair_tail` on the next run."""
    path = Path(path)
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            written = os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise os_error(path, exc) from None
    if written != len(data):
        raise QmedimgError(f"{path}: cannot write (only {written} of {len(data)} bytes of a line; disk full?)")


def repair_tail(path: Path | str) -> bool:
    """Cut off a last line that has no newline (a write torn by a crash or a full disk); True if one was."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return False
            handle.truncate(data.rfind(b"\n") + 1)
    except OSError as exc:
        raise os_error(path, exc) from None
    return True
