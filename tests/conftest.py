"""Shared fixtures: tiny data (generated, and the real BreastMNIST file when present) and one tiny
trained run for the whole session.

``tiny_run`` is trained once and shared read-only: a test that writes into a run directory (evaluate
writes ``eval-*.json``, QPU backends ``ledger-*.json``, the noise study ``noise-study/``) takes
``tiny_run_copy``, its own copy, so no test depends on which tests ran before it. The shared run is
checked unchanged at the end of the session."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from qmedimg.data import datasets, write_synthetic_npz

# The tiny run every test file shares: synthetic blob-vs-ring data, real model, real files (~1 s).
TINY = {"dataset": "synthetic", "limit": 48, "epochs": 2, "batch_size": 16}

MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
BREAST_SPLITS = (546, 78, 156)  # BreastMNIST's own split sizes at 28x28


def train_tiny(out: Path, **fields) -> tuple[dict, Path]:
    """Train a run into ``out`` with the tiny settings (``fields`` override them); (metrics, out)."""
    from qmedimg.rundir import make_config
    from qmedimg.workflows.train import train

    config = make_config(**{**TINY, "out": str(out), **fields})
    return train(config, progress=False), Path(out)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def trainer():
    """:func:`train_tiny`, for test files: ``metrics, out = trainer(tmp_path / "run", epochs=1)``."""
    return train_tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One tiny trained run (``TINY``, circuit sel, exact backend), shared by the whole session.
    Read-only: tests that write into a run directory use ``tiny_run_copy``."""
    _, out = train_tiny(tmp_path_factory.mktemp("shared") / "tiny_run")
    before = _fingerprint(out)
    yield out
    if _fingerprint(out) != before:
        pytest.fail(f"a test wrote into the shared run {out}; tests that write into a run must use tiny_run_copy")


@pytest.fixture
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of ``tiny_run``, free to write into (ledgers, eval files, studies)."""
    return Path(shutil.copytree(tiny_run, tmp_path / "tiny_run"))


@pytest.fixture
def one_class_test_npz(tmp_path: Path) -> Path:
    """A small npz (32/16/16) whose test split holds class 0 only: its AUC is undefined."""
    path = write_synthetic_npz(tmp_path / "one.npz", n_train=32, n_val=16, n_test=16)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["test_labels"][:] = 0
    np.savez(path, **arrays)
    return path


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """A small MedMNIST-layout npz (96/32/32, gray 28x28, blob vs ring)."""
    return write_synthetic_npz(tmp_path / "tiny.npz")


@pytest.fixture
def breastmnist_npz() -> Path:
    """The real BreastMNIST 28x28 npz in the shared data folder next to the repo."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"real BreastMNIST not found at {path}")
    return path


@pytest.fixture(scope="session")
def generated_breastmnist(tmp_path_factory) -> Path:
    """A stand-in ``breastmnist.npz`` in a data root of its own, in MedMNIST's own file format: the six
    arrays only, uint8 gray images (N, 28, 28), uint8 labels (N, 1) in {0, 1}, BreastMNIST's split
    sizes; the images are the learnable blob-vs-ring synthetic set. Works on a fresh machine."""
    root = tmp_path_factory.mktemp("medmnist_root")
    scratch = write_synthetic_npz(tmp_path_factory.mktemp("scratch") / "scratch.npz", n_train=BREAST_SPLITS[0],
                                  n_val=BREAST_SPLITS[1], n_test=BREAST_SPLITS[2], seed=7)
    with np.load(scratch) as npz:
        arrays = {key: npz[key] for key in MEDMNIST_KEYS}
    for split, n in zip(("train", "val", "test"), BREAST_SPLITS):
        assert arrays[f"{split}_images"].shape == (n, 28, 28) and arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_labels"].shape == (n, 1) and arrays[f"{split}_labels"].dtype == np.uint8
        assert set(np.unique(arrays[f"{split}_labels"])) == {0, 1}
    path = root / "breastmnist.npz"
    np.savez_compressed(path, **arrays)  # as MedMNIST ships them: no label_names array
    return path


@pytest.fixture(params=["generated", "real"])
def breastmnist_file(request, monkeypatch) -> Path:
    """``breastmnist.npz`` in a data root, loaded through the ``breastmnist`` flag: the generated one
    (runs everywhere) and the real one (skipped when absent). Never downloads."""

    def no_download(*args):
        pytest.fail(f"tried to download MedMNIST {args[:3]} although the file is in the data root")

    monkeypatch.setattr(datasets, "_download", no_download)
    return request.getfixturevalue("generated_breastmnist" if request.param == "generated" else "breastmnist_npz")
