"""Typed training configuration. Recipes are YAML files that fill it; CLI flags override.

Every field has a CLI flag of the same name with dashes (width_mult <-> --width-mult) and is
stored under the same key in checkpoints and summary.json. Unknown keys and values of the
wrong type are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ffvision.errors import ConfigError


def opt(default: Any, help: str) -> Any:
    """A config field with its --help text (one source for the config, the CLI and the docs)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults suit a short run with no recipe."""

    # --- what to train
    method: str = opt("asge", "training method: see `ffvision list` (asge, bp, ffcnn, hinton, ...)")
    model: str | None = opt(None, "architecture; see `ffvision list`")
    dataset: str = opt("fashion-mnist", "mnist | fashion-mnist | cifar10 | cifar100 | imagenet | imagefolder")
    data_dir: str | None = opt(None, "dataset folder (default: $FFVISION_DATA or ./data, then system copies)")
    download: bool = opt(False, "fetch missing MNIST/FashionMNIST/CIFAR files with torchvision")
    image_size: int | None = opt(None, "input size in px (default: the dataset's: 32 for MNIST-family and CIFAR "
                                 "(28 for ffcnn/hinton), the images' own for imagefolder, 224 for imagenet)")
    val_size: float | None = opt(None, "validation images carved from train (>= 1) or a fraction (< 1)")
    split_seed: int = opt(42, "seed of the train/validation split (same split for every run)")
    train_subset: int | None = opt(None, "train on the first N shuffled training images (quick runs)")
    augment: str | None = opt(None, "none | shift (random shifts up to 1/8 of the side) | flip | crop | cifar | "
                                 "imagenet (default: the dataset's: shift for imagefolder)")

    # --- model
    width_mult: float = opt(1.0, "channel width multiplier (0.25 makes every layer 4x narrower)")
    dropout: float | None = opt(None, "dropout after each layer (default: 0 for asge, chosen on validation; "
                                  "else the model's: 0.1 VGG, 0 FF-CNN)")
    filters: int | None = opt(None, "filters per layer of the FF-CNN models (default: the model's, 128)")
    alpha: float | None = opt(None, "ASGE grid rule P_l = alpha * C_L / C_l")

    # --- optimisation (one AdamW per block; heads have their own)
    epochs: int = opt(10, "training epochs")
    batch_size: int = opt(128, "training batch size")
    lr: float | None = opt(None, "peak learning rate of every block")
    lr_fan_in: int | None = opt(None, "ASGE: scale each layer's lr by sqrt(LR_FAN_IN / the conv's fan-in), "
                                "at most lr (keeps Adam's step relative to the weights' scale)")
    weight_decay: float | None = opt(None, "AdamW weight decay of the blocks")
    label_smoothing: float | None = opt(None, "asge and bp: label smoothing of the cross-entropy (each layer's "
                                        "local loss for asge), in [0, 1) (default 0)")
    head_lr: float | None = opt(None, "ASGE linear heads' learning rate")
    head_weight_decay: float | None = opt(None, "ASGE linear heads' weight decay")
    head_init: str | None = opt(None, "ASGE heads' init: zeros | kaiming (official code) | default")
    heads_from: int | None = opt(None, "ASGE linear heads on layers heads_from..L (1-based)")
    fused_readout: bool | None = opt(None, "ASGE: train each layer through one fused conv-ReLU-goodness-projection "
                                     "autograd step (the same gradients, ~0.6x the memory and faster; "
                                     "--no-fused-readout for the plain autograd chain)")
    min_lr_ratio: float = opt(0.01, "cosine schedule ends at lr * min_lr_ratio")
    warmup_epochs: float = opt(0.3, "linear learning-rate warm-up before the cosine, in epochs")
    scheduler_interval: str = opt("step", "step (smooth cosine) | epoch (as the official ASGE code)")

    memory_saving: str | None = opt(None, "bp only: none | checkpoint (per-layer activation checkpointing) | "
                                    "accumulate (4 micro-batches, gradients accumulated)")

    # --- label-in-the-input FF (ffcnn, hinton)
    labels: str | None = opt(None, "label encoding: fourier | morphological (ffcnn), onehot (hinton)")
    label_intensity: float | None = opt(None, "K in x_c = (1 - K) x + K T_c for spatial labels")
    threshold: float | None = opt(None, "goodness threshold theta (default: units per layer for sum, 1 for mean)")
    goodness: str | None = opt(None, "goodness of a layer: sum (the papers) | mean of the squared activities")
    ff_loss: str | None = opt(None, "FF layer loss: bce (G - theta against 1/0, the papers) | symba (positive vs "
                              "negatives of the same image) | ce (softmax over every class's label overlay; "
                              "about N/2 times the cost)")
    goodness_scale: float | None = opt(None, "temperature: the goodness logit is multiplied by this "
                                             "(ffcnn: 4, or 16 with --ff-loss ce; chosen on validation)")
    negatives: str | None = opt(None, "FF negative labels: uniform (other classes) | hard (drawn by the probe's "
                                "belief, Hinton's code) | goodness (drawn by goodness inference's own belief; "
                                "one more pass per class and step)")
    num_negatives: int | None = opt(None, "FF: wrong labels per image and step (symba: a softmax of the positive "
                                    "against them; each costs one more pass)")
    peer_norm: float | None = opt(None, "FF: weight of peer normalisation, which pulls each unit's running mean "
                                  "activity to its layer's mean so units cannot die (Hinton's code; 0: off)")
    input_norm: bool | None = opt(None, "FF: RMS-normalise each input (image + label) before layer 1")
    train_first_layer: bool | None = opt(None, "FF: train layer 1 (off: it keeps its random weights)")
    vote_from: int | None = opt(None, "FF goodness inference sums layers vote_from..vote_to (default: chosen on "
                                "the validation split; Hinton used 2)")
    vote_to: int | None = opt(None, "last layer whose goodness is summed (default: chosen on validation)")
    optimizer: str | None = opt(None, "FF: the blocks' optimizer: adamw (default) | sgd (with momentum and dampening, "
                                "as Hinton's reference code steps it)")
    momentum: float | None = opt(None, "FF: momentum of --optimizer sgd (default 0.9, Hinton's)")
    centre_step: bool | None = opt(None, "FF: subtract from each filter's update its mean over the filter's taps, so "
                                   "no step moves a filter's response to every image at once (silent channels; ffcnn "
                                   "default: on, hinton: off)")
    probe_lr: float | None = opt(None, "learning rate of the linear probe (neutral-label inference)")
    probe_grid: int | None = opt(None, "probe features: each conv output average-pooled to this grid")

    # --- Scalable FF (sff) on torchvision networks
    granularity: str | None = opt(None, "sff blocks: layer (pure FF) | block (hybrid) | stage")
    aux_kernel: int | None = opt(None, "sff auxiliary conv kernel size (one output channel per class)")
    sff_loss: str | None = opt(None, "sff loss over the class goodness: ce | margin")
    margin: float | None = opt(None, "margin m of the sff margin loss")
    init_weights: str | None = opt(None, "torchvision state_dict file to start from (transfer learning)")
    freeze_blocks: int | None = opt(None, "keep the first K blocks fixed (transfer learning)")
    stem: str | None = opt(None, "torchvision stem: auto (CIFAR-style at <= 64 px) | imagenet | cifar")

    # --- evaluation
    strategy: str = opt("auto", "prediction strategy reported as the run's test accuracy: auto (the best on the "
                        "validation split at the selected epoch) or one of the method's (`ffvision list`)")
    early_exit_thresholds: list[float] | None = opt(None,
                                             "confidence thresholds reported for early exit")

    # --- running
    seed: int = opt(0, "seed of initialisation, data order, dropout and augmentation")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    amp: str = opt("auto", "mixed precision: auto (bf16 on CUDA; for asge, ffcnn and bp on VGG also on a CPU "
                                 "with native bf16, avx512_bf16 or AMX, where it measured faster at the same "
                                 "accuracy) | bf16 | off (float32)")
    channels_last: bool | None = opt(None, "channels_last memory format (default: on CUDA, and with bf16 on "
                                           "the CPU for asge and bp on VGG)")
    num_workers: int | None = opt(None, "DataLoader workers (default: 0 on CPU, 8 on CUDA)")
    pipeline_devices: str | None = opt(None, "pipeline consecutive blocks over devices, e.g. cuda:0,cuda:1 (FF only)")
    pipeline_micro_batches: int = opt(4, "micro-batches per batch when pipelining")
    compile: bool = opt(False, "torch.compile each block (in place; checkpoints keep their keys)")
    conv: str = opt("auto", "how 5x5 and larger stride-1 convolutions run (FF-CNN's 7x7): auto (in the frequency "
                            "domain on a CPU from 64 channels in and out, where it measured ~1.7x faster at 128 "
                            "channels with the same values) | spectral | direct")
    eval_batch_size: int = opt(512, "batch size for validation and test")
    val_images: int | None = opt(None, "validate on the first N images of the validation split each epoch (default: "
                                 "all; 2,000 for goodness methods, whose inference runs one pass per class)")
    tensorboard: bool = opt(False, "also write TensorBoard scalars to RUN_DIR/tensorboard (needs the tensorboard "
                            "package)")
    log_interval: int = opt(20, "steps between host syncs that update the progress bar")
    out: str | None = opt(None, "run directory (default: runs/<method>-<model>-<dataset>-<time>)")
    force: bool = opt(False, "start a new run in an --out folder that holds another run's files (replacing them)")
    dry_run: bool = opt(False, "run one train, validation and test batch end to end; write nothing")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)




FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


def _coerce(name: str, value: Any) -> Any:
    """Check `value` against the field's type, converting int -> float where harmless."""
    hint = _HINTS[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{name} cannot be empty")
    for t in args:
        if t is type(None):
            continue
        origin = typing.get_origin(t)
        if origin is list:
            if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in value):
                return [float(v) for v in value]
            continue
        if t is bool:
            if isinstance(value, bool):
                return value
            continue
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is float and isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                continue
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is str and isinstance(value, str):
            return value
    expected = " or ".join(getattr(t, "__name__", str(t)) for t in args)
    raise ConfigError(f"{name} must be {expected}, got {value!r}")


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str = "override") -> TrainConfig:
    """Return a copy of cfg with overrides applied; unknown keys and wrong types are errors."""
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELDS)}")
    values = {k: _coerce(k, v) for k, v in overrides.items()}
    return validate(dataclasses.replace(cfg, **values))


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a dict of config keys (validated later by apply_overrides)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe {p} not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {p} must be a mapping of config keys")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range checks that no type system catches (the method's default model is filled in by methods.resolve)."""
    if cfg.image_size is not None and cfg.image_size < 8:
        raise ConfigError(f"image_size must be at least 8, got {cfg.image_size}")
    if cfg.val_images is not None and cfg.val_images < 1:
        raise ConfigError(f"val_images must be positive, got {cfg.val_images}")
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
                "log_interval": cfg.log_interval, "width_mult": cfg.width_mult, "alpha": cfg.alpha}
    for k, v in positive.items():
        if v is not None and v <= 0:
            raise ConfigError(f"{k} must be positive, got {v}")
    for k in ("lr", "head_lr"):
        v = getattr(cfg, k)
        if v is not None and not v > 0:
            raise ConfigError(f"{k} must be positive, got {v}")
    if (cfg.weight_decay or 0) < 0 or (cfg.head_weight_decay or 0) < 0:
        raise ConfigError("weight decay cannot be negative")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise ConfigError(f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    if cfg.momentum is not None and not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.dropout is not None and not 0 <= cfg.dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.warmup_epochs < 0 or cfg.warmup_epochs > cfg.epochs:
        raise ConfigError(f"warmup_epochs must be in [0, epochs], got {cfg.warmup_epochs}")
    choices = {"scheduler_interval": ("step", "epoch"), "amp": ("auto", "bf16", "off"),
               "conv": ("auto", "direct", "spectral"),
               "head_init": ("zeros", "kaiming", "default", None),
               "goodness": ("sum", "mean", None),
               "ff_loss": ("bce", "symba", "ce", None), "negatives": ("uniform", "hard", "goodness", None),
               "optimizer": ("adamw", "sgd", None),
               "granularity": ("layer", "block", "stage", None), "sff_loss": ("ce", "margin", None),
               "stem": ("auto", "imagenet", "cifar", None),
               "memory_saving": ("none", "checkpoint", "accumulate", None)}
    for k, allowed in choices.items():
        if getattr(cfg, k) not in allowed:
            named = ", ".join(a for a in allowed if a is not None)  # None: "not given", not a choice to offer
            raise ConfigError(f"{k} must be one of {named}, got {getattr(cfg, k)!r}")
    if any(not 0 < t <= 1 for t in cfg.early_exit_thresholds or ()):
        raise ConfigError("early_exit_thresholds must lie in (0, 1]")
    if cfg.goodness_scale is not None and not cfg.goodness_scale > 0:
        raise ConfigError(f"goodness_scale must be positive, got {cfg.goodness_scale}")
    if cfg.peer_norm is not None and not cfg.peer_norm >= 0:
        raise ConfigError(f"peer_norm must be zero or positive, got {cfg.peer_norm}")
    for k in ("vote_from", "vote_to"):
        if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
            raise ConfigError(f"{k} is a layer number from 1, got {getattr(cfg, k)}")
    if cfg.label_intensity is not None and not 0 <= cfg.label_intensity <= 1:
        raise ConfigError(f"label_intensity K must be in [0, 1], got {cfg.label_intensity}")
    if cfg.pipeline_micro_batches < 1:
        raise ConfigError(f"pipeline_micro_batches must be positive, got {cfg.pipeline_micro_batches}")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        raise ConfigError(f"num_workers cannot be negative, got {cfg.num_workers}")
    return cfg
