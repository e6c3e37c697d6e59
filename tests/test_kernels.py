"""Every CPU kernel (ffvision/kernels) against its plain-torch reference: values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ffvision
from ffvision import kernels
from ffvision.core import SpatialGoodnessReadout
from ffvision.kernels.conv_goodness import conv_goodness, conv_goodness_reference
from ffvision.kernels.dropout import fast_dropout
from ffvision.kernels.reductions import (
    divide_rows,
    divide_rows_reference,
    grid_mean,
    grid_mean_reference,
    patch_goodness,
    patch_goodness_reference,
    sum_of_squares,
    sum_of_squares_reference,
)
from ffvision.kernels.spectral import spectral_conv2d, spectral_conv2d_reference


def grads(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """d loss / d each tensor."""
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("grid", [1, 2, 4])
def test_conv_goodness_matches_the_autograd_chain(channels_last, grid):
    torch.manual_seed(0)
    layer = ffvision.create_model("vgg8", in_channels=1, num_classes=0, width_mult=0.125).layers[1]
    c_in, c_out = layer.conv.in_channels, layer.conv.out_channels
    readout = SpatialGoodnessReadout(c_out, grid, 10, seed=1)
    x = torch.rand(16, c_in, 8, 8)
    if channels_last:
        layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    params = (layer.conv.weight, layer.conv.bias)
    h_ref, s_ref = conv_goodness_reference(layer, readout, x)
    g_ref = grads(F.cross_entropy(s_ref, y), *params)
    h, s = conv_goodness(layer, readout, x)
    assert torch.allclose(h, h_ref.detach(), atol=1e-6) and not h.requires_grad
    assert torch.allclose(s, s_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads(F.cross_entropy(s, y), *params), g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_conv_goodness_under_bf16_autocast_is_within_bf16_rounding_of_the_chain():
    torch.manual_seed(0)
    layer = ffvision.create_model("vgg8", in_channels=1, num_classes=0, width_mult=0.125).layers[1]
    readout = SpatialGoodnessReadout(layer.conv.out_channels, 2, 10, seed=1)
    x, y = torch.rand(8, layer.conv.in_channels, 8, 8), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, s_ref = conv_goodness_reference(layer, readout, x)
        _, s = conv_goodness(layer, readout, x)
    g_ref = grads(F.cross_entropy(s_ref.float(), y), layer.conv.weight)[0]
    g = grads(F.cross_entropy(s.float(), y), layer.conv.weight)[0]
    assert torch.allclose(s.float(), s_ref.float(), rtol=2e-2, atol=1e-3)
    assert (g - g_ref).norm() / g_ref.norm() < 3e-2


@pytest.mark.parametrize("k, c, o", [(7, 4, 5), (5, 3, 3)])
def test_spectral_conv2d_matches_conv2d(k, c, o):
    torch.manual_seed(0)
    x = torch.randn(3, c, 11, 9, requires_grad=True)
    w = torch.randn(o, c, k, k, requires_grad=True)
    b = torch.randn(o, requires_grad=True)
    ref = spectral_conv2d_reference(x, w, b)
    out = spectral_conv2d(x, w, b)
    assert torch.allclose(out, ref, atol=1e-4)
    up = torch.randn_like(ref)
    for a, r in zip(grads((out * up).sum(), x, w, b), grads((ref * up).sum(), x, w, b)):
        assert torch.allclose(a, r, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_sliced_reductions_match_the_whole_tensor_forms(channels_last):
    torch.manual_seed(0)
    x = torch.randn(16, 8, 12, 12).to(torch.bfloat16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dims = (1, 2, 3)
    assert torch.allclose(sum_of_squares(x, dims, keepdim=True), sum_of_squares_reference(x, dims, keepdim=True),
                          rtol=1e-5)
    scale = sum_of_squares_reference(x, dims, keepdim=True).sqrt()
    assert torch.equal(divide_rows(x, scale), divide_rows_reference(x, scale))
    assert torch.equal(divide_rows(x.clone(), scale, inplace=True), divide_rows_reference(x.clone(), scale, True))
    for p in (1, 2, 3):
        assert torch.allclose(patch_goodness(x, p), patch_goodness_reference(x, p), rtol=1e-2)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_patch_goodness_values_and_gradient_match_the_pooled_squares(p):
    torch.manual_seed(0)
    h = torch.randn(4, 6, 8, 8, requires_grad=True)
    fast, ref = patch_goodness(h, p), patch_goodness_reference(h, p)
    assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-7)
    up = torch.randn_like(ref)
    assert torch.allclose(grads((fast * up).sum(), h)[0], grads((ref * up).sum(), h)[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size,p", [(8, 4), (7, 4), (14, 4), (7, 2), (5, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grid_mean_values_and_gradient_match_adaptive_pooling(size, p, dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 5, size, size, dtype=dtype, requires_grad=True)
    fast, ref = grid_mean(x, p), grid_mean_reference(x, p)
    assert fast.shape == ref.shape == (3, 5, p, p) and fast.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    assert torch.allclose(fast.float(), ref.float(), **tol)
    up = torch.randn(ref.shape, dtype=dtype)
    assert torch.allclose(grads((fast * up).sum(), x)[0].float(), grads((ref * up).sum(), x)[0].float(), **tol)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # in x's own dtype under autocast too
        assert grid_mean(x.detach(), p).dtype == dtype


def test_fast_dropout_has_the_references_distribution_and_gradient():
    """A dropout mask is random: the fast one drops with the same probability, scales kept values alike, and its
    gradient is its mask times the scale, as F.dropout's."""
    torch.manual_seed(0)
    x = torch.rand(64, 32, 16, 16) + 0.5
    x.requires_grad_(True)
    for fn in (fast_dropout, F.dropout):
        out = fn(x, 0.3, True)
        kept = out != 0
        assert abs(1 - kept.float().mean().item() - 0.3) < 0.005, fn
        assert torch.allclose(out[kept], (x / 0.7)[kept], rtol=2e-4)
        g = grads(out.sum(), x)[0]
        assert torch.allclose(g, kept.float() / 0.7, rtol=2e-4)


