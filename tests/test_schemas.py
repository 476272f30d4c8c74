"""A run's files state their format version: config.json and checkpoint.pt a ``"schema"`` (a file without one
is version 1, from before the field, and still loads: migrated), results.csv its header, one per version. A file
of a newer version than this qmedimg knows is one line, exit status 2, nothing written."""

import csv
import json
import typing

import pytest
import torch
from PIL import Image

from qmedimg.artifact import CONFIG_BEFORE_FIELD, CONFIG_SCHEMA, Checkpoint, migrate_record
from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.model import CHECKPOINT_KEYS, CHECKPOINT_SCHEMA
from qmedimg.rundir import load_run, read_record
from qmedimg.workflows.noise_study import COLUMNS, NUMBERS, RESULTS_SCHEMA, RESULTS_SCHEMAS, read_rows
from qmedimg.workflows.predict import predict
from support import one_line_error, snapshot


@pytest.fixture
def scan(tiny_run, tmp_path):
    """One of the run's test images as a PNG file."""
    path = tmp_path / "scan.png"
    Image.fromarray(load_run(tiny_run).dataset.test.images[0][0]).save(path)
    return path


def _edit_json(path, edit):
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_training_writes_the_current_schemas(tiny_run):
    assert json.loads((tiny_run / "config.json").read_text())["schema"] == CONFIG_SCHEMA
    assert torch.load(tiny_run / "checkpoint.pt", weights_only=True)["schema"] == CHECKPOINT_SCHEMA


def test_a_config_json_from_before_the_schema_loads_migrated_with_the_same_predictions_and_run_id(tiny_run_copy, scan):
    run = tiny_run_copy
    expected, run_id = predict(run, [scan])["rows"], load_run(run).run_id()
    _edit_json(run / "config.json", lambda record: record.pop("schema"))  # written before the field: version 1
    assert load_run(run).run_id() == run_id  # the id digests the config, not the file's version
    _edit_json(run / "config.json", lambda record: [record["config"].pop(key) for key in CONFIG_BEFORE_FIELD])
    record = read_record(run)  # (older still: before angle_map, readout, threshold, ...)
    assert record["schema"] == CONFIG_SCHEMA and "schema" not in json.loads((run / "config.json").read_text())
    assert {key: record["config"][key] for key in CONFIG_BEFORE_FIELD} == CONFIG_BEFORE_FIELD
    assert predict(run, [scan])["rows"] == expected
    assert main(["predict", str(run), str(scan)]) == 0


def test_migrate_record_fills_what_version_1_predates_and_leaves_a_current_record_as_it_is():
    old = {"config": {"dataset": "synthetic", "model": "resnet18", "angle_map": "batchnorm", "out": "runs/a"}}
    migrated = migrate_record(old, "runs/a/config.json")
    assert migrated["schema"] == CONFIG_SCHEMA == 2
    assert migrated["config"] == {**CONFIG_BEFORE_FIELD, "stem": "3x3", "dataset": "synthetic", "model": "resnet18",
                                  "angle_map": "batchnorm", "out": "runs/a"}  # ResNet-18's stem from before `stem`
    assert old == {"config": {"dataset": "synthetic", "model": "resnet18", "angle_map": "batchnorm", "out": "runs/a"}}
    current = {"schema": CONFIG_SCHEMA, "config": {"dataset": "synthetic", "out": "runs/a"}}
    assert migrate_record(current, "runs/a/config.json") == current  # a current writer recorded every field
    assert migrate_record({"config": ["damaged"]}, "c.json") == {"config": ["damaged"], "schema": CONFIG_SCHEMA}


@pytest.mark.parametrize("schema, says", [
    (CONFIG_SCHEMA + 1, f"written by a newer qmedimg (schema {CONFIG_SCHEMA + 1}; this one reads up to "
                        f"{CONFIG_SCHEMA}): upgrade qmedimg"),
    ("2", "its schema is '2', not a format version (a whole number >= 1)"),
    (True, "its schema is True, not a format version (a whole number >= 1)"),
    (0, "its schema is 0, not a format version (a whole number >= 1)")], ids=["newer", "text", "bool", "zero"])
