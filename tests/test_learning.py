"""Learning happens on real data: FashionMNIST (Debian's dataset-fashion-mnist; `make test` installs it).

Small budgets so the suite stays fast; the accuracy runs that matter live in benchmarks/.
Chance is 10%.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import FMNIST_DIR

import ffvision
from ffvision.config import TrainConfig, apply_overrides
from ffvision.data import build_splits
from ffvision.methods import create_method, method_kwargs
from ffvision.train.run import train
from ffvision.train.trainer import Trainer

if not FMNIST_DIR.is_dir() and not Path("data/FashionMNIST").is_dir():
    pytest.fail(f"real FashionMNIST is required: install Debian's dataset-fashion-mnist ({FMNIST_DIR}); "
                "`make test` does this", pytrace=False)


def run(tmp_path: Path, **kw) -> dict:
    cfg = apply_overrides(TrainConfig(), {"dataset": "fashion-mnist", "val_size": 1000, "batch_size": 64,
                                          "device": "cpu", "out": str(tmp_path / kw["method"]), **kw})
    return train(cfg, show_progress=False)


@pytest.mark.parametrize("method", ["asge", "bp"])
def test_vgg8_learns_fashion_mnist(method: str, tmp_path: Path):
    s = run(tmp_path, method=method, width_mult=0.125, train_subset=4000, epochs=3)
    assert s["num_test"] == 10000
    assert s["test_accuracy"] >= 0.6, s["test_accuracy_by_strategy"]
    if method == "asge":  # every strategy learns, not only the default one
        assert all(acc >= 0.5 for acc in s["test_accuracy_by_strategy"].values()), s["test_accuracy_by_strategy"]


def test_hinton_ff_classifies_by_goodness_close_to_its_probe(tmp_path: Path):
    s = run(tmp_path, method="hinton", width_mult=0.25, image_size=28, train_subset=2000, epochs=3)
    acc = s["test_accuracy_by_strategy"]
    assert acc["goodness"] >= 0.6, acc  # goodness inference, the method's own rule (chance: 0.1)
    assert acc["goodness"] >= acc["probe"] - 0.08, acc  # ... close to a linear probe on the same features


def test_ffcnn_separates_positives_from_negatives_and_its_probe_learns(tmp_path: Path):
    data = build_splits("fashion-mnist", val_size=1000, train_subset=64, image_size=28)
    x = torch.stack([data.train[i][0] for i in range(64)]).float() / 255
    y = torch.tensor([data.train[i][1] for i in range(64)])
    torch.manual_seed(0)
    m = ffvision.create_method("ffcnn", num_classes=10, in_channels=1, image_size=28, filters=16)
    sep = [float((m.train_step(x, y)["layer_correct"] / 64)[1:].max()) for _ in range(120)]
    early, late = sum(sep[:25]) / 25, sum(sep[-25:]) / 25
    # the local objective is learned: deeper layers come to tell positive from negative inputs apart
    assert late >= 0.8 and late >= early + 0.1, (early, late)
    # its probe learns too, judged on 1,000 held-out images (the 10,000-image test pass is the slow part of a run)
    cfg = apply_overrides(TrainConfig(), {"dataset": "fashion-mnist", "val_size": 1000, "batch_size": 64,
                                          "device": "cpu", "method": "ffcnn", "filters": 8, "image_size": 28,
                                          "train_subset": 2000, "epochs": 2})
    data = build_splits(cfg.dataset, val_size=cfg.val_size, train_subset=cfg.train_subset, image_size=28)
    torch.manual_seed(0)
    method = create_method(cfg.method, **method_kwargs(cfg, data.num_classes, data.in_channels, data.image_size))
    trainer = Trainer(method, cfg, None, show_progress=False)
    trainer.fit(data.train, data.val)
    val = trainer.history[-1]["val_accuracy_by_strategy"]
    assert val["probe"] >= 0.5, val


def test_sff_learns_fashion_mnist(tmp_path: Path):
    s = run(tmp_path, method="sff", model="mobilenet_v3_small", granularity="block", train_subset=3000, epochs=2)
    assert s["test_accuracy"] >= 0.5, s["test_accuracy_by_strategy"]
    assert s["test_accuracy_by_strategy"]["range"] >= 0.5, s["test_accuracy_by_strategy"]


@pytest.mark.parametrize("method", ["deeperforward", "hclff"])
def test_channelwise_methods_classify_by_goodness(tmp_path: Path, method: str):
    extra = {"hierarchy": "fashion-mnist"} if method == "hclff" else {}
    s = run(tmp_path, method=method, width_mult=0.1, image_size=16, train_subset=1500, epochs=2, **extra)
    acc = s["test_accuracy_by_strategy"]
    assert acc["goodness"] >= 0.55, acc  # the summed class-group goodness of the layer range chosen on validation

