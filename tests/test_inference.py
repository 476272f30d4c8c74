"""One inference path (issue 22 item 2): evaluate, predict, explain and the noise study's cells all use
:class:`qmedimg.inference.Inference`, so the same images get the same probabilities and the same decisions,
at the run's threshold, whichever command asks."""

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import qmedimg
from qmedimg.cli import main
from qmedimg.inference import Inference
from qmedimg.rundir import load_run
from qmedimg.workflows import predict as predict_module
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.study_points import read_point

IMAGES = 20
HEAD_STEPS = {"head_angles", "ideal_head_values", "probs_from_head", "run_head"}
OUTSIDE_THE_PATH = {  # modules that may take these steps themselves, each for a reason
    "qmedimg/inference.py": "the path itself",
    "qmedimg/model.py": "where the steps are defined",
    "qmedimg/workflows/train.py": "the network being trained, not a trained run",
    "qmedimg/workflows/width_plan.py": "a dry run timing a head with random weights before anything is trained",
}


@pytest.fixture
def split_run(tiny_run_copy) -> Path:
    """The tiny run with its recorded threshold moved to the median P(class 1) of its first test images, so that
    deciding at the threshold and by the most probable class disagree on some of them."""
    run = load_run(tiny_run_copy)
    p1 = Inference(run, run.dataset.test.images[:IMAGES]).ideal_probs[:, 1]
    threshold = float(np.median(p1))
    metrics = json.loads((tiny_run_copy / "metrics.json").read_text())
    metrics["threshold"] = {"value": threshold, "rule": "fixed"}
    (tiny_run_copy / "metrics.json").write_text(json.dumps(metrics))
    assert ((p1 > threshold) != (p1 > 0.5)).any(), "the threshold must change some decisions for this test to mean much"
    return tiny_run_copy


def test_evaluate_predict_explain_and_the_noise_study_decide_the_same_way(split_run, tmp_path, monkeypatch):
    run = load_run(split_run)
    images, labels = run.dataset.test.images[:IMAGES], run.dataset.test.labels[:IMAGES]
    reference = Inference(run, images)
    decided = reference.decide(reference.ideal_probs)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[0]).save(folder / f"case{i:03d}.png")
    names = list(run.dataset.label_names)

    rows = predict_module.predict(split_run, [folder])["rows"]
    assert [r["class"] for r in rows] == [names[k] for k in decided]
    np.testing.assert_allclose([[r["probabilities"][n] for n in names] for r in rows], reference.ideal_probs, atol=1e-6)

    titles = []
    monkeypatch.setattr(predict_module, "plot_gradcam", lambda array, heat, target, title: titles.append(title))
    predict_module.explain(split_run, sorted(folder.iterdir())[:6], tmp_path / "explain")
    assert [t.split(": ")[1].split(" (")[0] for t in titles] == [names[k] for k in decided[:6]]

    result = evaluate_run(split_run, limit=IMAGES)
    assert result["test"]["acc"] == pytest.approx(float(np.mean(decided == labels.ravel())))

    out = tmp_path / "study"
    assert main(["noise-study", str(split_run), "--backend", "fake_manila", "--scales", "0", "--mitigation", "none",
                 "--test-limit", str(IMAGES), "--out", str(out), "--quiet"]) == 0
    row = next(csv.DictReader(open(out / "results.csv")))
    point = read_point(out, row)
    np.testing.assert_allclose(point["ideal_probs"], reference.ideal_probs, atol=1e-12)
    np.testing.assert_array_equal(point["ideal_decision"], decided)


def test_only_the_inference_path_runs_a_trained_head():
    root = Path(qmedimg.__file__).parent
    steps = {}
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(root.parent))
        if name.startswith("qmedimg/backends/") or name in OUTSIDE_THE_PATH:
            continue
        tree = ast.parse(path.read_text())
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        if used & HEAD_STEPS:
            steps[name] = sorted(used & HEAD_STEPS)
    assert steps == {}, f"modules that run a trained head outside qmedimg.inference.Inference: {steps}"
