"""Result files are written atomically and uniquely: concurrent writers never collide and a reader
never sees half a file; a read-only directory or a full disk is one line naming the file, with nothing
half written left behind; a corrupt config.json is one line, not a traceback."""

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.files import write_atomic, write_json, write_text
from qmedimg.model import load_checkpoint, save_atomic

WRITER = """
import sys
from pathlib import Path
from qmedimg.files import write_json
path, me, times = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(times):
    write_json(path, {"writer": me, "i": i, "payload": [me * 40] * 2000})
"""


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_concurrent_writers_never_collide_and_every_read_is_valid_json(tmp_path):
    """Two processes rewrite one JSON file (as two evaluations share a ledger) while this one reads it:
    with one fixed ``<name>.tmp`` the writers truncate and rename each other's file (writes raise,
    reads see half a file); with a unique temp file per write neither happens."""
    target = tmp_path / "ledger.json"
    write_json(target, {"writer": "none"})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), name, "300"], stderr=subprocess.PIPE)
               for name in ("a", "b")]
    reads, invalid = 0, []
    while any(w.poll() is None for w in writers):
        text = target.read_text()
        reads += 1
        try:
            json.loads(text)
        except json.JSONDecodeError:
            invalid.append(len(text))
    errors = [w.stderr.read().decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert not invalid, f"{len(invalid)} of {reads} reads saw invalid JSON"
    assert json.loads(target.read_text())["i"] == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json"]  # no temp file left over


@pytest.mark.parametrize("fails, code, reason", [
    ("tempfile.mkstemp", errno.EROFS, "Read-only file system"),   # a read-only mount: no temp file at all
    ("os.replace", errno.EACCES, "Permission denied"),            # the rename refused: the temp file must go
], ids=["read-only", "rename-refused"])
def test_evaluate_into_a_read_only_run_directory_is_one_line_and_leaves_nothing(
        tiny_run_copy, capsys, monkeypatch, fails, code, reason):
    """Tests run as root, where chmod 0o555 stops nothing: the failing call raises as the OS would."""
    module, name = fails.split(".")
    real = getattr({"tempfile": tempfile, "os": os}[module], name)

    def refuse(*args, **kwargs):
        target = Path(args[0] if args else kwargs.get("dir", ""))
        if tiny_run_copy in (target, target.parent):
            raise OSError(code, reason)
        return real(*args, **kwargs)

    before = sorted(p.name for p in tiny_run_copy.iterdir())
    monkeypatch.setattr({"tempfile": tempfile, "os": os}[module], name, refuse)
    assert main(["evaluate", str(tiny_run_copy), "--quiet"]) == 2
    err = one_line(capsys)
    assert str(tiny_run_copy / "eval-exact.npz") in err and reason in err  # the per-image file is written first
    assert sorted(p.name for p in tiny_run_copy.iterdir()) == before  # no eval file, no temp file


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(
        tiny_run_copy, monkeypatch):
    checkpoint = tiny_run_copy / "checkpoint.pt"
    previous = checkpoint.read_bytes()
    state = load_checkpoint(tiny_run_copy)
    real_save = torch.save

    def disk_fills(obj, f, *args, **kwargs):  # torch.save takes a path or an open file
        with (open(f, "wb") if isinstance(f, (str, os.PathLike)) else f) as handle:
            handle.write(previous[: len(previous) // 3])  # part of a checkpoint reaches the disk, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_fills)
    before = sorted(p.name for p in tiny_run_copy.iterdir())
    with pytest.raises(QmedimgError) as caught:
        save_atomic(state, checkpoint)
    assert str(caught.value) == f"{checkpoint}: cannot write (No space left on device)"
    assert checkpoint.read_bytes() == previous
    assert sorted(p.name for p in tiny_run_copy.iterdir()) == before
    monkeypatch.setattr(torch, "save", real_save)
    save_atomic(state, checkpoint)  # and with room again, a checkpoint that loads
    assert load_checkpoint(tiny_run_copy)["epoch"] == state["epoch"]


@pytest.mark.parametrize("content", [b'{"config": {"dataset": "synth', b"\xff\xfe\x00garbage", b"[]"],
                         ids=["truncated", "not-utf8", "not-a-config"])
def test_a_corrupt_config_json_is_one_line_naming_it(tiny_run_copy, capsys, content):
    (tiny_run_copy / "config.json").write_bytes(content)
    assert main(["evaluate", str(tiny_run_copy), "--quiet"]) == 2
    err = one_line(capsys)
    assert err.startswith("qmedimg: error: ") and str(tiny_run_copy / "config.json") in err


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = write_text(tmp_path / "summary.md", "old\n")

    def half_then_fail(handle):
        handle.write(b"ne")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_writes_replace_the_file_whole(tmp_path):
    target = tmp_path / "eval.json"
    for i in range(3):
        write_json(target, {"i": i})
    assert json.loads(target.read_text()) == {"i": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
