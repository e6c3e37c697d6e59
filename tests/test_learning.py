"""Learning happens on real data: FashionMNIST (Debian's dataset-fashion-mnist; `make test` installs it).

Small budgets (2,000 training images, 2 epochs, narrow VGG8) so the suite stays fast; the
accuracy runs that matter live in benchmarks/. Chance is 10%.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FMNIST_DIR

from ffvision.config import TrainConfig, apply_overrides
from ffvision.train.run import train

if not FMNIST_DIR.is_dir() and not Path("data/FashionMNIST").is_dir():
    pytest.fail(f"real FashionMNIST is required: install Debian's dataset-fashion-mnist ({FMNIST_DIR}); "
                "`make test` does this", pytrace=False)


@pytest.mark.parametrize("method,floor", [("asge", 0.65), ("bp", 0.65)])
def test_learns_fashion_mnist(method: str, floor: float, tmp_path: Path):
    cfg = apply_overrides(TrainConfig(), {
        "method": method, "dataset": "fashion-mnist", "width_mult": 0.125, "train_subset": 2000,
        "val_size": 1000, "epochs": 2, "batch_size": 64, "device": "cpu", "out": str(tmp_path / method)})
    summary = train(cfg, show_progress=False)
    assert summary["num_test"] == 10000
    assert summary["test_accuracy"] >= floor, summary["test_accuracy_by_strategy"]
    if method == "asge":  # every strategy learns, not only the default one
        assert all(acc >= 0.5 for acc in summary["test_accuracy_by_strategy"].values()), summary
        assert summary["test_layer_accuracy"][-1] >= 0.5
