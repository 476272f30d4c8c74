"""Results keyed by what produced them (issue 13): a resumable result is reused only when the inputs
that made it match, otherwise recomputed or written under its own name — and the user is told."""

import csv
import json

import pytest
from PIL import Image

from qmedimg.cli import main
from qmedimg.errors import QmedimgError
from qmedimg.rundir import load_run
from qmedimg.workflows.noise_study import COLUMNS, noise_study


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------------- noise study


def test_noise_study_recomputes_points_whose_limit_changed(tiny_run_copy, tmp_path):
    study = tiny_run_copy / "noise-study"
    noise_study([tiny_run_copy], backends=["exact"], limit=8, progress=False)
    noise_study([tiny_run_copy], backends=["exact"], progress=False)  # the full split now
    table = rows(study / "results.csv")
    assert len(table) == 2, "the full-split point was taken as done from the --limit 8 row"
    assert table[0]["inputs"] != table[1]["inputs"]
    reference = noise_study([tiny_run_copy], backends=["exact"], out=tmp_path / "fresh", progress=False)
    fresh = rows(reference / "results.csv")[0]
    assert table[1]["ideal_acc"] == fresh["ideal_acc"] and table[1]["inputs"] == fresh["inputs"]
    summary = (study / "summary.md").read_text()
    assert "1 of them recomputed because their inputs changed" in summary
    # the summary is the full split's alone, not the 8-image row's
    assert summary.split("\n1 grid points")[0] == (reference / "summary.md").read_text().split("\n1 grid points")[0]
    noise_study([tiny_run_copy], backends=["exact"], progress=False)  # same inputs again: reused
    assert len(rows(study / "results.csv")) == 2
    assert "1 grid points: 1 reused from results.csv, 0 computed now." in (study / "summary.md").read_text()
    noise_study([tiny_run_copy], backends=["exact"], limit=1000, progress=False)  # cuts nothing: the full split
    assert len(rows(study / "results.csv")) == 2


def test_noise_study_recomputes_a_backend_redefined_in_the_registry(tiny_run_copy, tmp_path):
    registry = tmp_path / "backends.yaml"
    registry.write_text("dev:\n  kind: fake\n  device: FakeManilaV2\n  description: first\n")
    args = dict(backends=["dev"], scales=[1.0], backends_file=registry, limit=8, progress=False)
    out = noise_study([tiny_run_copy], **args)
    registry.write_text("dev:\n  kind: fake\n  device: FakeManilaV2\n  description: reworded\n")
    noise_study([tiny_run_copy], **args)  # the description is prose: nothing recomputed
    assert [r["device"] for r in rows(out / "results.csv")] == ["fake_manila"]

    registry.write_text("dev:\n  kind: fake\n  device: FakeBelemV2\n  description: first\n")
    noise_study([tiny_run_copy], **args)
    table = rows(out / "results.csv")
    assert [r["device"] for r in table] == ["fake_manila", "fake_belem"], \
        "the row of the old device was kept for the redefined entry"
    assert "1 of them recomputed because their inputs changed" in (out / "summary.md").read_text()


def test_noise_study_recomputes_after_retraining(tiny_run_copy, trainer, tmp_path):
    out = noise_study([tiny_run_copy], backends=["exact"], limit=8, progress=False)
    retrained = trainer(tmp_path / "other", epochs=1)[1]  # same config but epochs: another checkpoint
    for name in ("config.json", "checkpoint.pt", "metrics.json"):
        (tiny_run_copy / name).write_bytes((retrained / name).read_bytes())
    noise_study([tiny_run_copy], backends=["exact"], limit=8, progress=False)
    assert len(rows(out / "results.csv")) == 2, "a retrained run's point was taken as done"


def test_noise_study_refuses_a_results_csv_without_the_inputs_column(tiny_run_copy):
    out = tiny_run_copy / "noise-study"
    out.mkdir()
    with open(out / "results.csv", "w", newline="") as handle:
        csv.writer(handle).writerow([c for c in COLUMNS if c != "inputs"])  # an older qmedimg's file
    with pytest.raises(QmedimgError, match="written by another version of qmedimg"):
        noise_study([tiny_run_copy], backends=["exact"], limit=8, progress=False)


# ------------------------------------------------------------------------------------------- compare


def compare_argv(out, *extra):
    return ["compare", "--dataset", "synthetic", "--limit", "24", "--epochs", "1", "--seeds", "0",
            "--models", "hybrid", "--out", str(out), "--quiet", *extra]


