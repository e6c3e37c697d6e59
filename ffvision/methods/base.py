"""LocalMethod: a stack of LocalBlocks, one optimizer per block, and prediction strategies.

A method is a choice of blocks, readouts, how labels enter and how the trained stack
predicts. It does not run epochs: the Trainer feeds batches to `train_step` and sums the
on-device counters that `eval_counts` returns.

A new method (docs/extending.md walks through one) is a subclass with a `spec` (methods/options.py's
MethodSpec: name, options dataclass, strategies), registered with `@register_method`, that implements:

  __init__(*, num_classes, in_channels, image_size, seed=0, **options)
      pass the data's shape and the seed to LocalMethod.__init__, read the options with
      `self.options_of(options)`, append LocalBlocks to `self.blocks`, call `self.build_optimizers()`;
  optimizer_groups()
      name -> (parameters, lr, weight decay): one optimizer each ("block1", "block2", ...).

Optional, with defaults that suit blocks scored by their readouts: `prepare` (the first block's input),
`begin_step` (a step's inputs and targets: FF builds positives and negatives here), `keep` and
`finish_update` (updates after every block: ASGE's heads), `block_regulariser`, `scores` (more prediction
strategies than `last`), `select_on_validation` (what a run chooses on validation: FF's voting range),
`cam_targets`, `strategy_info`.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

from ffvision.core import BlockOutput, LocalBlock
from ffvision.core.metrics import Counts, Scores, correct
from ffvision.errors import ConfigError, DataError
from ffvision.methods.options import MethodOptions, MethodSpec
from ffvision.models import create_model


def build_model(name: str, **kwargs: object) -> nn.Module:
    """create_model with the options left at None dropped (the model's own default applies)."""
    return create_model(name, **{k: v for k, v in kwargs.items() if v is not None})


class LocalMethod(nn.Module):
    """Base class: `blocks`, `optimizers` (name -> AdamW), `train_step`, `predict`."""

    spec: ClassVar[MethodSpec]  # name, options dataclass, strategies (methods/options.py)
    name: str = "base"
    strategies: tuple[str, ...] = ("last",)
    default_strategy: str = "last"
    selected_strategy: str | None = None  # chosen on validation by a run (checkpoints carry it); else the default
    supports_pipeline: bool = True  # train_step = block_update per block, then finish_update
    default_val_images: int | None = None  # validation images per epoch when --val-images is unset (None: all)
    native_image_size: bool = False  # no --image-size: MNIST-family data at its stored 28 px, not resized to 32
    tiny_image_size: int | None = None  # images below the model's minimum go to this size, not the minimum
    cpu_bf16: bool = False  # --amp auto uses bf16 on a CPU with native bf16 units (measured per method)
    cpu_channels_last: bool = False  # and channels_last with it (measured per method)
    micro_batches: int = 1  # a step's batch in this many micro-batches, gradients accumulated (`train_step`)
    grad_clip: float | None = None  # clip each optimizer's gradient to this norm before its step

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass with a `spec` takes its name and strategies from it (declared once)."""
        super().__init_subclass__(**kwargs)
        if "spec" in vars(cls):
            cls.name, cls.strategies, cls.default_strategy = (cls.spec.name, cls.spec.strategies,
                                                              cls.spec.default_strategy)

    def options_of(self, values: dict[str, Any]) -> MethodOptions:
        """The method's options dataclass with `values` set (None keeps a default); ConfigError if unknown."""
        try:
            return self.spec.build_options(values)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed  # the run's: fixed random parts (projections, label patterns) are drawn from it
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.blocks = nn.ModuleList()
        # Optimizers are training state, not module state: they are not in state_dict() and the
        # Trainer checkpoints them (and their schedulers) separately, keyed by these names.
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.amp_dtype: torch.dtype | None = None  # set to torch.bfloat16 by the Trainer on CUDA
        self.frozen: set[int] = set()  # indices of blocks kept fixed (transfer learning)
        # DistributedDataParallel wrappers of the trained units (set by `distribute`); kept out of
        # the module tree so state_dict keys are the same with and without torchrun.
        self._ddp: dict[str, nn.Module] = {}
        self._accumulating: dict[str, float] | None = None  # in a micro-batched step: the optimizers used, and
        self._grad_scale = 1.0  # the micro-batch's share of the batch (its losses are means over it)

    # ----------------------------------------------------------------- optimizers
    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """name -> (parameters, lr, weight_decay): one independent optimizer each."""
        raise NotImplementedError

    def build_optimizers(self) -> None:
        """(Re)create one optimizer per group (make_optimizer); call after moving the method to a device."""
        self.optimizers = {name: self.make_optimizer(name, params, lr, wd)
                           for name, (params, lr, wd) in self.optimizer_groups().items() if params}

    def make_optimizer(self, name: str, params: list[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
        """The optimizer of one group: AdamW (methods may choose another per group).

        torch's fused AdamW kernel where the parameters' device has one (CPU, CUDA): the same update to
        rounding, one kernel per optimizer instead of a dozen ops - a layer-local method steps one
        optimizer per block, so this was ~5% of an ASGE step on the CPU.
        """
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused or None)

    def trainable_units(self) -> dict[str, nn.Module]:
        """Modules trained by their own optimizer, by optimizer name (blocks; heads/probe added by methods)."""
        return {f"block{i + 1}": b for i, b in enumerate(self.blocks)}

    def distribute(self, device_ids: list[int] | None = None) -> None:
        """Wrap each trained unit in its own DistributedDataParallel (gradients all-reduced per unit)."""
        from torch.nn.parallel import DistributedDataParallel

        self._ddp = {
            name: DistributedDataParallel(m, device_ids=device_ids)
            for name, m in self.trainable_units().items()
            if name in self.optimizers and any(p.requires_grad for p in m.parameters())
        }

    def unit(self, name: str, module: nn.Module) -> nn.Module:
        """The module to call for training: its DDP wrapper under torchrun, else itself."""
        return self._ddp.get(name, module)

    def _update(self, name: str, loss: torch.Tensor) -> None:
        """Backpropagate `loss` and step only the optimizer called `name` (in a micro-batched step: accumulate its
        gradient, weighted by the micro-batch's share; `train_step` steps every optimizer used once at the end)."""
        if self._accumulating is not None:
            (loss * self._grad_scale).backward()
            self._accumulating[name] = 1.0
            return
        self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        self._step(name)

    def _step(self, name: str) -> None:
        """Step the optimizer `name` (its gradient clipped to `grad_clip` first), then free its gradients."""
        opt = self.optimizers[name]
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)  # free this block's gradients before the next block runs

    # ----------------------------------------------------------------- helpers
    def autocast(self, x: torch.Tensor) -> contextlib.AbstractContextManager:
        """bf16 autocast when `amp_dtype` is set (the Trainer does so on CUDA), else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=self.amp_dtype)

    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Clear errors for a wrong input shape or an out-of-range label (CPU labels only)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise DataError(f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        # Checking CUDA labels would force a host sync every step; the data loaders validate
        # every label once when the dataset is read, so only CPU tensors are checked here.
        if y is not None and y.device.type == "cpu" and y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise DataError(f"label {bad} is out of range for num_classes={self.num_classes}")

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Input transform before the first block (identity by default)."""
        return x

    def block_update(self, i: int, x: torch.Tensor | tuple, y: torch.Tensor,
                     ) -> tuple[BlockOutput, torch.Tensor, torch.Tensor]:
        """One local update of block i: (its output with the hand-off, loss, correct count).

        The hand-off is computed after the update, so it is not alive during the backward
        pass (h does not change when the weights do: the values are the same).
        """
        block = self.blocks[i]
        frozen = i in self.frozen
        with torch.set_grad_enabled(not frozen), self.autocast(x if torch.is_tensor(x) else x[0]):
            o = self.unit(f"block{i + 1}", block)(x, hand_off=False)
            loss = block.local_loss(o.scores, y)
            reg = None if frozen else self.block_regulariser(i, x, o, y)
        if not frozen:
            self._update(f"block{i + 1}", loss if reg is None else loss + reg)
        if o.out is None:  # (a fused block has handed off already: its backward overwrote h)
            with self.autocast(o.h):
                o = o._replace(out=block.hand_off(o))
        return o, loss.detach().float(), self.block_correct(o.scores.detach(), y)

    def block_regulariser(self, i: int, x: torch.Tensor | tuple, o: BlockOutput, y: torch.Tensor
                          ) -> torch.Tensor | None:
        """An extra term of block i's own loss given its targets y, not reported with it (None: none; FF's peer
        normalisation, HCL-FF's contrastive loss)."""
        return None

    def block_correct(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many samples a block's scores get right (argmax against the labels by default)."""
        return (scores.argmax(1) == y).sum()

    def begin_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(first block's input, the targets every block's loss sees, extra stats) of one step.

        The identity by default; FF methods build their positive and negative inputs here, so
        every method runs through the same block loop (`local_updates`, and the pipeline).
        """
        return self.prepare(x), y, {}

    def keep(self, o: BlockOutput, i: int) -> Any:
        """What `finish_update` needs from block i's output (nothing by default)."""
        return None

    def finish_update(self, kept: list[Any], y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Updates after all blocks (ASGE's heads); returns extra on-device stats."""
        return {}

    def local_updates(self, x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[list[Any], dict[str, torch.Tensor]]:
        """One local update of every block in order, from its prepared input; stats stay on the device.

        Returns keep(output) of every block: holding whole outputs would keep every layer's
        activations alive at once, which is exactly the memory FF saves. `n` is the number of
        images (FF's targets have a row per positive and negative); loss sums are per image.
        """
        kept, losses, correct = [], [], []
        for i in range(len(self.blocks)):
            o, loss, right = self.block_update(i, x, y)
            losses.append(loss)
            correct.append(right)
            kept.append(self.keep(o, i))
            x = o.out
            del o  # frees this block's feature map before the next block runs
        stats = {"layer_loss_sum": torch.stack(losses) * n, "layer_correct": torch.stack(correct)}
        return kept, stats

    def combine_stats(self, stats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add loss_sum and correct (the default strategy's, when training computes it)."""
        extra = stats.get("head_loss_sum")
        stats["loss_sum"] = stats["layer_loss_sum"].sum() + (extra if extra is not None else 0)
        stats.setdefault("correct", stats["layer_correct"][-1])
        return stats

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the Trainer before each epoch (0-based) of `epochs`: a schedule of the method's own (none)."""

    def freeze(self, i: int) -> None:
        """Keep block i fixed from now on: forward only, no gradient, no optimizer step, BatchNorm in eval mode."""
        self.frozen.add(i)
        self.blocks[i].requires_grad_(False)

    def set_train_mode(self) -> None:
        """train() for every block except frozen ones (their BatchNorm statistics stay fixed too)."""
        self.train()
        for i in self.frozen:
            self.blocks[i].eval()

    def iter_outputs(self, x: torch.Tensor) -> Iterator[BlockOutput]:
        """Forward through the blocks (no training), yielding each block's output."""
        yield from self.run_blocks(self.prepare(x), self.blocks)

    def run_blocks(self, x: torch.Tensor | tuple, blocks: Sequence[LocalBlock],
                   hand_off_last: bool = True) -> Iterator[BlockOutput]:
        """Forward a prepared x through `blocks` in turn, yielding each output; the last's out is None unless
        hand_off_last (nothing after it runs)."""
        for i, block in enumerate(blocks):
            with self.autocast(x if torch.is_tensor(x) else x[0]):
                o = block(x, hand_off=hand_off_last or i + 1 < len(blocks))
            yield o
            x = o.out

    # ----------------------------------------------------------------- API
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One local update of every block; returns on-device sums (loss_sum, correct, ...).

        With `micro_batches` K > 1 the batch goes through every block one micro-batch at a time, each block's
        gradient accumulated over the K (every loss is a mean over its images, weighted by the micro-batch's
        share), and each optimizer steps once at the end: the update of one pass over the whole batch, to
        rounding, holding one micro-batch's activations. BatchNorm normalises each micro-batch on its own (as
        backprop's gradient accumulation does), and random draws (dropout, negatives) come in another order.
        """
        self.check_inputs(x, y)
        self.set_train_mode()
        k = min(self.micro_batches, y.shape[0])
        if k <= 1:
            return self.combine_stats(self._step_sums(x, y))
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        self._accumulating = {}
        try:
            for xb, yb in zip(x.chunk(k), y.chunk(k)):
                self._grad_scale = yb.shape[0] / y.shape[0]
                for key, v in self._step_sums(xb, yb).items():
                    totals[key] = totals[key] + v if key in totals else v
            used = list(self._accumulating)
        finally:
            self._accumulating, self._grad_scale = None, 1.0
        for name in used:
            self._step(name)
        return self.combine_stats(totals)

    def _step_sums(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The updates of one (micro-)batch and their on-device sums, before combine_stats."""
        h, target, extra = self.begin_step(x, y)
        kept, stats = self.local_updates(h, target, y.shape[0])
        stats.update(extra)
        stats.update(self.finish_update(kept, y))
        return stats

    def scores(self, x: torch.Tensor, strategy: str | None = None) -> Scores:
        """Class scores (B, N) of every strategy and block; `strategy` may limit the work."""
        layers = [o.scores.float() for o in self.iter_outputs(x)]
        return Scores({"last": layers[-1]}, layers)

    def chosen_strategy(self) -> str:
        """The strategy used when none is named: the one selected on validation, else the method's default."""
        return self.selected_strategy if self.selected_strategy in self.strategies else self.default_strategy

    @torch.no_grad()
    def predict(self, x: torch.Tensor, strategy: str | None = None) -> torch.Tensor:
        """Logits (B, num_classes) of one prediction strategy (default: the run's selected one)."""
        strategy = strategy or self.chosen_strategy()
        if strategy not in self.strategies:
            raise ConfigError(f"unknown strategy {strategy!r} for {self.name}; choose one of: "
                              f"{', '.join(self.strategies)}")
        self.check_inputs(x)
        self.eval()
        return self.scores(x, strategy)[strategy]

    @torch.no_grad()
    def eval_counts(self, x: torch.Tensor, y: torch.Tensor, select: bool = True) -> Counts[torch.Tensor]:
        """On-device sums over the batch; divided by the sample count they give accuracies.

        `select` is True on the validation split, where a method may also score the candidates
        it chooses between; False for a final report (the test split).
        """
        self.eval()
        return self.score_counts(self.scores(x), y)

    def score_counts(self, scores: Scores, y: torch.Tensor) -> Counts[torch.Tensor]:
        """Correct counts of every strategy, layer and candidate range (and top-5 of the chosen strategy)."""
        counts = Counts({k: correct(s, y) for k, s in scores.strategies.items() if k in self.strategies},
                        [correct(s, y) for s in scores.layers], {r: correct(s, y) for r, s in scores.ranges.items()})
        chosen = scores.strategies.get(self.chosen_strategy())
        if self.num_classes > 5 and chosen is not None:
            counts.top5 = (chosen.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum()
        return counts

    def select_on_validation(self, val: Counts[float]) -> Counts[float]:
        """Choose what the method chooses on validation (a layer range); the accuracies with it applied."""
        return val

    def cam_targets(self, x: torch.Tensor, cls: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per block: (feature map h (B, C, H, W) with autograd history, score of class cls (B,)).

        Class activation maps are computed from these (Grad-CAM on each block's readout).
        Default: each block's readout score of `cls`; FF methods override with goodness.
        """
        out = []
        with torch.enable_grad():
            for o in self.iter_outputs(x):
                if o.h.ndim != 4:
                    raise ConfigError(f"class activation maps need convolutional feature maps; {self.name} "
                                      "on this model has none")
                out.append((o.h, o.scores.float().gather(1, cls[:, None]).squeeze(1)))
        return out

    def trainable_parameters(self, module: nn.Module | None = None) -> int:
        """Number of trained parameters (fixed projections are buffers and not counted)."""
        return sum(p.numel() for p in (module or self).parameters() if p.requires_grad)

    def strategy_info(self) -> dict[str, dict[str, int]]:
        """Per strategy: trainable parameters it needs and how many blocks it runs."""
        n = self.trainable_parameters(self.blocks)
        return {s: {"trainable_parameters": n, "layers": len(self.blocks)} for s in self.strategies}
