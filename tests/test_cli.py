"""The command line as a user meets it: an option means one thing in every command, a value the help
documents is accepted, and what a local backend cannot do is refused before anything is written."""

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from qmedimg.cli import main
from qmedimg.cli.deprecated import DeprecatedOption
from qmedimg.cli.parser import build_parser
from qmedimg.rundir import load_run
from support import one_line_error, snapshot

# A registry of our own: a fake entry whose shots `--shots none` must override, the same device without
# shots (the reference for exact values), and one with ZNE settings of its own (not qmedimg's defaults).
REGISTRY = """\
fake_manila:
  kind: fake
  device: FakeManilaV2
  shots: 1000
manila_exact:
  kind: fake
  device: FakeManilaV2
manila_zne:
  kind: fake
  device: FakeManilaV2
  mitigation: {zne: {noise_factors: [1, 2], extrapolator: linear}}
"""


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory) -> Path:
    """This file's own copy of conftest's shared tiny run (its tests write eval files into it)."""
    return Path(shutil.copytree(tiny_run, tmp_path_factory.mktemp("cli") / "run"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "backends.yaml"
    path.write_text(REGISTRY)
    return path


@pytest.fixture(scope="module")
def pngs(run_dir, tmp_path_factory) -> Path:
    """A folder of the run's test images as PNG files."""
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(load_run(run_dir).dataset.test.images[:4]):
        Image.fromarray(image[0]).save(folder / f"case{i}.png")
    return folder


def written_to(capsys) -> Path:
    """The file an `evaluate` says it wrote."""
    out = capsys.readouterr().out
    return Path(out.rsplit("written to ", 1)[1].strip())


# ------------------------------------------------------------------------------ local backends refuse


@pytest.mark.parametrize("flag", ["--dry-run", "--collect-jobs"])
@pytest.mark.parametrize("backend", ["exact", "aer", "fake_manila", "fake_brisbane"])
def test_evaluate_refuses_dry_run_and_collect_jobs_on_local_backends_before_writing_anything(run_dir, capsys,
                                                                                             backend, flag):
    before = snapshot(run_dir)
    code = main(["evaluate", str(run_dir), "--backend", backend, flag, "--test-limit", "8", "--quiet"])
    assert snapshot(run_dir) == before  # nothing evaluated, nothing written: no eval-*.json, no ledger
    err = one_line_error(capsys)
    assert code == 2 and f"{flag} is for ibm backends" in err and backend in err


@pytest.mark.parametrize("backend", [None, "fake_manila"])
def test_predict_dry_run_on_a_local_backend_is_refused_and_writes_no_csv(run_dir, pngs, tmp_path, monkeypatch,
                                                                         capsys, backend):
    monkeypatch.chdir(tmp_path)  # a folder without --out writes ./predictions.csv
    argv = ["predict", str(run_dir), str(pngs), "--dry-run", "--quiet"] + (["--backend", backend] if backend else [])
    before = snapshot(run_dir)
    for extra in ([], ["--out", str(tmp_path / "out" / "p.csv")]):
        code = main(argv + extra)
        assert list(tmp_path.iterdir()) == [], extra  # no predictions.csv, here or at --out
        err = one_line_error(capsys)
        assert code == 2 and "--dry-run is for ibm backends" in err, extra
    assert snapshot(run_dir) == before


# ----------------------------------------------------------------------------------------- --shots


def test_evaluate_help_documents_shots_none_and_every_command_accepts_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    start = text.index("--shots")
    entry = text[start : text.index("\n  -", start)]  # the --shots entry, up to the next option
    assert "none" in entry
    minimal = {"evaluate": ["RUN"], "transpile": ["sel", "--backend", "fake_manila"], "noise-study": ["RUN"],
               "width-study": ["--dataset", "synthetic", "--out", "OUT"]}
    commands = build_parser()._subparsers._group_actions[0].choices
    with_shots = {name for name, sub in commands.items()
                  if any("--shots" in action.option_strings for action in sub._actions)}
    assert with_shots == set(minimal)
    for name, argv in minimal.items():
        args = build_parser().parse_args([name, *argv, "--shots", "none"])
        assert str(args.shots).lower() == "none", name


def test_shots_none_overrides_the_entrys_shots_and_is_recorded_apart(run_dir, registry, capsys):
    argv = ["evaluate", str(run_dir), "--backends", str(registry), "--test-limit", "8", "--quiet"]
    assert main([*argv, "--backend", "fake_manila"]) == 0  # the entry's 1000 shots
    sampled_path = written_to(capsys)
    assert main([*argv, "--backend", "fake_manila", "--shots", "none"]) == 0
    exact_path = written_to(capsys)
    assert main([*argv, "--backend", "manila_exact"]) == 0  # the same device, no shots in the entry
    reference = json.loads(written_to(capsys).read_text())

    assert exact_path != sampled_path and exact_path.parent == sampled_path.parent == run_dir
    sampled, exact = json.loads(sampled_path.read_text()), json.loads(exact_path.read_text())
    assert sampled["shots"] == 1000 and sampled["backend_entry"]["shots"] == 1000
    assert exact["shots"] is None and exact["backend_entry"]["shots"] is None
    # exact expectation values: the same as an entry that never had shots, unlike the sampled ones
    assert exact["mean_abs_expectation_error"] == reference["mean_abs_expectation_error"]
    assert exact["test"] == reference["test"]
    assert sampled["mean_abs_expectation_error"] != exact["mean_abs_expectation_error"]


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
def test_bad_shots_are_one_line_and_write_nothing(run_dir, capsys, value):
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(run_dir), "--backend", "fake_manila", "--shots", value, "--test-limit", "8", "--quiet"])
    err = one_line_error(capsys)
    assert exc.value.code == 2 and "--shots" in err and value in err
    assert snapshot(run_dir) == before


