"""DeeperForward and HCL-FF: channel-wise layers trained locally, shortcuts detached, three strategies chosen on
validation; HCL-FF's class hierarchy and contrastive term."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_cli import assert_one_line_error, run_cli

import ffvision
from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import ConfigError
from ffvision.methods.hierarchy import class_prototypes, linkage_merges, load_hierarchy, tree_levels
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


def test_a_run_checkpoints_and_evaluates_the_same(fast_cfg: dict, capsys):
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
    res = evaluate_checkpoint(run / "best.pt", device="cpu", inference=False)
    on_disk = json.loads((run / "summary.json").read_text())
    assert res["test_accuracy_by_strategy"] == pytest.approx(on_disk["test_accuracy_by_strategy"])
    # its head's class rows give a hierarchy HCL-FF takes (the official CIFAR procedure)
    code, out, _ = run_cli(capsys, "hierarchy", str(run), "--out", str(run / "tree.json"))
    levels = load_hierarchy(str(run / "tree.json"), 10)
    assert code == 0 and f"{len(levels)} levels" in out
    assert len(levels[0]) == 2 and sorted(levels[-1]) == [[c] for c in range(10)]
    assert ffvision.create_method("hclff", **{**SMALL, "hierarchy": str(run / "tree.json")}).level_of[0] == 0


def test_backprop_trains_the_same_network():
    m = ffvision.create_method("bp", model="cwresnet17", **SMALL)
    stats = m.train_step(*batch())
    assert len(m.blocks) == 1 and torch.isfinite(stats["loss_sum"])


def test_hclff_layers_learn_their_hierarchy_level_coarse_to_fine():
    from ffvision.methods.hclff import level_of_layers

    levels = load_hierarchy("fashion-mnist", 10)
    assert [len(level) for level in levels] == [2, 4, 8, 9, 10]
    assert level_of_layers(17, 5, "linear") == [0] * 4 + [1] * 3 + [2] * 4 + [3] * 3 + [4] * 3  # as the official code
    assert level_of_layers(17, 5, "increasing") == [0, 1, 2, 3] + [4] * 13
    m = ffvision.create_method("hclff", **{**SMALL, "hierarchy": "fashion-mnist"})
    scores, y = torch.randn(12, 10), torch.arange(12) % 10
    first = m.blocks[0]  # level 1: {5, 7, 8, 9} against the rest
    group = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0, 0, 0])
    coarse = torch.stack([scores[:, group == g].mean(1) for g in (0, 1)], 1)
    expected = torch.nn.functional.cross_entropy(coarse, group[y])
    assert torch.allclose(first.local_loss(scores, y), expected)
    assert torch.allclose(m.blocks[-1].local_loss(scores, y), torch.nn.functional.cross_entropy(scores, y))


def test_hclff_contrastive_term_reaches_only_its_layer_and_projection_head():
    m = ffvision.create_method("hclff", **{**SMALL, "hierarchy": "fashion-mnist"})
    x, y = batch()
    m.train()
    h, k = m.prepare(x), 5
    for i, block in enumerate(m.blocks):
        o = block(h)
        if i == k:
            (block.local_loss(o.scores, y) + m.block_regulariser(i, h, o, y)).backward()
        h = o.out
    for i, (block, proj) in enumerate(zip(m.blocks, m.projections)):
        for module in (block, proj):
            grads = [p.grad for p in module.parameters()]
            assert all(g is not None for g in grads) if i == k else all(g is None for g in grads), i
    assert m.head.fc.weight.grad is None


def test_supervised_contrastive_loss_and_its_temperature():
    from ffvision.methods.hclff import supcon_loss, supcon_temperature

    y = torch.tensor([0, 0, 1, 1])
    points = torch.tensor([[1.0, 0.01], [1.0, -0.01], [0.01, 1.0], [-0.01, 1.0]])
    clustered = torch.nn.functional.normalize(points, dim=1)
    mixed = clustered[[0, 2, 1, 3]]
    assert supcon_loss(clustered, y, 0.2) < supcon_loss(mixed, y, 0.2)
    assert supcon_temperature(0, 1000, 0.05) == 0.8 and supcon_temperature(50, 1000, 0.05) == pytest.approx(0.2)
    assert supcon_temperature(999, 1000, 0.05) == pytest.approx(0.1, abs=1e-4)


@pytest.mark.parametrize("bad,message", [("missing.json", "no such file, and not a shipped one"),
                                         ("broken", "not valid JSON"), ("overlap", "does not split the 10 classes")])
def test_a_bad_hierarchy_file_is_a_one_line_error(capsys, tmp_path, bad, message):
    path = tmp_path / f"{bad}.json"
    if bad == "broken":
        path.write_text("{levels: ")
    elif bad == "overlap":
        path.write_text('{"levels": [[[0, 1, 2], [2, 3, 4, 5, 6, 7, 8, 9]]]}')
    code, _, err = run_cli(capsys, "train", "--method", "hclff", "--hierarchy", str(path), "--dry-run",
                           "--train-subset", "64", "--width-mult", "0.1", "--device", "cpu")
    assert_one_line_error(code, err, message)


def test_ward_linkage_merges_the_pair_that_adds_least_within_cluster_variance():
    torch.manual_seed(0)
    points = torch.randn(9, 4).double()
    clusters = {i: [i] for i in range(9)}

    def cost(a: list[int], b: list[int]) -> float:  # the increase of the summed squared distances to the mean
        ss = [float(((points[c] - points[c].mean(0)) ** 2).sum()) for c in (a, b, a + b)]
        return ss[2] - ss[0] - ss[1]

    for step, merged in enumerate(linkage_merges(points, "ward")):
        best = min(((i, j) for i in clusters for j in clusters if i < j), key=lambda p: cost(*map(clusters.get, p)))
        assert merged == best
        clusters[9 + step] = clusters.pop(best[0]) + clusters.pop(best[1])
    assert linkage_merges(points, "single")[0] == linkage_merges(points, "complete")[0]  # the closest pair first
    with pytest.raises(ConfigError, match="unknown linkage"):
        linkage_merges(points, "median")


def test_a_tree_is_read_level_by_level_from_the_root():
    # ((0, 1), (2, (3, 4))): 5 = {0, 1}, 6 = {3, 4}, 7 = {2, 3, 4}, 8 = the root
    levels = tree_levels([(0, 1), (3, 4), (2, 6), (5, 7)], 5)
    assert levels == [[[0, 1], [2, 3, 4]], [[0], [1], [2], [3, 4]], [[3], [4], [0], [1], [2]]]
    assert tree_levels([], 1) == [[[0]]]


def test_shipped_hierarchies_and_a_headless_method():
    assert [len(level) for level in load_hierarchy("mnist", 10)] == [2, 3, 5, 8, 9, 10]
    with pytest.raises(ConfigError, match="built from a linear head"):
        class_prototypes(ffvision.create_method("asge", num_classes=10, in_channels=1, image_size=16,
                                                width_mult=0.125))
