"""The method API, the no-gradient-across-blocks property, and prediction strategies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import ffvision
from ffvision.errors import ConfigError, DataError
from ffvision.methods.asge import early_exit

SMALL = {"model": "vgg8", "num_classes": 10, "in_channels": 1, "width_mult": 0.125, "image_size": 16}


def batch(n: int = 8, c: int = 1, size: int = 16, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return torch.rand(n, c, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_create_method_api():
    m = ffvision.create_method("asge", **SMALL)
    assert len(m.blocks) == 7
    x, y = batch()
    stats = m.train_step(x, y)
    assert all(isinstance(v, torch.Tensor) for v in stats.values())  # on-device, no host sync
    assert stats["layer_correct"].shape == (7,)
    for s in ("last", "goodness-sum", "heads"):
        assert m.predict(x, strategy=s).shape == (8, 10)
    assert m.predict(x).shape == (8, 10)
    assert {"asge", "bp"} <= set(ffvision.list_methods())


def test_readout_size_follows_num_classes():
    m = ffvision.create_method("asge", model="vgg8", num_classes=100, in_channels=3, width_mult=0.125)
    assert all(b.readout.projection.shape[1] == 100 for b in m.blocks)
    assert m.predict(torch.rand(2, 3, 32, 32)).shape == (2, 100)


def test_grids_follow_the_adaptive_rule():
    m = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.25)
    assert m.grids == [4, 2, 2, 1, 1, 1, 1]  # 32->4, 64->2, 128->1 (as 128->4, 256->2, 512->1)


EVERY = {  # every built-in method on a small network of its kind
    "asge": SMALL, "bp": SMALL, "ffcnn": {**SMALL, "model": "ffcnn3", "filters": 4},
    "hinton": {**SMALL, "model": "mlp", "width_mult": 0.02, "image_size": 8},
    "sff": {**SMALL, "model": "mobilenet_v3_small", "width_mult": 1.0, "image_size": 32},
    "deeperforward": {**SMALL, "model": "cwresnet17", "width_mult": 0.1},
    "hclff": {**SMALL, "model": "cwresnet17", "width_mult": 0.1},
}


def test_every_builtin_method_is_checked():
    assert set(EVERY) == set(ffvision.list_methods())


@pytest.mark.parametrize("name", sorted(EVERY))
def test_no_gradient_crosses_a_block_boundary(name):
    options = EVERY[name]
    m = ffvision.create_method(name, **options)
    seen = []

    def hook(module, inputs):
        x = inputs[0]
        for t in (x if isinstance(x, tuple) else (x,)):  # a residual block's input: (x, skip)
            seen.append((t.requires_grad, t.grad_fn))

    handles = [b.register_forward_pre_hook(hook) for b in m.blocks]
    x, y = batch(size=options["image_size"])
    m.train_step(x, y)
    for h in handles:
        h.remove()
    assert len(seen) >= len(m.blocks)  # (FF methods run their blocks once more for the probe's features)
    assert all(not rg and fn is None for rg, fn in seen)  # every block input has no autograd history


@pytest.mark.parametrize("k", [0, 3, 6])
def test_one_blocks_loss_reaches_only_its_own_parameters(k):
    m = ffvision.create_method("asge", **SMALL)
    x, y = batch()
    before = [[p.detach().clone() for p in b.parameters()] for b in m.blocks]
    h = m.prepare(x)
    for i, block in enumerate(m.blocks):
        o = block(h)
        if i == k:
            loss = block.local_loss(o.scores, y)
            loss.backward()
            m.optimizers[f"block{k + 1}"].step()
        h = o.out
    for i, block in enumerate(m.blocks):
        grads = [p.grad for p in block.parameters()]
        changed = any(not torch.equal(p, q) for p, q in zip(block.parameters(), before[i]))
        if i == k:
            assert all(g is not None for g in grads) and changed
        else:
            assert all(g is None for g in grads) and not changed


def test_fixed_projections_do_not_change_in_training():
    m = ffvision.create_method("asge", **SMALL)
    before = {k: v.clone() for k, v in m.state_dict().items() if "projection" in k or "readout.bias" in k}
    for _ in range(3):
        m.train_step(*batch())
    after = m.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


def test_heads_only_see_detached_features():
    m = ffvision.create_method("asge", **SMALL)
    conv_before = [p.detach().clone() for p in m.blocks.parameters()]
    x, y = batch()
    outs = [o.out for o in m.iter_outputs(x)]
    assert all(not o.requires_grad for o in outs)
    torch.nn.functional.cross_entropy(m.head_logits(outs), y).backward()
    assert all(p.grad is None for p in m.blocks.parameters())
    assert all(torch.equal(p, q) for p, q in zip(m.blocks.parameters(), conv_before))


def test_bp_is_one_block_that_trains_everything():
    m = ffvision.create_method("bp", **SMALL)
    assert len(m.blocks) == 1
    before = [p.detach().clone() for p in m.parameters()]
    m.train_step(*batch())
    assert all(not torch.equal(p, q) for p, q in zip(m.parameters(), before))


def test_early_exit():
    confident = torch.tensor([[10.0, 0.0], [0.0, 0.1]])  # sample 0 confident at layer 1
    late = torch.tensor([[0.0, 10.0], [0.0, 10.0]])
    pred, used = early_exit([confident, late], threshold=0.9, num_layers=2)
    assert pred.tolist() == [0, 1] and used.tolist() == [1, 2]
    pred, used = early_exit([confident, late], threshold=1.0, num_layers=2)  # never confident: last layer
    assert used.tolist() == [2, 2]
    m = ffvision.create_method("asge", **SMALL)
    x, y = batch()
    p, u = m.predict_early_exit(x, threshold=1e-6)
    assert (u == 1).all() and p.shape == (8,)
    # the stopping inference and the evaluation counters are one rule: the same predictions and layers
    for t in (0.5, 0.9):
        p, u = m.predict_early_exit(x, threshold=t)
        counts = m.eval_counts(x, y)
        assert counts.early_exit[t][0] == (p == y).sum() and counts.early_exit[t][1] == u.sum()


def test_strategy_info_counts_parameters():
    m = ffvision.create_method("asge", **SMALL)
    info = m.strategy_info()
    convs = sum(p.numel() for p in m.blocks.parameters())
    assert info["last"]["trainable_parameters"] == convs == info["goodness-sum"]["trainable_parameters"]
    assert info["heads"]["trainable_parameters"] == convs + sum(p.numel() for p in m.heads.parameters())


def test_bad_method_inputs_are_clear():
    with pytest.raises(ConfigError, match="unknown method 'nope'.*asge"):
        ffvision.create_method("nope", **SMALL)
    with pytest.raises(ConfigError, match="does not take bogus"):
        ffvision.create_method("asge", bogus=1, **SMALL)
    m = ffvision.create_method("asge", **SMALL)
    x, y = batch()
    with pytest.raises(DataError, match="label 12 is out of range"):
        m.train_step(x, torch.full((8,), 12))
    with pytest.raises(DataError, match="expected images of shape"):
        m.train_step(torch.rand(8, 3, 16, 16), y)
    with pytest.raises(ConfigError, match="unknown strategy"):
        m.predict(x, strategy="vote")


@pytest.mark.parametrize("name", ["asge", "bp", "deeperforward", "hclff"])
def test_bf16_autocast_path(name):
    """The mixed-precision path used on CUDA, exercised with CPU bf16 autocast."""
    channelwise = {"model": "cwresnet17", "width_mult": 0.1}
    m = ffvision.create_method(name, **{**SMALL, **(channelwise if name in ("deeperforward", "hclff") else {})})
    m.amp_dtype = torch.bfloat16
    x, y = batch(16)
    for _ in range(2):
        stats = m.train_step(x, y)
    assert torch.isfinite(stats["loss_sum"])
    assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay fp32
    assert m.predict(x).dtype == torch.float32


def test_memory_saving_backprop_makes_the_same_update():
    import copy

    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))
    ref = ffvision.create_method("bp", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125, dropout=0.0)
    for variant in ("checkpoint", "accumulate"):
        m = ffvision.create_method("bp", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125, dropout=0.0,
                                   memory_saving=variant)
        m.load_state_dict(ref.state_dict())
        plain = copy.deepcopy(ref)
        plain.build_optimizers()
        a, b = plain.train_step(x, y), m.train_step(x, y)
        assert torch.allclose(a["loss_sum"], b["loss_sum"], atol=1e-5)
        assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(plain.parameters(), m.parameters())), variant


def unfused_and_fused_asge():
    """Two ASGE VGG8 x0.125 models with the same weights: the plain autograd chain and the fused step (the default)."""
    a = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125, dropout=0.0,
                               fused_readout=False)
    b = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.125, dropout=0.0)
    b.load_state_dict(a.state_dict())
    return a, b


def test_fused_asge_readout_gives_the_unfused_loss_and_gradients():
    x, y = torch.rand(8, 1, 32, 32), torch.randint(0, 10, (8,))
    a, b = unfused_and_fused_asge()
    assert all(blk.fused for blk in b.blocks) and not any(blk.fused for blk in a.blocks)
    h = a.prepare(x.requires_grad_())
    for ba, bb in zip(a.blocks, b.blocks):
        ba.train(), bb.train()
        oa, ob = ba(h, hand_off=False), bb(h, hand_off=False)
        assert ob.out is not None  # the fused block hands off at once: its backward overwrites h
        # (the fused forward runs in batch slices: the convolution may round differently per slice size)
        assert torch.allclose(oa.h.detach(), ob.h, rtol=1e-5, atol=1e-5)
        assert torch.allclose(ba.hand_off(oa), ob.out, rtol=1e-5, atol=1e-5)
        la, lb = ba.local_loss(oa.scores, y), bb.local_loss(ob.scores, y)
        ga = torch.autograd.grad(la, list(ba.body.parameters()))
        gb = torch.autograd.grad(lb, list(bb.body.parameters()))
        assert torch.allclose(la, lb, atol=1e-5)
        assert all((p - q).abs().max() <= 1e-5 * p.abs().max() for p, q in zip(ga, gb))  # to float32 rounding
        assert not ob.h.requires_grad and not ob.out.requires_grad  # no gradient leaves the block
        for chunks in (1, 3):  # the weight gradient summed over slices of the batch is the same
            bb.fused_chunks = chunks
            oc = bb(h, hand_off=False)
            gc = torch.autograd.grad(bb.local_loss(oc.scores, y), list(bb.body.parameters()))
            assert all((p - q).abs().max() <= 1e-5 * p.abs().max() for p, q in zip(ga, gc))  # summation order
        bb.fused_chunks = 0
        oc = bb(h.contiguous(memory_format=torch.channels_last), hand_off=False)  # --channels-last's layout
        assert oc.h.is_contiguous(memory_format=torch.channels_last) or h.shape[1] == 1  # (1 channel: NCHW)
        assert torch.allclose(oc.out, ob.out, atol=1e-5)
        gc = torch.autograd.grad(bb.local_loss(oc.scores, y), list(bb.body.parameters()))
        assert all((p - q).abs().max() <= 1e-5 * p.abs().max() for p, q in zip(ga, gc))
        h = ba.hand_off(oa)
    # whole steps agree too (in one batch slice: Adam's first step is +-lr wherever a gradient is ~0, so a
    # different summation order could flip such weights), and nothing reaches the input
    for blk in b.blocks:
        blk.fused_chunks = 1
    sa, sb = a.train_step(x, y), b.train_step(x, y)
    assert torch.allclose(sa["layer_loss_sum"], sb["layer_loss_sum"], rtol=1e-5)
    assert all(torch.allclose(p, q, rtol=1e-4, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


def test_fused_asge_readout_under_bf16_autocast_is_close_to_the_unfused_one():
    """bf16: goodness from pooled bf16 squares; scores and gradients within bf16 precision of the float32 chain."""
    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))
    a, b = unfused_and_fused_asge()
    h = a.prepare(x)
    for ba, bb in list(zip(a.blocks, b.blocks))[:3]:
        ba.train(), bb.train()
        oa = ba(h, hand_off=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ob = bb(h, hand_off=False)
        assert ob.scores.dtype == torch.float32
        assert (oa.scores - ob.scores).abs().max() <= 0.02 * oa.scores.abs().max()
        ga = torch.autograd.grad(ba.local_loss(oa.scores, y), [ba.body.conv.weight])[0]
        gb = torch.autograd.grad(bb.local_loss(ob.scores, y), [bb.body.conv.weight])[0]
        assert torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0) > 0.99
        h = ba.hand_off(oa)


def test_compiled_asge_blocks_train_like_eager_ones():
    """--compile: each block compiled for its own shapes (a dynamic-shape graph broke ASGE's readout backward)."""
    cfg = {**SMALL, "image_size": 32, "dropout": 0.0}
    eager = ffvision.create_method("asge", **cfg)
    compiled = ffvision.create_method("asge", **cfg)
    compiled.load_state_dict(eager.state_dict())
    for block in compiled.blocks:
        block.compile()
    x, y = batch(4, size=32)
    for _ in range(2):  # Adam's first steps are +-lr wherever a gradient is ~0: compare losses, not weights
        a, b = eager.train_step(x, y), compiled.train_step(x, y)
        assert torch.allclose(a["layer_loss_sum"], b["layer_loss_sum"], rtol=1e-3, atol=1e-4)


def test_method_options_are_declared_once():
    """Each method's defaults are its options dataclass's; the CLI's list, create_method and the class agree."""
    import dataclasses

    from ffvision.methods import create_method, method_class, method_spec
    from ffvision.methods.options import METHODS, HintonOptions

    for name, spec in METHODS.items():
        assert method_class(name).spec is spec and method_class(name).strategies == spec.strategies
        assert set(spec.defaults()) == {f.name for f in dataclasses.fields(spec.options)}
    h = create_method("hinton", num_classes=10, in_channels=1, image_size=28, width_mult=0.05)
    assert h.lr == HintonOptions().lr == 3e-2 and h.negatives == "hard" and not h.frozen
    f = create_method("ffcnn", num_classes=10, in_channels=1, image_size=28, filters=4)
    assert f.negatives == "uniform" and f.frozen == {0}  # FFCNNOptions: layer 1 stays random
    assert method_spec("ffcnn").options().model == "ffcnn3"
    with pytest.raises(ConfigError, match="does not take bogus; it takes: .*alpha"):
        create_method("asge", num_classes=10, bogus=1)
    with pytest.raises(ConfigError, match="does not take alpha"):  # the class itself checks too
        method_class("bp")(num_classes=10, alpha=2.0)


def test_register_method_needs_a_spec():
    from ffvision.methods import register_method
    from ffvision.methods.base import LocalMethod

    class NoSpec(LocalMethod):
        pass

    with pytest.raises(TypeError, match="spec"):
        register_method(NoSpec)


def test_builtin_model_names_match_their_modules():
    """The torch-free list of built-in models is exactly what their modules register."""
    import importlib

    from ffvision.models import registry

    for module in set(registry.BUILTIN.values()):
        importlib.import_module(module)
    assert set(registry._MODELS) >= set(registry.BUILTIN)
    for name, module in registry.BUILTIN.items():
        assert registry._MODELS[name].__module__ == module


def test_model_type_errors_are_not_hidden():
    """An option the model does not take is a user error; a TypeError inside model code is a bug, raised as is."""
    from ffvision.models import create_model, register_model, registry

    with pytest.raises(ConfigError, match="unexpected keyword"):
        create_model("vgg8", bogus=1)

    @register_model
    def broken_model_for_test(**kwargs: object) -> torch.nn.Module:
        return torch.nn.Linear(2, 2)(None)  # a bug: TypeError inside model code

    try:
        with pytest.raises(TypeError):
            create_model("broken_model_for_test")
    finally:
        registry._MODELS.pop("broken_model_for_test")


def test_counts_add_and_flatten_in_one_order():
    """Counts sum batch by batch and flatten to one tensor for the all-reduce, keeping their structure."""
    from ffvision.core.metrics import Counts

    a = Counts({"last": torch.tensor(3), "heads": torch.tensor(1)}, [torch.tensor(2)], {(1, 2): torch.tensor(4)},
               {0.9: (torch.tensor(5), torch.tensor(7))}, torch.tensor(6))
    s = (a + a).map(lambda v: float(v) / 10)
    assert s.strategies == {"last": 0.6, "heads": 0.2} and s.layers == [0.4] and s.ranges == {(1, 2): 0.8}
    assert s.early_exit == {0.9: (1.0, 1.4)} and s.top5 == 1.2
    assert a.with_leaves(a.leaves()) == a


def test_method_options_are_declared_only_by_the_methods():
    """TrainConfig declares the run's options only; a method's are its options dataclass's, and a config reads
    them from there (the given value, else the method's default)."""
    import dataclasses

    from ffvision.config import RUN_OPTIONS, TrainConfig, apply_overrides
    from ffvision.methods.options import METHODS

    for spec in METHODS.values():
        declared = {f.name for f in dataclasses.fields(spec.options)}
        assert not declared & set(RUN_OPTIONS), spec.name
        cfg = apply_overrides(TrainConfig(), {"method": spec.name})
        assert all(getattr(cfg, k) == v for k, v in dataclasses.asdict(spec.options()).items())
    assert apply_overrides(TrainConfig(), {"method": "hinton", "lr": 0.5}).lr == 0.5


def test_help_and_saved_config_show_the_declared_defaults(capsys):
    from ffvision.cli import main
    from ffvision.config import TrainConfig
    from ffvision.methods import used_config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "[default: asge 0.01, bp 0.001, deeperforward 0.04, ffcnn 0.01, hclff 0.04, hinton 0.03, sff 0.001]" in out
    assert "(from 1) [default: 2] (positive)" in out  # --heads-from, ASGE's only
    saved = used_config(TrainConfig(method="asge", options={"model": "vgg8"}))
    assert saved["heads_from"] == 2 and saved["head_lr"] == 0.01 and "labels" not in saved and saved["lr"] == 0.01


def test_lr_fan_in_scales_each_layers_lr_by_its_fan_in():
    m = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.25,
                               lr=1e-2, lr_fan_in=288)
    lrs = [m.optimizers[f"block{i + 1}"].param_groups[0]["lr"] for i in range(7)]
    fan_in = [9, 288, 576, 576, 1152, 1152, 1152]  # 3x3 kernels over 1, 32, 64, 64, 128, 128, 128 channels
    assert lrs == pytest.approx([1e-2 * min(1.0, (288 / f) ** 0.5) for f in fan_in])
    assert m.optimizers["heads"].param_groups[0]["lr"] == pytest.approx(m.head_lr)  # heads keep their own
    plain = ffvision.create_method("asge", model="vgg8", num_classes=10, in_channels=1, width_mult=0.25, lr=1e-2)
    assert {g["lr"] for o in list(plain.optimizers.values())[:7] for g in o.param_groups} == {1e-2}
    with pytest.raises(ConfigError, match="lr_fan_in must be positive"):
        ffvision.create_method("asge", **SMALL, lr_fan_in=0)


