"""Writing result files so that a reader never sees half of one: a temporary file, then a rename.

Example::

    from qmedimg.files import write_json
    write_json(Path("runs/breast/eval-exact.json"), {"test": {"acc": 0.86}})
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` as JSON atomically (a temporary file, then a rename): never half a file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    return path
