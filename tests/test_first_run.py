"""The first run, as a newcomer meets it: a long wait is said on screen, a failed download leaves
nothing behind, and default outputs land in the run directory, not wherever the shell happens to be."""

import medmnist
import pytest

from qmedimg.cli import main
from qmedimg.data import load_dataset
from qmedimg.errors import QmedimgError


def test_the_first_kernel_compile_is_said_on_screen_once(tmp_path, monkeypatch, capsys):
    """A fresh machine waits while numba compiles the exact estimator's kernel: say so, once."""
    from types import SimpleNamespace

    import qmedimg.quantum.kernel as kernel

    def uncompiled(name, module="qmedimg.quantum.kernel"):  # a numba dispatcher not compiled in this process
        return SimpleNamespace(signatures=[], py_func=SimpleNamespace(__module__=module), __name__=name)

    monkeypatch.setattr(kernel, "run_rows", uncompiled("run_rows"))
    monkeypatch.setattr(kernel, "__file__", str(tmp_path / "kernel.py"))  # and no cached copy on disk
    kernel.announce_compile()
    kernel.run_rows.signatures.append("(float64[:, :], ...)")  # the call after it compiled the kernel, as numba records
    kernel.announce_compile()
    assert capsys.readouterr().err.count("compiling the exact estimator's kernel") == 1
    kernel.announce_compile(uncompiled("adjoint_rows", "qmedimg.quantum.adjoint_kernel"))  # another kernel: said too
    assert "adjoint_kernel.adjoint_rows" in capsys.readouterr().err
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "kernel.run_rows-91.py311.nbi").touch()
    monkeypatch.setattr(kernel, "run_rows", uncompiled("run_rows"))  # a new process: nothing compiled in it yet
    kernel.announce_compile()
    assert capsys.readouterr().err == ""  # cached: nothing to wait for, nothing said



def test_a_failed_download_leaves_no_data_folder_behind(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(medmnist, "BreastMNIST", offline)
    root = tmp_path / "fresh" / "medmnist"
    with pytest.raises(QmedimgError, match="could not be downloaded"):
        load_dataset("breastmnist", data_root=root)
    assert not root.exists()
    root.mkdir(parents=True)  # a folder the user made is left alone
    with pytest.raises(QmedimgError):
        load_dataset("breastmnist", data_root=root)
    assert root.is_dir()


def test_predict_and_explain_write_their_defaults_into_the_run(tiny_run_copy, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from qmedimg.rundir import load_run

    images = tmp_path / "images"
    images.mkdir()
    test = load_run(tiny_run_copy).dataset.test
    for i in range(3):
        Image.fromarray(test.images[i, 0]).save(images / f"scan{i}.png")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["predict", str(tiny_run_copy), str(images), "--quiet"]) == 0
    assert main(["explain", str(tiny_run_copy), str(images / "scan0.png")]) == 0
    assert (tiny_run_copy / "predictions.csv").is_file()
    assert (tiny_run_copy / "explain" / "scan0-gradcam.png").is_file()
    assert list(elsewhere.iterdir()) == []


def test_noise_plots_keep_coinciding_curves_visible_and_say_what_exact_means(tmp_path, monkeypatch):
    """Curves with equal values used to hide one under another, with the legend on one panel, and
    'exact' in a label read like the exact backend."""
    import qmedimg.report.noise_study as report

    figures = []
    monkeypatch.setattr(report, "save_figure", lambda fig, path, **kw: figures.append(fig))
    rows = [{"run": "r", "circuit": "sel", "trained_on": "exact", "backend": b, "mitigation": m, "shots": "",
             "opt_level": "1", "scale": str(s), "acc": "0.75", "auc": "1.0", "ideal_acc": "0.75",
             "ideal_auc": "1.0", "mean_abs_expectation_error": "0.01"}
            for b in ("fake_manila", "fake_brisbane") for m in ("none", "readout+zne") for s in (0, 1)]
    report.plot_noise_study(rows, tmp_path)
    accuracy = figures[0]
    lines = [line for line in accuracy.axes[0].get_lines() if line.get_label()[0] != "_"]
    assert len(lines) == 4 and len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 4
    assert accuracy.legends and not accuracy.axes[1].get_legend()  # one legend for both panels
    labels = [text.get_text() for text in accuracy.legends[0].get_texts()]
    assert all("no shot noise" in label and "exact" not in label for label in labels)
