"""Typed config: recipes, overrides, unknown keys and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffvision.cli import RECIPES
from ffvision.config import TrainConfig, apply_overrides, load_recipe
from ffvision.errors import ConfigError


def test_unknown_key_and_wrong_type_are_errors():
    with pytest.raises(ConfigError, match="unknown key.*lerning_rate"):
        apply_overrides(TrainConfig(), {"lerning_rate": 0.1})
    with pytest.raises(ConfigError, match="epochs must be int"):
        apply_overrides(TrainConfig(), {"epochs": "ten"})
    with pytest.raises(ConfigError, match="epochs must be positive, got 0"):
        apply_overrides(TrainConfig(), {"epochs": 0})
    with pytest.raises(ConfigError, match="amp must be one of"):
        apply_overrides(TrainConfig(), {"amp": "fp8"})


def test_yaml_scientific_notation_without_dot(tmp_path: Path):
    p = tmp_path / "r.yaml"
    p.write_text("lr: 2e-4\nepochs: 3\n")
    cfg = apply_overrides(TrainConfig(), load_recipe(p))
    assert cfg.lr == 2e-4 and cfg.epochs == 3


def test_shipped_recipes_are_valid_and_faithful():
    names = {p.stem for p in RECIPES.glob("*.yaml")}
    assert {"asge-mnist", "asge-fmnist", "asge-cifar10", "asge-cifar100", "asge-imagenet", "asge-imagenet64"} <= names
    for p in RECIPES.glob("*.yaml"):
        cfg = apply_overrides(TrainConfig(), load_recipe(p), source=str(p))
        if p.stem.startswith("asge-") and "imagenet" not in p.stem:
            assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs) == (2e-4, 1e-3, 128, 100)
            assert cfg.lr * cfg.min_lr_ratio == pytest.approx(1e-5)
            assert cfg.split_seed == 42
        if p.stem.startswith("hinton-"):  # the paper's logit (sum - number of units), stepped as his reference code
            assert (cfg.model, cfg.labels, cfg.goodness, cfg.ff_loss, cfg.goodness_scale, cfg.threshold) == (
                "mlp", "onehot", "sum", "bce", 1.0, None)
            assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.weight_decay, cfg.batch_size) == ("sgd", 0.9, 0.01,
                                                                                               1e-3, 100)
            assert (cfg.negatives, cfg.vote_from, cfg.vote_to, cfg.input_norm) == ("hard", 2, 4, True)
        if p.stem.startswith(("deeperforward-", "hclff-")):  # HCL-FF's official commands (its README)
            assert (cfg.model, cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.scheduler_interval, cfg.val_size) == (
                "cwresnet17", 0.04, 1e-4, 1.0, "epoch", 5000)
            data = p.stem.split("-", 1)[1]
            assert (cfg.epochs, cfg.batch_size, cfg.lr * cfg.min_lr_ratio) == pytest.approx(
                {"mnist": (50, 128, 0.06), "fmnist": (150, 128, 0.008), "cifar10": (1000, 128, 2e-4),
                 "cifar100": (1000, 512, 2e-4)}[data])
            if p.stem.startswith("hclff-"):  # the contrastive warm-up: the official 50 epochs
                assert cfg.supcon_warmup * min(cfg.epochs, 1000) == pytest.approx(50, abs=0.01)
    assert apply_overrides(TrainConfig(), load_recipe(RECIPES / "asge-cifar10.yaml")).val_size == 5000


def test_bad_recipe_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(tmp_path / "list.yaml")
