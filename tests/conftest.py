"""Shared fixtures: a tiny generated npz and the real BreastMNIST file (skipped if absent)."""

from pathlib import Path

import pytest

from qmedimg.data import write_synthetic_npz


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
