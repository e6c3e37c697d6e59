"""FF-CNN (spatially-extended labels) and Hinton's FF: labels, negatives, blocks, inference."""

from __future__ import annotations

import pytest
import torch

import ffvision
from ffvision.core.labels import (
    OneHotPixels,
    SpatialLabels,
    fourier_patterns,
    hard_negative_labels,
    morphological_patterns,
    negative_labels,
)
from ffvision.core.metrics import Counts
from ffvision.errors import ConfigError, DataError

FF_SMALL = {"num_classes": 10, "in_channels": 1, "image_size": 16}


@pytest.mark.parametrize("kind", ["fourier", "morphological"])
@pytest.mark.parametrize("n,size", [(10, 28), (10, 32), (100, 32)])
def test_label_sets_are_distinct_and_deterministic(kind, n, size):
    make = fourier_patterns if kind == "fourier" else morphological_patterns
    a, b = make(n, size, size), make(n, size, size)
    assert a.shape == (n, size, size) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    d = torch.cdist(a.flatten(1), a.flatten(1)) / size
    d.fill_diagonal_(float("inf"))
    assert d.min() > 0.1  # every pair clearly different (RMS distance)


def test_label_mixing_formula():
    enc = SpatialLabels("morphological", 10, 16, 16, intensity=0.35)
    x = torch.rand(4, 3, 16, 16)
    y = torch.tensor([0, 3, 3, 9])
    out = enc.encode(x, y)
    for c in range(3):  # the same pattern on every channel
        assert torch.allclose(out[:, c], 0.65 * x[:, c] + 0.35 * enc.patterns[y])
    assert torch.allclose(enc.neutral(x)[:, 0], 0.65 * x[:, 0] + 0.35 * enc.patterns.mean(0))


def test_negative_labels_are_never_the_true_label_and_uniform():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200_000,), generator=g)
    neg = negative_labels(y, 10, generator=g)
    assert not (neg == y).any()
    for c in (0, 7):  # given true class c, the other 9 classes are equally likely
        counts = torch.bincount(neg[y == c], minlength=10).float()
        assert counts[c] == 0
        others = counts[torch.arange(10) != c]
        assert (others / others.sum() - 1 / 9).abs().max() < 0.01


def test_one_hot_pixels():
    enc = OneHotPixels(10, 28 * 28)
    x = torch.rand(3, 1, 28, 28)
    out = enc.encode(x, torch.tensor([0, 4, 9]))
    assert out.flatten(1)[:, :10].argmax(1).tolist() == [0, 4, 9] and out.flatten(1)[:, :10].sum(1).eq(1).all()
    assert torch.equal(out.flatten(1)[:, 10:], x.flatten(1)[:, 10:])
    assert torch.allclose(enc.neutral(x).flatten(1)[:, :10], torch.full((3, 10), 0.1))


def test_bad_label_options_are_clear():
    with pytest.raises(ConfigError, match="intensity K must be in"):
        SpatialLabels("fourier", 10, 28, 28, intensity=1.5)
    with pytest.raises(ConfigError, match="cannot make 100 distinct patterns at 8x8"):
        ffvision.create_method("ffcnn", num_classes=100, in_channels=3, image_size=8, filters=4)
    with pytest.raises(ConfigError, match="too small for 100 classes"):
        ffvision.create_method("ffcnn", num_classes=100, in_channels=1, image_size=6, filters=4,
                               labels="morphological", model="ffcnn3")
    m = ffvision.create_method("ffcnn", filters=4, **FF_SMALL)
    with pytest.raises(DataError, match="images are 32x32 px but the label patterns were built for 16x16"):
        m.train_step(torch.rand(2, 1, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="labels must be one of fourier, morphological, onehot, got 'stripes'"):
        ffvision.create_method("ffcnn", filters=4, labels="stripes", **FF_SMALL)


@pytest.mark.parametrize("name,kw", [("ffcnn", {"filters": 4}), ("ffcnn", {"filters": 4, "labels": "morphological"}),
                                     ("hinton", {"width_mult": 0.02})])
def test_ff_api_and_no_gradient_across_blocks(name, kw):
    m = ffvision.create_method(name, **FF_SMALL, **kw)
    seen = []
    hooks = [b.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].requires_grad or inp[0].grad_fn))
             for b in m.blocks]
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 10, (8,))
    stats = m.train_step(x, y)
    for h in hooks:
        h.remove()
    assert seen and not any(seen)  # block inputs carry no autograd history, in the training passes too
    assert stats["layer_correct"].shape == (len(m.blocks),)
    for s in ("goodness", "probe"):
        assert m.predict(x, strategy=s).shape == (8, 10)


