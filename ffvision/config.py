"""Typed training configuration. Recipes are YAML files that fill it; CLI flags override.

A run's options are TrainConfig's fields; a method's options are its options dataclass's
(methods/options.py). Each is declared once (ffvision/options.py) and has a CLI flag of the same name
with dashes (width_mult <-> --width-mult), and is stored under the same key, in one flat dict, in
recipes, checkpoints and summary.json. Unknown keys, values of the wrong type, outside their choices
or bounds, and options the method does not take are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ffvision.data.specs import AUGMENTS
from ffvision.errors import ConfigError
from ffvision.methods.options import MethodOptions
from ffvision.methods.registry import method_declarations, method_spec, option_declarations, option_owners
from ffvision.options import Declaration, check_value, declarations, option

DATA, TRAINING, EVALUATION, RUNNING, OUTPUT = "data", "training", "evaluation", "running", "output"
TOPICS = (DATA, TRAINING, EVALUATION, RUNNING, OUTPUT)  # --help's groups of the run options, in this order


@dataclass
class TrainConfig:
    """A run: its options (data, schedule, evaluation, devices, output) and its method's options.

    The method's options live in the method's dataclass (methods/options.py); `options` holds those given
    (by a recipe or a flag) and `cfg.lr` reads the value the method uses (given, or the method's default).
    """

    method: str = option("asge", "training method: see `ffvision list` (asge, bp, ffcnn, hinton, ...)", topic=DATA)
    dataset: str = option("fashion-mnist", "mnist | fashion-mnist | cifar10 | cifar100 | imagenet | imagefolder",
                          topic=DATA)
    data_dir: str | None = option(None, "dataset folder (default: $FFVISION_DATA or ./data, then system copies)",
                                  topic=DATA)
    download: bool = option(False, "fetch missing MNIST/FashionMNIST/CIFAR files with torchvision", topic=DATA)
    image_size: int | None = option(None, "input size in px (default: the dataset's: 32 for MNIST-family and CIFAR "
                                    "(28 for ffcnn/hinton), the images' own for imagefolder, 224 for imagenet)",
                                    ge=8, topic=DATA)
    val_size: float | None = option(None, "validation images carved from train (>= 1) or a fraction (< 1)",
                                    topic=DATA)
    split_seed: int = option(42, "seed of the train/validation split (same split for every run)", topic=DATA)
    train_subset: int | None = option(None, "train on the first N shuffled training images (quick runs)",
                                      topic=DATA)
    augment: str | None = option(None, "none | shift (random shifts up to 1/8 of the side) | flip | crop | cifar | "
                                 "imagenet | affine (rotations up to 10 degrees, shifts up to 1/10 of the side, "
                                 "scaling by 0.9-1.1: HCL-FF's MNIST augmentation) | affine-flip (and horizontal "
                                 "flips with p 0.2: its FashionMNIST one) | contrastive (random resized crops of "
                                 "0.4-1 of the area, flips, colour jitter with p 0.8, grayscale with p 0.2: its "
                                 "CIFAR one) (default: the dataset's: shift for imagefolder)", choices=AUGMENTS,
                                 topic=DATA)

    epochs: int | None = option(None, "training epochs (default: from the training set's size, enough to see "
                                "500,000 images: 10 for FashionMNIST's 50,000 images, up to 100 for fewer; "
                                "docs/data.md)", ge=1, topic=TRAINING)
    time_budget: str | None = option(None, "train for this much training time instead of a number of epochs: 90s, "
                                     "10m or 1.5h. Validation and test are not counted (their times are reported); "
                                     "the learning rate's warm-up counts steps and its cosine runs over the time; "
                                     "the last epoch ends at the budget, part-way through, and the best validated "
                                     "epoch is tested. Not with --epochs", topic=TRAINING)
    freeze_patience: int | None = option(None, "progressive freezing: a block whose own validation readout has not "
                                         "improved for this many epochs stops training (the first not yet frozen, "
                                         "never the last); it keeps serving the blocks after it and every "
                                         "prediction strategy (default: off)", ge=1, topic=TRAINING)
    batch_size: int | None = option(None, "training batch size, global (default: from the training set's size: 128, "
                                    "smaller for a small set so that an epoch has enough steps; docs/data.md; "
                                    "`ffvision bench`: 128)", ge=1, topic=TRAINING)
    micro_batches: int | None = option(None, "split each training batch into K micro-batches that go through the "
                                       "blocks one at a time, gradients accumulated, one optimizer step: the same "
                                       "update with 1/K of the activations (default: 1; bp with --memory-saving "
                                       "accumulate: 4)", ge=1, topic=TRAINING)
    min_lr_ratio: float = option(0.01, "cosine schedule ends at lr * min_lr_ratio (above 1 the rate rises)", ge=0,
                                 topic=TRAINING)
    warmup_epochs: float = option(0.3, "linear learning-rate warm-up before the cosine, in epochs (at most "
                                  "--epochs)", ge=0, topic=TRAINING)
    scheduler_interval: str = option("step", "step (smooth cosine) | epoch (as the official ASGE code)",
                                     choices=("step", "epoch"), topic=TRAINING)
    seed: int = option(0, "seed of initialisation, data order, dropout and augmentation", topic=TRAINING)

    strategy: str = option("auto", "prediction strategy reported as the run's test accuracy: auto (the best on the "
                           "validation split at the selected epoch) or one of the method's (`ffvision list`)",
                           topic=EVALUATION)
    val_images: int | None = option(None, "validate on the first N images of the validation split each epoch "
                                    "(default: all; 2,000 for goodness methods, whose inference runs one pass per "
                                    "class)", ge=1, topic=EVALUATION)
    eval_batch_size: int = option(512, "batch size for validation and test", ge=1, topic=EVALUATION)

    device: str = option("auto", "auto | cpu | cuda | cuda:N", topic=RUNNING)
    amp: str = option("auto", "mixed precision: auto (bf16 on CUDA; for asge, ffcnn, deeperforward, hclff and bp on "
                      "VGG also on a CPU with native bf16, avx512_bf16 or AMX, where it measured faster at the same "
                      "accuracy) | bf16 | off (float32)", choices=("auto", "bf16", "off"), topic=RUNNING)
    channels_last: bool | None = option(None, "channels_last memory format (default: on CUDA, and with bf16 on "
                                        "the CPU for asge and bp on VGG)", topic=RUNNING)
    num_workers: int | None = option(None, "DataLoader workers (default: 0 on CPU, 8 on CUDA)", ge=0, topic=RUNNING)
    pipeline_devices: str | None = option(None, "pipeline consecutive blocks over devices, e.g. cuda:0,cuda:1 "
                                          "(FF only)", topic=RUNNING)
    pipeline_micro_batches: int = option(4, "micro-batches per batch when pipelining", ge=1, topic=RUNNING)
    kernels: str = option("on", "the CPU fast paths of ffvision/kernels: on | off (each at its plain-torch reference, "
                          "whatever --conv and --fused-readout say: to rule a kernel out or to measure what they "
                          "give)", choices=("on", "off"), topic=RUNNING)
    compile: bool = option(False, "torch.compile each block (in place; checkpoints keep their keys)", topic=RUNNING)
    conv: str = option("auto", "how 5x5 and larger stride-1 convolutions run (FF-CNN's 7x7): auto (in the "
                       "frequency domain on a CPU from 64 channels in and out, where it measured ~1.7x faster at "
                       "128 channels with the same values) | spectral | direct",
                       choices=("auto", "direct", "spectral"), topic=RUNNING)

    tensorboard: bool = option(False, "also write TensorBoard scalars to RUN_DIR/tensorboard (needs the "
                               "tensorboard package)", topic=OUTPUT)
    log_interval: int = option(20, "steps between host syncs that update the progress bar", ge=1, topic=OUTPUT)
    out: str | None = option(None, "run directory (default: runs/<method>-<model>-<dataset>-<time>)", topic=OUTPUT)
    checkpoint_every: str = option("10m", "also write last.pt within an epoch: every N steps ('500') or every M "
                                   "minutes ('10m'); 0: at the end of each epoch only. A run stopped any way (kill "
                                   "-9, out of memory, a lost node) continues from it with --resume",
                                   topic=OUTPUT)
    force: bool = option(False, "start a new run in an --out folder that holds another run's files (replacing "
                         "them)", topic=OUTPUT)
    dry_run: bool = option(False, "run one train, validation and test batch end to end; write nothing", topic=OUTPUT)

    options: dict[str, Any] = field(default_factory=dict)  # the method's options given; the rest are its defaults

    def method_options(self) -> MethodOptions:
        """The method's options dataclass: those given, the method's defaults for the rest."""
        return method_spec(self.method).build_options(self.options)

    def __getattr__(self, name: str) -> Any:
        """A method option's value as the method uses it (`cfg.lr`, `cfg.model`)."""
        if name.startswith("_") or name == "options":
            raise AttributeError(name)
        opts = self.method_options()
        if not hasattr(opts, name):
            raise AttributeError(f"method {self.method!r} has no option {name!r}")
        return getattr(opts, name)

    def to_dict(self) -> dict[str, Any]:
        """Every run option and the method options given, as one flat dict (the keys of recipes and flags)."""
        out = {k: getattr(self, k) for k in RUN_OPTIONS}
        return {**out, **self.options}


RUN_OPTIONS = {k: v for k, v in declarations(TrainConfig).items() if k != "options"}


def method_option_declarations() -> dict[str, Declaration]:
    """Every registered method's options (registry.option_declarations), checked not to reuse a run option's
    name: a key of a recipe or a saved config is one or the other."""
    declared = option_declarations()
    clash = sorted(set(declared) & set(RUN_OPTIONS))
    if clash:
        owners = ", ".join(declared[k].owner.__name__ for k in clash)
        raise TypeError(f"{owners} declare(s) {', '.join(clash)}, which the run declares: choose another name")
    return declared


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str = "override") -> TrainConfig:
    """Return a copy of cfg with overrides (run options and method options, one flat dict) applied; unknown
    keys, wrong types, values outside their declared choices or bounds and options the method does not take
    are errors."""
    known = set(RUN_OPTIONS) | set(method_option_declarations())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    run = {k: check_value(RUN_OPTIONS[k], v) for k, v in overrides.items() if k in RUN_OPTIONS}
    method = run.get("method", cfg.method)
    taken = method_declarations(method)  # an unknown method is a clear error here
    options = {**cfg.options, **{k: v for k, v in overrides.items() if k not in RUN_OPTIONS}}
    for k, v in list(options.items()):
        if v is None:  # not set: the method's default (an older saved config holds every option, most None)
            del options[k]
            continue
        if k not in taken:
            raise ConfigError(f"--{k.replace('_', '-')} does not apply to method {method!r}; it is an "
                              f"option of {', '.join(option_owners(k))} (see `ffvision list --method {method}`)")
        options[k] = check_value(taken[k], v)
    new = dataclasses.replace(cfg, **run, options=options)
    new.method_options()  # the method's own checks of its options together
    return validate(new)


