"""Shared fixtures: tiny datasets in real formats, and a fast config for trainer tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import write_mnist_like  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state, so the suite gives the same result each run."""
    import random

    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def fake_fmnist(tmp_path: Path) -> Path:
    """A FashionMNIST-format folder (gzipped IDX) with 240 training and 80 test images."""
    return write_mnist_like(tmp_path / "fmnist")


@pytest.fixture
def fast_cfg(fake_fmnist: Path, tmp_path: Path) -> dict:
    """Overrides for a seconds-long run on the fake data (narrow VGG8, 16 px)."""
    return {"dataset": "fashion-mnist", "data_dir": str(fake_fmnist), "width_mult": 0.125, "image_size": 16,
            "val_size": 40, "batch_size": 32, "epochs": 2, "eval_batch_size": 64, "log_interval": 2,
            "out": str(tmp_path / "run"), "device": "cpu"}
