"""Scalable FF on torchvision's ResNet18 / MobileNetV3: blocks, granularities, transfer learning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import ffvision
from ffvision.errors import CheckpointError, ConfigError

ARCHS = ["resnet18", "mobilenet_v3_small", "mobilenet_v3_large"]


def batch(size: int, c: int = 1, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(size)
    return torch.rand(n, c, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [28, 32, 64])
def test_blocks_compose_to_the_torchvision_network(arch, size):
    net = ffvision.create_model(arch, in_channels=1, num_classes=10, image_size=size).eval()
    x, _ = batch(size)
    ref = net.forward_features(x)
    assert net(x).shape == (4, 10)
    for g in ("layer", "block", "stage"):
        h = x
        for b in net.local_blocks(g):
            h = b(h)
        assert torch.allclose(h, ref, atol=1e-5), g
    assert isinstance(net.net, torchvision.models.ResNet if arch == "resnet18" else torchvision.models.MobileNetV3)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("granularity", ["layer", "block", "stage"])
def test_no_gradient_crosses_a_block_at_every_granularity(arch, granularity):
    m = ffvision.create_method("sff", model=arch, num_classes=10, in_channels=1, image_size=28,
                               granularity=granularity)
    seen = []

    def hook(module, inputs):
        tensors = inputs[0] if isinstance(inputs[0], tuple) else (inputs[0],)
        seen.append(any(t.requires_grad or t.grad_fn is not None for t in tensors))

    handles = [b.register_forward_pre_hook(hook) for b in m.blocks]
    m.train_step(*batch(28))
    for h in handles:
        h.remove()
    assert len(seen) == len(m.blocks) and not any(seen)
    # one block's loss reaches its own parameters and no other block's
    k = len(m.blocks) // 2
    m.zero_grad(set_to_none=True)
    h = m.prepare(batch(28)[0])
    for i, block in enumerate(m.blocks):
        o = block(h)
        if i == k:
            block.local_loss(o.scores, batch(28)[1]).backward()
        h = o.out
    for i, block in enumerate(m.blocks):
        has = [p.grad is not None for p in block.parameters()]
        assert all(has) if i == k else not any(has), i


def test_hybrid_blocks_get_gradients_inside():
    m = ffvision.create_method("sff", model="resnet18", num_classes=10, in_channels=1, image_size=28,
                               granularity="block")
    block = m.blocks[2]  # layer1[1]: conv1, bn1, conv2, bn2 trained together by backprop
    x = torch.rand(4, 64, 28, 28)
    block.local_loss(block(x).scores, torch.arange(4)).backward()
    convs = [mod for mod in block.body.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)


def test_layer_granularity_handles_the_residual_and_downsample():
    m = ffvision.create_method("sff", model="resnet18", num_classes=10, in_channels=1, image_size=28,
                               granularity="layer")
    assert len(m.blocks) == 17  # stem + 8 BasicBlocks x 2 convs
    exit_part = m.blocks[6].body  # second half of layer2[0]: conv2 + bn2 + downsample(skip)
    assert exit_part.last and isinstance(exit_part.shortcut, torch.nn.Sequential)
    x, y = batch(28)
    outs = list(m.iter_outputs(x))
    assert isinstance(outs[5].out, tuple) and not isinstance(outs[6].out, tuple)
    before = exit_part.shortcut[0].weight.detach().clone()
    stats = m.train_step(x, y)
    assert torch.isfinite(stats["loss_sum"])
    # the downsample conv learns with the part that adds the shortcut
    assert not torch.equal(before, exit_part.shortcut[0].weight)


@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_strategies_and_losses(loss):
    m = ffvision.create_method("sff", model="mobilenet_v3_small", num_classes=10, in_channels=1, image_size=32,
                               sff_loss=loss, margin=0.5)
    x, y = batch(32)
    m.train_step(x, y)
    for s in ("average", "last", "range"):
        assert m.predict(x, s).shape == (4, 10)
    counts = m.eval_counts(x, y)
    n = len(m.blocks)
    assert len(counts.ranges) == n * (n + 1) // 2 and (1, n) in counts.ranges  # 1-based block ranges
    val = counts.map(lambda v: float(v) / 4)
    val.ranges[(3, 5)] = 2.0  # pretend blocks 3..5 are the best range on validation
    out = m.select_on_validation(val)
    assert m.range_sel.tolist() == [2, 4] and out.strategies["range"] == 2.0
    assert not out.ranges and m.strategy_info()["range"]["layers"] == 5


def test_margin_loss_formula():
    from ffvision.core.losses import goodness_margin_loss

    g = torch.tensor([[3.0, 1.0, 0.0]])
    expected = torch.nn.functional.softplus(torch.logsumexp(torch.tensor([1.0, 0.0]), 0) - 3.0 + 0.5)
    assert torch.allclose(goodness_margin_loss(g, torch.tensor([0]), 0.5), expected)


def test_transfer_learning_and_freezing(tmp_path: Path):
    src = torchvision.models.mobilenet_v3_small()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    m = ffvision.create_method("sff", model="mobilenet_v3_small", num_classes=10, in_channels=3, image_size=224,
                               init_weights=str(tmp_path / "w.pth"), freeze_blocks=3)
    net_state = {k: v.clone() for k, v in m.blocks[5].body.state_dict().items()}
    src_state = src.features[5].state_dict()
    assert all(torch.equal(net_state[k], src_state[k]) for k in src_state)  # weights came from the file
    assert "block1" not in m.optimizers and "block4" in m.optimizers
    frozen = {k: v.clone() for i in range(3) for k, v in m.blocks[i].state_dict().items()}
    x, y = torch.rand(4, 3, 224, 224), torch.randint(0, 10, (4,))
    for _ in range(2):
        m.train_step(x, y)
    after = {k: v for i in range(3) for k, v in m.blocks[i].state_dict().items()}
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # incl. BatchNorm running statistics
    assert not torch.equal(net_state["block.0.0.weight"], m.blocks[5].body.state_dict()["block.0.0.weight"])


def test_transfer_learning_errors(tmp_path: Path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="does not fit mobilenet_v3_small"):
        ffvision.create_method("sff", model="mobilenet_v3_small", num_classes=10, in_channels=3,
                               init_weights=str(tmp_path / "resnet.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        ffvision.create_method("sff", model="resnet18", num_classes=10, init_weights=str(tmp_path / "junk.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        ffvision.create_method("sff", model="resnet18", num_classes=10, init_weights=str(tmp_path / "none.pth"))
    # the adapted stem and head keep their own init, everything else loads
    m = ffvision.create_method("sff", model="resnet18", num_classes=10, in_channels=1, image_size=32,
                               init_weights=str(tmp_path / "resnet.pth"))
    src = torch.load(tmp_path / "resnet.pth", weights_only=True)
    assert torch.equal(m.blocks[1].body.conv1.weight, src["layer1.0.conv1.weight"])


def test_bad_sff_options():
    with pytest.raises(ConfigError, match="granularity must be one of layer, block, stage, got 'conv'"):
        ffvision.create_method("sff", model="resnet18", num_classes=10, granularity="conv")
    with pytest.raises(ConfigError, match="sff wraps torchvision networks"):
        ffvision.create_method("sff", model="vgg8", num_classes=10)
    with pytest.raises(ConfigError, match="freeze_blocks must be in"):
        ffvision.create_method("sff", model="resnet18", num_classes=10, freeze_blocks=50)
    with pytest.raises(ConfigError, match="sff_loss"):
        ffvision.create_method("sff", model="resnet18", num_classes=10, sff_loss="hinge")


def test_bp_on_torchvision_networks_uses_their_classifier():
    b = ffvision.create_method("bp", model="resnet18", num_classes=10, in_channels=1, image_size=28)
    assert isinstance(b.blocks[0].readout[2], torch.nn.Linear) and b.blocks[0].readout[2].out_features == 10
    x, y = batch(28)
    net = b.blocks[0].body.net.net
    net.eval()
    b.eval()
    assert torch.allclose(b.predict(x), net(x), atol=1e-5)  # exactly torchvision's forward


def test_batchnorm_momentum_is_pytorch_default_for_short_runs():
    # torchvision's MobileNetV3 uses 0.01: after a few epochs its running statistics would still
    # describe the untrained network and eval-mode accuracy would sit at chance.
    net = ffvision.create_model("mobilenet_v3_small", in_channels=1, num_classes=10, image_size=28)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.1 for m in bns)
    from ffvision.models.tv import TorchvisionNet
    kept = TorchvisionNet("mobilenet_v3_small", num_classes=10, image_size=28, bn_momentum=None)
    assert all(m.momentum == 0.01 for m in kept.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ConfigError, match="bn_momentum"):
        TorchvisionNet("resnet18", num_classes=10, image_size=28, bn_momentum=0.0)
