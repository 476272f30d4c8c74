"""Plots as a reader meets them: every title inside the figure, no class hidden under another, and a colour bar
that says what a Grad-CAM colour means. Each figure is kept open (``plt.close`` captured) and measured with
matplotlib's own renderer after the layout it was saved with."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from qmedimg.report import plots
from qmedimg.report.width_study import plot_accuracy_lost


@pytest.fixture
def figures(monkeypatch):
    """The figures plotting functions save, kept open (and closed at the end of the test)."""
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    yield kept
    monkeypatch.undo()
    for fig in kept:
        plt.close(fig)


def lost_rows(backends, layers=(1,), qubits=(2, 4)) -> list[dict]:
    return [{"backend": b, "mitigation": "none", "shots": "", "scale": "1", "qubits": str(q), "layers": str(n),
             "seed": "0", "acc": "0.80", "ideal_acc": "0.82", "auc": "0.9", "ideal_auc": "0.9",
             "two_qubit_gates": "10", "estimated_fidelity": "0.9", "effective_dimension": "1"}
            for b in backends for q in qubits for n in layers]


@pytest.mark.parametrize("backends", [["fake_brisbane"], ["fake_brisbane", "fake_sherbrooke_readout_zne"]])
def test_accuracy_lost_titles_lie_inside_the_figure(tmp_path, figures, backends):
    """One layer and one device made a 3.7-inch figure whose title began off the page ("ake_brisbane: …")."""
    plot_accuracy_lost(lost_rows(backends), tmp_path / "accuracy_lost.png", [])
    fig = figures[-1]
    fig.canvas.draw()
    renderer, page = fig.canvas.get_renderer(), fig.bbox
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(backends) and all(b in t.get_text() for b, t in zip(backends, titles))
    boxes = [t.get_window_extent(renderer) for t in titles]
    for box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))  # side by side, never over each other


def test_head_space_draws_the_rarer_class_on_top_and_says_so(tmp_path, figures):
    """BreastMNIST's malignant class (label 0, a quarter of the images) was drawn first, under benign."""
    rng = np.random.default_rng(0)
    labels = rng.permutation([0] * 20 + [1] * 60)
    plots.plot_head_space(rng.uniform(-1, 1, (80, 3)), labels, ["malignant", "normal, benign"], tmp_path / "h.png")
    fig = figures[-1]
    scatter = fig.axes[1]  # ⟨O1⟩ against ⟨O0⟩
    order = {c.get_label(): c.get_zorder() for c in scatter.collections}
    assert order["malignant (n=20, drawn on top)"] > order["normal, benign (n=60)"]
    legend = [t.get_text() for t in scatter.get_legend().get_texts()]
    assert legend == ["malignant (n=20, drawn on top)", "normal, benign (n=60)"]  # in label order


@pytest.mark.parametrize("volume", [False, True], ids=["image", "volume"])
def test_gradcam_has_a_colour_bar_saying_what_its_colours_mean(tmp_path, figures, volume):
    rng = np.random.default_rng(1)
    if volume:
        plots.plot_gradcam_volume(rng.integers(0, 256, (1, 8, 8, 8), dtype=np.uint8), rng.random((8, 8, 8)),
                                  tmp_path / "v.png", "v")
    else:
        plots.plot_gradcam(rng.integers(0, 256, (1, 8, 8), dtype=np.uint8), rng.random((8, 8)), tmp_path / "i.png", "i")
    bars = [ax for ax in figures[-1].axes if ax.get_ylabel() == plots.CAM_SCALE]
    assert len(bars) == 1
    low, high = bars[0].get_ylim()
    assert (low, high) == (0.0, 1.0)
    assert Path(tmp_path / ("v.png" if volume else "i.png")).is_file()