def test_a_config_json_of_a_newer_or_damaged_schema_is_one_line_exit_2_and_nothing_written(tiny_run_copy, scan,
                                                                                          capsys, schema, says):
    _edit_json(tiny_run_copy / "config.json", lambda r: r.update(schema=schema))
    before = snapshot(tiny_run_copy)
    for command in (["predict", str(tiny_run_copy), str(scan)], ["evaluate", str(tiny_run_copy)]):
        assert main(command) == 2
        assert one_line_error(capsys) == f"qmedimg: error: {tiny_run_copy / 'config.json'}: {says}" + (
            "\n" if schema == CONFIG_SCHEMA + 1 else "; the file is corrupt — restore or re-create it\n")
    assert snapshot(tiny_run_copy) == before


def test_a_checkpoint_without_schema_loads_and_a_newer_one_is_one_line(tiny_run_copy, scan, capsys):
    file = tiny_run_copy / "checkpoint.pt"
    expected = predict(tiny_run_copy, [scan])["rows"]
    state = torch.load(file, weights_only=True)
    del state["schema"]  # what training saved before the key: version 1
    torch.save(state, file)
    assert predict(tiny_run_copy, [scan])["rows"] == expected
    torch.save({**state, "schema": CHECKPOINT_SCHEMA + 1}, file)
    assert main(["predict", str(tiny_run_copy), str(scan)]) == 2
    assert one_line_error(capsys) == (f"qmedimg: error: {file}: written by a newer qmedimg (schema "
                                      f"{CHECKPOINT_SCHEMA + 1}; this one reads up to {CHECKPOINT_SCHEMA}): upgrade "
                                      "qmedimg\n")


def test_the_checkpoint_type_names_every_key_training_saves_with_its_type(tiny_run):
    state = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert Checkpoint.__required_keys__ == set(CHECKPOINT_KEYS)
    assert Checkpoint.__optional_keys__ == {"schema", "cuda_rng", "scaler"}  # scaler: --amp; cuda_rng: on a GPU
    assert set(state) == set(CHECKPOINT_KEYS) | {"schema"}  # trained on the CPU without --amp
    hints = typing.get_type_hints(Checkpoint)
    for key, value in state.items():
        assert isinstance(value, typing.get_origin(hints[key]) or hints[key]), key


def _write_results(path, header, row):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)


def test_every_results_csv_version_is_one_header_growing_to_today_s_columns():
    versions = sorted(RESULTS_SCHEMAS)
    assert versions == list(range(1, RESULTS_SCHEMA + 1)) and RESULTS_SCHEMAS[RESULTS_SCHEMA] == COLUMNS
    for older, newer in zip(versions, versions[1:]):
        added = [c for c in RESULTS_SCHEMAS[newer] if c not in RESULTS_SCHEMAS[older]]
        assert added and [c for c in RESULTS_SCHEMAS[newer] if c not in added] == RESULTS_SCHEMAS[older]


@pytest.mark.parametrize("version", range(1, RESULTS_SCHEMA))
def test_a_results_csv_of_each_older_version_is_read_by_its_header_and_upgraded(tmp_path, version):
    path = tmp_path / "results.csv"
    row = {**dict.fromkeys(COLUMNS, "x"), **dict.fromkeys(NUMBERS, "0.5"), "run": str(tmp_path.resolve()),
           "training": "noise-aware"}
    _write_results(path, RESULTS_SCHEMAS[version], row)
    (read,) = read_rows(path, upgrade=True)
    missing = [c for c in COLUMNS if c not in RESULTS_SCHEMAS[version]]
    assert {c: read[c] for c in RESULTS_SCHEMAS[version]} == {c: row[c] for c in RESULTS_SCHEMAS[version]}
    assert {c: read[c] for c in missing if c != "training"} == {c: "" for c in missing if c != "training"}
    assert read["training"] == ("ideal" if "training" in missing else "noise-aware")  # before the column: ideal
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)  # upgraded in place


def test_a_results_csv_of_no_known_version_is_one_line(tmp_path):
    path = tmp_path / "results.csv"
    _write_results(path, [*COLUMNS, "later_column"], dict.fromkeys(NUMBERS, "0.5"))
    with pytest.raises(QmedimgError, match="written by another version of qmedimg or another program"):
        read_rows(path)