# several label chunks; image slices too; the default; layers in the frequency domain (their outputs are
# spatial-major views); one pass per class from layer 1 (no linearity shortcut)
@pytest.mark.parametrize("rows,conv,affine", [(16, "auto", True), (3, "auto", True), (None, "auto", True),
                                              (16, "spectral", True), (16, "auto", False)])
def test_goodness_inference_is_batched_over_classes_and_matches_a_loop(rows, conv, affine, monkeypatch):
    from ffvision.models.convstack import set_conv_impl

    m = ffvision.create_method("ffcnn", filters=4, max_eval_batch=rows, **FF_SMALL)
    set_conv_impl(m, conv)
    if not affine:
        monkeypatch.setattr(m, "_affine_first_layer", lambda: False)
    m.eval()
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        batched = m.goodness_scores(x)
        assert torch.equal(m.goodness_scores(x, 2), batched[:2])  # fewer layers: the same first ones
        for c in range(10):
            xs = m.labels.encode(x, torch.full((5,), c))
            for i, o in enumerate(m.iter_outputs(xs)):
                assert torch.allclose(batched[i, :, c], o.scores.float(), rtol=1e-5, atol=1e-2)
        whole = m.probe(m.probe_features(x))
    assert torch.allclose(m.scores(x, "probe").strategies["probe"], whole, atol=1e-5)  # probe sliced alike


def test_layer_training_and_voting_are_independent():
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    # layer 1 stays random but votes
    m = ffvision.create_method("ffcnn", filters=4, train_first_layer=False, vote_from=1, **FF_SMALL)
    assert "block1" not in m.optimizers and m.trained == [1, 2]
    before = [p.clone() for p in m.blocks[0].parameters()]
    m.train_step(x, y)
    assert all(torch.equal(p, q) for p, q in zip(m.blocks[0].parameters(), before))
    s = m.scores(torch.rand(2, 1, 16, 16))
    assert torch.allclose(s["goodness"], s.layers[0] + s.layers[1] + s.layers[2], atol=1e-6)
    # layer 1 learns but does not vote
    m = ffvision.create_method("ffcnn", filters=4, train_first_layer=True, vote_from=3, **FF_SMALL)
    before = [p.clone() for p in m.blocks[0].parameters()]
    m.train_step(x, y)
    assert "block1" in m.optimizers and not all(torch.equal(p, q) for p, q in zip(m.blocks[0].parameters(), before))
    s = m.scores(torch.rand(2, 1, 16, 16))
    assert torch.allclose(s["goodness"], s.layers[2], atol=1e-6)
    with pytest.raises(ConfigError, match="vote_from must be a layer number in 1..3"):
        ffvision.create_method("ffcnn", filters=4, vote_from=4, **FF_SMALL)


