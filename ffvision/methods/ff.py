"""Goodness-based Forward-Forward with labels in the input: `ffcnn` and `hinton`.

* `ffcnn` - Scodellaro, Kulkarni, Alves, Schroeter, "Training Convolutional Neural Networks
  with the Forward-Forward algorithm" (arXiv 2312.14924): a spatially-extended label pattern
  (Fourier or morphological, core/labels.py) mixed into the image, x_c = (1 - K) x + K T_c.
* `hinton` - Hinton, "The Forward-Forward Algorithm" (arXiv 2212.13345): an MLP with a
  one-hot label written into the first pixels.

Both, per block l (input detached, RMS-normalised between layers):
  G_l = sum of squared post-ReLU activities;  logit_l = G_l - theta_l  (theta_l: the number
  of units);  L_l = BCE-with-logits(logit_l, 1) on the positive input (true label) +
  BCE(logit_l, 0) on the negative input (a label drawn uniformly from the others).
  That is `goodness="sum"` (the recipes). The default is `goodness="mean"` with theta = 1:
  the same logit divided by the number of units. With the sum the logits start in the
  hundreds or thousands, positives and negatives saturate on the same side and short runs
  do not separate them at all (measured; docs/results.md); the mean keeps them O(1).
Layer 1 may be excluded (`first_layer_contributes=False`): it then keeps its random weights
and its goodness is not summed at inference.

Prediction:
  goodness  overlay every class's label, sum the goodness over contributing layers, argmax
            (one forward pass per class, batched over classes in chunks);
  probe     a linear classifier on the pooled, detached activities of the contributing
            layers for a neutral input (the mean pattern / 1/N in every label pixel),
            trained alongside with its own optimizer and cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.core import GoodnessReadout, LocalBlock, make_label_encoding, negative_labels
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.registry import register_method


class GoodnessFF(LocalMethod):
    """Positive/negative passes, per-layer goodness losses, goodness and probe inference."""

    strategies = ("goodness", "probe")
    default_strategy = "goodness"
    supports_pipeline = False  # positive, negative and neutral passes: its own train_step

    def __init__(
        self,
        *,
        model: str,
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        labels: str = "fourier",
        label_intensity: float = 0.35,
        threshold: float | None = None,
        goodness: str = "mean",
        first_layer_contributes: bool = True,
        width_mult: float = 1.0,
        dropout: float | None = None,
        filters: int | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        probe_lr: float = 1e-2,
        probe_grid: int = 4,
        max_eval_batch: int = 4096,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        if goodness not in ("sum", "mean"):
            raise ConfigError(f"goodness must be sum or mean, got {goodness!r}")
        if probe_grid < 1 or max_eval_batch < 1:
            raise ConfigError("probe_grid and max_eval_batch must be positive")
        net = build_model(model, in_channels=in_channels, num_classes=0, width_mult=width_mult, dropout=dropout,
                          image_size=image_size, filters=filters)
        if not hasattr(net, "layers") or not hasattr(net, "feature_info"):
            raise ConfigError(f"{self.name} needs a layered model (ffcnn3, vgg8, mlp, ...), not {model!r}")
        self.labels = make_label_encoding(labels, num_classes, in_channels, image_size, label_intensity, seed)
        self.lr, self.weight_decay, self.probe_lr = lr, weight_decay, probe_lr
        self.first_layer_contributes = first_layer_contributes
        self.max_eval_batch = max_eval_batch
        self.stem = net.stem
        probe_dims = []
        for layer, info in zip(net.layers, net.feature_info):
            c, size = int(info["num_chs"]), int(info["size"])
            units = c * size * size  # conv: C*H*W (before pooling); dense: C (size 1)
            theta = threshold if threshold is not None else (units if goodness == "sum" else 1.0)
            self.blocks.append(LocalBlock(layer, GoodnessReadout(theta, goodness), post=layer.post,
                                          loss=F.binary_cross_entropy_with_logits))
            out_size = size // 2 if info["pool"] else size
            probe_dims.append(c * min(probe_grid, out_size) ** 2)
        if len(self.blocks) < 2 and not first_layer_contributes:
            raise ConfigError("first_layer_contributes=False needs at least two layers")
        self.contributing = [i for i in range(len(self.blocks)) if i > 0 or first_layer_contributes]
        self.probe_grid = probe_grid
        self.probe = nn.Linear(sum(probe_dims[i] for i in self.contributing), num_classes)
        nn.init.zeros_(self.probe.weight)
        nn.init.zeros_(self.probe.bias)
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """One AdamW per contributing block, one for the probe."""
        groups = {f"block{i + 1}": (list(self.blocks[i].parameters()), self.lr, self.weight_decay)
                  for i in self.contributing}
        groups["probe"] = (list(self.probe.parameters()), self.probe_lr, 0.0)
        return groups

    def trainable_units(self) -> dict[str, nn.Module]:
        """Every contributing block, and the probe."""
        return {**super().trainable_units(), "probe": self.probe}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input transform (identity for ffcnn3 and mlp)."""
        return self.stem(x)

    def _pooled(self, out: torch.Tensor) -> torch.Tensor:
        """Probe features of one layer's (detached) output."""
        if out.ndim == 4:
            out = F.adaptive_avg_pool2d(out.float(), min(self.probe_grid, out.shape[-1]))
        return out.float().flatten(1)

    def probe_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The probe on the activities of a neutral-label input, (B, N)."""
        outs = [o.out for o in self.iter_outputs(self.labels.neutral(x))]
        return self.probe(torch.cat([self._pooled(outs[i]) for i in self.contributing], dim=1))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Positive and negative pass through every block (one batch of 2B), then the probe."""
        self.check_inputs(x, y)
        self.set_train_mode()
        n = y.shape[0]
        y_neg = negative_labels(y, self.num_classes)
        h = self.prepare(torch.cat([self.labels.encode(x, y), self.labels.encode(x, y_neg)]))  # (2B, ...)
        target = torch.cat([torch.ones(n, device=x.device), torch.zeros(n, device=x.device)])
        losses, correct = [], []
        for i, block in enumerate(self.blocks):
            trains = i in self.contributing
            with torch.set_grad_enabled(trains), self.autocast(h):
                o = self.unit(f"block{i + 1}", block)(h)
                loss = block.local_loss(o.scores.float(), target)
            if trains:
                self._update(f"block{i + 1}", loss)
            losses.append(loss.detach())
            correct.append(((o.scores.detach() > 0) == target.bool()).float().sum() / 2)
            h = o.out
        with torch.no_grad():
            outs = [o.out for o in self.iter_outputs(self.labels.neutral(x))]
            feats = torch.cat([self._pooled(outs[i]) for i in self.contributing], dim=1)
        logits = self.unit("probe", self.probe)(feats)
        probe_loss = F.cross_entropy(logits, y)
        self._update("probe", probe_loss)
        layer_loss = torch.stack(losses).float()
        return {"layer_loss_sum": layer_loss * n, "layer_correct": torch.stack(correct),
                "probe_loss_sum": probe_loss.detach() * n,
                "loss_sum": layer_loss[self.contributing].sum() * n + probe_loss.detach() * n,
                "correct": (logits.detach().argmax(1) == y).sum()}  # train accuracy: the probe's

    def goodness_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Goodness logit of every layer for every class's label, (L, B, N)."""
        b, n = x.shape[0], self.num_classes
        per_chunk = max(1, self.max_eval_batch // max(1, b))
        out = torch.empty(len(self.blocks), b, n, device=x.device)
        for start in range(0, n, per_chunk):
            cls = torch.arange(start, min(n, start + per_chunk), device=x.device)
            y = cls.repeat_interleave(b)  # (k*B,) class-major
            xs = self.labels.encode(x.repeat(len(cls), *([1] * (x.ndim - 1))), y)
            for i, o in enumerate(self.iter_outputs(xs)):
                out[i, :, start:start + len(cls)] = o.scores.float().view(len(cls), b).T
        return out

    def scores(self, x: torch.Tensor, strategy: str | None = None) -> dict[str, torch.Tensor]:
        """Goodness (one pass per class) and probe scores; per-layer goodness as 'layer/l'."""
        res: dict[str, torch.Tensor] = {}
        if strategy in (None, "goodness"):
            per_layer = self.goodness_scores(x)
            res.update({f"layer/{i + 1}": s for i, s in enumerate(per_layer)})
            res["goodness"] = per_layer[self.contributing].sum(0)
        if strategy in (None, "probe"):
            res["probe"] = self.probe_logits(x)
        return res

    def cam_targets(self, x: torch.Tensor, cls: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: the feature map for class cls's label overlaid, and its goodness G (B,)."""
        out = []
        with torch.enable_grad():
            for o in self.iter_outputs(self.labels.encode(x, cls)):
                if o.h.ndim != 4:
                    raise ConfigError(f"class activation maps need convolutional feature maps; {self.name} "
                                      "on this model has none")
                out.append((o.h, o.scores.float()))
        return out

    def strategy_info(self) -> dict[str, dict[str, int]]:
        """Parameters, layers and forward passes per image each strategy needs."""
        blocks = self.trainable_parameters(self.blocks)
        n = len(self.blocks)
        return {"goodness": {"trainable_parameters": blocks, "layers": n, "forward_passes": self.num_classes},
                "probe": {"trainable_parameters": blocks + self.trainable_parameters(self.probe), "layers": n,
                          "forward_passes": 1}}


@register_method
class FFCNN(GoodnessFF):
    """FF-CNN with spatially-extended labels (Fourier or morphological patterns)."""

    name = "ffcnn"

    def __init__(self, *, model: str = "ffcnn3", labels: str = "fourier", **kwargs: object) -> None:
        if labels == "onehot":
            raise ConfigError("ffcnn uses spatial labels (fourier or morphological); onehot is the hinton method")
        super().__init__(model=model, labels=labels, **kwargs)


@register_method
class Hinton(GoodnessFF):
    """Hinton's original FF: MLP, one-hot label in the first pixels, goodness vs threshold."""

    name = "hinton"

    def __init__(self, *, model: str = "mlp", labels: str = "onehot", **kwargs: object) -> None:
        super().__init__(model=model, labels=labels, **kwargs)
