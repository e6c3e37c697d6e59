"""Deployable models: each strategy of each method as an exported file that predicts as ffvision does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ffvision
from ffvision import deploy
from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import ConfigError
from ffvision.methods.asge import early_exit
from ffvision.methods.registry import method_kwargs, used_config
from ffvision.train.checkpoint import save_checkpoint

CASES = {  # method options and image size of small networks
    "asge": ({"width_mult": 0.125, "early_exit_thresholds": (0.5, 0.9)}, 16),
    "bp": ({"width_mult": 0.125}, 16),
    "ffcnn": ({"filters": 4}, 12),
    "hinton": ({"width_mult": 0.02}, 8),
    "sff": ({"model": "mobilenet_v3_small", "granularity": "stage"}, 32),
    "deeperforward": ({"width_mult": 0.1}, 16),
    "hclff": ({"width_mult": 0.1}, 16),
}


def trained_checkpoint(tmp_path: Path, name: str) -> tuple[Path, ffvision.LocalMethod, torch.Tensor]:
    """A checkpoint of `name` after a few steps on images whose class is a bright square; its method and a test
    batch."""
    options, size = CASES[name]
    cfg = apply_overrides(TrainConfig(), {"method": name, "dataset": "fashion-mnist", **options})
    method = ffvision.create_method(name, **method_kwargs(cfg, 10, 1, size))
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 10
    x = torch.rand(64, 1, size, size, generator=gen) * 0.3
    cell = size // 4
    for i, c in enumerate(y.tolist()):
        r, k = divmod(c, 4)
        x[i, :, r * cell:(r + 1) * cell, k * cell:(k + 1) * cell] = 1.0
    for _ in range(3):
        method.train_step(x[:32], y[:32])
    path = tmp_path / f"{name}.pt"
    meta = {"num_classes": 10, "in_channels": 1, "image_size": size, "classes": [f"c{i}" for i in range(10)],
            "dataset": "fashion-mnist"}
    save_checkpoint(path, {"config": used_config(cfg), "meta": meta, "model": method.state_dict()})
    return path, method.eval(), x[32:]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_strategy_exports_and_predicts_as_ffvision_does(name, tmp_path):
    """TorchScript for every strategy (early exit at each threshold); ONNX through onnxruntime for the method's
    default strategy and early exit (one model per strategy, built and pruned by the code both formats share, is
    traced by each exporter; an ONNX export takes seconds, a TorchScript one a fraction of a second): the same
    argmax, scores within 1e-4, only the strategy's parameters."""
    path, method, x = trained_checkpoint(tmp_path, name)
    info = method.strategy_info()
    for strategy, threshold in deploy.strategies_of(method):
        onnx = strategy == method.default_strategy or threshold == 0.9
        for fmt in ("torchscript", "onnx") if onnx else ("torchscript",):
            out = tmp_path / f"{strategy}-{threshold}.{'onnx' if fmt == 'onnx' else 'pt'}"
            meta = deploy.export(path, out, fmt, strategy, threshold)
            model = deploy.ExportedModel(out)
            got = model.scores(x)
            if threshold is None:
                want = method.predict(x, strategy)
                assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (strategy, fmt, (got - want).abs().max())
                preds = want.argmax(1)
            else:
                preds, _ = early_exit((o.scores for o in method.iter_outputs(x)), threshold, len(method.blocks))
            agree = (got.argmax(1) == preds).float().mean().item()
            assert agree >= 0.995, (strategy, threshold, fmt, agree)
            # only what the strategy uses: its parameter count, in the file's metadata and the model itself
            assert meta["parameters"] == info[strategy if threshold is None else "early-exit"]["trainable_parameters"]
            assert model.meta["classes"][3] == "c3" and model.meta["image_size"] == x.shape[-1]


