"""Dry runs of the studies as a user reads them before a long run: ``width-study --dry-run`` (each cell's state and
time left, the memory, nothing written) and the noise study's per-point times, on tiny generated data."""

import csv
import re

import pytest

from qmedimg.cli import main
from qmedimg.workflows.grid_plan import time_head

TINY = ["--dataset", "synthetic", "--limit", "24", "--batch-size", "12", "--epochs", "1", "--test-limit", "8", "--quiet"]
GRID = ["--qubits", "4", "--layers", "1", "--backend", "fake_manila,aer", "--scales", "0,1", "--mitigation", "none"]
UNITS = {"s": 1, "min": 60, "h": 3600}


def cell_lines(text: str) -> dict[str, tuple[str, float, str]]:
    """{cell: (state, seconds, basis)} from a plan's lines '  name  state  ~ 5.0 min  (basis)'."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s+(.+?)\s{2,}(finished|interrupted|new)\s+~\s*([\d.]+) (s|min|h)\s+\((.*)\)$", line)
        if match:
            name, state, number, unit, basis = match.groups()
            found[name] = (state, float(number) * UNITS[unit], basis)
    return found


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def set_wall(path, seconds) -> None:
    """Give every row of a results.csv the wall time ``seconds(row)``."""
    table = rows(path)
    for row in table:
        row["wall_s"] = seconds(row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A width study of one 4-qubit head, seed 0, run through the command line."""
    out = tmp_path_factory.mktemp("plans") / "study"
    assert main(["width-study", *TINY, *GRID, "--out", str(out)]) == 0
    return out


def test_a_width_study_dry_run_lists_every_cell_with_time_and_memory_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["width-study", *TINY, *GRID, "--qubits", "4,5", "--seeds", "0,1", "--noise-aware", "--dry-run",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    cells = cell_lines(text)
    aware = [name for name in cells if "-aware-fake_manila-" in name]
    assert {"q4-l1-s0", "q4-l1-s1", "q5-l1-s0", "q5-l1-s1"} <= set(cells) and len(aware) == 4, text
    assert all(state == "new" and seconds > 0 and "training timed" in basis for state, seconds, basis in cells.values())
    # fake_manila at scales 0 and 1 and the noiseless aer: 3 points; a noise-aware run: its device at scale 1
    assert cells["q4-l1-s0"][2].endswith("3 points: 3 timed") and cells[aware[0]][2].endswith("1 point: 1 timed")
    assert "memory: the largest simulated state: 5 qubits × 1 layer on fake_manila" in text
    assert "density matrix" in text and "16 workers" in text
    assert not out.exists()


def test_after_a_run_its_cells_are_finished_and_another_seed_takes_their_measured_point_times(finished, capsys):
    set_wall(finished / "runs" / "q4-l1-s0" / "noise-study" / "results.csv", lambda row: "1000")  # recognisable
    assert main(["width-study", *TINY, *GRID, "--seeds", "0,1", "--dry-run", "--out", str(finished)]) == 0
    cells = cell_lines(capsys.readouterr().out)
    assert cells["q4-l1-s0"][0] == "finished" and cells["q4-l1-s0"][2].endswith("3 points: 3 done")
    state, seconds, basis = cells["q4-l1-s1"]
    assert state == "new" and basis.endswith("3 points: 3 measured") and 3000 <= seconds < 3060


def test_a_point_whose_inputs_changed_or_whose_per_image_file_is_lost_is_left_to_run(finished, capsys):
    # another --test-limit changes every point's inputs: the run is reused, its points are computed again
    other = [*TINY[:-3], "--test-limit", "6", "--quiet"]
    assert main(["width-study", *other, *GRID, "--dry-run", "--out", str(finished)]) == 0
    state, _, basis = cell_lines(capsys.readouterr().out)["q4-l1-s0"]
    assert state == "interrupted" and basis.startswith("trained (") and basis.endswith("3 points: 3 measured")
    lost = next((finished / "runs" / "q4-l1-s0" / "noise-study").glob("point-*.npz"))
    lost.rename(lost.with_suffix(".gone"))
    try:
        assert main(["width-study", *TINY, *GRID, "--dry-run", "--out", str(finished)]) == 0
        state, _, basis = cell_lines(capsys.readouterr().out)["q4-l1-s0"]
        assert state == "interrupted" and basis.endswith("3 points: 2 done, 1 measured")
    finally:
        lost.with_suffix(".gone").rename(lost)


def test_the_noise_study_dry_run_times_each_scale_on_its_own(tiny_run_copy, capsys):
    args = ["noise-study", str(tiny_run_copy), "--backend", "fake_manila", "--quiet"]
    assert main([*args, "--scales", "0,1"]) == 0
    results = tiny_run_copy / "noise-study" / "results.csv"
    set_wall(results, lambda row: "3.0" if row["scale"] == "0.0" else "7.0")
    capsys.readouterr()
    assert main([*args, "--scales", "0,1,2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    by_scale = {name.split()[2]: cell for name, cell in cell_lines(text).items()}
    assert by_scale["0.0"] == ("finished", 3.0, "measured") and by_scale["1.0"] == ("finished", 7.0, "measured")
    assert by_scale["2.0"][0] == "new" and by_scale["2.0"][2] == "timed", text
    assert "memory: the largest simulated state: fake_manila scale 1.0" in text and "density matrix" in text, text


def test_time_head_draws_a_line_through_two_sizes_and_times_slow_heads_on_fewer_images():
    calls = []

    def fast(k):  # 0.5 s a call, 0.1 s an image
        calls.append(k)
        return 0.5 + 0.1 * k

    assert time_head(fast, 100) == pytest.approx(10.5) and calls == [1, 2, 8]
    calls.clear()

    def slow(k):  # 1 s a call, 4 s an image: Aer's statevector trajectories at 12 qubits
        calls.append(k)
        return 1.0 + 4.0 * k

    assert time_head(slow, 10) == pytest.approx(41.0) and calls == [1, 1, 2]
