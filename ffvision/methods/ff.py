"""Goodness-based Forward-Forward with labels in the input: `ffcnn` and `hinton`.

* `ffcnn` - Scodellaro, Kulkarni, Alves, Schroeter, "Training Convolutional Neural Networks
  with the Forward-Forward algorithm" (arXiv 2312.14924): a spatially-extended label pattern
  (Fourier or morphological, core/labels.py) mixed into the image, x_c = (1 - K) x + K T_c.
* `hinton` - Hinton, "The Forward-Forward Algorithm" (arXiv 2212.13345): an MLP with a
  one-hot label written into the first pixels.

Both, per block l (input detached, RMS-normalised between layers and, with `input_norm`,
before layer 1 too, as in Hinton's reference code):
  G_l = sum (goodness="sum") or mean (goodness="mean") of the squared post-ReLU activities;
  logit_l = G_l - theta_l  (theta_l: the number of units for the sum, 1 for the mean).
  ff_loss="bce" (the papers): BCE-with-logits(s * logit_l, 1) on the positive input (true
      label) + BCE(s * logit_l, 0) on the negative input (a wrong label).
  ff_loss="symba": softplus(-s * (G_l(x, y) - G_l(x, y_neg))), the positive and negative of
      the same image compared directly (Lee & Song 2023, "SymBa"); the threshold cancels.
  ff_loss="ce": every class's label is overlaid on every image and the layer's goodness of
      the N inputs are the logits of a softmax, cross_entropy(s * G_l(x, .), y): all N - 1
      negatives at once, and exactly the quantity goodness inference takes the argmax of
      (one pass per class for layers 2..L, so training costs about N/2 times more).
  s is `goodness_scale` (a temperature; FF-CNN's default is 4, and 16 under "ce", each chosen on the
  validation split). Negatives (`negatives`) are drawn uniformly from
  the other classes, "hard": in proportion to the probe's current belief on the neutral
  input (never the true class), as in Hinton's reference code, or "goodness": in proportion to
  goodness inference's own belief, softmax(s * the voting layers' summed logit) over the wrong
  classes (one extra no-grad pass per class and step: the wrong labels that win the vote are the
  ones trained against). With `num_negatives` k > 1,
  k distinct wrong labels per image: symba becomes the cross-entropy of the positive
  against its k negatives (a sampled softmax; k = N - 1 is the "ce" loss), bce scores each, the
  positives and the negatives weighing half each, as with one negative (at k times the positive's
  weight, 9 negatives collapsed the recipe on validation: 11%).
With `peer_norm` W > 0 each trained layer also minimises W * mean_j (r_j - mean r)^2 over the running mean
activities r_j of its units (Hinton's peer normalisation; block_regulariser), so units cannot go silent.
Which layers learn (`train_first_layer`: layer 1 may keep its random weights) and which
layers vote at inference (goodness summed over layers vote_from..vote_to) are separate
choices: Hinton sums goodness from layer 2 on; ffvision chooses the range on the validation
split unless it is given.

Prediction:
  goodness  overlay every class's label, sum the goodness over the voting layers, argmax.
            The label mix is affine in the image, so layer 1's pre-activation for all N
            labels is computed from one pass over the image and one over the N templates
            (conv(a x + b T_c) = a conv(x) + b conv(T_c)); layers 2..L run once per class.
  probe     a linear classifier on the pooled, detached activities of the trained layers
            for a neutral input (the mean pattern / 1/N in every label pixel), trained
            alongside with its own optimizer and cross-entropy.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.core import (
    BlockOutput,
    GoodnessReadout,
    LocalBlock,
    hard_negative_labels,
    make_label_encoding,
    negative_labels,
    rms_normalize,
)
from ffvision.core.metrics import Counts, Scores, best_range
from ffvision.core.norm import TINY
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.options import METHODS
from ffvision.methods.registry import register_method
from ffvision.models.hybrid import group_layers

PEER_MOMENTUM = 0.9  # running mean of each unit's activity for peer normalisation (Hinton's reference code)
EVAL_PASS_BYTES = 32 * 2**20  # the widest float32 feature map one evaluation pass may hold (auto max_eval_batch)


def goodness_loss(scores: torch.Tensor, target: torch.Tensor, kind: str, scale: float) -> torch.Tensor:
    """Local FF loss of [positives; negatives_1; ...; negatives_k] ((1+k)B scores; target: 1 / 0 per row),
    or for "ce" of every class's overlay ((N*B,) class-major; target: the labels (B,))."""
    if kind == "bce":  # positives and negatives weigh half each, whatever k (k = 1: the plain mean over 2B rows)
        per_row = F.binary_cross_entropy_with_logits(scale * scores, target, reduction="none")
        return 0.5 * ((per_row * target).sum() / target.sum() + (per_row * (1 - target)).sum() / (1 - target).sum())
    b = target.shape[0] if kind == "ce" else int((target > 0.5).sum())
    logits = scale * scores.view(-1, b).T  # (B, N) for "ce"; (B, 1+k) for symba, the positive first
    if kind == "ce":
        return F.cross_entropy(logits, target)
    # symba: the positive against its k negatives of the same image; k = 1 is softplus(-s (G+ - G-))
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=logits.device))


