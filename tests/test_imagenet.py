"""The ImageNet recipe end to end on a tiny ImageFolder tree written by the test."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import write_imagefolder

from ffvision.cli import main


def test_imagenet64_recipe_end_to_end(tmp_path: Path, capsys):
    root = write_imagefolder(tmp_path / "imagenet", classes=6, per_class=5, size=48)
    out = tmp_path / "run"
    code = main(["train", "--config", "asge-imagenet64", "--data-dir", str(root), "--epochs", "1", "--width-mult",
                 "0.0625", "--batch-size", "8", "--eval-batch-size", "8", "--num-workers", "2", "--val-size", "0.2",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "vgg11a" and s["dataset"] == "imagenet" and s["config"]["image_size"] == 64
    assert s["num_train"] == 24 and s["num_val"] == 6 and s["num_test"] == 30  # val/ is the test set
    assert 0 <= s["test_accuracy"] <= 1 and 0 <= s["test_top5_accuracy"] <= 1
    assert s["test_top5_accuracy"] >= s["test_accuracy"]
    from ffvision.data import build_splits

    data = build_splits("imagenet", root, image_size=64, val_size=0.2)
    assert "RandomResizedCrop" in repr(data.train.transform) and "CenterCrop" in repr(data.test.transform)
