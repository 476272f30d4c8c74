"""Per-image outputs, as a reviewer uses them: evaluate leaves an npz beside its eval file from which every metric
recomputes, and predict on PNG exports of the test images agrees with it image by image."""

import json

import numpy as np
import pytest
from PIL import Image

from qmedimg.metrics import compute_metrics
from qmedimg.rundir import load_run
from qmedimg.workflows.evaluate import evaluate_run
from qmedimg.workflows.per_image import images_digest, read_per_image
from qmedimg.workflows.predict import predict


@pytest.fixture
def evaluated(tiny_run_copy):
    result = evaluate_run(tiny_run_copy)
    return tiny_run_copy, result, read_per_image(tiny_run_copy / result["per_image"])


def test_evaluate_writes_its_per_image_file_beside_the_eval_file_and_names_it(evaluated):
    run, result, arrays = evaluated
    assert result["per_image"] == "eval-exact.npz" and json.loads((run / "eval-exact.json").read_text())[
        "per_image"] == "eval-exact.npz"
    test = load_run(run).dataset.test
    n = len(test.labels)
    assert np.array_equal(arrays["index"], np.arange(n)) and np.array_equal(arrays["labels"], test.labels)
    assert arrays["probs"].shape == arrays["ideal_probs"].shape == (n, 2)
    assert arrays["values"].shape == arrays["ideal_values"].shape == (n, 4)  # sel's four head outputs
    assert str(arrays["task"]) == "binary-class" and float(arrays["threshold"]) == 0.5
    assert str(arrays["images_sha256"]) == images_digest(test.images)


def test_the_eval_files_metrics_recompute_from_its_per_image_file(evaluated):
    _, result, arrays = evaluated
    task, threshold = str(arrays["task"]), float(arrays["threshold"])
    for key, probs in (("test", "probs"), ("ideal_test", "ideal_probs")):
        recomputed = compute_metrics(arrays["labels"], arrays[probs], task, threshold)
        assert recomputed["acc"] == result[key]["acc"] and recomputed["auc"] == result[key]["auc"]
    assert np.mean(arrays["decision"] == arrays["labels"]) == result["test"]["acc"]


def test_predict_on_png_exports_of_the_test_images_agrees_with_evaluate_image_by_image(evaluated, tmp_path):
    run, _, evaluation = evaluated
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(load_run(run).dataset.test.images):
        Image.fromarray(image[0]).save(folder / f"case{i:03d}.png")
    result = predict(run, [folder], out=tmp_path / "predictions.csv")
    assert result["per_image"] == str(tmp_path / "predictions.npz")
    predicted = read_per_image(tmp_path / "predictions.npz")
    n = len(evaluation["index"])
    assert [str(f) for f in predicted["files"]] == [str(folder / f"case{i:03d}.png") for i in range(n)]
    assert np.array_equal(predicted["index"], evaluation["index"]) and "labels" not in predicted
    np.testing.assert_allclose(predicted["probs"], evaluation["probs"], atol=1e-6)
    np.testing.assert_allclose(predicted["values"], evaluation["values"], atol=1e-6)
    assert np.array_equal(predicted["decision"], evaluation["decision"])
    assert [r["class"] for r in result["rows"]] == [["blob", "ring"][d] for d in evaluation["decision"]]