def centre_steps(opt: torch.optim.Optimizer) -> None:
    """Make every step of `opt` leave each weight row's mean as it was (conv: each filter's, over all its taps).

    Each row's mean is kept before the step and restored after it (the step's mean is the change of the row's
    mean: no copy of the weights is needed). FF's inputs to layers 2..L are
    non-negative ReLU outputs, so one filter's tap gradients tend to share a sign, and Adam moves every weight by
    about lr whatever its gradient: the filter's response to every image moves together by ~lr x fan-in x the mean
    input, enough in one step to silence it for good (docs/methods.md, FF-CNN). Biases step as before.
    """
    weights = [p for g in opt.param_groups for p in g["params"] if p.ndim >= 2]
    before: list[torch.Tensor] = []

    def row_mean(w: torch.Tensor) -> torch.Tensor:
        return w.detach().mean(dim=tuple(range(1, w.ndim)), keepdim=True)

    def save(*_: Any) -> None:
        before[:] = [row_mean(w) for w in weights]

    @torch.no_grad()
    def centre(*_: Any) -> None:
        for w, m0 in zip(weights, before):
            w.sub_(row_mean(w) - m0)
        before.clear()

    opt.register_step_pre_hook(save)
    opt.register_step_post_hook(centre)


def linear_no_bias(layer: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The layer's linear map without its bias (a Linear layer sees the flattened input)."""
    if isinstance(layer, nn.Conv2d):
        return F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x.flatten(1), layer.weight)


