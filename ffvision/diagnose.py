"""Per-layer diagnostics of a trained checkpoint: does each layer's score pick the right label?

For every layer's class scores (goodness logits for FF-CNN and Hinton's FF: one per label
overlay; the readout scores for ASGE and Scalable FF) on a sample of images:

* positive vs negative: the distribution of the true label's score against the scores of
  the wrong labels, and the fraction of (true, wrong) pairs ranked right (AUC-like);
* rank of the true label among the N classes (1 = the layer classifies the image right);
* label sensitivity: how much the score moves when only the label changes (std over labels
  for a fixed image) against when only the image changes (std over images for a fixed
  label). A ratio far below 1 means the layer mostly measures the image, not the label -
  the failure mode of FF whose goodness does not separate.
* label bias: how much of a layer's error is a constant preference for some labels whatever the
  image - the spread over labels of each label's mean score, and the accuracy once each label's
  mean score is subtracted (a label the layer scores high for every image wins the argmax
  although it never beats the true label of the images it belongs to). Meant for goodness scores,
  which share one scale across labels; a classifier's logits (the probe) need not.
* unit activity: the fraction of a layer's units (a conv's channels) that never fire on the
  sample (FF with the true label overlaid), and the fraction of activities above zero. Layers
  whose units have gone silent cannot learn again through their ReLU (peer normalisation,
  `--peer-norm`, is the remedy Hinton's code uses).

`ffvision diagnose RUN_DIR` writes diagnose.json and diagnose.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ffvision.methods.base import LocalMethod


@torch.no_grad()
def layer_diagnostics(method: LocalMethod, loader: Any, to_device: Any, max_images: int) -> dict[str, Any]:
    """Per-layer statistics (and the raw score samples for plots) over up to max_images images."""
    method.eval()
    layers: list[list[torch.Tensor]] = []
    strategies: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    fired: list[torch.Tensor] = []  # per layer: how often each unit was above zero
    active: list[float] = []  # per layer: activities above zero
    total: list[float] = []  # per layer: activities counted
    n = 0
    for x, y in loader:
        x, y = to_device(x, y)
        x, y = x[: max_images - n], y[: max_images - n]
        inp = method.labels.encode(x, y) if hasattr(method, "labels") else x  # FF: the positive input
        for i, o in enumerate(method.iter_outputs(inp)):
            on = o.h.detach() > 0
            per_unit = on.flatten(2).sum(2).sum(0) if on.ndim > 2 else on.sum(0)
            if i == len(fired):
                fired.append(torch.zeros_like(per_unit, dtype=torch.long)), active.append(0.0), total.append(0.0)
            fired[i] += per_unit
            active[i] += float(on.sum())
            total[i] += on.numel()
        scores = method.scores(x)
        layers = layers or [[] for _ in scores.layers]
        for acc, s in zip(layers, scores.layers):
            acc.append(s.float().cpu())
        for k, s in scores.strategies.items():
            strategies.setdefault(k, []).append(s.float().cpu())
        labels.append(y.cpu())
        n += y.shape[0]
        if n >= max_images:
            break
    y = torch.cat(labels)
    out: dict[str, Any] = {"images": n, "num_classes": method.num_classes, "layers": [], "strategies": {}}
    samples: dict[str, dict[str, torch.Tensor]] = {}
    named = [(f"layer/{i + 1}", chunks, True) for i, chunks in enumerate(layers)]
    named += [(k, strategies[k], False) for k in method.strategies if k in strategies]
    for k, chunks, is_layer in named:
        s = torch.cat(chunks)  # (B, N)
        stats, pos, neg = score_statistics(s, y)
        if is_layer and len(out["layers"]) < len(fired):
            j = len(out["layers"])
            stats["silent_units"] = float((fired[j] == 0).float().mean())
            stats["active_fraction"] = active[j] / max(total[j], 1.0)
        (out["layers"].append({"name": k, **stats}) if is_layer else out["strategies"].__setitem__(k, stats))
        samples[k] = {"positive": pos, "negative": neg, "rank": stats_rank(s, y)}
    out["_samples"] = samples
    return out


def stats_rank(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rank (1 = best) of the true label's score among the N classes, per image; a tie counts against it."""
    true = s.gather(1, y[:, None])
    return (s >= true).sum(1)  # itself, every better class and every equal one


def score_statistics(s: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Statistics of one layer's scores s (B, N) against labels y: separation, ranks, sensitivity."""
    b, n = s.shape
    true = s.gather(1, y[:, None])  # (B, 1)
    wrong = torch.ones_like(s, dtype=torch.bool).scatter(1, y[:, None], False)
    neg = s[wrong].view(b, n - 1)
    rank = stats_rank(s, y)
    label_sd = s.std(1).mean()  # the label changes, the image stays
    image_sd = s.std(0).mean()  # the image changes, the label stays
    stats = {
        "accuracy": float((rank == 1).float().mean()),
        "pairs_ranked_right": float((true > neg).float().mean()),
        "mean_rank": float(rank.float().mean()),
        "rank_histogram": torch.bincount(rank - 1, minlength=n).tolist(),
        "positive_mean": float(true.mean()), "positive_std": float(true.std()),
        "negative_mean": float(neg.mean()), "negative_std": float(neg.std()),
        "label_sensitivity": float(label_sd), "image_sensitivity": float(image_sd),
        "label_to_image_ratio": float(label_sd / image_sd.clamp_min(1e-12)),
        "label_bias": float(s.mean(0).std()),  # the spread of the labels' mean scores over these images
        "accuracy_without_label_bias": float(((s - s.mean(0)).argmax(1) == y).float().mean()),
    }
    return stats, true.squeeze(1), neg.flatten()


def plot_diagnostics(diag: dict[str, Any], path: str | Path) -> None:
    """One column per layer: positive vs negative score histograms and the true label's rank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [e["name"] for e in diag["layers"]] + list(diag["strategies"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5.6), squeeze=False)
    for j, name in enumerate(names):
        smp = diag["_samples"][name]
        stats = next((e for e in diag["layers"] if e["name"] == name), None) or diag["strategies"][name]
        ax = axes[0][j]
        lo = float(torch.minimum(smp["positive"].min(), smp["negative"].min()))
        hi = float(torch.maximum(smp["positive"].max(), smp["negative"].max()))
        bins = torch.linspace(lo, hi if hi > lo else lo + 1, 41).tolist()
        ax.hist(smp["negative"].numpy(), bins=bins, density=True, alpha=0.5, label="wrong labels")
        ax.hist(smp["positive"].numpy(), bins=bins, density=True, alpha=0.5, label="true label")
        ax.set_title(f"{name}\nacc {stats['accuracy']:.3f}, label/image {stats['label_to_image_ratio']:.2f}",
                     fontsize=9)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
        ax = axes[1][j]
        hist = stats["rank_histogram"]
        ax.bar(range(1, len(hist) + 1), [h / max(1, sum(hist)) for h in hist])
        ax.set_xlabel("rank of the true label", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def public(diag: dict[str, Any]) -> dict[str, Any]:
    """The JSON-serialisable part (without the raw score samples)."""
    return {k: v for k, v in diag.items() if not k.startswith("_")}
