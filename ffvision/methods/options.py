"""Each method's options, declared once: a frozen dataclass per method, and the method's spec.

Torch-free: the CLI (`ffvision list`, `--help`, option checks), recipes, saved configs and the
Python API (`create_method`, the method classes) all read these declarations; a method class
is imported only when a run builds it.

    ASGEOptions().lr                   # 0.01, the default the CLI, recipes and ASGE(...) use
    METHODS["hinton"].options().model  # "mlp"
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

from ffvision.options import check_fields, option


@dataclass(frozen=True)
class MethodOptions:
    """Options every method takes (a method's own dataclass changes their defaults). Values are checked
    against their declarations when the options are built: ASGEOptions(lr=-1) is a ConfigError."""

    model: str = option("vgg8", "architecture; see `ffvision list`")
    width_mult: float = option(1.0, "channel width multiplier (0.25 makes every layer 4x narrower)", gt=0)
    dropout: float | None = option(None, "dropout after each layer (None: the model's, 0.1 for VGG, 0 for FF-CNN)",
                                   ge=0, lt=1)
    lr: float = option(1e-3, "peak learning rate of every block", gt=0)
    weight_decay: float = option(1e-3, "AdamW weight decay of the blocks", ge=0)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class LayerWidthOptions:
    """The width of models built from a number of filters per layer (FF-CNN's)."""

    filters: int | None = option(None, "filters per layer of the FF-CNN models (None: the model's, 128)", ge=1)


@dataclass(frozen=True)
class HybridOptions:
    """Methods that build one local block per layer of a plain stack (conv stacks, MLPs)."""

    layers_per_block: int = option(1, "hybrid blocks: K consecutive layers trained end to end as one block against "
                                   "the last one's local loss, never across blocks (1: every layer its own block)",
                                   ge=1)


@dataclass(frozen=True)
class LabelSmoothingOptions:
    """Methods trained with a cross-entropy over the classes."""

    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy (asge: of each layer's local loss)",
                                    ge=0, lt=1)


@dataclass(frozen=True)
class PretrainedOptions:
    """Methods that can start from torchvision weights."""

    init_weights: str | None = option(None, "torchvision state_dict file to start from (transfer learning)")


@dataclass(frozen=True)
class ASGEOptions(HybridOptions, LabelSmoothingOptions, LayerWidthOptions, MethodOptions):
    """ASGE: spatial goodness readouts through fixed projections, linear heads, early exit."""

    # Defaults for runs without a recipe, chosen on the validation split of the quick protocol
    # (docs/methods.md): with the paper's lr 2e-4 and Kaiming-initialised heads, 3 epochs move each
    # head weight by at most ~0.05 (Adam) against an init std of ~0.18, so the summed heads stay
    # near their random init; zero-initialised heads and lr 1e-2 learn in a few hundred steps.
    # The paper's recipe is in recipes/asge-*.yaml.

    lr: float = 1e-2
    # No dropout (the VGG stacks' default is 0.1, the paper's, which the recipes keep): better on
    # validation at 3 epochs (goodness-sum 80.82 vs 79.86%, heads 79.54 vs 77.42%) and at 15 on the
    # full split (91.66 vs 91.34%), and ~1.3x faster on the CPU (docs/methods.md).
    dropout: float | None = 0.0
    alpha: float = option(1.0, "grid rule P_l = alpha * C_L / C_l", gt=0)
    lr_fan_in: int | None = option(None, "scale each layer's lr by sqrt(LR_FAN_IN / the conv's fan-in), at most lr "
                                   "(keeps Adam's step relative to the weights' scale)", ge=1)
    head_lr: float = option(1e-2, "the linear heads' learning rate", gt=0)
    head_weight_decay: float = option(0.0, "the linear heads' weight decay", ge=0)
    head_init: str = option("zeros", "the heads' init (kaiming: the official code's)",
                            choices=("zeros", "kaiming", "default"))
    heads_from: int = option(2, "linear heads on layers HEADS_FROM..L (from 1)", ge=1)
    early_exit_thresholds: tuple[float, ...] = option((0.5, 0.7, 0.9, 0.95, 0.99),
                                                      "confidence thresholds reported for early exit", gt=0, le=1)
    fused_readout: bool = option(True, "train each layer through one fused conv-ReLU-goodness-projection autograd "
                                 "step (the same gradients, ~0.6x the memory and faster; off: the plain autograd "
                                 "chain)")


@dataclass(frozen=True)
class BackpropOptions(PretrainedOptions, LabelSmoothingOptions, LayerWidthOptions, MethodOptions):
    """End-to-end backprop on the same architectures."""

    memory_saving: str = option("none", "none | checkpoint (per-layer activation checkpointing) | accumulate "
                                "(4 micro-batches, or --micro-batches, gradients accumulated)",
                                choices=("none", "checkpoint", "accumulate"))


@dataclass(frozen=True)
class GoodnessFFOptions(HybridOptions, LayerWidthOptions, MethodOptions):
    """Label-in-the-input Forward-Forward (ffcnn, hinton): goodness losses, negatives, voting, probe."""

    model: str = "ffcnn3"
    lr: float = 1e-2
    weight_decay: float = 0.0
    labels: str = option("fourier", "label encoding: fourier | morphological (ffcnn), onehot (hinton)",
                         choices=("fourier", "morphological", "onehot"))
    label_intensity: float = option(0.35, "K in x_c = (1 - K) x + K T_c for spatial labels", ge=0, le=1)
    threshold: float | None = option(None, "goodness threshold theta (None: units per layer for sum, 1 for mean)")
    goodness: str = option("mean", "goodness of a layer: sum (the papers) | mean of the squared activities",
                           choices=("sum", "mean"))
    ff_loss: str = option("symba", "layer loss: bce (G - theta against 1/0, the papers) | symba (positive vs "
                          "negatives of the same image) | ce (softmax over every class's label overlay; about N/2 "
                          "times the cost)", choices=("bce", "symba", "ce"))
    goodness_scale: float | None = option(None, "temperature: the goodness logit is multiplied by this (None: 4; "
                                          "ffcnn with --ff-loss ce: 16; chosen on validation)", gt=0)
    negatives: str = option("uniform", "negative labels: uniform (other classes) | hard (drawn by the probe's "
                            "belief, Hinton's code) | goodness (drawn by goodness inference's own belief; one more "
                            "pass per class and step)", choices=("uniform", "hard", "goodness"))
    num_negatives: int = option(1, "wrong labels per image and step (symba: a softmax of the positive against "
                                "them; each costs one more pass)", ge=1)
    input_norm: bool = option(True, "RMS-normalise each input (image + label) before layer 1")
    peer_norm: float = option(0.0, "weight of peer normalisation, which pulls each unit's running mean activity "
                              "to its layer's mean so units cannot die (Hinton's code; 0: off)", ge=0)
    train_first_layer: bool = option(False, "train layer 1 (off: it keeps its random weights; hybrid blocks, "
                                     "layers_per_block > 1, always train)")
    vote_from: int | None = option(None, "goodness inference sums layers VOTE_FROM..VOTE_TO (None: chosen on the "
                                   "validation split; Hinton used 2)", ge=1)
    vote_to: int | None = option(None, "last layer whose goodness is summed (None: chosen on validation)", ge=1)
    probe_lr: float = option(1e-2, "learning rate of the linear probe (neutral-label inference)", gt=0)
    probe_grid: int = option(4, "probe features: each conv output average-pooled to this grid", ge=1)
    max_eval_batch: int | None = option(None, "rows (images x labels) per evaluation pass (None: by memory)", ge=1)
    optimizer: str = option("adamw", "the blocks' optimizer: adamw | sgd (with momentum and dampening, as Hinton's "
                            "reference code steps it)", choices=("adamw", "sgd"))
    momentum: float = option(0.9, "momentum of --optimizer sgd (Hinton's)", ge=0, lt=1)
    centre_step: bool = option(False, "subtract from each filter's update its mean over the filter's taps, so no "
                               "step moves a filter's response to every image at once (silent channels)")

    ce_goodness_scale: ClassVar[float | None] = None  # goodness_scale under ff_loss "ce" when none is given

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.goodness_scale is None:  # the temperature validated for the loss
            ce = self.ff_loss == "ce" and self.ce_goodness_scale is not None
            object.__setattr__(self, "goodness_scale", self.ce_goodness_scale if ce else 4.0)


@dataclass(frozen=True)
class FFCNNOptions(GoodnessFFOptions):
    """FF-CNN: spatially-extended labels, layer 1 kept random (it mostly encodes the image), centred steps."""

    centre_step: bool = True  # validated: +4.2 / +1.3 at 32 filters (1 / 3 negatives), +2.9 at 128 (results.md s.5)
    # the softmax over all labels wants a sharper temperature than SymBa's 4 (validation:
    # 1 -> 59.1%, 4 -> 64.6, 16 -> 66.7, 64 -> 60.7 on the first Fourier set)
    ce_goodness_scale: ClassVar[float | None] = 16.0


@dataclass(frozen=True)
class HintonOptions(GoodnessFFOptions):
    """Hinton's FF: an MLP, one-hot labels, hard negatives, every layer trained."""

    model: str = "mlp"
    labels: str = "onehot"
    lr: float = 3e-2
    negatives: str = "hard"
    train_first_layer: bool = True


@dataclass(frozen=True)
class SFFOptions(PretrainedOptions, MethodOptions):
    """Scalable FF: class-channel goodness per block of a torchvision network."""

    model: str = "resnet18"
    weight_decay: float = 1e-4
    granularity: str = option("block", "blocks: layer (pure FF) | block (hybrid) | stage",
                              choices=("layer", "block", "stage"))
    aux_kernel: int = option(1, "auxiliary conv kernel size, odd (one output channel per class)", ge=1)
    sff_loss: str = option("ce", "loss over the class goodness: ce | margin", choices=("ce", "margin"))
    margin: float = option(1.0, "margin m of the margin loss")
    freeze_blocks: int = option(0, "keep the first K blocks fixed (transfer learning)", ge=0)
    stem: str = option("auto", "torchvision stem: auto (CIFAR-style at <= 64 px) | imagenet | cifar",
                       choices=("auto", "imagenet", "cifar"))


@dataclass(frozen=True)
class DeeperForwardOptions(MethodOptions):
    """DeeperForward: mean goodness of per-class channel groups, a deep channel-wise ResNet."""

    # The official code's settings (HCL-FF's release of it, without the hierarchy and contrastive terms):
    # AdamW lr 0.04 to 0.0002 on a cosine, weight decay 1e-4, no dropout, each layer's gradient clipped to 1.
    model: str = "cwresnet17"
    lr: float = 0.04
    weight_decay: float = 1e-4
    dropout: float | None = 0.0
    grad_clip: float = option(1.0, "clip each layer's (and the head's) gradient to this norm; 0: no clipping", ge=0)


@dataclass(frozen=True)
class HCLFFOptions(DeeperForwardOptions):
    """HCL-FF: DeeperForward with coarse-to-fine class groups per layer and a supervised contrastive term."""

    hierarchy: str | None = option(None, "class hierarchy: a shipped name (fashion-mnist, mnist) or a JSON file of "
                                   "levels (coarse to fine, each a partition of the classes); None: every layer on the "
                                   "classes themselves")
    level_schedule: str = option("linear", "which level each layer learns: linear (spread over the depth) | "
                                 "increasing (layer i on level i, then the finest)", choices=("linear", "increasing"))
    supcon_weight: float = option(1.0, "weight of each layer's supervised contrastive loss (0: none)", ge=0)
    proj_dim: int = option(128, "output size of each layer's projection head for the contrastive loss", ge=1)
    supcon_warmup: float = option(0.05, "fraction of the epochs over which the contrastive temperature falls "
                                  "from 0.8 to 0.2 (then to 0.1 on a cosine); the official code's 50 epochs of its "
                                  "1,000 by default; above 1 the warm-up outlasts the run", ge=0)


@dataclass(frozen=True)
class MethodSpec:
    """What a method is, before any torch: name, one-line summary, options, strategies, home module."""

    name: str
    summary: str
    options: type[MethodOptions]
    strategies: tuple[str, ...]
    default_strategy: str
    module: str  # imported on first use (it registers the class)

    @functools.cached_property
    def _defaults(self) -> tuple[tuple[str, Any], ...]:
        """(option, default) pairs, computed once: every checkpoint and divergence snapshot asks."""
        return tuple(dataclasses.asdict(self.options()).items())

    def defaults(self) -> dict[str, Any]:
        """Each option with its default, as a config value (a tuple as a list, as YAML and TrainConfig hold it)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._defaults}

    def build_options(self, values: dict[str, Any]) -> MethodOptions:
        """The options with `values` set (None keeps a default); unknown names are a ValueError."""
        known = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"method {self.name!r} does not take {', '.join(unknown)}; it takes: "
                             f"{', '.join(sorted(known))}")
        return self.options(**{k: v for k, v in values.items() if v is not None})


METHODS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("asge", "ASGE on a VGG-style stack: one block per conv layer plus linear heads.", ASGEOptions,
               ("last", "goodness-sum", "heads"), "heads", "ffvision.methods.asge"),
    MethodSpec("bp", "End-to-end backprop: one block that is the whole network.", BackpropOptions, ("last",),
               "last", "ffvision.methods.backprop"),
    MethodSpec("ffcnn", "FF-CNN with spatially-extended labels (Fourier or morphological patterns).", FFCNNOptions,
               ("goodness", "probe"), "goodness", "ffvision.methods.ff"),
    MethodSpec("hinton", "Hinton's original FF: MLP, one-hot label in the first pixels, goodness vs threshold.",
               HintonOptions, ("goodness", "probe"), "goodness", "ffvision.methods.ff"),
    MethodSpec("sff", "Scalable FF on torchvision networks: class-channel goodness per block.", SFFOptions,
               ("average", "last", "range"), "average", "ffvision.methods.sff"),
    MethodSpec("deeperforward", "DeeperForward: mean goodness of per-class channel groups in a channel-wise ResNet.",
               DeeperForwardOptions, ("goodness", "head", "ensemble"), "goodness", "ffvision.methods.deeperforward"),
    MethodSpec("hclff", "HCL-FF: DeeperForward with coarse-to-fine class groups and supervised contrastive layers.",
               HCLFFOptions, ("goodness", "head", "ensemble"), "goodness", "ffvision.methods.hclff"),
)}