def test_the_switch_puts_every_kernel_at_its_reference(monkeypatch):
    """With the kernels off no fast path runs: ASGE's blocks take the autograd chain, the convolutions are
    direct, dropout is torch's, and a training step gives every layer the loss it has with them on."""
    import ffvision.core.block as block
    from ffvision.kernels import dropout as kdropout
    from ffvision.kernels import spectral

    def boom(*a, **k):
        raise AssertionError("a fast path ran with the kernels off")

    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))

    def step(dropout: float) -> torch.Tensor:
        torch.manual_seed(0)
        m = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125,
                                   dropout=dropout)
        assert all(b.fused for b in m.blocks)
        return m.train_step(x, y)["layer_loss_sum"]

    loss_on = step(0.0)
    monkeypatch.setattr(block, "conv_goodness", boom)
    monkeypatch.setattr(kdropout, "random_lanes", boom)
    monkeypatch.setattr(spectral, "_SpectralConv", None)
    with kernels.references():
        assert not kernels.enabled()
        assert not spectral.prefer_spectral(torch.nn.Conv2d(128, 128, 7, padding=3), torch.rand(1, 128, 8, 8))
        loss_off = step(0.0)
        assert torch.isfinite(step(0.1)).all()  # torch's dropout: no fast mask drawn
    assert kernels.enabled()
    assert torch.allclose(loss_on, loss_off, rtol=1e-5)  # every layer's loss (the gradients: the tests above)


def test_kernels_off_is_a_run_option(fast_cfg):
    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.train.run import train

    summary = train(apply_overrides(TrainConfig(), {**fast_cfg, "epochs": 1, "kernels": "off"}), show_progress=False)
    assert summary["config"]["kernels"] == "off" and kernels.enabled()  # the process's setting is restored