# ----------------------------------------------------------------------------------- noise study ZNE


def test_noise_study_keeps_the_entrys_zne_settings_and_the_summary_names_them(run_dir, registry, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["noise-study", str(run_dir), "--backend", "manila_zne", "--backends", str(registry),
                 "--scales", "1", "--mitigation", "zne", "--shots", "none,100", "--test-limit", "8",
                 "--out", str(out), "--quiet"]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {r["zne_factors"] for r in rows} == {"1;2"}
    assert {r["shots"]: r["shot_cost"] for r in rows} == {"": "exact", "100": "200"}  # 2 factors, not 3
    summary = (out / "summary.md").read_text()
    assert "2 circuit executions" in summary and "noise factors 1, 2)" in summary
    assert "1, 3, 5" not in summary and "costs 3" not in summary


# ------------------------------------------------------------------------- one meaning per option


def commands() -> dict:
    """{command: its subparser}."""
    return build_parser()._subparsers._group_actions[0].choices


def option_uses() -> dict[str, dict[str, object]]:
    """{option string: {command: argparse action}} over every command, without the old spellings kept for
    one release (qmedimg.cli.deprecated; tests/test_flags.py checks them)."""
    uses: dict[str, dict[str, object]] = {}
    for name, sub in commands().items():
        for action in sub._actions:
            if isinstance(action, DeprecatedOption):
                continue
            for option in action.option_strings:
                uses.setdefault(option, {})[name] = action
    return uses


# Where one command's metavar may differ from the others' because the option means the same thing in another
# form. Every entry is a deliberate, reviewed exception, not a way to silence a new conflict.
SAME_MEANING = {
    "--backend": {"noise-study": "the same registry entry names, comma-separated: one axis of the grid",
                  "width-study": "the same registry entry names, comma-separated: one axis of the grid"},
    "--shots": {"noise-study": "the same shot counts or none, comma-separated: one axis of the grid",
                "width-study": "the same shot counts or none, comma-separated: one axis of the grid"},
    "--qubits": {"width-study": "the same circuit widths, comma-separated: one axis of the grid"},
    "--layers": {"width-study": "the same circuit layers, comma-separated: one axis of the grid"},
    "--out": {"predict": "the same 'where results go', a CSV file where the others write a folder",
              "backends": "the same 'where results go': `backends snapshot` writes one calibration FILE"},
}
# Options that still mean two things, each with the reason (none since issue 22 gave evaluate --test-limit and
# --collect-jobs, and noise-study --test-limit); see test_known_conflicts_still_conflict below.
KNOWN_CONFLICTS: dict[str, str] = {}


def takes_value(action) -> bool:
    return action.nargs != 0


def conflicts(option: str, uses: dict[str, object]) -> list[str]:
    """What differs between the commands using ``option`` (beyond the reviewed exceptions)."""
    found = []
    dests = {name: action.dest for name, action in uses.items()}
    if len(set(dests.values())) > 1:
        found.append(f"dest differs: {dests}")
    shapes = {name: takes_value(action) for name, action in uses.items()}
    if len(set(shapes.values())) > 1:
        found.append(f"takes a value in some commands only: {shapes}")
    allowed = SAME_MEANING.get(option, {})
    metavars = {name: action.metavar for name, action in uses.items() if name not in allowed}
    if len(set(metavars.values())) > 1:
        found.append(f"metavar differs: {metavars}")
    return found


def test_every_option_shared_by_commands_means_the_same_in_each():
    problems = {option: found for option, uses in option_uses().items()
                if len(uses) > 1 and option not in KNOWN_CONFLICTS and (found := conflicts(option, uses))}
    assert problems == {}


def test_known_conflicts_still_conflict():
    """An entry of KNOWN_CONFLICTS goes once its conflict is resolved."""
    uses = option_uses()
    assert [option for option in KNOWN_CONFLICTS if not conflicts(option, uses[option])] == []


def test_the_reviewed_exceptions_are_still_needed_and_still_the_same_option():
    uses = option_uses()
    for option, allowed in SAME_MEANING.items():
        assert len({action.dest for action in uses[option].values()}) == 1, option
        for name in allowed:
            assert name in uses[option], (option, name)
            others = {action.metavar for command, action in uses[option].items() if command not in allowed}
            assert uses[option][name].metavar not in others, f"{option} in {name} needs no exception any more"


def test_backends_is_the_registry_file_in_every_command_that_has_it():
    uses = option_uses()
    assert set(uses["--backends"]) == {"train", "evaluate", "backends", "transpile", "noise-study", "predict",
                                       "width-study"}
    for name, action in uses["--backends"].items():
        assert (action.dest, action.metavar, takes_value(action)) == ("backends", "FILE", True), name
        assert "registry file" in action.help, name
    assert "--backends-file" not in uses


def test_noise_study_names_backends_with_backend_and_has_no_circuits_option(run_dir, capsys):
    sub = commands()["noise-study"]
    options = {option for action in sub._actions for option in action.option_strings}
    assert "--circuits" not in options and "--backend" in options
    args = build_parser().parse_args(["noise-study", "RUN", "--backend", "fake_manila,fake_brisbane",
                                      "--backends", "my.yaml"])
    assert (args.backend, args.backends) == ("fake_manila,fake_brisbane", "my.yaml")
    with pytest.raises(SystemExit) as exc:
        main(["noise-study", str(run_dir), "--circuits", str(run_dir)])
    assert exc.value.code == 2 and "--circuits" in one_line_error(capsys)
    compare = {a.dest: a for a in commands()["compare"]._actions}
    assert "circuit" in compare["circuits"].help  # in compare, --circuits are circuit names
