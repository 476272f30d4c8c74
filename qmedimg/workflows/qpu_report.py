"""``qmedimg report RUN_DIR``: the QPU-vs-simulator report of a run, from its ``ibm`` eval files
(``eval-<backend>*.json`` holding a prediction, with their per-image ``.npz``), written beside them as
``qpu_vs_simulator.md`` and ``qpu_vs_simulator.png`` (:mod:`qmedimg.report.qpu_vs_simulator`).

Example::

    from qmedimg.workflows.qpu_report import qpu_report
    evaluate_run("runs/breast", "ibm_local")        # measured, and predicted on the snapshot taken at submission
    md, png = qpu_report("runs/breast")              # runs/breast/qpu_vs_simulator.md and .png

A run without such an eval file is one line, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

from qmedimg.errors import QmedimgError
from qmedimg.files import read_json
from qmedimg.report.qpu_vs_simulator import write_qpu_report
from qmedimg.workflows.per_image import read_per_image

NEEDED = ("values", "predicted_values", "predicted_se", "measured_se")


def qpu_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write the run's ``qpu_vs_simulator.md`` and ``.png`` from every ibm eval file that holds a prediction;
    returns both paths."""
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise QmedimgError(f"{run}: not a run directory")
    items = []
    for path in sorted(run.glob("eval-*.json")):
        record = read_json(path)
        if not isinstance(record, dict) or "qpu_vs_simulator" not in record or "prediction" not in record:
            continue
        beside = run / str(record.get("per_image", path.with_suffix(".npz").name))
        arrays = read_per_image(beside)
        missing = [k for k in NEEDED if k not in arrays]
        if missing:
            raise QmedimgError(f"{beside}: per-image file lacks {', '.join(missing)} (written by another qmedimg?); "
                               f"re-run `qmedimg evaluate {run} --backend {record.get('backend')}` (it collects its "
                               "jobs from the ledger, submitting nothing)")
        items.append((path.name, record, arrays))
    if not items:
        raise QmedimgError(f"{run}: no eval file of an ibm backend with a prediction (eval-*.json holding "
                           f"qpu_vs_simulator); run `qmedimg evaluate {run} --backend IBM_ENTRY` first")
    return write_qpu_report(run, items)
