"""Core pieces (grid rule, readouts, RMS norm, LocalBlock) and the VGG models."""

from __future__ import annotations

import pytest
import torch

import ffvision
from ffvision.core import LocalBlock, SpatialGoodnessReadout, adaptive_grid, rms_normalize
from ffvision.errors import ConfigError


def test_adaptive_grid_reproduces_published_table():
    assert [adaptive_grid(c, 512, 32) for c in (64, 128, 256, 512)] == [8, 4, 2, 1]


def test_adaptive_grid_rounds_and_clamps():
    assert adaptive_grid(96, 512, 32) == 5  # 5.33 -> 5
    assert adaptive_grid(200, 512, 32) == 3  # 2.56 -> 3
    assert adaptive_grid(64, 512, 4) == 4  # clamped to the feature map
    assert adaptive_grid(512, 512, 2, alpha=0.25) == 1  # never below 1
    assert adaptive_grid(128, 512, 32, alpha=2) == 8
    with pytest.raises(ValueError):
        adaptive_grid(0, 512, 32)


def test_spatial_goodness_is_mean_square_per_patch_and_projection_is_fixed():
    r = SpatialGoodnessReadout(channels=2, grid=2, num_classes=10)
    h = torch.zeros(1, 2, 4, 4)
    h[0, 0, :2, :2] = 2.0  # top-left patch of channel 0: mean of squares = 4
    g = r.goodness(h)
    assert g.shape == (1, 8)
    assert g[0, 0] == 4.0 and g[0, 1:].abs().sum() == 0
    assert r.forward(h).shape == (1, 10)
    assert list(r.parameters()) == []  # R and b are buffers: never trained
    assert {"projection", "bias"} <= set(r.state_dict())
    # N(0, 1/N): variance close to 1/N
    big = SpatialGoodnessReadout(channels=256, grid=2, num_classes=10)
    assert abs(big.projection.var().item() - 0.1) < 0.01


def test_goodness_fast_path_matches_adaptive_pooling():
    for grid in (1, 2, 4, 3):
        r = SpatialGoodnessReadout(channels=3, grid=grid, num_classes=5)
        h = torch.relu(torch.randn(2, 3, 12, 12))
        ref = torch.nn.functional.adaptive_avg_pool2d(h.square(), grid).flatten(1)
        assert torch.allclose(r.goodness(h), ref, atol=1e-5)


def test_rms_normalize_gives_unit_rms_and_keeps_zeros():
    x = torch.randn(3, 4, 5, 5) * 7
    y = rms_normalize(x)
    assert torch.allclose(y.square().mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-5)
    assert torch.equal(rms_normalize(torch.zeros(1, 2, 3, 3)), torch.zeros(1, 2, 3, 3))


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_in_place_rms_norm_and_sliced_goodness_match_the_whole_tensor_forms(channels_last):
    """The batch-sliced bf16 paths (in-place norm, readout squares) give exactly the whole-tensor values."""
    from ffvision.core.readouts import patch_goodness

    x = torch.randn(16, 8, 8, 8).relu().bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = (x.float() / (x.float().square().mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-20)).bfloat16()
    y = x.clone()
    assert rms_normalize(y, inplace=True) is y
    assert torch.equal(y, rms_normalize(x)) and torch.allclose(y.float(), ref.float(), rtol=2 ** -7)
    with torch.no_grad():
        sliced = patch_goodness(x, 2)
    whole = torch.nn.functional.avg_pool2d(x * x, 4).float()
    assert torch.equal(sliced, whole)


def test_local_block_detaches_input_and_output():
    block = LocalBlock(torch.nn.Conv2d(1, 2, 3, padding=1), SpatialGoodnessReadout(2, 1, 3))
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    out = block(x)
    assert out.h.requires_grad and out.scores.requires_grad
    assert not out.out.requires_grad and out.out.grad_fn is None
    block.local_loss(out.scores, torch.tensor([0, 1])).backward()
    assert x.grad is None  # nothing flowed back into the input


@pytest.mark.parametrize("name,nlayers", [("vgg8", 7), ("vgg11", 10), ("vgg11a", 8)])
@pytest.mark.parametrize("size,channels", [(32, 1), (64, 3)])
def test_vgg_shapes(name, nlayers, size, channels):
    net = ffvision.create_model(name, in_channels=channels, num_classes=7, width_mult=0.125, image_size=size)
    assert len(net.layers) == nlayers == len(net.feature_info)
    y = net(torch.rand(2, channels, size, size))
    assert y.shape == (2, 7)
    feats = net.forward_features(torch.rand(2, channels, size, size))
    assert feats.shape[1] == net.feature_info[-1]["num_chs"]


def test_width_mult_scales_every_layer():
    full = ffvision.create_model("vgg8", in_channels=1)
    quarter = ffvision.create_model("vgg8", in_channels=1, width_mult=0.25)
    assert [i["num_chs"] for i in quarter.feature_info] == [i["num_chs"] // 4 for i in full.feature_info]


def test_model_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown model 'vgg99'.*vgg8"):
        ffvision.create_model("vgg99")
    with pytest.raises(ConfigError, match="too small"):
        ffvision.create_model("vgg8", image_size=8)
    with pytest.raises(ConfigError, match="width_mult"):
        ffvision.create_model("vgg8", width_mult=0)
    with pytest.raises(ConfigError, match="does_not_exist"):
        ffvision.create_model("vgg8", does_not_exist=1)
    assert {"vgg8", "vgg11", "vgg11a"} <= set(ffvision.list_models())


def test_fast_dropout_drops_with_probability_p_and_keeps_the_mean():
    from ffvision.core import FastDropout, fast_dropout

    x = torch.ones(64, 32, 16, 16)
    torch.manual_seed(0)
    a = fast_dropout(x, 0.1)
    kept = (a != 0).float().mean().item()
    assert abs(kept - 0.9) < 0.005 and abs(a.mean().item() - 1.0) < 0.01  # inverted dropout: E[a] = x
    vals = a.unique().tolist()
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(1 / 0.9, rel=1e-4)
    torch.manual_seed(0)
    assert torch.equal(fast_dropout(x, 0.1), a)  # seeded runs are reproducible
    assert (a[0] != a[1]).any()  # independent per element, not one mask per sample
    m = FastDropout(0.3)
    m.eval()
    assert m(x) is x and fast_dropout(x, 0.0) is x
    m.train()
    z = torch.ones(5, 7, requires_grad=True)  # odd sizes (not a multiple of four lanes), gradients flow
    out = m(z)
    out.sum().backward()
    assert torch.equal(z.grad, (out != 0).float() / (1 - round(0.3 * 65536) / 65536))
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_fast_dropout_mask_follows_the_memory_layout():
    from ffvision.core import fast_dropout
    from ffvision.kernels.dropout import random_lanes

    x = torch.ones(8, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    lanes = random_lanes(x)
    assert lanes.shape == x.shape and lanes.stride() == x.stride()  # the multiply reads both contiguously
    torch.manual_seed(1)
    a = fast_dropout(x, 0.25)
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert abs((a == 0).float().mean().item() - 0.25) < 0.02 and abs(a.mean().item() - 1.0) < 0.03
    torch.manual_seed(1)
    assert torch.equal(fast_dropout(x, 0.25), a)
    compiled = torch.compile(lambda t: fast_dropout(t, 0.25), dynamic=False)  # the compiler draws its own words
    c = compiled(x)
    assert abs((c == 0).float().mean().item() - 0.25) < 0.02 and set(c.unique().tolist()) == set(a.unique().tolist())
