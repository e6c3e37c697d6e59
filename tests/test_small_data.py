"""Small datasets of tiny images: a size every method's default model takes, and a warning for short runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_imagefolder

from ffvision.config import TrainConfig, apply_overrides
from ffvision.train.run import train

MINIMUM = {"asge": 16, "bp": 16, "ffcnn": 12, "hinton": 8, "sff": 16}  # vgg8 pools 4 times; fourier waves; mlp


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """8x8 px greyscale images in train/ val/ test/ folders (as small digit scans come)."""
    return write_imagefolder(tmp_path / "tiny", classes=3, per_class=4, size=8, mode="L",
                             splits=("train", "val", "test"))


@pytest.mark.parametrize("method", sorted(MINIMUM))
def test_tiny_images_are_resized_to_the_smallest_size_the_default_model_takes(tiny_folder, method):
    seen = {}

    def look(trainer):
        seen["size"] = trainer.method.image_size

    cfg = apply_overrides(TrainConfig(), {"method": method, "dataset": "imagefolder", "data_dir": str(tiny_folder),
                                          "device": "cpu", "dry_run": True, "batch_size": 4})
    if method == "sff":
        cfg = apply_overrides(cfg, {"model": "mobilenet_v3_small"})
    train(cfg, callbacks=[look], show_progress=False)
    assert seen["size"] == MINIMUM[method]


def test_a_size_given_too_small_names_the_size_and_the_flag(tiny_folder, capsys):
    from ffvision.cli import main

    code = main(["train", "--dataset", "imagefolder", "--data-dir", str(tiny_folder), "--image-size", "8",
                 "--device", "cpu", "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "needs at least 16 px: pass --image-size 16 or more" in err[0]


def test_the_resized_size_is_recorded_in_the_run(tiny_folder, tmp_path, capsys):
    from ffvision.cli import main

    out = tmp_path / "run"
    code = main(["train", "--dataset", "imagefolder", "--data-dir", str(tiny_folder), "--device", "cpu",
                 "--epochs", "1", "--width-mult", "0.125", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "resized from the images' 8 px to 16, the smallest vgg8 takes here" in text
    import json

    data = json.loads((out / "summary.json").read_text())["data"]
    assert data["image_size"] == 16 and any("resized from the images' 8 px" in n for n in data["notes"])
    assert "warning: a short run: 1 optimizer steps in all (1 epochs x 1 steps of batch 128 over 12" in text