def checked(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with every option checked against its declaration (a TrainConfig built by hand, too)."""
    return apply_overrides(TrainConfig(), cfg.to_dict(), source="config")


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


def checkpoint_interval(text: str) -> tuple[int, float]:
    """--checkpoint-every as (steps, seconds), one of them 0: '500' -> (500, 0), '10m' -> (0, 600), '0' -> (0, 0)."""
    t = text.strip().lower()
    try:
        if t.endswith(("m", "min")):
            minutes = float(t.removesuffix("min").removesuffix("m"))
            if minutes > 0:
                return 0, minutes * 60
        elif int(t) >= 0:
            return int(t), 0.0
    except ValueError:
        pass
    raise ConfigError(f"checkpoint_every must be a number of steps (500), of minutes (10m) or 0, got {text!r}")


def duration_seconds(text: str) -> float:
    """--time-budget as seconds: '90s' -> 90, '10m' -> 600, '1.5h' -> 5400 (more than zero)."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(t[:-1]) * units[t[-1]]
    except (KeyError, ValueError, IndexError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"time_budget must be a duration above zero with its unit: 90s, 10m or 1.5h; got {text!r}")
    return seconds


def validate(cfg: TrainConfig) -> TrainConfig:
    """The checks that involve more than one option, or a format (each option's bounds are declared with it)."""
    checkpoint_interval(cfg.checkpoint_every)
    if cfg.time_budget is not None:
        duration_seconds(cfg.time_budget)
        if cfg.epochs is not None:
            raise ConfigError(f"--epochs {cfg.epochs} and --time-budget {cfg.time_budget} do not go together: a run "
                              "ends after a number of epochs or after an amount of training time; give one")
    if cfg.micro_batches is not None and cfg.micro_batches > 1 and cfg.pipeline_devices:
        raise ConfigError("--micro-batches and --pipeline-devices do not go together: a pipeline trains its own "
                          "micro-batches (--pipeline-micro-batches), one update each")
    if cfg.epochs is not None and cfg.warmup_epochs > cfg.epochs:
        raise ConfigError(f"warmup_epochs must be in [0, epochs], got {cfg.warmup_epochs}")
    return cfg