def test_vote_range_is_chosen_on_validation_and_saved():
    m = ffvision.create_method("hinton", width_mult=0.01, **FF_SMALL)  # 4 layers, no range given
    assert m.vote_range.tolist() == [1, 4]  # all layers vote until validation has spoken
    counts = m.eval_counts(torch.rand(6, 1, 16, 16), torch.arange(6))
    assert set(counts.ranges) == {(a, b) for a in range(1, 5) for b in range(a, 5)}
    val = m.select_on_validation(Counts({"goodness": 0.3, "probe": 0.5}, ranges={(1, 4): 0.3, (2, 3): 0.6,
                                                                                  (2, 4): 0.6, (1, 1): 0.4}))
    assert m.vote_range.tolist() == [2, 4] and val.strategies == {"goodness": 0.6, "probe": 0.5} and not val.ranges
    assert m.state_dict()["vote_range"].tolist() == [2, 4]  # checkpoints carry the choice
    s = m.scores(torch.rand(3, 1, 16, 16))
    assert torch.allclose(s["goodness"], s.layers[1] + s.layers[2] + s.layers[3], atol=1e-6)
    fixed = ffvision.create_method("hinton", width_mult=0.01, vote_from=3, vote_to=3, **FF_SMALL)
    assert not fixed.eval_counts(torch.rand(2, 1, 16, 16), torch.arange(2)).ranges
    half = ffvision.create_method("hinton", width_mult=0.01, vote_from=2, **FF_SMALL)
    assert half.vote_candidates() == [(2, 2), (2, 3), (2, 4)]


def test_test_split_runs_only_the_layers_the_vote_needs():
    m = ffvision.create_method("ffcnn", filters=4, **FF_SMALL)  # 3 layers
    m.select_on_validation(Counts({"goodness": 0.1}, ranges={(1, 2): 0.5, (1, 3): 0.4}))
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6)
    full, test = m.eval_counts(x, y, select=True), m.eval_counts(x, y, select=False)
    assert len(full.layers) == 3 and len(test.layers) == 2 and not test.ranges  # layer 3 did not run
    assert test.strategies["goodness"] == full.ranges[(1, 2)] and test.strategies["probe"] == full.strategies["probe"]
    assert torch.equal(m.predict(x, "goodness"), m.scores(x).ranges[(1, 2)])


def test_ce_loss_scores_every_label_and_trains_only_its_layers():
    x, y = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5])
    for first in (False, True):
        m = ffvision.create_method("ffcnn", filters=4, ff_loss="ce", train_first_layer=first, **FF_SMALL)
        before = [p.clone() for p in m.blocks[0].parameters()]
        stats = m.train_step(x, y)
        assert stats["layer_correct"].shape == (3,) and (stats["layer_correct"] <= 6).all()
        assert all(torch.equal(p, q) for p, q in zip(m.blocks[0].parameters(), before)) != first
        # the loss is the cross-entropy of the goodness over the N label overlays
        m.eval()
        with torch.no_grad():
            g = m.goodness_scores(x)  # (L, B, N)
            want = torch.nn.functional.cross_entropy(16.0 * g[2], y)  # the ce loss's default temperature
            h = m.labels.encode(x.repeat(10, 1, 1, 1), torch.arange(10).repeat_interleave(6))  # class-major
            scores = [o.scores.float() for o in m.iter_outputs(h)][2]
        assert torch.allclose(m.blocks[2].local_loss(scores, y), want, atol=1e-4)


def test_hard_negatives_never_pick_the_true_label_and_follow_the_belief():
    g = torch.manual_seed(0)
    y = torch.randint(0, 10, (20_000,), generator=g)
    logits = torch.zeros(20_000, 10)
    logits[:, 3] = 4.0  # the network believes in class 3
    logits[torch.arange(20_000), y] = 10.0  # ... and even more in the true class
    neg = hard_negative_labels(y, logits)
    assert not (neg == y).any()
    wrong3 = y != 3
    assert (neg[wrong3] == 3).float().mean() > 0.8  # the confusable class is drawn most
    assert len(set(neg[~wrong3].tolist())) == 9  # every other class still occurs