class GoodnessFF(LocalMethod):
    """Positive/negative passes, per-layer goodness losses, goodness and probe inference (the subclasses'
    specs name them and their strategies)."""

    default_val_images = 2000  # goodness inference costs one pass per class: bound the per-epoch check
    native_image_size = True  # no pooling to feed: 28-px MNIST-family images are not upscaled (1.3x fewer pixels)

    def __init__(self, *, num_classes: int, in_channels: int = 1, image_size: int = 28, seed: int = 0,
                 **options: Any) -> None:
        """Options: FFCNNOptions / HintonOptions (methods/options.py); None keeps a default."""
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed)
        o = self.options_of(options)
        self.check_labels(o.labels)
        if o.num_negatives >= num_classes:  # its lower bound is declared; the upper one is the data's
            raise ConfigError(f"num_negatives must be in 1..{num_classes - 1}, got {o.num_negatives}")
        model, vote_from, vote_to = o.model, o.vote_from, o.vote_to
        train_first_layer = o.train_first_layer or o.layers_per_block > 1  # a hybrid block 1 is more than layer 1
        net = build_model(model, in_channels=in_channels, num_classes=0, width_mult=o.width_mult, dropout=o.dropout,
                          image_size=image_size, filters=o.filters)
        if not hasattr(net, "layers") or not hasattr(net, "feature_info"):
            raise ConfigError(f"{self.name} needs a layered model (ffcnn3, vgg8, mlp, ...), not {model!r}")
        net = group_layers(net, o.layers_per_block)  # hybrid blocks: one block per group of layers
        n_layers = len(net.layers)
        for name, v in (("vote_from", vote_from), ("vote_to", vote_to)):
            if v is not None and not 1 <= v <= n_layers:
                raise ConfigError(f"{name} must be a layer number in 1..{n_layers}, got {v}")
        if vote_from is not None and vote_to is not None and vote_from > vote_to:
            raise ConfigError(f"vote_from ({vote_from}) cannot be after vote_to ({vote_to})")
        if n_layers < 2 and not train_first_layer:
            raise ConfigError("train_first_layer=False needs at least two layers")
        self.labels = make_label_encoding(o.labels, num_classes, in_channels, image_size, o.label_intensity, seed)
        self.lr, self.weight_decay, self.probe_lr = o.lr, o.weight_decay, o.probe_lr
        self.negatives, self.ff_loss, self.num_negatives = o.negatives, o.ff_loss, o.num_negatives
        self.goodness_scale = o.goodness_scale
        self.optimizer_name, self.momentum = o.optimizer, o.momentum
        self.centre_step = o.centre_step
        # A model whose stem RMS-normalises (vgg8) already normalises its input; identity stems
        # (ffcnn3, mlp) are normalised here when input_norm is on.
        self.stem = net.stem
        self.input_norm = o.input_norm and isinstance(self.stem, nn.Identity)
        loss = functools.partial(goodness_loss, kind=o.ff_loss, scale=o.goodness_scale)
        probe_dims, widest = [], 1
        for layer, info in zip(net.layers, net.feature_info):
            c, size = int(info["num_chs"]), int(info["size"])
            units = c * size * size  # conv: C*H*W (before pooling); dense: C (size 1)
            widest = max(widest, units)
            theta = o.threshold if o.threshold is not None else (units if o.goodness == "sum" else 1.0)
            self.blocks.append(LocalBlock(layer, GoodnessReadout(theta, o.goodness), post=layer.post, loss=loss))
            out_size = size // 2 if info["pool"] else size
            probe_dims.append(c * min(o.probe_grid, out_size) ** 2)
        # Rows (images x labels) per evaluation pass: by default as many as keep the widest layer's
        # float32 map under EVAL_PASS_BYTES. Larger passes are mapped and zeroed afresh by the
        # allocator each time: 128-filter FF-CNN goodness ran at 9-10 img/s in passes of 4,096 rows
        # and at 24-26 in passes of 64-128 (measured).
        self.max_eval_batch = o.max_eval_batch or max(1, EVAL_PASS_BYTES // (4 * widest))
        self.trained = [i for i in range(n_layers) if i > 0 or train_first_layer]
        self.frozen = set(range(n_layers)) - set(self.trained)  # a fixed (random) layer 1 learns nothing
        # Goodness inference sums layers vote_from..vote_to. An end that is not given is chosen on the
        # validation split after every epoch (all layers until then); the range is a buffer, so
        # checkpoints carry the choice.
        self.vote_fixed = (vote_from, vote_to)
        self.register_buffer("vote_range", torch.tensor([vote_from or 1, vote_to or n_layers]))
        # Peer normalisation (Hinton's reference code): a running mean of every unit's (conv: channel's) activity
        # per trained layer, a buffer so checkpoints carry it.
        self.peer_norm = o.peer_norm
        if self.peer_norm > 0:
            for i in self.trained:
                self.register_buffer(f"peer_mean{i + 1}", torch.zeros(int(net.feature_info[i]["num_chs"])))
        self.probe_grid = o.probe_grid
        self.probe = nn.Linear(sum(probe_dims[i] for i in self.trained), num_classes)
        nn.init.zeros_(self.probe.weight)
        nn.init.zeros_(self.probe.bias)
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """One AdamW per trained block, one for the probe."""
        groups = {f"block{i + 1}": (list(self.blocks[i].parameters()), self.lr, self.weight_decay)
                  for i in self.trained}
        groups["probe"] = (list(self.probe.parameters()), self.probe_lr, 0.0)
        return groups

    def make_optimizer(self, name: str, params: list[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
        """AdamW, or for the blocks with optimizer="sgd" SGD with momentum as Hinton's reference code steps it.

        His code smooths the gradient, g <- m g + (1 - m) grad, and steps w <- w + lr (g - wc w): torch's SGD with
        dampening = momentum and weight_decay = wc (the same steps, but for the first: torch starts the running
        mean at the first gradient, his at zero). The probe keeps AdamW (it only reads the features). With
        centre_step the blocks' optimizers keep each filter's mean through every step (`centre_steps`).
        """
        if self.optimizer_name == "sgd" and name.startswith("block"):
            opt = torch.optim.SGD(params, lr=lr, momentum=self.momentum, dampening=self.momentum, weight_decay=wd)
        else:
            opt = super().make_optimizer(name, params, lr, wd)
        if self.centre_step and name.startswith("block"):
            centre_steps(opt)
        return opt

    def trainable_units(self) -> dict[str, nn.Module]:
        """Every trained block, and the probe."""
        return {**super().trainable_units(), "probe": self.probe}

    def check_labels(self, labels: str) -> None:
        """ConfigError for a label encoding the method does not use (make_label_encoding checks the name)."""

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input transform, then (input_norm) per-sample RMS normalisation."""
        x = self.stem(x)
        return rms_normalize(x) if self.input_norm else x

    def _pooled(self, out: torch.Tensor) -> torch.Tensor:
        """Probe features of one layer's (detached) output."""
        if out.ndim == 4:
            out = F.adaptive_avg_pool2d(out.float(), min(self.probe_grid, out.shape[-1]))
        return out.float().flatten(1)

    def probe_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled activities of the trained layers for the neutral-label input, (B, D)."""
        outs = [o.out for o in self.iter_outputs(self.labels.neutral(x))]
        return torch.cat([self._pooled(outs[i]) for i in self.trained], dim=1)

    def probe_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The probe on the activities of a neutral-label input, (B, N)."""
        return self.probe(self.probe_features(x))

    def begin_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Neutral pass (probe update, hard negatives), then the block loop's input: [positives; negatives].

        symba / bce: ((1+k)B rows: the true label, then k wrong ones; target 1 / 0 per row).
        ce: every class's label on every image (class-major, N*B rows; target: the labels) - or
        the images alone when layer 1 is fixed and affine (block_update then uses its linearity).
        """
        n = y.shape[0]
        with torch.no_grad():
            feats = self.probe_features(x)
        logits = self.unit("probe", self.probe)(feats)
        probe_loss = F.cross_entropy(logits, y)
        self._update("probe", probe_loss)
        extra = {"probe_loss_sum": probe_loss.detach() * n, "correct": (logits.detach().argmax(1) == y).sum()}
        if self.ff_loss == "ce":
            return self._all_label_input(x), y, extra
        k = self.num_negatives
        if self.negatives == "hard":  # the network's own belief before this step, never the true label
            y_neg = hard_negative_labels(y, logits, k=k)  # (B, k), distinct wrong labels
        elif self.negatives == "goodness":  # the belief goodness inference itself holds: the voting layers' sum
            y_neg = hard_negative_labels(y, self.goodness_belief(x), k=k)
        else:
            y_neg = negative_labels(y, self.num_classes, k=k)
        h = self.prepare(torch.cat([self.labels.encode(x, y)]
                                   + [self.labels.encode(x, y_neg[:, j]) for j in range(k)]))  # ((1+k)B, ...)
        target = torch.cat([torch.ones(n, device=x.device), torch.zeros(k * n, device=x.device)])
        return h, target, extra

    @torch.no_grad()
    def goodness_belief(self, x: torch.Tensor) -> torch.Tensor:
        """Goodness inference's logits before this step, (B, N): goodness_scale * the voting layers' summed logit.

        One pass per class (layer 1 from its linearity where the label mix is affine) of the layers up to the
        voting range's last; the threshold cancels in the softmax that draws the negatives from it.
        """
        a, b = (int(v) for v in self.vote_range)  # one host sync per step
        return self.goodness_scale * self.goodness_scores(x, b)[a - 1:].sum(0)

    def block_update(self, i: int, x: torch.Tensor | tuple, y: torch.Tensor,
                     ) -> tuple[BlockOutput, torch.Tensor, torch.Tensor]:
        """The common local update; a fixed, affine layer 1 under the ce loss answers all N labels at once."""
        if not (i == 0 and self.ff_loss == "ce" and i in self.frozen and x.shape[0] == y.shape[0]):
            return super().block_update(i, x, y)
        block = self.blocks[0]
        with torch.no_grad(), self.autocast(x):
            h1 = self._first_layer_all_labels(x, torch.arange(self.num_classes, device=x.device))
            o = BlockOutput(h1, block.readout(h1), None)
            loss = block.local_loss(o.scores.float(), y)
            o = o._replace(out=block.hand_off(o))
        return o, loss.float(), self.block_correct(o.scores, y)

    def block_regulariser(self, i: int, x: torch.Tensor | tuple, o: BlockOutput, y: torch.Tensor
                          ) -> torch.Tensor | None:
        """Peer normalisation: peer_norm * mean_j (r_j - mean r)^2 over the running mean activities r_j.

        r_j <- 0.9 r_j + 0.1 mean(h_j) over this step's inputs (all of them; a conv's over space too). Its
        gradient reaches each unit's pre-activation as if through the identity, not the ReLU, so a unit that
        has gone silent (whose ReLU passes no gradient) is pulled back: the surrogate below is linear in the
        batch-mean pre-activation, linear(mean x) + bias, with the term's gradient as its coefficients.
        """
        lin = getattr(self.blocks[i].body, "linear", None)
        if self.peer_norm <= 0 or lin is None or not torch.is_tensor(x):
            return None
        r = getattr(self, f"peer_mean{i + 1}")
        with torch.no_grad():
            h = o.h.detach().float()
            batch_mean = h.mean(0) if h.ndim == 2 else h.mean((0, 2, 3))
            r.copy_(torch.where(r.any(), r, batch_mean))  # first step: start from this batch's activity (no host sync)
            r.mul_(PEER_MOMENTUM).add_(batch_mean, alpha=1 - PEER_MOMENTUM)
            # d/dr_j of peer_norm * mean_j (r_j - mean r)^2, times dr_j / d mean(a_j) = 1 - momentum
            coef = (2 * self.peer_norm * (1 - PEER_MOMENTUM) / r.numel()) * (r - r.mean())
        pre = linear_no_bias(lin, x.detach().float().mean(0, keepdim=True))  # (1, J) or (1, C, H, W)
        pre = pre.flatten(2).mean(2) if pre.ndim == 4 else pre
        if lin.bias is not None:
            pre = pre + lin.bias
        return (coef * pre[0]).sum()

    def block_correct(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images the layer ranks right: the true label's goodness beats all its negatives (ce: all N)."""
        if self.ff_loss == "ce":
            return (scores.view(-1, y.shape[0]).argmax(0) == y).float().sum()
        pos, *negs = scores.chunk(1 + self.num_negatives)
        return (pos > torch.stack(negs).amax(0)).float().sum()

    def combine_stats(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """loss_sum: the trained layers' losses and the probe's; correct: the probe's (set by begin_step)."""
        stats["loss_sum"] = stats["layer_loss_sum"][self.trained].sum() + stats["probe_loss_sum"]
        return stats

    def _all_label_input(self, x: torch.Tensor) -> torch.Tensor:
        """Layer 1's input for the "ce" loss: x itself when layer 1 is fixed and affine (see block_update),
        else every image with every class's label, prepared, class-major (N*B, ...)."""
        if 0 not in self.trained and self._affine_first_layer():
            return x
        n = self.num_classes
        y = torch.arange(n, device=x.device).repeat_interleave(x.shape[0])
        return self.prepare(self.labels.encode(x.repeat(n, *([1] * (x.ndim - 1))), y))

    def _affine_first_layer(self) -> bool:
        """Whether layer 1's response to every label can be computed from its linearity."""
        return (getattr(self.blocks[0].body, "linear", None) is not None and hasattr(self.labels, "affine_parts")
                and isinstance(self.stem, nn.Identity))

    def _first_layer_all_labels(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor | None:
        """Layer 1's feature map for every (class in cls, image), class-major (k*B, ...), from its linearity.

        encode(x, c) = a*base + b*T_c and the RMS normalisation only rescales each input, so
        linear(norm(encode(x, c))) = (a*linear(base) + b*linear(T_c)) / rms_c + bias, with
        rms_c^2 = (a^2 |base|^2 + 2ab <base, T_c> + b^2 |T_c|^2) / D from one (k, B) product.
        None when the model or label encoding does not allow it (then: one pass per class).
        """
        if not self._affine_first_layer():
            return None
        layer = self.blocks[0].body
        lin = layer.linear
        base, t, a, b = self.labels.affine_parts(x)
        t = t[cls]  # (k, ...)
        k, n = t.shape[0], base.shape[0]
        with self.autocast(x):
            pre = a * linear_no_bias(lin, base)[None] + b * linear_no_bias(lin, t)[:, None]  # (k, B, C[, H, W])
        shape = (k, n) + (1,) * (pre.ndim - 2)
        if self.input_norm:
            bf, tf = base.flatten(1).float(), t.flatten(1).float()
            sq = (a * a) * bf.square().sum(1)[None] + (2 * a * b) * (tf @ bf.T) + (b * b) * tf.square().sum(1)[:, None]
            rms = (sq.clamp_min(0) / bf.shape[1]).sqrt()  # (k, B)
            pre = pre / (rms + TINY).view(shape).to(pre.dtype)
        if lin.bias is not None:
            pre = pre + lin.bias.view((1, 1, -1) + (1,) * (pre.ndim - 3)).to(pre.dtype)
        return layer.act(pre.flatten(0, 1))

    def _outputs_all_labels(self, x: torch.Tensor, cls: torch.Tensor, layers: int) -> Iterator[BlockOutput]:
        """Outputs of the first `layers` blocks for x with each label in cls (class-major, k*B rows).

        The last one is not handed off (its out is None): nothing after it runs.
        """
        h1 = self._first_layer_all_labels(x, cls)
        if h1 is None:  # one pass per class from the first layer on
            y = cls.repeat_interleave(x.shape[0])
            h = self.prepare(self.labels.encode(x.repeat(len(cls), *([1] * (x.ndim - 1))), y))
            yield from self.run_blocks(h, self.blocks[:layers], hand_off_last=False)
            return
        o = BlockOutput(h1, self.blocks[0].readout(h1), None)
        if layers > 1:
            with self.autocast(h1):
                o = o._replace(out=self.blocks[0].hand_off(o))
        yield o
        yield from self.run_blocks(o.out, self.blocks[1:layers], hand_off_last=False)

    def goodness_scores(self, x: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Goodness logit of the first `layers` layers (default: all) for every class's label, (l, B, N)."""
        b, n = x.shape[0], self.num_classes
        layers = len(self.blocks) if layers is None else layers
        # A pass holds at most max_eval_batch rows (images x labels): the batch is cut into slices of
        # at most max_eval_batch images, and each slice runs as many labels at once as fit.
        rows = self.max_eval_batch  # >= 1 (checked, or derived with a floor of 1); None: no limit (exported models)
        if rows is None:  # every label of every image in one pass: a graph for any batch size
            cls = torch.arange(n, device=x.device)
            return torch.stack([o.scores.float().view(n, -1).T for o in self._outputs_all_labels(x, cls, layers)])
        out = torch.empty(layers, b, n, device=x.device)
        for lo, xs in zip(range(0, b, rows), x.split(rows)):
            s = xs.shape[0]
            per_chunk = max(1, rows // s)
            for start in range(0, n, per_chunk):
                cls = torch.arange(start, min(n, start + per_chunk), device=x.device)
                # the layers after the voting range do not run
                for i, o in enumerate(self._outputs_all_labels(xs, cls, layers)):
                    out[i, lo:lo + s, start:start + len(cls)] = o.scores.float().view(len(cls), s).T
        return out

    def scores(self, x: torch.Tensor, strategy: str | None = None, select: bool = True) -> Scores:
        """Goodness (one pass per class) and probe scores, per-layer goodness and candidate voting ranges.

        With select (validation) every layer runs, so that every voting range can be scored;
        otherwise (a prediction, the test split) only the layers up to the chosen range's last.
        """
        res = Scores({})
        if strategy in (None, "goodness"):
            upto = None if select and strategy is None else int(self.vote_range[1])  # one host sync per batch
            per_layer = self.goodness_scores(x, upto)
            res.layers = list(per_layer)
            prefix = F.pad(per_layer.cumsum(0), (0, 0, 0, 0, 1, 0))  # (l+1, B, N): prefix[k] = layers 1..k
            if upto is None:
                res.ranges = {(a, b): prefix[b] - prefix[a - 1] for a, b in self.vote_candidates()}
            if strategy is None:  # no host sync for the range (validation, tests)
                ends = prefix.index_select(0, self.vote_range - torch.tensor([1, 0], device=x.device))
            else:
                ends = [prefix[int(self.vote_range[0]) - 1], prefix[upto]]
            res.strategies["goodness"] = ends[1] - ends[0]
        if strategy in (None, "probe"):
            rows = self.max_eval_batch
            res.strategies["probe"] = (self.probe_logits(x) if rows is None else
                                       torch.cat([self.probe_logits(xs) for xs in x.split(rows)]))
        return res

    @torch.no_grad()
    def eval_counts(self, x: torch.Tensor, y: torch.Tensor, select: bool = True) -> Counts[torch.Tensor]:
        """Counts of every strategy; on the test split (select=False) layers past the voting range do not run."""
        self.eval()
        return self.score_counts(self.scores(x, None, select), y)

    def vote_candidates(self) -> list[tuple[int, int]]:
        """Layer ranges (first, last), 1-based, that validation may choose between (none when both ends are fixed)."""
        lo, hi = self.vote_fixed
        if lo is not None and hi is not None:
            return []
        n = len(self.blocks)
        return [(a, b) for a in ([lo] if lo else range(1, n + 1)) for b in ([hi] if hi else range(a, n + 1))
                if a <= b]

    def select_on_validation(self, val: Counts[float]) -> Counts[float]:
        """Choose the voting range on validation (ties: the widest, then the earliest); metrics with it applied."""
        if not val.ranges:
            return val
        a, b = best_range(val.ranges)
        self.vote_range.copy_(torch.tensor([a, b]))
        return val.with_range_chosen("goodness", (a, b))

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
        upto = int(self.vote_range[1])  # the layers after the voting range do not run
        return {"goodness": {"trainable_parameters": self.trainable_parameters(self.blocks[:upto]), "layers": upto,
                             "forward_passes": self.num_classes, "vote_from": int(self.vote_range[0]),
                             "vote_to": upto},
                "probe": {"trainable_parameters": blocks + self.trainable_parameters(self.probe), "layers": n,
                          "forward_passes": 1}}


@register_method
class FFCNN(GoodnessFF):
    """FF-CNN with spatially-extended labels (Fourier or morphological patterns)."""

    spec = METHODS["ffcnn"]
    cpu_bf16 = True  # conv stacks: the CPU's bf16 units pay off (docs/performance.md), where it has them

    def check_labels(self, labels: str) -> None:
        """Spatial labels only."""
        if labels == "onehot":
            raise ConfigError("ffcnn uses spatial labels (fourier or morphological); onehot is the hinton method")


@register_method
class Hinton(GoodnessFF):
    """Hinton's original FF: MLP, one-hot label in the first pixels, goodness vs threshold."""

    spec = METHODS["hinton"]
