"""The job ledger's file format (``ledger-<backend>.json``): its version, what every job in it holds, and
reading one back, so a damaged or edited ledger is one line naming the job and field, never a traceback
and never values paired with the wrong images.

Example::

    from qmedimg.backends.ledger_file import read_ledger, same_request
    stored = read_ledger(path)                 # checked: identity, jobs, each job's fields
    same_request(stored, identity)             # does it hold this request?
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from qmedimg.errors import QmedimgError

LEDGER_VERSION = 2  # 2: the identity holds the job split, the ISA circuit's digest and the repeat


# What a key a version-1 ledger did not record meant: repeat 0. (Version 1 did not record how images were
# split into jobs either, nor the ISA circuit: each stored job's rows are checked against its payload instead.)
LEGACY = {"repeat": 0}


def same_request(stored: dict, identity: dict) -> bool:
    """Whether a ledger read from disk holds the request ``identity`` describes."""
    theirs = stored.get("identity")
    if not isinstance(theirs, dict) or type(stored.get("version", 1)) is not int:
        return False
    if stored.get("version", 1) >= LEDGER_VERSION:
        return theirs == identity
    return all(theirs[k] == v if k in theirs else LEGACY.get(k, v) == v for k, v in identity.items())


def read_ledger(path: Path) -> dict:
    """A ledger file, or one line naming it: unreadable, or not a ledger of this format."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("identity"), dict) \
            or type(stored.get("version", 1)) is not int \
            or not isinstance(stored.get("jobs"), list) or not all(isinstance(j, dict) for j in stored["jobs"]):
        raise QmedimgError(f"{path}: unreadable ledger; move it away to start over (its job ids are "
                           "listed on the IBM Quantum dashboard)")
    for number, job in enumerate(stored["jobs"]):
        job.setdefault("usage_s", None)  # version 1 did not always record it
        bad = next((key for key, ok in JOB_FIELDS.items() if key not in job or not ok(job[key])), None)
        if bad is None and job["evs"] is not None and job["status"] != "done":
            bad = "status"  # values are stored only with "done": a waiting/failed job holding them was edited
        if bad is not None:
            raise QmedimgError(f"{path}: job {number}: field '{bad}' is missing or damaged "
                               f"({str(job.get(bad, '(absent)'))[:40]}); restore the file, or move it away to start "
                               "over (its job ids are listed on the IBM Quantum dashboard)")
    return stored


STATUSES = ("new", "submitting", "submitted", "waiting", "failed", "done")
JOB_FIELDS = {  # what every job of a ledger holds, and what it may be
    "index": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "rows": lambda v: isinstance(v, list) and len(v) == 2 and all(isinstance(r, int) for r in v),
    "job_id": lambda v: v is None or isinstance(v, str),
    "status": lambda v: v in STATUSES,
    "evs": lambda v: v is None or (isinstance(v, list) and all(isinstance(r, list) and all(map(_finite, r)) for r in v)
                                   and len({len(r) for r in v}) <= 1),
    "errors": lambda v: isinstance(v, list) and all(isinstance(e, str) for e in v),
    "usage_s": lambda v: v is None or _finite(v),
}


def _finite(value) -> bool:
    """A JSON number that is finite (JSON as Python writes it may hold NaN and Infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