@pytest.mark.parametrize("kind", ["fourier", "morphological"])
def test_label_patterns_have_equal_energy(kind):
    enc = SpatialLabels(kind, 10, 28, 28)
    flat = enc.patterns.flatten(1)
    assert torch.allclose(flat.mean(1), torch.full((10,), 0.5), atol=1e-5)
    energy = flat.square().mean(1)
    assert (energy.max() - energy.min()) < 1e-4
    raw = morphological_patterns(10, 28, 28).flatten(1).mean(1)
    assert raw.max() - raw.min() > 0.05  # the raw textures differ in coverage; balancing removes it


@pytest.mark.parametrize("name,kw", [("ffcnn", {"filters": 4}),
                                     ("ffcnn", {"filters": 4, "labels": "morphological", "input_norm": False}),
                                     ("hinton", {"width_mult": 0.02}),
                                     ("hinton", {"width_mult": 0.02, "input_norm": False})])
def test_first_layer_of_goodness_inference_uses_linearity_and_matches_one_pass_per_class(name, kw):
    m = ffvision.create_method(name, **FF_SMALL, **kw).eval()
    x = torch.rand(5, 1, 16, 16)
    cls = torch.arange(10)
    with torch.no_grad():
        fast = m._first_layer_all_labels(x, cls)
        assert fast is not None
        direct = m.blocks[0].body(m.prepare(m.labels.encode(x.repeat(10, 1, 1, 1), cls.repeat_interleave(5))))
    assert torch.allclose(fast, direct, atol=1e-5)


def test_goodness_threshold_defaults():
    m = ffvision.create_method("ffcnn", filters=4, goodness="sum", **FF_SMALL)
    assert [b.readout.threshold for b in m.blocks] == [4 * 16 * 16] * 3  # the paper: the number of units
    h = ffvision.create_method("hinton", width_mult=0.01, goodness="sum", **FF_SMALL)
    assert [b.readout.threshold for b in h.blocks] == [20] * 4
    d = ffvision.create_method("ffcnn", filters=4, **FF_SMALL)  # default: mean goodness, theta 1
    assert [(b.readout.reduction, b.readout.threshold) for b in d.blocks] == [("mean", 1.0)] * 3
    x = torch.rand(2, 1, 16, 16)
    h_ = d.blocks[0].body(x)
    # the mean form is the sum form's logit divided by the number of units
    assert torch.allclose(d.blocks[0].readout(h_), (h_.square().flatten(1).sum(1) - h_[0].numel()) / h_[0].numel(),
                          atol=1e-5)


@pytest.mark.parametrize("name,kw", [("asge", {"model": "vgg8", "width_mult": 0.125}), ("ffcnn", {"filters": 4}),
                                     ("bp", {"model": "vgg8", "width_mult": 0.125})])
def test_class_activation_maps(name, kw):
    from ffvision.viz.cam import class_activation_maps

    m = ffvision.create_method(name, **FF_SMALL, **kw)
    x = torch.rand(3, 1, 16, 16)
    cls, maps = class_activation_maps(m, x)
    assert cls.shape == (3,) and len(maps) == len(m.blocks)
    for cam in maps:
        assert cam.shape == (3, 16, 16) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert all(p.grad is None for p in m.parameters())  # explaining changes nothing


def test_cam_needs_feature_maps():
    from ffvision.viz.cam import class_activation_maps

    m = ffvision.create_method("hinton", width_mult=0.01, **FF_SMALL)
    with pytest.raises(ConfigError, match="need convolutional feature maps"):
        class_activation_maps(m, torch.rand(2, 1, 16, 16))


def test_diagnostics_statistics():
    from ffvision.diagnose import score_statistics

    s = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [5.0, 5.0, 4.0]])  # (B=3 images, N=3 labels)
    y = torch.tensor([0, 0, 2])
    stats, pos, neg = score_statistics(s, y)
    assert stats["accuracy"] == pytest.approx(1 / 3) and stats["rank_histogram"] == [1, 0, 2]
    assert stats["pairs_ranked_right"] == pytest.approx(2 / 6) and pos.tolist() == [3.0, 0.0, 4.0]
    assert stats["label_sensitivity"] == pytest.approx(float(s.std(1).mean()))  # label changes, image fixed
    assert stats["image_sensitivity"] == pytest.approx(float(s.std(0).mean()))  # image changes, label fixed


