"""Large-kernel convolutions in the frequency domain (kernels/spectral.py): same values and gradients as conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ffvision.errors import ConfigError
from ffvision.kernels.spectral import SpectrumCache, prefer_spectral, spectral_conv2d
from ffvision.models import create_model
from ffvision.models.convstack import ConvLayer, set_conv_impl


@pytest.mark.parametrize("n,c,o,h,w,k", [(3, 5, 4, 9, 11, 7), (2, 3, 6, 8, 8, 5), (2, 2, 3, 6, 7, 3),
                                         (1, 4, 2, 5, 5, 7)])
def test_values_and_all_three_gradients_match_conv2d(n, c, o, h, w, k):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    weight = torch.randn(o, c, k, k, requires_grad=True)
    bias = torch.randn(o, requires_grad=True)
    ref = F.conv2d(x, weight, bias, padding=k // 2)
    out = spectral_conv2d(x, weight, bias)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, (x, weight, bias), g), torch.autograd.grad(out, (x, weight, bias), g)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-3)


def test_under_bf16_autocast_it_stays_float32_and_exact_in_training_and_inference():
    torch.manual_seed(0)
    x = torch.randn(4, 32, 28, 28).relu()
    weight = (torch.randn(32, 32, 7, 7) * 0.05).requires_grad_()
    ref = F.conv2d(x, weight, None, padding=3).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = spectral_conv2d(x, weight)  # a spectrum rounded to bf16 moves FF's goodness coherently
        with torch.no_grad():
            inferred = spectral_conv2d(x, weight)
    assert trained.dtype == inferred.dtype == torch.float32
    torch.testing.assert_close(trained.detach(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(inferred, ref, rtol=1e-4, atol=1e-4)


def test_the_relu_after_it_may_work_in_place_and_a_detached_input_gets_no_gradient():
    x = torch.randn(2, 3, 8, 8)
    weight = torch.randn(4, 3, 5, 5, requires_grad=True)
    y = torch.relu_(spectral_conv2d(x, weight))  # ConvLayer's ReLU is in place
    y.sum().backward()
    ref = torch.autograd.grad(F.conv2d(x, weight, None, padding=2).relu().sum(), weight)[0]
    torch.testing.assert_close(weight.grad, ref, rtol=1e-4, atol=1e-3)
    assert x.grad is None


def test_auto_picks_the_frequency_domain_for_large_wide_kernels_on_the_cpu_only():
    x = torch.zeros(1, 64, 8, 8)
    assert prefer_spectral(torch.nn.Conv2d(64, 64, 7, padding=3), x)
    assert prefer_spectral(torch.nn.Conv2d(64, 128, 5, padding=2), x)
    assert not prefer_spectral(torch.nn.Conv2d(64, 64, 3, padding=1), x)  # measured slower than direct
    assert not prefer_spectral(torch.nn.Conv2d(1, 128, 7, padding=3), x[:, :1])  # FF-CNN's layer 1: slower
    assert not prefer_spectral(torch.nn.Conv2d(32, 32, 7, padding=3), x[:, :32])  # level with direct
    assert prefer_spectral(torch.nn.Conv2d(1, 1, 3, padding=1), x[:, :1], "spectral")
    assert not prefer_spectral(torch.nn.Conv2d(64, 64, 7, padding=3), x, "direct")
    # only stride-1 "same" convolutions qualify, whatever is asked
    assert not prefer_spectral(torch.nn.Conv2d(1, 1, 7, padding=3, stride=2), x[:, :1], "spectral")
    assert not prefer_spectral(torch.nn.Conv2d(1, 1, 7, padding=0), x[:, :1], "spectral")


def test_ffcnn_gives_the_same_features_either_way_and_sees_weight_updates():
    torch.manual_seed(0)
    net = create_model("ffcnn3", filters=8, in_channels=1, image_size=12).eval()
    x = torch.rand(3, 1, 12, 12)
    with torch.no_grad():
        set_conv_impl(net, "spectral")  # (auto leaves 8 filters to the direct convolution)
        spectral = net.forward_features(x)
        set_conv_impl(net, "direct")
        direct = net.forward_features(x)
        torch.testing.assert_close(spectral, direct, rtol=1e-4, atol=1e-4)
        set_conv_impl(net, "spectral")
        layer: ConvLayer = net.layers[1]
        before = layer(direct)
        layer.conv.weight.mul_(2.0)  # an optimizer step changes the weight in place: the cached spectrum goes
        after = layer(direct)
        set_conv_impl(net, "direct")
        torch.testing.assert_close(after, layer(direct), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(before, after)
    with pytest.raises(ConfigError, match="conv must be one of auto, direct, spectral"):
        set_conv_impl(net, "fft")


def test_the_spectrum_cache_holds_nothing_while_training():
    cache = SpectrumCache()
    weight = torch.randn(2, 2, 5, 5, requires_grad=True)
    with torch.no_grad():
        first = cache.get(weight, 6, 6)
        assert cache.get(weight, 6, 6) is first
    assert cache.get(weight, 6, 6) is None and cache.value is None
