"""Options are declared once: a new method's option is a flag, a recipe key, a line of `list` and of the docs,
and a key of the saved config, from its one declaration; older saved configs still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ffvision.config import RUN_OPTIONS, TrainConfig, apply_overrides, load_recipe
from ffvision.errors import ConfigError

ROOT = Path(__file__).parents[1]

TOY = textwrap.dedent('''
    """A toy method: backprop with one option of its own."""
    from dataclasses import dataclass

    from ffvision.methods.backprop import Backprop
    from ffvision.methods.options import BackpropOptions, MethodSpec
    from ffvision.methods.registry import register_method
    from ffvision.options import option


    @dataclass(frozen=True)
    class ToyOptions(BackpropOptions):
        """Backprop's options and the toy's gain."""

        toy_gain: float = option(2.0, "how much the toy amplifies its logits", gt=0, le=8)


    @register_method
    class Toy(Backprop):
        """Backprop whose logits are multiplied by toy_gain."""

        spec = MethodSpec("toy", "Backprop with a gain.", ToyOptions, ("last",), "last", __name__)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.gain = self.options_of({k: v for k, v in kwargs.items() if k in ToyOptions.__dataclass_fields__}
                                        ).toy_gain
''')


@pytest.fixture
def toy(tmp_path: Path):
    """The toy method's module, imported (registered) and removed afterwards."""
    import importlib

    from ffvision.methods.registry import _CLASSES, _SPECS

    (tmp_path / "toy_method.py").write_text(TOY)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("toy_method")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toy_method", None)
        _SPECS.pop("toy", None)
        _CLASSES.pop("toy", None)


def test_a_new_option_is_a_flag_a_recipe_key_a_list_line_and_a_saved_key(toy, tmp_path, fast_cfg, capsys):
    from ffvision.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert ("options of toy: --toy-gain TOY_GAIN how much the toy amplifies its logits [default: 2.0] "
            "(in (0, 8])") in helptext
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--toy-gain" in capsys.readouterr().out

    assert main(["train", "--method", "toy", "--toy-gain", "9", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "ffvision: error: toy_gain must be in (0, 8], got 9.0"
    assert main(["train", "--method", "bp", "--toy-gain", "3", "--dry-run"]) == 2
    assert "--toy-gain does not apply to method 'bp'; it is an option of toy" in capsys.readouterr().err

    recipe = tmp_path / "toy.yaml"
    recipe.write_text("method: toy\ntoy_gain: 4\nepochs: 1\n")
    cfg = apply_overrides(TrainConfig(), load_recipe(recipe))
    assert (cfg.toy_gain, cfg.lr, cfg.model) == (4.0, 1e-3, "vgg8")
    recipe.write_text("method: toy\ntoy_gain: -1\n")
    with pytest.raises(ConfigError, match=r"toy_gain must be in \(0, 8\], got -1.0"):
        apply_overrides(TrainConfig(), load_recipe(recipe))

    assert main(["list", "--method", "toy"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "--toy-gain" in x)
    assert line.split()[:5] == ["--toy-gain", "2.0", "in", "(0,", "8]"] and "amplifies its logits" in line

    argv = [x for k, v in {**fast_cfg, "epochs": 1}.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    assert main(["train", "--method", "toy", "--toy-gain", "3", *argv]) == 0
    run = Path(fast_cfg["out"])
    assert json.loads((run / "summary.json").read_text())["config"]["toy_gain"] == 3.0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["config"]["toy_gain"] == 3.0 and ckpt["config"]["method"] == "toy"
    from ffvision.train.checkpoint import method_from_checkpoint

    assert method_from_checkpoint(ckpt)[0].gain == 3.0


def test_a_plugin_method_takes_its_options_from_the_command_line(tmp_path: Path):
    """FFVISION_PLUGINS imports the toy's module in a fresh process: its option is listed with no other file."""
    (tmp_path / "toy_method.py").write_text(TOY)
    env = {**os.environ, "FFVISION_PLUGINS": "toy_method",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "ffvision", "list", "--method", "toy"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--toy-gain" in res.stdout and "Backprop with a gain." in res.stdout


def test_two_methods_cannot_declare_one_option_apart():
    from dataclasses import dataclass

    from ffvision.methods.base import LocalMethod
    from ffvision.methods.options import MethodOptions, MethodSpec
    from ffvision.methods.registry import _SPECS, register_method
    from ffvision.options import option

    @dataclass(frozen=True)
    class ClashOptions(MethodOptions):
        heads_from: int = option(1, "another meaning")  # asge declares heads_from

    class Clash(LocalMethod):
        spec = MethodSpec("clash", "", ClashOptions, ("last",), "last", __name__)

    with pytest.raises(TypeError, match="ClashOptions.heads_from is declared by ASGEOptions too"):
        register_method(Clash)
    assert "clash" not in _SPECS


def test_every_option_is_declared_once_with_help():
    from ffvision.methods import list_methods
    from ffvision.methods.registry import method_declarations

    for name, d in RUN_OPTIONS.items():
        assert d.help and d.topic, name
    for m in list_methods():
        for name, d in method_declarations(m).items():
            assert d.help, (m, name)
            assert name not in RUN_OPTIONS, (m, name)


def test_declared_choices_are_the_building_blocks_choices():
    """Where a building block checks the same names (its own Python API), the two agree."""
    from ffvision.core.labels import LABEL_SETS
    from ffvision.methods.options import GoodnessFFOptions, SFFOptions
    from ffvision.models.tv import GRANULARITIES
    from ffvision.options import declarations

    assert set(declarations(GoodnessFFOptions)["labels"].choices) == set(LABEL_SETS)
    assert set(declarations(SFFOptions)["granularity"].choices) == set(GRANULARITIES)


def test_options_doc_is_generated_from_the_declarations(capsys):
    from ffvision.cli import main

    assert main(["list", "--options"]) == 0
    assert (ROOT / "docs" / "options.md").read_text() == capsys.readouterr().out, \
        "docs/options.md is stale: ffvision list --options > docs/options.md"


def test_configs_saved_by_0_2_0_still_load_and_build_the_same_method():
    """Saved configs of 0.2.0 (every option of every method in one flat TrainConfig) load unchanged."""
    from ffvision.methods import create_method, method_kwargs, used_config
    from ffvision.train.checkpoint import method_from_checkpoint

    saved = json.loads((ROOT / "tests" / "data" / "saved-configs-0.2.0.json").read_text())
    for name, old in saved.items():
        cfg = apply_overrides(TrainConfig(), old, source=name)
        now = used_config(cfg)
        given = {k: v for k, v in old.items() if v is not None}  # None: the method's default, resolved now
        assert {k: now[k] for k in given} == given, name
    old = {**saved["asge"], "width_mult": 0.125}
    cfg = apply_overrides(TrainConfig(), old)
    meta = {"num_classes": 10, "in_channels": 1, "image_size": 16}
    src = create_method("asge", **method_kwargs(cfg, 10, 1, 16))
    method, _ = method_from_checkpoint({"config": old, "meta": meta, "model": src.state_dict()})
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), method.state_dict().values()))
