"""DeeperForward: channel-wise layers trained locally, shortcuts detached, three strategies chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ffvision
from ffvision.config import TrainConfig, apply_overrides
from ffvision.train.checkpoint import load_checkpoint, method_from_checkpoint
from ffvision.train.run import evaluate_checkpoint, train

SMALL = {"num_classes": 10, "in_channels": 1, "image_size": 16, "width_mult": 0.1}  # one channel per class


def batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 16, 16), torch.arange(n) % 10


def tensors(x: object) -> list[torch.Tensor]:
    return [t for t in (x if isinstance(x, tuple) else (x,)) if torch.is_tensor(t)]


def test_the_network_has_17_layers_with_class_grouped_widths_and_shortcuts():
    m = ffvision.create_method("deeperforward", **{**SMALL, "width_mult": 0.4})
    assert len(m.blocks) == 17
    widths = [b.body.conv.out_channels for b in m.blocks]
    assert widths == [40] * 5 + [80] * 4 + [160] * 4 + [320] * 4  # FashionMNIST's widths in the official code
    ins = [b.body.conv.in_channels for b in m.blocks]
    assert ins[5] == 80 and ins[9] == 160 and ins[13] == 320  # concatenated shortcuts double the channels


def test_no_gradient_crosses_a_layer_boundary_shortcuts_included():
    m = ffvision.create_method("deeperforward", **SMALL)
    seen = []

    def hook(module, inputs):
        seen.append([(t.requires_grad, t.grad_fn) for t in tensors(inputs[0])])

    handles = [b.register_forward_pre_hook(hook) for b in m.blocks]
    m.train_step(*batch())
    for h in handles:
        h.remove()
    assert len(seen) == 17 and sum(len(s) == 2 for s in seen) >= 10  # most layers also receive a shortcut
    assert all(not rg and fn is None for s in seen for rg, fn in s)


@pytest.mark.parametrize("k", [2, 5, 16])  # after an added shortcut, after a concatenated one, the last
def test_one_layers_loss_reaches_only_its_own_parameters(k):
    m = ffvision.create_method("deeperforward", **SMALL)
    x, y = batch()
    h = m.prepare(x)
    for i, block in enumerate(m.blocks):
        o = block(h)
        if i == k:
            block.local_loss(o.scores, y).backward()
        h = o.out
    for i, block in enumerate(m.blocks):
        grads = [p.grad for p in block.parameters()]
        assert all(g is not None for g in grads) if i == k else all(g is None for g in grads), i


def test_every_strategy_predicts_and_validation_chooses_the_range():
    m = ffvision.create_method("deeperforward", **SMALL)
    x, y = batch()
    m.train_step(x, y)
    m.eval()
    for s in ("goodness", "head", "ensemble"):
        assert m.predict(x, s).shape == (12, 10)
    counts = m.eval_counts(x, y)
    assert len(counts.ranges) == 17 * 18 // 2
    chosen = m.select_on_validation(counts.map(float))
    a, b = m.range_bounds()
    assert counts.ranges[(a + 1, b + 1)] == max(counts.ranges.values())
    assert chosen.strategies["goodness"] == float(counts.ranges[(a + 1, b + 1)])


def test_a_run_checkpoints_and_evaluates_the_same(fast_cfg: dict):
    cfg = apply_overrides(TrainConfig(), {**fast_cfg, "method": "deeperforward", "width_mult": 0.1})
    summary = train(cfg, show_progress=False)
    run = Path(fast_cfg["out"])
    assert set(summary["test_accuracy_by_strategy"]) == {"goodness", "head", "ensemble"}
    ck = load_checkpoint(run / "last.pt")
    assert len(ck["optimizers"]) == 18  # 17 layers + the head
    method, _ = method_from_checkpoint(load_checkpoint(run / "best.pt"))
    again, _ = method_from_checkpoint(load_checkpoint(run))
    x = torch.rand(4, 1, 16, 16)
    for s in method.strategies:
        assert torch.equal(method.predict(x, s), again.predict(x, s))
    res = evaluate_checkpoint(run / "best.pt", device="cpu")
    on_disk = json.loads((run / "summary.json").read_text())
    assert res["test_accuracy_by_strategy"] == pytest.approx(on_disk["test_accuracy_by_strategy"])


def test_backprop_trains_the_same_network():
    m = ffvision.create_method("bp", model="cwresnet17", **SMALL)
    stats = m.train_step(*batch())
    assert len(m.blocks) == 1 and torch.isfinite(stats["loss_sum"])