@pytest.mark.parametrize("method", ["asge", "bp"])
def test_label_smoothing_changes_every_local_loss(method):
    torch.manual_seed(0)
    plain = ffvision.create_method(method, **SMALL)
    smooth = ffvision.create_method(method, **SMALL, label_smoothing=0.2)
    scores, y = torch.randn(6, 10), torch.arange(6)
    for block in smooth.blocks:  # every local loss is the smoothed cross-entropy
        assert block.local_loss(scores, y).item() == pytest.approx(
            F.cross_entropy(scores, y, label_smoothing=0.2).item())
    assert plain.blocks[0].local_loss(scores, y).item() == pytest.approx(F.cross_entropy(scores, y).item())
    x = torch.rand(6, 1, 16, 16)
    smooth.train_step(x, y)  # and a training step runs through it (the fused step included for asge)
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        ffvision.create_method(method, **SMALL, label_smoothing=1.0)


@pytest.mark.parametrize("name,options", [("asge", SMALL), ("ffcnn", {**SMALL, "model": "ffcnn3", "filters": 4}),
                                          ("hinton", {**SMALL, "model": "mlp", "width_mult": 0.02, "image_size": 8})])
def test_hybrid_blocks_train_their_layers_end_to_end_and_nothing_across(name, options):
    """--layers-per-block 2: block 1 holds layers 1-2, its local loss reaches both (through layer 1's transition)
    and no other block; every block's input has no autograd history."""
    m = ffvision.create_method(name, **{**options, "layers_per_block": 2})
    flat = ffvision.create_method(name, **options)
    assert len(m.blocks) == (len(flat.blocks) + 1) // 2
    first = [p for layer in m.blocks[0].body.inner for p in layer.parameters()]
    assert len(first) == 4  # two layers' weights and biases
    seen = []
    handles = [b.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].grad_fn is None
                                                                        and not inp[0].requires_grad))
               for b in m.blocks]
    x, y = batch(size=options["image_size"])
    before = [[p.detach().clone() for p in b.parameters()] for b in m.blocks]
    h, target, _ = m.begin_step(x, y)
    o = m.blocks[0](h)
    m.blocks[0].local_loss(o.scores, target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first)
    assert all(p.grad is None for b in m.blocks[1:] for p in b.parameters())
    m.train_step(x, y)
    for h in handles:
        h.remove()
    assert seen and all(seen)
    assert all(any(not torch.equal(p, q) for p, q in zip(b.parameters(), old)) for b, old in zip(m.blocks, before))


def test_hybrid_blocks_larger_than_the_network_are_an_error():
    with pytest.raises(ConfigError, match=r"layers_per_block must be in 1\.\.7 \(this model has 7 layers\), got 8"):
        ffvision.create_method("asge", **{**SMALL, "layers_per_block": 8})
