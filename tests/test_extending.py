"""docs/extending.md's worked examples run as written: a new model, and a new method trained through the CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import torch

DOC = Path(__file__).parents[1] / "docs" / "extending.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def load_module(name: str, code: str, tmp_path: Path):
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_new_model_example_builds(tmp_path: Path):
    import ffvision
    from ffvision.models.registry import _MODELS

    code = next(b for b in python_blocks() if "@register_model" in b)
    try:
        load_module("doc_vgg6", code, tmp_path)
        net = ffvision.create_model("vgg6", in_channels=1, num_classes=10)
        assert net(torch.rand(2, 1, 32, 32)).shape == (2, 10) and "vgg6" in ffvision.list_models()
    finally:
        _MODELS.pop("vgg6", None)
        sys.modules.pop("doc_vgg6", None)


def test_the_new_method_example_trains_through_the_cli(tmp_path: Path, fast_cfg: dict, capsys):
    from ffvision.cli import main
    from ffvision.methods.registry import _CLASSES, _SPECS

    code = next(b for b in python_blocks() if "@register_method" in b)
    try:
        load_module("doc_greedy", code, tmp_path)
        cfg = {**fast_cfg, "epochs": 6, "width_mult": 0.125}
        argv = [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        assert main(["train", "--method", "greedy", "--lr", "0.003", *argv]) == 0, capsys.readouterr().err
        summary = json.loads((Path(fast_cfg["out"]) / "summary.json").read_text())
        assert summary["method"] == "greedy" and summary["strategy"] == "last"
        assert summary["test_accuracy"] > 0.25, summary["test_accuracy"]  # learnable fake data; chance is 0.1
        assert main(["eval", fast_cfg["out"], "--device", "cpu", "--no-inference"]) == 0
        assert "greedy" in capsys.readouterr().out
    finally:
        _SPECS.pop("greedy", None)
        _CLASSES.pop("greedy", None)
        sys.modules.pop("doc_greedy", None)
