"""Progressive freezing (--freeze-patience): a plateaued block stops training, in order, never the last; a frozen
block keeps serving its successors; checkpoints carry it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ffvision import create_method
from ffvision.config import TrainConfig, apply_overrides
from ffvision.train.callbacks import ProgressiveFreezing
from ffvision.train.run import train


def asge() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_method("asge", model="vgg8", num_classes=10, in_channels=1, image_size=16, width_mult=0.125)


def validated(method, layer_accuracies: list[list[float]]) -> SimpleNamespace:
    """A trainer as the callback sees it after these validations."""
    history = [{"epoch": e + 1, "val_layer_accuracy": a} for e, a in enumerate(layer_accuracies)]
    return SimpleNamespace(method=method, history=history, froze={})


def test_a_plateaued_block_freezes_in_order_and_never_the_last():
    m = asge()
    n = len(m.blocks)
    cb = ProgressiveFreezing(patience=2)
    rising = [[0.5 + 0.01 * e] * n for e in range(3)]
    t = validated(m, rising)
    cb.on_validation_end(t, t.history[-1], True)
    assert m.frozen == set() and t.froze == {}  # still improving
    flat = rising + [[0.51] * n, [0.52] * n]  # block 1's best (0.52) was reached 2 evaluations ago
    t = validated(m, flat)
    cb.on_validation_end(t, t.history[-1], False)
    assert m.frozen == {0} and t.froze == {"block1": 5}
    assert not any(p.requires_grad for p in m.blocks[0].parameters())
    for e in range(n + 3):  # one block a validation at most, in order, and never the last one
        t.history.append({"epoch": 6 + e, "val_layer_accuracy": [0.4] * n})
        cb.on_validation_end(t, t.history[-1], False)
    assert m.frozen == set(range(n - 1)) and list(t.froze) == [f"block{i + 1}" for i in range(n - 1)]


def test_a_frozen_block_stops_learning_and_still_serves_the_next():
    m = asge()
    m.freeze(0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 10, (16,))
    m.train_step(x, y)
    after = m.state_dict()
    block1 = [k for k in before if k.startswith("blocks.0.")]
    block2 = [k for k in before if k.startswith("blocks.1.") and before[k].is_floating_point()]
    assert all(torch.equal(before[k], after[k]) for k in block1)  # weights and BatchNorm statistics
    assert any(not torch.equal(before[k], after[k]) for k in block2)
    assert not m.optimizers["block1"].state  # never stepped
    assert m.predict(x).shape == (16, 10)


def test_freezing_is_recorded_and_a_resumed_run_keeps_it(fast_cfg):
    out = Path(fast_cfg["out"])

    class Scripted(ProgressiveFreezing):
        """Block 1's readout flat from the start, the others rising: block 1 (only) freezes after epoch 2."""

        def on_validation_end(self, trainer, record, improved):
            for e, r in enumerate(trainer.history):
                r["val_layer_accuracy"] = [0.5] + [0.1 * (e + 1)] * (len(r["val_layer_accuracy"]) - 1)
            super().on_validation_end(trainer, record, improved)

    cfg = apply_overrides(TrainConfig(), {**fast_cfg, "epochs": 3, "amp": "off"})
    summary = train(cfg, callbacks=[Scripted(1)], show_progress=False)
    assert summary["froze"] == {"block1": 2}
    assert torch.load(out / "last.pt", weights_only=True)["froze"] == {"block1": 2}
    seen = []
    summary = train(TrainConfig(), resume=out, overrides={"epochs": 4},
                    callbacks=[lambda trainer: seen.append(set(trainer.method.frozen))], show_progress=False)
    assert seen and all(s == {0} for s in seen) and summary["froze"] == {"block1": 2}


def test_freeze_patience_must_be_positive():
    from ffvision.errors import ConfigError

    with pytest.raises(ConfigError, match="freeze_patience"):
        apply_overrides(TrainConfig(), {"freeze_patience": 0})
    assert json.dumps(apply_overrides(TrainConfig(), {"freeze_patience": 2}).to_dict()["freeze_patience"]) == "2"