def test_a_strategy_without_the_heads_holds_no_head(tmp_path):
    path, method, x = trained_checkpoint(tmp_path, "asge")
    small = deploy.strategy_model(method, "last")
    full = deploy.strategy_model(method, "heads")
    heads = sum(p.numel() for p in method.heads.parameters())
    assert deploy.tensor_count(full)[0] - deploy.tensor_count(small)[0] == heads
    deploy.export(path, tmp_path / "last.pt", "torchscript", "last")
    held = deploy.ExportedModel(tmp_path / "last.pt")._module
    assert sum(p.numel() for p in held.parameters()) == deploy.tensor_count(small)[0]
    deploy.export(path, tmp_path / "last.onnx", "onnx", "last")
    import onnx

    stored = sum(int(torch.tensor(t.dims).prod()) for t in onnx.load(str(tmp_path / "last.onnx")).graph.initializer)
    assert stored <= sum(deploy.tensor_count(small)) + 1000  # the weights it runs, a few shape constants


def test_int8_onnx_is_smaller_and_keeps_its_predictions(tmp_path):
    path, method, x = trained_checkpoint(tmp_path, "bp")
    deploy.export(path, tmp_path / "f.onnx", "onnx", "last")
    deploy.export(path, tmp_path / "q.onnx", "onnx", "last", quantize="int8")
    assert (tmp_path / "q.onnx").stat().st_size < 0.5 * (tmp_path / "f.onnx").stat().st_size
    q = deploy.ExportedModel(tmp_path / "q.onnx")
    assert q.meta["quantize"] == "int8"
    agree = (q.scores(x).argmax(1) == method.predict(x, "last").argmax(1)).float().mean().item()
    assert agree >= 0.5  # reported by eval, not required equal


def test_bad_export_requests_are_one_line_errors(tmp_path):
    path, _, _ = trained_checkpoint(tmp_path, "asge")
    cases = [({"strategy": "nope"}, "unknown strategy 'nope'"),
             ({"strategy": "last", "threshold": 0.9}, "applies to --strategy early-exit only"),
             ({"strategy": "early-exit"}, "needs --threshold"),
             ({"strategy": "early-exit", "threshold": 1.5}, r"in \(0, 1\]"),
             ({"fmt": "tflite"}, "unknown format 'tflite'"),
             ({"fmt": "torchscript", "quantize": "int8"}, "available with --format onnx")]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            deploy.export(path, tmp_path / "m.onnx", **{"fmt": "onnx", **kwargs})


def test_the_documented_onnxruntime_snippet_runs(tmp_path, monkeypatch):
    """docs/deploying.md's plain-onnxruntime example classifies an image as ffvision does."""
    import re

    from PIL import Image

    path, method, x = trained_checkpoint(tmp_path, "bp")
    deploy.export(path, tmp_path / "asge.onnx", "onnx", "last")
    img = (x[0, 0] * 255).round().to(torch.uint8).numpy()
    Image.fromarray(img).save(tmp_path / "boot.png")
    doc = (Path(__file__).parents[1] / "docs" / "deploying.md").read_text()
    code = re.search(r"## Run an ONNX file without ffvision\n\n```python\n(.*?)```", doc, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(code, {"print": printed.append})
    want = method.predict(torch.from_numpy(img).float()[None, None] / 255, "last").argmax(1).item()
    assert printed == [f"c{want}"]


def test_a_missing_extra_is_named():
    with pytest.raises(ConfigError, match=r"pip install 'ffvision\[export\]'"):
        deploy.need("no_such_module_here")


def test_inference_stats_per_strategy(tmp_path):
    _, method, x = trained_checkpoint(tmp_path, "asge")
    method.early_exit_thresholds = (0.9,)
    stats = deploy.method_inference_stats(method, x, budget=0.05)
    assert set(stats) == {"last", "goodness-sum", "heads"} | {f"exit@{t:g}" for t in method.early_exit_thresholds}
    for s in stats.values():
        assert s["latency_ms"] > 0 and s["images_per_second"] > 0 and "torch threads" in s["device"]
        assert s["peak_bytes_batch64"] > s["peak_bytes_batch1"] > 0
    assert stats["heads"]["parameters"] > stats["last"]["parameters"]
