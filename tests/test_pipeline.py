"""Pipelined blocks across devices (two CPU 'devices' here): same updates as sequential."""

from __future__ import annotations

import pytest
import torch

import ffvision
from ffvision.errors import ConfigError
from ffvision.train.pipeline import PipelineRunner, parse_devices, split_stages

CFG = {"model": "vgg8", "num_classes": 10, "in_channels": 1, "width_mult": 0.125, "image_size": 16, "dropout": 0.0}


def test_split_stages():
    assert split_stages(7, 2) == [[0, 1, 2, 3], [4, 5, 6]]
    assert split_stages(3, 3) == [[0], [1], [2]]
    with pytest.raises(ConfigError, match="cannot spread"):
        split_stages(2, 3)


@pytest.mark.parametrize("name,kw,devices", [("asge", {}, "cpu,cpu"), ("asge", {}, "cpu,cpu,cpu"),
                                             ("sff", {"model": "mobilenet_v3_small", "image_size": 32,
                                                      "granularity": "block"}, "cpu,cpu"),
                                             ("deeperforward", {"model": "cwresnet17", "width_mult": 0.1}, "cpu,cpu"),
                                             ("hclff", {"model": "cwresnet17", "width_mult": 0.1,
                                                        "hierarchy": "fashion-mnist"}, "cpu,cpu")])
def test_pipeline_matches_sequential_micro_batching(name, kw, devices):
    cfg = {**CFG, **kw}
    if name == "sff":
        cfg = {k: v for k, v in cfg.items() if k not in ("width_mult",)}
    torch.manual_seed(0)
    seq = ffvision.create_method(name, **cfg)
    torch.manual_seed(0)
    pipe = ffvision.create_method(name, **cfg)
    runner = PipelineRunner(pipe, parse_devices(devices), micro_batches=4)
    size = cfg["image_size"]
    g = torch.Generator().manual_seed(1)
    totals = {"seq": 0.0, "pipe": 0.0}
    for _ in range(3):
        x, y = torch.rand(32, 1, size, size, generator=g), torch.randint(0, 10, (32,), generator=g)
        for xb, yb in zip(x.chunk(4), y.chunk(4)):  # the sequential schedule, same micro-batches
            totals["seq"] += float(seq.train_step(xb, yb)["loss_sum"])
        totals["pipe"] += float(runner.train_step(x, y)["loss_sum"])
    a, b = seq.state_dict(), pipe.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert totals["pipe"] == pytest.approx(totals["seq"], rel=1e-5)
    xt = torch.rand(5, 1, size, size)
    assert torch.allclose(seq.predict(xt), pipe.predict(xt), atol=1e-4)  # evaluation crosses devices too


def test_pipeline_refuses_what_it_cannot_run():
    with pytest.raises(ConfigError, match="single block"):
        PipelineRunner(ffvision.create_method("bp", **CFG), parse_devices("cpu,cpu"))
    with pytest.raises(ConfigError, match="at least two devices"):
        parse_devices("cpu")
    with pytest.raises(ConfigError, match="(CUDA is not available|unknown device)"):
        parse_devices("cpu,cuda:3" if not torch.cuda.is_available() else "cpu,tpu:0")


def test_ff_runs_through_the_same_block_loop_and_pipelines():
    """FF-CNN's positive/negative batch goes through the common block loop: pipelined over two CPU stages,
    its blocks get exactly the updates of the sequential schedule (uniform negatives: the same draws)."""
    cfg = {"num_classes": 10, "in_channels": 1, "image_size": 16, "filters": 4, "negatives": "uniform"}
    torch.manual_seed(0)
    seq = ffvision.create_method("ffcnn", **cfg)
    torch.manual_seed(0)
    pipe = ffvision.create_method("ffcnn", **cfg)
    runner = PipelineRunner(pipe, parse_devices("cpu,cpu"), micro_batches=2)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.rand(16, 1, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g)
        torch.manual_seed(5)
        for xb, yb in zip(x.chunk(2), y.chunk(2)):
            s_seq = seq.train_step(xb, yb)
        torch.manual_seed(5)
        s_pipe = runner.train_step(x, y)
    a, b = seq.blocks.state_dict(), pipe.blocks.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert s_pipe["layer_correct"].shape == s_seq["layer_correct"].shape == (3,)
    assert float(s_pipe["layer_correct"].sum()) <= 16 * 3


def test_pipelined_training_from_the_command_line(fast_cfg, capsys):
    import json
    from pathlib import Path

    from ffvision.cli import main

    argv = [x for k, v in {**fast_cfg, "epochs": 1}.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    argv = [a for a in argv if a not in ("--device", "cpu")]
    assert main(["train", "--method", "asge", "--pipeline-devices", "cpu,cpu", "--pipeline-micro-batches", "2",
                 *argv]) == 0
    summary = json.loads((Path(fast_cfg["out"]) / "summary.json").read_text())
    assert summary["config"]["pipeline_devices"] == "cpu,cpu" and 0 <= summary["test_accuracy"] <= 1
    for method, extra in (("ffcnn", ["--filters", "4", "--model", "ffcnn3"]), ("hinton", ["--model", "mlp"])):
        out = Path(fast_cfg["out"]).with_name(f"pipe-{method}")
        args = [a for a in argv if a not in ("--width-mult", "0.125")]
        args[args.index("--out") + 1] = str(out)
        assert main(["train", "--method", method, "--pipeline-devices", "cpu,cpu", *extra, *args]) == 0
        assert set(json.loads((out / "summary.json").read_text())["test_accuracy_by_strategy"]) == {"goodness",
                                                                                                    "probe"}