def test_diagnostics_separate_a_constant_label_preference_from_the_image_label_match():
    from ffvision.diagnose import score_statistics

    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(50)
    s = torch.randn(500, 10, generator=g) * 0.1
    s[torch.arange(500), y] += 1.0  # the true label scores 1 higher than the wrong ones ...
    s[:, 7] += 2.0  # ... but label 7 is scored 2 higher for every image
    stats, _, _ = score_statistics(s, y)
    assert stats["accuracy"] == pytest.approx(0.1)  # label 7 wins every argmax
    assert stats["accuracy_without_label_bias"] > 0.95 and stats["label_bias"] > 0.5


def test_several_negatives_are_distinct_wrong_labels_and_symba_is_their_softmax():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (50_000,), generator=g)
    for neg in (negative_labels(y, 10, generator=g, k=3), hard_negative_labels(y, torch.randn(50_000, 10), k=3)):
        assert neg.shape == (50_000, 3) and not (neg == y[:, None]).any()
        assert (neg[:, 0] != neg[:, 1]).all() and (neg[:, 1] != neg[:, 2]).all() and (neg[:, 0] != neg[:, 2]).all()
    counts = torch.bincount(negative_labels(y, 10, generator=g, k=3)[y == 4].flatten(), minlength=10).float()
    assert counts[4] == 0 and (counts[torch.arange(10) != 4] / counts.sum() - 1 / 9).abs().max() < 0.01
    from ffvision.methods.ff import goodness_loss

    pos, neg = torch.randn(8), torch.randn(8)
    target = torch.cat([torch.ones(8), torch.zeros(8)])
    assert torch.allclose(goodness_loss(torch.cat([pos, neg]), target, "symba", 4.0),
                          torch.nn.functional.softplus(-4.0 * (pos - neg)).mean())
    m = ffvision.create_method("ffcnn", filters=4, num_negatives=3, **FF_SMALL)
    stats = m.train_step(torch.rand(6, 1, 16, 16), torch.arange(6))
    assert stats["layer_correct"].shape == (3,) and (stats["layer_correct"] <= 6).all()
    with pytest.raises(ConfigError, match="num_negatives must be in 1..9"):
        ffvision.create_method("ffcnn", filters=4, num_negatives=10, **FF_SMALL)


def test_fourier_labels_are_short_waves_readable_inside_a_receptive_field():
    p = fourier_patterns(10, 28, 28)
    spectrum = torch.fft.fft2(p - p.mean((1, 2), keepdim=True)).abs()
    f = torch.fft.fftfreq(28)  # cycles per pixel
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    peak = radius.flatten()[spectrum.flatten(1).argmax(1)]
    # wavelengths of 3-6 px (up to the DFT grid): a 7x7 window holds a whole one (the first set: 7-14 px)
    assert (1 / peak <= 7.5).all() and (1 / peak >= 2.5).all()
    assert len({round(float(r), 3) for r in peak}) >= 2  # at least two wavelengths, with the orientations


def test_ffcnn_ce_loss_gets_its_validated_temperature_unless_one_is_given():
    def scale(method: str, **kw) -> float:
        extra = {"filters": 4, **FF_SMALL} if method == "ffcnn" else {"width_mult": 0.01, **FF_SMALL, "image_size": 28}
        return ffvision.create_method(method, **extra, **kw).blocks[1].loss_fn.keywords["scale"]

    assert scale("ffcnn") == 4.0 and scale("ffcnn", ff_loss="ce") == 16.0
    assert scale("ffcnn", ff_loss="ce", goodness_scale=2.0) == 2.0
    assert scale("hinton", ff_loss="ce") == 4.0  # validated for FF-CNN only