def test_compare_refuses_a_run_made_with_another_recipe(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(compare_argv(out)) == 0
    metrics = (out / "hybrid-seed0" / "metrics.json").read_bytes()
    capsys.readouterr()
    argv = compare_argv(out, "--lr", "0.01")
    argv[argv.index("--epochs") + 1] = "2"
    assert main(argv) == 2, "a 1-epoch run was reused for --epochs 2 --lr 0.01"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(out / "hybrid-seed0") in err and "epochs: 1 -> 2" in err and "lr: 0.001 -> 0.01" in err
    assert (out / "hybrid-seed0" / "metrics.json").read_bytes() == metrics  # the user's run untouched


def test_compare_resumes_an_interrupted_run_with_the_same_config(tmp_path, monkeypatch):
    import qmedimg.workflows.train as compare_module  # where compare's cells train or resume

    real_train, real_resume, calls = compare_module.train, compare_module.resume, []

    def interrupted(config, **kw):
        def stop(epoch, row):
            raise KeyboardInterrupt

        return real_train(config, **kw, on_epoch=stop)

    def counting_resume(run, **kw):
        calls.append(run)
        return real_resume(run, **kw)

    out = tmp_path / "cmp"
    argv = compare_argv(out)
    argv[argv.index("--epochs") + 1] = "2"
    monkeypatch.setattr(compare_module, "train", interrupted)
    assert main(argv) != 0  # interrupted after its first epoch, as by Ctrl-C
    run = out / "hybrid-seed0"
    assert (run / "checkpoint.pt").is_file() and not (run / "metrics.json").is_file()
    monkeypatch.setattr(compare_module, "train", real_train)
    monkeypatch.setattr(compare_module, "resume", counting_resume)
    assert main(argv) == 0
    assert calls == [run] and json.loads((run / "metrics.json").read_text())["selected_epoch"] >= 1
    assert len(rows(run / "history.csv")) == 2


# ------------------------------------------------------------------------------------------- evaluate


def test_evaluate_with_a_limit_keeps_the_full_split_result(tiny_run_copy):
    from qmedimg.workflows.evaluate import evaluate_run

    full = evaluate_run(tiny_run_copy)
    assert full["path"] == str(tiny_run_copy / "eval-exact.json") and full["images"] == 48
    part = evaluate_run(tiny_run_copy, limit=8)
    assert json.loads((tiny_run_copy / "eval-exact.json").read_text())["images"] == 48, \
        "--limit 8 overwrote the full split's result"
    assert part["path"] == str(tiny_run_copy / "eval-exact-limit8.json") and part["images"] == 8
    whole = evaluate_run(tiny_run_copy, limit=1000)  # a limit that cuts nothing is the full split
    assert whole["path"] == str(tiny_run_copy / "eval-exact.json") and whole["images"] == 48


# ------------------------------------------------------------------------------------------- explain


def test_explain_gives_inputs_with_the_same_stem_distinct_files(tiny_run, tmp_path):
    from qmedimg.workflows.predict import explain

    images = load_run(tiny_run).dataset.test.images[:2]
    inputs = []
    for folder, image in zip("ab", images):
        (tmp_path / folder).mkdir()
        Image.fromarray(image[0]).save(tmp_path / folder / "scan.png")
        inputs.append(tmp_path / folder / "scan.png")
    written = explain(tiny_run, inputs, tmp_path / "explain")
    names = [p.name for p in written]
    assert names[:2] == ["scan-gradcam.png", "scan-2-gradcam.png"], names
    assert all(p.is_file() for p in written) and len(set(names)) == len(names)


def test_a_run_spelled_relative_or_absolute_is_one_run_in_the_noise_study(tiny_run_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_run_copy.parent)
    out = tmp_path / "study"
    argv = ["--backend", "fake_manila", "--scales", "0,1", "--mitigation", "none", "--test-limit", "4",
            "--out", str(out), "--quiet"]
    assert main(["noise-study", tiny_run_copy.name, *argv]) == 0
    first = rows(out / "results.csv")
    assert main(["noise-study", str(tiny_run_copy.resolve()), *argv]) == 0
    assert rows(out / "results.csv") == first  # nothing recomputed
    assert main(["noise-study", f"./{tiny_run_copy.name}/", *argv]) == 0
    assert rows(out / "results.csv") == first
    assert "2 reused from results.csv, 0 computed now" in (out / "summary.md").read_text()


def test_an_eval_file_says_which_weights_it_evaluated(tiny_run_copy, trainer, tmp_path):
    from qmedimg.workflows.evaluate import evaluate_run

    done = evaluate_run(tiny_run_copy)
    assert done["training_finished"] and done["checkpoint_epoch"] == 2
    assert done["run_id"] == load_run(tiny_run_copy).run_id()
    (tiny_run_copy / "metrics.json").unlink()  # as during training: the checkpoint of an unfinished run
    during = evaluate_run(tiny_run_copy)
    assert not during["training_finished"] and during["checkpoint_epoch"] == 2
    stored = json.loads((tiny_run_copy / "eval-exact.json").read_text())
    assert stored["training_finished"] is False and stored["run_id"] == done["run_id"]
