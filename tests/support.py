"""Small checks several test files share (imported as ``from support import ...``)."""

from pathlib import Path


def snapshot(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its modification time."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def one_line_error(capsys) -> str:
    """What the command printed to stderr, checked to be one line and no traceback."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err