@pytest.mark.parametrize("name,kw", [("hinton", {"width_mult": 0.02, "image_size": 28}), ("ffcnn", {"filters": 4})])
def test_peer_normalisation_revives_a_silent_unit_and_is_off_by_default(name, kw):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, kw.get("image_size", 16), kw.get("image_size", 16)), torch.arange(16) % 10

    def silent_unit_bias(peer_norm: float) -> tuple[float, object]:
        torch.manual_seed(0)
        m = ffvision.create_method(name, **{**FF_SMALL, **kw}, ff_loss="bce", peer_norm=peer_norm)
        lin = m.blocks[1].body.linear
        with torch.no_grad():
            lin.bias[0] = -1e3  # unit 0 of layer 2 never fires: its ReLU passes no gradient
        for _ in range(3):
            m.train_step(x, y)
        return float(lin.bias[0].detach()), m

    still, m0 = silent_unit_bias(0.0)
    assert still == -1e3 and not hasattr(m0, "peer_mean2")  # off: nothing moves it, no buffers
    from ffvision.diagnose import layer_diagnostics

    diag = layer_diagnostics(m0, [(x, y)], lambda a, b: (a, b), 16)  # the silenced unit shows as silent
    assert diag["layers"][1]["silent_units"] >= 1 / m0.blocks[1].body.linear.bias.shape[0]
    moved, m = silent_unit_bias(0.03)
    assert moved > -1e3  # pulled up toward its layer's mean activity
    r = m.peer_mean2
    assert r.shape[0] == m.blocks[1].body.linear.bias.shape[0] and r[0] == 0 and r[1:].max() > 0
    assert "peer_mean2" in m.state_dict()  # the running means travel with checkpoints
    with pytest.raises(ConfigError, match="peer_norm"):
        ffvision.create_method(name, **{**FF_SMALL, **kw}, peer_norm=-1.0)


def test_goodness_negatives_follow_goodness_inference_and_never_the_true_label(monkeypatch):
    torch.manual_seed(0)
    m = ffvision.create_method("hinton", width_mult=0.01, negatives="goodness", vote_from=2, vote_to=3,
                               goodness_scale=2.0, **FF_SMALL)
    x = torch.rand(64, 1, 16, 16)
    belief = m.goodness_belief(x)
    want = m.scores(x, "goodness", select=False).strategies["goodness"]  # the vote over layers 2..3
    assert torch.allclose(belief, 2.0 * want, atol=1e-5)
    y = belief.argmax(1)  # make the believed class the true one: then it may never be drawn
    seen = {}

    def spy(labels, logits, k=None):
        seen["logits"], seen["neg"] = logits, hard_negative_labels(labels, logits, k=k)
        return seen["neg"]

    monkeypatch.setattr("ffvision.methods.ff.hard_negative_labels", spy)
    _, target, _ = m.begin_step(x, y)
    assert target.shape == (128,) and torch.allclose(seen["logits"], belief)  # drawn from the vote's belief
    assert not (seen["neg"] == y[:, None]).any()
    stats = m.train_step(x, y)  # a whole step with goodness negatives runs
    assert stats["layer_correct"].shape == (4,)
    with pytest.raises(ConfigError, match="negatives must be one of uniform, hard, goodness"):
        ffvision.create_method("hinton", width_mult=0.01, negatives="best", **FF_SMALL)


