"""--micro-batches: a step over K micro-batches, gradients accumulated, is the update of one pass over the batch."""

from __future__ import annotations

import functools

import pytest
import torch

import ffvision
from ffvision import kernels
from ffvision.bench import exact_peak_bytes
from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import ConfigError

CASES = {  # method, options and image size of small networks (dropout 0: its masks are drawn in another order)
    "asge": ({"width_mult": 0.125}, 16),
    "bp": ({"width_mult": 0.125, "dropout": 0.0}, 16),
    "sff": ({"model": "mobilenet_v3_small", "granularity": "block"}, 32),
    "ffcnn": ({"filters": 8, "ff_loss": "ce"}, 12),
    "hinton": ({"width_mult": 0.02, "ff_loss": "ce"}, 8),
}


def step_gradients(method: ffvision.LocalMethod, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor]]:
    """Each optimizer's gradients at the moment it steps (the step itself skipped), and the step's sums."""
    seen: dict[str, list[torch.Tensor]] = {}
    for name, opt in method.optimizers.items():
        def step(*args: object, _name: str = name, _opt: torch.optim.Optimizer = opt, **kw: object) -> None:
            seen[_name] = [p.grad.detach().clone() for g in _opt.param_groups for p in g["params"]
                           if p.grad is not None]
        opt.step = step  # type: ignore[method-assign]
    stats = method.train_step(x, y)
    return seen, {k: v.detach().float() for k, v in stats.items()}


def fixed_batch_norm(method: ffvision.LocalMethod) -> None:
    """BatchNorm from its running statistics: it normalises each micro-batch on its own otherwise."""
    plain = method.set_train_mode

    def set_train_mode() -> None:
        plain()
        for m in method.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    method.set_train_mode = set_train_mode  # type: ignore[method-assign]


@pytest.mark.parametrize("name,fast_paths", [(n, "on") for n in sorted(CASES)] + [("asge", "off"), ("ffcnn", "off")])
def test_the_micro_batched_step_is_the_unsplit_update(name, fast_paths):
    options, size = CASES[name]
    channels = 1
    x = torch.rand(24, channels, size, size)
    y = torch.arange(24) % 10
    results = []
    was = kernels.enabled()
    kernels.set_enabled(fast_paths == "on")
    try:
        for k in (1, 4):
            torch.manual_seed(0)
            m = ffvision.create_method(name, num_classes=10, in_channels=channels, image_size=size, **options)
            m.micro_batches = k
            fixed_batch_norm(m)
            results.append(step_gradients(m, x, y))
    finally:
        kernels.set_enabled(was)
    (whole, whole_stats), (split, split_stats) = results
    assert whole.keys() == split.keys() and whole
    for opt_name in whole:
        assert len(whole[opt_name]) == len(split[opt_name]) > 0
        for a, b in zip(whole[opt_name], split[opt_name]):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()) + 1e-9, msg=opt_name)
    for key in ("loss_sum", "correct", "layer_correct"):
        torch.testing.assert_close(split_stats[key], whole_stats[key], rtol=1e-4, atol=1e-4, msg=key)


def test_micro_batches_hold_fewer_activations():
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 32, 32), torch.arange(64) % 10
    peaks = {}
    for k in (1, 8):
        m = ffvision.create_method("asge", num_classes=10, in_channels=1, image_size=32, width_mult=0.125)
        m.micro_batches = k
        m.train_step(x, y)  # optimizer state exists
        peaks[k] = exact_peak_bytes(functools.partial(m.train_step, x, y), "cpu")["peak"]
    assert peaks[8] < 0.6 * peaks[1], peaks


def test_micro_batches_are_a_run_option_checked_with_the_others(tmp_path):
    cfg = apply_overrides(TrainConfig(), {"micro_batches": 4})
    assert cfg.micro_batches == 4
    with pytest.raises(ConfigError, match="micro_batches"):
        apply_overrides(TrainConfig(), {"micro_batches": 0})
    with pytest.raises(ConfigError, match="--micro-batches and --pipeline-devices"):
        apply_overrides(TrainConfig(), {"micro_batches": 2, "pipeline_devices": "cpu,cpu"})


def test_backprop_with_accumulation_takes_the_micro_batches_given():
    m = ffvision.create_method("bp", num_classes=10, in_channels=1, image_size=16, memory_saving="accumulate")
    assert m.micro_batches == 4
