"""What a noise study wrote, checked against what it was asked (issue 22 item 8: a test that checks only the
exit code and that a file exists passes when the noisy backend is never applied or --limit ignored)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from qmedimg.metrics import compute_metrics
from qmedimg.workflows.noise_study import COLUMNS, read_rows
from qmedimg.workflows.study_points import read_point


def _number(text: str) -> float:
    value = float(text)
    assert math.isnan(value) or 0.0 <= value <= 1.0, text
    return value


def _same(recorded: float, computed: float) -> bool:
    return (math.isnan(recorded) and math.isnan(computed)) or math.isclose(recorded, computed, abs_tol=1e-12)


def check_noise_study(study: Path, *, scales: list[float], limit: int, labels: np.ndarray, backend: str = "fake_manila",
                      mitigation: str = "none") -> list[dict]:
    """Assert ``study``/results.csv holds one whole row (today's header, no field more or less) per asked scale on
    ``backend`` with ``mitigation``, each with its per-image file of exactly ``limit`` images whose labels are the
    first ``limit`` test ``labels``; each row's ACC/AUC recomputed from those images equal the row's; at scale 0 the
    noisy values are the ideal ones (mean_abs_expectation_error ~ 0, the same probabilities and metrics), at any
    scale > 0 they are not (the noisy backend was applied). Returns the rows."""
    results = study / "results.csv"
    with open(results, newline="") as handle:
        header, *lines = list(csv.reader(handle))
    assert header == COLUMNS
    assert [len(line) for line in lines] == [len(COLUMNS)] * len(lines)  # no torn or glued row
    rows = read_rows(results)
    assert sorted(float(row["scale"]) for row in rows) == sorted(scales)
    for row in rows:
        assert (row["backend"], row["mitigation"], row["shots"]) == (backend, mitigation, "")
        acc, auc, ideal_acc, ideal_auc = (_number(row[k]) for k in ("acc", "auc", "ideal_acc", "ideal_auc"))
        point = read_point(study, row)
        assert len(point["index"]) == limit, f"scale {row['scale']}: {len(point['index'])} images, asked for {limit}"
        np.testing.assert_array_equal(point["labels"], np.asarray(labels)[:limit])
        threshold = point["threshold"]
        at = () if np.isnan(threshold).all() else (threshold if threshold.ndim else float(threshold),)
        task = str(point["task"])
        noisy, ideal = compute_metrics(point["labels"], point["probs"], task, *at), \
            compute_metrics(point["labels"], point["ideal_probs"], task, *at)
        assert _same(acc, noisy["acc"]) and _same(auc, noisy["auc"]), (row, noisy["acc"], noisy["auc"])
        assert _same(ideal_acc, ideal["acc"]) and _same(ideal_auc, ideal["auc"]), (row, ideal["acc"], ideal["auc"])
        error = float(row["mean_abs_expectation_error"])
        moved = np.abs(point["probs"] - point["ideal_probs"]).max()
        if float(row["scale"]) == 0:
            assert error < 1e-9 and moved < 1e-9, f"scale 0 is not ideal: error {error}, probabilities moved {moved}"
            assert (acc, row["auc"]) == (ideal_acc, row["ideal_auc"])
        else:
            assert error > 1e-3 and moved > 1e-6, (f"scale {row['scale']}: noisy values equal the ideal ones "
                                                   f"(error {error}, probabilities moved {moved})")
    return rows