def test_bce_weighs_positives_and_negatives_half_each_for_any_number_of_negatives():
    from ffvision.methods.ff import goodness_loss

    bce = torch.nn.functional.binary_cross_entropy_with_logits
    pos, neg = torch.randn(8), torch.randn(3 * 8)
    one = torch.cat([torch.ones(8), torch.zeros(8)])
    assert torch.allclose(goodness_loss(torch.cat([pos, neg[:8]]), one, "bce", 2.0),
                          bce(2.0 * torch.cat([pos, neg[:8]]), one))  # one negative: the papers' plain mean
    three = torch.cat([torch.ones(8), torch.zeros(24)])
    want = 0.5 * (bce(2.0 * pos, torch.ones(8)) + bce(2.0 * neg, torch.zeros(24)))
    assert torch.allclose(goodness_loss(torch.cat([pos, neg]), three, "bce", 2.0), want)


def test_sgd_steps_the_blocks_as_hintons_reference_code_and_the_probe_keeps_adamw():
    torch.manual_seed(0)
    m = ffvision.create_method("hinton", width_mult=0.01, optimizer="sgd", lr=0.1, momentum=0.5, weight_decay=0.0,
                               **FF_SMALL)
    assert all(isinstance(m.optimizers[f"block{i + 1}"], torch.optim.SGD) for i in m.trained)
    assert isinstance(m.optimizers["probe"], torch.optim.AdamW)
    x, y = torch.rand(8, 1, 16, 16), torch.arange(8)
    w = m.blocks[1].body.linear.weight
    before = w.detach().clone()
    grads = []
    w.register_hook(lambda g: grads.append(g.detach().clone()))
    m.train_step(x, y)
    assert torch.allclose(w.detach(), before - 0.1 * grads[0], atol=1e-6)  # torch starts the running mean at grad
    mid = w.detach().clone()
    m.train_step(x, y)
    # then g <- m g + (1 - m) grad (dampening = momentum), as Hinton's code smooths it
    assert torch.allclose(w.detach(), mid - 0.1 * (0.5 * grads[0] + 0.5 * grads[1]), atol=1e-6)
    with pytest.raises(ConfigError, match="optimizer"):
        ffvision.create_method("hinton", width_mult=0.01, optimizer="rmsprop", **FF_SMALL)
    with pytest.raises(ConfigError, match="momentum"):
        ffvision.create_method("hinton", width_mult=0.01, optimizer="sgd", momentum=1.0, **FF_SMALL)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("name,kw", [("hinton", {"width_mult": 0.02, "image_size": 28}), ("ffcnn", {"filters": 4})])
def test_centre_step_keeps_each_filter_mean_and_still_learns(name, kw, optimizer):
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, kw.get("image_size", 16), kw.get("image_size", 16)), torch.arange(16) % 10

    def run(centre: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        m = ffvision.create_method(name, **{**FF_SMALL, **kw}, optimizer=optimizer, lr=0.1, centre_step=centre)
        lin = m.blocks[1].body.linear
        w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
        for _ in range(3):
            m.train_step(x, y)
        return w0, lin.weight.detach(), b0, lin.bias.detach()

    dims = (1, 2, 3) if name == "ffcnn" else (1,)
    w0, w, b0, b = run(True)
    assert (w - w0).abs().mean() > 1e-6 and (b - b0).abs().max() > 0  # the weights and biases learn
    assert torch.allclose((w - w0).mean(dims), torch.zeros(w.shape[0]), atol=1e-6)  # no filter's mean moved
    w0, w, _, _ = run(False)  # off (the default): filter means move freely
    assert (w - w0).mean(dims).abs().max() > 1e-7


def test_centre_step_is_ffcnns_default_not_hintons_nor_the_paper_recipes():
    from pathlib import Path

    from ffvision.config import load_recipe

    assert ffvision.create_method("ffcnn", filters=4, **FF_SMALL).centre_step
    assert not ffvision.create_method("hinton", width_mult=0.02, **{**FF_SMALL, "image_size": 28}).centre_step
    recipes = sorted((Path(ffvision.__file__).parent / "recipes").glob("ffcnn-*.yaml"))
    assert len(recipes) == 4
    for p in recipes:
        assert load_recipe(p)["centre_step"] is False  # the papers' plain optimizer step
