"""Small datasets of tiny images: a size every method's default model takes, and a warning for short runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import write_imagefolder

from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import ConfigError
from ffvision.train.budget import default_batch_size, default_epochs
from ffvision.train.run import sized_for_data, train

MINIMUM = {"asge": 16, "bp": 32, "ffcnn": 12, "hinton": 8, "sff": 16, "deeperforward": 8}  # vgg8 pools 4 times
# (backprop on it: 32 px, where tiny images validated better); fourier waves; mlp; cwresnet17 takes 8 px as they are


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
    data = json.loads((out / "summary.json").read_text())["data"]
    assert data["image_size"] == 16 and any("resized from the images' 8 px" in n for n in data["notes"])
    assert "warning: a short run: 1 optimizer steps in all (1 epochs x 1 steps of batch 16 over 12" in text
    assert json.loads((out / "summary.json").read_text())["config"]["batch_size"] == 16  # chosen from the data


def documented_rule() -> list[tuple[int, int, int]]:
    """(training images, batch size, epochs) rows of docs/data.md's table of the rule."""
    text = (Path(__file__).parents[1] / "docs" / "data.md").read_text()
    rows = re.findall(r"^\| ([\d,]+) \| (\d+) \| (\d+) \|", text, flags=re.M)
    assert len(rows) >= 4, "docs/data.md lists the rule's values for a few dataset sizes"
    return [(int(n.replace(",", "")), int(b), int(e)) for n, b, e in rows]


def test_the_batch_size_and_epochs_rule_gives_the_documented_values():
    for images, batch, epochs in documented_rule():
        assert (default_batch_size(images), default_epochs(images)) == (batch, epochs), images
    assert default_epochs(50000) == 10  # FashionMNIST's split: what --help says
    assert default_batch_size(500, processes=3) % 3 == 0  # the batch is global: it splits over the processes


def test_flags_given_win_over_the_rule():
    cfg = apply_overrides(TrainConfig(), {"dataset": "imagefolder"})
    chosen = sized_for_data(cfg, 2000)
    assert (chosen.batch_size, chosen.epochs) == (default_batch_size(2000), default_epochs(2000))
    notes: list[str] = []
    given = sized_for_data(apply_overrides(cfg, {"epochs": 3}), 2000, notes=notes)
    assert (given.batch_size, given.epochs) == (64, 3) and notes == [
        "batch size 64 from the 2,000 training images (96 optimizer steps; --batch-size to choose)"]
    assert sized_for_data(apply_overrides(cfg, {"batch_size": 100}), 2000).epochs == default_epochs(2000)
    both = apply_overrides(cfg, {"batch_size": 100, "epochs": 2})
    assert sized_for_data(both, 2000) == both
    with pytest.raises(ConfigError, match="warmup_epochs"):  # checked against the epochs chosen
        sized_for_data(apply_overrides(cfg, {"warmup_epochs": 500}), 2000)


def test_a_run_restarted_with_the_same_command_resumes_with_the_values_chosen(tiny_folder, tmp_path):
    cfg = apply_overrides(TrainConfig(), {"dataset": "imagefolder", "data_dir": str(tiny_folder), "device": "cpu",
                                          "width_mult": 0.125, "out": str(tmp_path / "run"), "epochs": None})
    first = train(apply_overrides(cfg, {"epochs": 1}), show_progress=False)
    (tmp_path / "run" / "summary.json").unlink()  # as a job killed after its first epoch's checkpoint
    again = train(cfg, resume="auto", show_progress=False)  # the same command: no --epochs, no --batch-size
    assert first["config"]["batch_size"] == again["config"]["batch_size"] == 16
    assert again["config"]["epochs"] == 1  # as saved: a restart does not choose again


@pytest.fixture(scope="module")
def tiny_fmnist(tmp_path_factory) -> Path:
    """FashionMNIST downscaled to 8 px: 600 training, 300 validation and 300 test images as PNG folders."""
    from PIL import Image

    from ffvision.data import build_splits

    root = tmp_path_factory.mktemp("fm8")
    data = build_splits("fashion-mnist", image_size=8, val_size=300, train_subset=600, augment="none")
    for split, n in (("train", 600), ("val", 300), ("test", 300)):
        ds = getattr(data, split)
        for i in range(n):
            x, y = ds[i]
            d = root / split / f"c{y}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[0].numpy()).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("method,options", [("hinton", {"epochs": 4, "width_mult": 0.25}),
                                            ("ffcnn", {"epochs": 6, "filters": 16})])
def test_goodness_methods_learn_on_tiny_images_with_their_defaults(tiny_fmnist, tmp_path, method, options):
    cfg = apply_overrides(TrainConfig(), {"method": method, "dataset": "imagefolder", "data_dir": str(tiny_fmnist),
                                          "device": "cpu", "out": str(tmp_path / "run"), **options})
    s = train(cfg, show_progress=False)
    assert s["data"]["image_size"] == MINIMUM[method]
    assert s["config"]["batch_size"] == 16  # chosen from the 600 images
    # learned by goodness: the label whose pattern gives the highest goodness, on held-out images (chance: 10%)
    assert s["test_accuracy_by_strategy"]["goodness"] >= 0.4, s["test_accuracy_by_strategy"]
