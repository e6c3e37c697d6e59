"""Command line: ffvision train | eval | predict | cam | labels | bench | diagnose | list.

Errors caused by the user (bad option, missing data, damaged checkpoint...) print one line
and exit with status 2 (3 for a diverged run; 74 when a run file cannot be written on a full or read-only disk;
after Ctrl-C, SIGTERM or SIGUSR1, which save last.pt, 128 + the signal's number: 130, 143, 138); bugs keep their
traceback. Output to a reader that goes away (`| head`) ends quietly, with status 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any, Sequence

from ffvision.config import RUN_OPTIONS, TOPICS, TrainConfig, apply_overrides, load_recipe, method_option_declarations
from ffvision.errors import ConfigError, FFVisionError
from ffvision.export_options import EARLY_EXIT, FORMATS, QUANTIZE
from ffvision.io import write_json
from ffvision.methods.hierarchy import LINKAGES
from ffvision.options import Declaration

RECIPES = Path(__file__).parent / "recipes"
# The commands that train or evaluate, where the C-heap setting pays (train/heap.py); `list`, `labels` and --help
# leave the heap alone.
HEAP_COMMANDS = ("train", "eval", "diagnose", "bench", "predict", "cam")
# The run options `ffvision bench` takes (checked as `ffvision train` checks them), beside every method option
BENCH_RUN_OPTIONS = ("method", "batch_size", "micro_batches", "device", "amp", "channels_last", "compile", "kernels")

EPILOG_TRAIN = """examples:
  ffvision train --method asge --model vgg8 --dataset fashion-mnist --width-mult 0.25 \\
      --train-subset 10000 --epochs 3 --out runs/quick
  ffvision train --config asge-cifar10 --data-dir ~/data          # a paper recipe
  ffvision train --method bp --config asge-fmnist --epochs 5      # backprop, same network
  ffvision train --resume runs/quick --epochs 6                  # continue (or extend) a run
  ffvision train --dry-run                                       # one batch end to end
recipes: """


def _recipe_names() -> list[str]:
    """Recipe files shipped with ffvision."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def _resolve_recipe(name: str) -> Path:
    """A recipe path, or the name of a shipped recipe."""
    p = Path(name)
    if p.is_file():
        return p
    shipped = RECIPES / f"{name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"recipe {name!r} not found; shipped recipes: {', '.join(_recipe_names())}")


def flag_declarations() -> dict[str, Declaration]:
    """Every option with a flag: the run's (config.py), then every registered method's (methods/options.py)."""
    return {**RUN_OPTIONS, **method_option_declarations()}


def option_groups() -> dict[str, list[str]]:
    """--help's groups of options: the run's by topic, then the methods' by the methods that take them."""
    from ffvision.methods.registry import list_methods, option_declarations, option_owners

    groups: dict[str, list[str]] = {f"run options: {t}": [] for t in TOPICS}
    for name, d in RUN_OPTIONS.items():
        groups[f"run options: {d.topic}"].append(name)
    everyone = len(list_methods())
    for name in option_declarations():
        owners = option_owners(name)
        title = "options of every method" if len(owners) == everyone else f"options of {', '.join(owners)}"
        groups.setdefault(title, []).append(name)
    return {t: names for t, names in sorted(groups.items(), key=lambda kv: _group_rank(kv[0]))}


def _group_rank(title: str) -> tuple[int, int, str]:
    """Run topics first (in TOPICS order), then every method's options, then the others by their methods' names."""
    if title.startswith("run options: "):
        return (0, TOPICS.index(title.removeprefix("run options: ")), "")
    return (1, 0 if title == "options of every method" else 1, title)


def _add_config_flags(p: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One flag per option (width_mult -> --width-mult), defaults suppressed, in --help's groups; `only`: the run
    options to offer (every method option is offered)."""
    declared = flag_declarations()
    for title, names in option_groups().items():
        names = [n for n in names if only is None or n in only or n not in RUN_OPTIONS]
        if names:
            group = p.add_argument_group(title)
            for name in names:
                add_option_flag(group, declared[name])


def add_option_flag(p: argparse._ActionsContainer, d: Declaration) -> None:
    """The flag of one declared option: its type, help, default and allowed values from the declaration (a
    method option's default is each method's); the default is suppressed, so a flag not given is absent from the
    parsed arguments, and the value is checked as a recipe's is."""
    helptext = d.help
    if d.name in RUN_OPTIONS:
        if d.default is not None and "(default" not in helptext:
            helptext += f" [default: {d.default}]"
    else:
        helptext += method_default_text(d.name)
    if d.bounds:
        helptext += f" ({d.allowed()})"
    base = d.base_type
    metavar = "{" + ",".join(d.choices) + "}" if d.choices else d.name.upper()
    if base is bool:
        p.add_argument(d.flag, dest=d.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help=helptext)
    elif typing.get_origin(base) in (list, tuple):
        p.add_argument(d.flag, dest=d.name, type=float, nargs="+", default=argparse.SUPPRESS, help=helptext,
                       metavar=metavar)
    else:
        p.add_argument(d.flag, dest=d.name, type=base, default=argparse.SUPPRESS, help=helptext, metavar=metavar)


def method_default_text(name: str) -> str:
    """' [default: V]' when every method that takes option `name` has default V, else ' [default: asge V, bp W]'."""
    from ffvision.methods.registry import list_methods, method_defaults

    declared = {m: method_defaults(m) for m in list_methods()}
    vals = {m: d[name] for m, d in declared.items() if name in d}
    if all(v is None for v in vals.values()):
        return ""
    if len({repr(v) for v in vals.values()}) == 1:
        return f" [default: {_shown(next(iter(vals.values())))}]"
    return " [default: " + ", ".join(f"{m} {_shown(v)}" for m, v in vals.items()) + "]"


def _shown(v: Any) -> str:
    """A default as a flag takes it: 0.5 0.7 for a list."""
    return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


class _ConsoleHandler(logging.Handler):
    """The terminal side of the `ffvision` logger: messages on stdout, written around any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record (warnings prefixed); a 30-s progress line is skipped while a bar shows the same."""
        if getattr(record, "beside_bar", False):
            return
        try:
            msg = self.format(record)
            if record.levelno >= logging.WARNING:
                msg = f"{record.levelname.lower()}: {msg}"
            if "tqdm" in sys.modules:  # a bar may be on stderr: print above it
                from tqdm import tqdm

                tqdm.write(msg, file=sys.stdout)
            else:
                sys.stdout.write(msg + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `| head` has read enough: the run goes on, its train.log keeps every line
            stdout_closed()
        except Exception:  # noqa: BLE001 - logging must never stop a run
            self.handleError(record)


def stdout_closed() -> None:
    """The reader of stdout went away (`| head`, `| grep -q`): send what is left to /dev/null, so that neither
    a later print nor Python's flush at exit fails."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (an embedding program's stream)
        pass


def configure_logging(verbosity: int) -> None:
    """Show the `ffvision` logger on stdout: -q warnings and errors only, default progress, -v debug too.

    The logger itself stays at INFO (DEBUG with -v), so a run's train.log keeps the progress lines under -q.
    """
    logger = logging.getLogger("ffvision")
    for h in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(h)
    handler = _ConsoleHandler()
    handler.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.propagate = False  # the root logger of an embedding program does not print it twice


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where the help is, not the whole usage."""

    def error(self, message: str) -> typing.NoReturn:
        """Print `prog: error: message (see prog --help)` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all subcommands."""
    from ffvision import __version__

    parser = _Parser(
        prog="ffvision", description="Train convolutional networks without end-to-end backpropagation "
        "(ASGE and other Forward-Forward methods) and compare them with backprop.",
        epilog="environment: FFVISION_PLUGINS=module,... imports modules that register methods or models "
        "(docs/extending.md). On Linux (glibc) the commands that train or evaluate keep freed memory for reuse, "
        "which made FF-CNN's CPU evaluation ~1.5x faster at ~16% more peak memory; FFVISION_KEEP_FREED_MEMORY=0, "
        "or any MALLOC_*_ variable of your own, leaves the C heap at its defaults.")
    parser.add_argument("--version", action="version", version=f"ffvision {__version__}")
    # -q / -v before or after the command name (the subcommand's copy leaves the value given before alone)
    for p, default in ((parser, 0), (common := _Parser(add_help=False), argparse.SUPPRESS)):
        group = p.add_mutually_exclusive_group()
        group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                           help="print only warnings, errors and results (a run's train.log keeps everything)")
        group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
                           help="also print debug messages")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", parents=[common], help="train a network",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train with a local-learning method (or backprop). Precedence: defaults < "
                       "--config recipe < flags. The best epoch is selected on a validation split carved from "
                       "the training data; the test set is evaluated once at the end. Writes RUN_DIR/"
                       "{last.pt,best.pt,metrics.jsonl,curves.png,summary.json}.",
                       epilog=EPILOG_TRAIN + ", ".join(_recipe_names()))
    t.add_argument("--config", metavar="RECIPE", help="YAML recipe: a path or a shipped name (see below)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt; 'auto': "
                   "continue --out's run if it has a last.pt, else start it there (for jobs a cluster may restart: "
                   "torchrun --max-restarts, a requeued Slurm job)")
    _add_config_flags(t)

    e = sub.add_parser("eval", parents=[common], help="evaluate a checkpoint or an exported model",
                       description="Test accuracy of a checkpoint by prediction strategy, layer and early-exit "
                       "threshold, and what each strategy costs at inference on the evaluation's device: latency at "
                       "batch 1 (ms, median after warm-up), images/s at batch 64 and the peak of bytes held by "
                       "tensors at batch 1 and 64 (MiB), each strategy run as `ffvision export` writes it (float32, "
                       "only the layers it uses). Given a run directory, also records them in its summary.json. "
                       "An exported .onnx or TorchScript file is evaluated by the same rules on the CPU.",
                       epilog="example: ffvision eval runs/quick --dataset fashion-mnist; ffvision eval model.onnx")
    e.add_argument("checkpoint", help="a .pt file, a run directory (uses its best.pt) or a file ffvision export "
                   "wrote")
    e.add_argument("--no-inference", dest="inference", action="store_false",
                   help="skip measuring latency, throughput and memory per strategy")
    e.add_argument("--dataset", help="dataset name (default: the one it was trained on)")
    e.add_argument("--data-dir", help="dataset folder")
    e.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if missing")
    e.add_argument("--split", choices=["test", "val"], default="test", help="which split [default: test]")
    e.add_argument("--strategy", help="print only this prediction strategy")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto]")
    e.add_argument("--num-workers", type=int, default=None, help="DataLoader workers")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    pr = sub.add_parser("predict", parents=[common], help="classify image files",
                        description="Print the top classes of each image with a trained checkpoint.",
                        epilog="example: ffvision predict runs/quick/best.pt shirt.png boot.jpg")
    pr.add_argument("checkpoint", help="a .pt file, a run directory (uses its best.pt) or a file ffvision export "
                    "wrote")
    pr.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    pr.add_argument("--strategy", help="prediction strategy (default: the method's)")
    pr.add_argument("--top-k", type=int, default=3, help="how many classes to print [default: 3]")
    pr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto]")

    _add_export_parser(sub, common)

    c = sub.add_parser("cam", parents=[common], help="class activation maps of images (PNG)",
                       description="For each image, write DIR/<name>_cam.png: the image and, per layer, the regions "
                       "that drive that layer's score of the predicted class (Grad-CAM on each block's own readout: "
                       "ASGE's spatial goodness readout, FF-CNN's goodness, backprop's classifier).",
                       epilog="example: ffvision cam runs/ffcnn/best.pt boot.png --out cams/")
    c.add_argument("checkpoint", help="a .pt file or a run directory (uses its best.pt)")
    c.add_argument("images", nargs="+", help="image files")
    c.add_argument("--out", required=True, help="folder for the PNGs")
    c.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    c.add_argument("--strategy", help="strategy that picks the predicted class (default: the method's)")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto]")

    lb = sub.add_parser("labels", parents=[common], help="show the label patterns of a label set (PNG)",
                        description="Render FF-CNN's spatially-extended label patterns, one per class.",
                        epilog="example: ffvision labels --set fourier --num-classes 10 --out labels.png")
    lb.add_argument("--set", dest="label_set", default="fourier", help="fourier | morphological [default: fourier]")
    lb.add_argument("--num-classes", type=int, default=10, help="number of classes [default: 10]")
    lb.add_argument("--image-size", type=int, default=32, help="pattern size in px [default: 32]")
    lb.add_argument("--out", default="labels.png", help="output PNG [default: labels.png]")

    bn = sub.add_parser("bench", parents=[common], help="training img/s and peak memory, optionally against backprop",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Measure training throughput and peak training memory of a method (speed and "
                        "memory each in a fresh process; memory both exactly, as the peak of bytes held by tensors "
                        "in a step, and as the process's peak) and, with --compare, of other methods on the same "
                        "network: bp, bp-checkpoint (backprop with per-layer activation checkpointing), bp-accum "
                        "(backprop over 4 micro-batches, gradients accumulated).",
                        epilog="example:\n  ffvision bench --method asge --model vgg8 --batch-size 128 --compare "
                        "bp,bp-checkpoint,bp-accum --json bench.json")
    _add_config_flags(bn, only=BENCH_RUN_OPTIONS)  # declared once: as `ffvision train` has them
    bn.add_argument("--compare", default=None, help="also measure these (comma-separated) on the same network: "
                    "bp, bp-checkpoint, bp-accum, another method, or unsplit (with micro-batches: the method on "
                    "whole batches)")
    bn.add_argument("--in-channels", type=int, default=1, help="input channels [default: 1]")
    bn.add_argument("--image-size", type=int, default=32, help="input size in px [default: 32]")
    bn.add_argument("--num-classes", type=int, default=10, help="classes [default: 10]")
    bn.add_argument("--steps", type=int, default=10, help="timed steps [default: 10]")
    bn.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps [default: 3]")
    bn.add_argument("--repeats", type=int, default=1,
                    help="speed runs per method, the methods taking turns; the median is reported [default: 1]")
    bn.add_argument("--json", metavar="FILE", help="write {runs: {...}, ratios: {...}} (a sweep: its points and "
                    "variants) as JSON")
    bn.add_argument("--batch-sizes", metavar="B,B,...", help="sweep these batch sizes (instead of --batch-size): "
                    "img/s and peak memory of each variant at each, a table, --json and --plot")
    bn.add_argument("--micro-batch-size", type=int, metavar="M", help="in a sweep: the method and bp-accum split "
                    "each batch into micro-batches of M images (equal micro-batch, equal batch)")
    bn.add_argument("--budget", metavar="BYTES", help="in a sweep: a memory budget (8GiB, 512MiB): the largest "
                    "batch of each variant within it, marked on the plot")
    bn.add_argument("--plot", metavar="PNG", help="in a sweep: draw peak memory and img/s against the batch size")

    dg = sub.add_parser("diagnose", parents=[common],
                        help="per-layer goodness diagnostics of a checkpoint (PNG + JSON)",
                        description="For each layer: the true label's score (goodness for FF-CNN/Hinton, the "
                        "readout for ASGE/SFF) against the wrong labels' scores, the rank of the true label, and the "
                        "label sensitivity (how much the score moves when only the label changes, against when only "
                        "the image changes). Writes OUT/diagnose.json and OUT/diagnose.png.",
                        epilog="example: ffvision diagnose runs/hinton --images 1000")
    dg.add_argument("checkpoint", help="a .pt file or a run directory (uses its best.pt)")
    dg.add_argument("--out", help="output folder [default: the run directory, or the checkpoint's folder]")
    dg.add_argument("--split", choices=["val", "test"], default="val", help="which split [default: val]")
    dg.add_argument("--images", type=int, default=1000, help="images to analyse [default: 1000]")
    dg.add_argument("--dataset", help="dataset name (default: the one it was trained on)")
    dg.add_argument("--data-dir", help="dataset folder")
    dg.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto]")

    hy = sub.add_parser("hierarchy", parents=[common], help="build a class hierarchy for HCL-FF from a trained run",
                        description="Cluster the classes by their rows of a trained run's linear head (normalised; "
                        "Ward linkage by default) and write the tree's levels, coarse to fine, as a JSON file for "
                        "--hierarchy. Build from a run of hclff without a hierarchy (HCL-FF's pretraining).",
                        epilog="example: ffvision train --config hclff-cifar10 --epochs 200 --out runs/c10-pre && "
                        "ffvision hierarchy runs/c10-pre --out cifar10-tree.json && ffvision train --config "
                        "hclff-cifar10 --hierarchy cifar10-tree.json")
    hy.add_argument("checkpoint", help="a .pt file or a run directory (uses its best.pt)")
    hy.add_argument("--out", required=True, help="the JSON file to write")
    hy.add_argument("--linkage", choices=LINKAGES, default="ward", help="cluster distance [default: ward]")

    ls = sub.add_parser("list", parents=[common], help="list methods, models, datasets and recipes",
                        description="Without --method: every method (with its default model), model, dataset "
                        "and recipe. With --method NAME: the options that method takes, with their defaults.")
    ls.add_argument("--method", help="show the options of this method")
    ls.add_argument("--options", action="store_true", help="print every option as a markdown table (docs/options.md)")
    return parser


def _add_export_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The `export` command's arguments."""

    x = sub.add_parser("export", parents=[common], help="write one prediction strategy as an ONNX or TorchScript "
                       "model", description="Write one prediction strategy of a trained run as a self-contained "
                       "model: only the layers, readouts and heads the strategy uses (no optimizer state), taking "
                       "float32 images (B, C, H, W) in [0, 1] at the training size and returning class scores; the "
                       "class names, input size, channels and strategy are in its metadata. Early exit is one model: "
                       "TorchScript stops at the layer where every image has exited; ONNX runs every layer and "
                       "returns each image's first confident layer's scores (the same predictions). ONNX needs "
                       "pip install 'ffvision[export]'. Check the file with ffvision eval FILE / ffvision predict "
                       "FILE.", epilog="example: ffvision export runs/quick --strategy heads --format onnx --out "
                       "asge.onnx")
    x.add_argument("checkpoint", help="a .pt file or a run directory (uses its best.pt)")
    x.add_argument("--out", required=True, help="the model file to write (.onnx for ONNX)")
    x.add_argument("--format", choices=FORMATS, default="onnx", help="[default: onnx]")
    x.add_argument("--strategy", help=f"prediction strategy, or {EARLY_EXIT} with --threshold (default: the one the "
                   "run chose on validation)")
    x.add_argument("--threshold", type=float, help=f"{EARLY_EXIT}: the softmax probability at which an image exits")
    x.add_argument("--quantize", choices=QUANTIZE, help="int8 weights (ONNX: onnxruntime's dynamic quantization); "
                   "ffvision eval FILE reports the accuracy it keeps")


def cmd_export(args: argparse.Namespace) -> int:
    """ffvision export."""
    from ffvision.deploy import export

    if args.format == "onnx" and Path(args.out).suffix != ".onnx":
        raise ConfigError(f"an ONNX model's file name ends in .onnx (ffvision eval and predict know it by that), "
                          f"got {args.out}")
    info = export(args.checkpoint, args.out, args.format, args.strategy, args.threshold, args.quantize)
    how = info["strategy"] + (f" at {info['threshold']:g}" if info["threshold"] is not None else "")
    print(f"{info['path']}: {info['method']} {info['model']} by {how}, {info['format']}"
          f"{' int8' if info['quantize'] else ''}, {info['parameters']:,} parameters, "
          f"{info['bytes'] / 2**20:.2f} MiB; input {info['in_channels']}x{info['image_size']}x{info['image_size']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """ffvision train."""
    from ffvision.train.run import train

    given = given_options(args)
    progress = False if args.verbosity < 0 else None  # -q: no progress bar either; else tqdm decides (a terminal)
    if args.resume == "auto":  # a job that may be started again: continue --out's run, or start it
        summary = train(_train_config(args, given), resume="auto", show_progress=progress)
    elif args.resume:
        if args.config:
            raise ConfigError("--config cannot be combined with --resume (the run keeps its own config)")
        summary = train(TrainConfig(), resume=args.resume, overrides=given, show_progress=progress)
    else:
        summary = train(_train_config(args, given), show_progress=progress)
    if args.verbosity < 0 and not summary.get("dry_run"):  # quiet: the result is still the command's output
        from ffvision.train.run import format_report

        print("\n".join(format_report(summary)))
    if summary.get("diverged"):  # finished, but the loss exploded: not a success
        print(f"error: the run diverged: {summary['warnings'][0]}", file=sys.stderr)
        return 3
    return 0


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The option flags given on the command line, by option name."""
    declared = flag_declarations()
    return {k: v for k, v in vars(args).items() if k in declared}


def _train_config(args: argparse.Namespace, given: dict[str, Any]) -> TrainConfig:
    """The config of a new run: defaults < --config recipe < flags, each flag checked against the method."""
    cfg = TrainConfig()
    if args.config:
        path = _resolve_recipe(args.config)
        recipe = load_recipe(path)
        method = given.get("method", recipe.get("method", cfg.method))
        if method != recipe.get("method", method):  # e.g. --method bp --config asge-fmnist: the same run, by bp
            from ffvision.methods import used_options

            kept = used_options(method, recipe)
            dropped = sorted(set(recipe) - set(kept))
            if dropped:
                print(f"--method {method} with recipe {path.stem}: its options for {recipe['method']} are not "
                      f"used ({', '.join(dropped)})", file=sys.stderr)
            recipe = kept
        if "time_budget" in given and "epochs" not in given:  # the budget replaces the recipe's length
            recipe.pop("epochs", None)
        cfg = apply_overrides(cfg, recipe, source=str(path))
    return apply_overrides(cfg, given, source="command line")  # a flag the method does not take is an error


def cmd_eval(args: argparse.Namespace) -> int:
    """ffvision eval."""
    from ffvision.train.run import evaluate_checkpoint, format_report

    res = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                              device=args.device, download=args.download, num_workers=args.num_workers,
                              inference=args.inference)
    summary = Path(args.checkpoint) / "summary.json"
    if args.inference and summary.is_file():
        write_json(summary, {**json.loads(summary.read_text()), "inference": res["inference"]})
    if args.strategy:
        by = res["test_accuracy_by_strategy"]
        if args.strategy not in by:
            raise ConfigError(f"unknown strategy {args.strategy!r}; choose one of: {', '.join(by)}")
        print(f"{args.strategy}: {by[args.strategy]:.4f}")
    else:
        print("\n".join(format_report(res)))
    if args.json:
        write_json(args.json, res)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """ffvision diagnose."""
    from ffvision.train.run import diagnose_checkpoint

    path = Path(args.checkpoint)
    out = args.out or (path if path.is_dir() else path.parent)
    res = diagnose_checkpoint(path, out, split=args.split, images=args.images, dataset=args.dataset,
                              data_dir=args.data_dir, device=args.device)
    print(f"{res['method']} {res['model']} on {res['dataset']} ({res['split']}, {res['images']} images)")
    print(f"  {'layer':<10} {'acc':>6} {'unbiased':>9} {'pairs ok':>9} {'mean rank':>10} {'label/image':>12} "
          f"{'silent units':>13}")
    for e in res["layers"] + [{"name": k, **v} for k, v in res["strategies"].items()]:
        silent = f"{e['silent_units']:>13.3f}" if "silent_units" in e else ""
        row = (f"  {e['name']:<10} {e['accuracy']:>6.3f} {e['accuracy_without_label_bias']:>9.3f} "
               f"{e['pairs_ranked_right']:>9.3f} {e['mean_rank']:>10.2f} {e['label_to_image_ratio']:>12.3f} {silent}")
        print(row.rstrip())
    print(f"wrote {Path(out) / 'diagnose.json'} and {Path(out) / 'diagnose.png'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """ffvision predict."""
    from ffvision.predict import predict_files

    for path, top in predict_files(args.checkpoint, args.images, strategy=args.strategy, top_k=args.top_k,
                                   device=args.device):
        print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in top))
    return 0


def cmd_cam(args: argparse.Namespace) -> int:
    """ffvision cam."""
    from ffvision.predict import class_maps_files

    for path in class_maps_files(args.checkpoint, args.images, args.out, target=args.target, strategy=args.strategy,
                                 device=args.device):
        print(path)
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """ffvision labels."""
    from ffvision.core.labels import SpatialLabels
    from ffvision.viz.cam import save_label_patterns

    if args.num_classes < 2 or args.image_size < 4:
        raise ConfigError("--num-classes must be at least 2 and --image-size at least 4")
    enc = SpatialLabels(args.label_set, args.num_classes, args.image_size, args.image_size)
    save_label_patterns(enc.patterns, args.out)
    print(f"{args.num_classes} {args.label_set} patterns at {args.image_size}x{args.image_size} px -> {args.out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """ffvision bench."""
    from ffvision.bench import BP_VARIANTS, UNSPLIT, bench, format_table
    from ffvision.methods import method_class
    from ffvision.models import list_models
    from ffvision.train.budget import MAX_BATCH

    cfg = apply_overrides(TrainConfig(), given_options(args), source="command line")  # train's checks and messages
    for other in (args.compare or "").split(","):
        if other and other not in BP_VARIANTS and other != UNSPLIT:
            method_class(other)
    if cfg.model not in list_models():
        from ffvision.errors import unknown_name

        raise unknown_name("model", cfg.model, list_models())
    kwargs = {k: v for k, v in cfg.options.items() if k != "model"}  # given; the method's defaults for the rest
    common = dict(device=cfg.device, compare=args.compare, in_channels=args.in_channels, image_size=args.image_size,
                  num_classes=args.num_classes, steps=args.steps, warmup=args.warmup, amp=cfg.amp,
                  channels_last=cfg.channels_last, compile=cfg.compile, kernels=cfg.kernels, repeats=args.repeats,
                  method_kwargs=kwargs)
    sweep_only = [f for f, v in (("--micro-batch-size", args.micro_batch_size), ("--budget", args.budget),
                                 ("--plot", args.plot)) if v is not None]
    if args.batch_sizes is None and sweep_only:
        raise ConfigError(f"{', '.join(sweep_only)} belong to a sweep: give --batch-sizes")
    if args.batch_sizes is not None:
        from ffvision.bench import batch_sweep, format_sweep, parse_bytes

        if args.micro_batch_size is not None and cfg.micro_batches is not None:
            raise ConfigError("give --micro-batches or --micro-batch-size, not both")
        try:
            sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        except ValueError:
            raise ConfigError(f"--batch-sizes takes whole numbers, e.g. 32,64,128, got {args.batch_sizes!r}") from None
        budget = parse_bytes(args.budget) if args.budget is not None else None
        res = batch_sweep(cfg.method, cfg.model, sizes, micro_batch_size=args.micro_batch_size, budget=budget,
                          **common)
        print(format_sweep(res))
        if args.json:
            write_json(args.json, res)
        if args.plot:
            from ffvision.viz.sweep import plot_sweep

            plot_sweep(res, args.plot)
        return 0
    res = bench(cfg.method, cfg.model, cfg.batch_size or MAX_BATCH, micro_batches=cfg.micro_batches, **common)
    print(format_table(res))
    if args.json:
        write_json(args.json, res)
    return 0


def cmd_hierarchy(args: argparse.Namespace) -> int:
    """ffvision hierarchy."""
    from ffvision.predict import write_hierarchy

    data = write_hierarchy(args.checkpoint, args.out, args.linkage)
    sizes = " -> ".join(str(len(level)) for level in data["levels"])
    print(f"wrote {args.out}: {len(data['levels'])} levels of {sizes} groups")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """ffvision list."""
    from ffvision.data import list_datasets
    from ffvision.methods import default_model, list_methods, method_spec
    from ffvision.methods.registry import method_declarations
    from ffvision.models import list_models

    if args.options:
        print(options_markdown(), end="")
        return 0
    if args.method:
        spec = method_spec(args.method)
        print(f"{args.method}: {spec.summary}")
        print(f"  default model: {default_model(args.method)}")
        print(f"  strategies:    {', '.join(spec.strategies)} (default {spec.default_strategy}; the run reports the "
              "best on validation unless --strategy is given)")
        declared = method_declarations(args.method)
        defaults = spec.defaults()
        print("  options (flag, default, allowed, meaning):")
        for name, d in declared.items():
            print(f"    {d.flag:<24} {_shown(defaults[name]):<10} {d.allowed():<22} {d.help}".rstrip())
        return 0
    print("methods:  " + ", ".join(f"{m} (model {default_model(m)})" for m in list_methods()))
    print("          (ffvision list --method NAME: the options a method takes)")
    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    print("recipes:  " + ", ".join(_recipe_names()))
    return 0


def options_markdown() -> str:
    """docs/options.md: every option as declared, the run's by topic and each method's (`ffvision list --options`)."""
    from ffvision.methods import list_methods, method_spec
    from ffvision.methods.registry import method_declarations

    out = ["# Options", "",
           "Generated from the declarations (`ffvision list --options > docs/options.md`): every option is a flag",
           "(`--width-mult`), a recipe key (`width_mult`) and a key of a saved config.", ""]

    def table(rows: list[tuple[Declaration, Any]]) -> list[str]:
        lines = ["| option | default | allowed | meaning |", "|---|---|---|---|"]
        for d, default in rows:
            text = d.help.replace("|", "\\|")
            lines.append(f"| `{d.flag}` | {_shown(default)} | {d.allowed()} | {text} |")
        return lines + [""]

    for topic in TOPICS:
        out += [f"## Run options: {topic}", ""] + table([(d, d.default) for d in RUN_OPTIONS.values()
                                                          if d.topic == topic])
    for m in list_methods():
        spec = method_spec(m)
        defaults = spec.defaults()
        out += [f"## {m}", "", spec.summary, ""] + table([(d, defaults[k])
                                                          for k, d in method_declarations(m).items()])
    return "\n".join(out)


def one_line(e: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it."""
    text = str(e).strip()
    if "Original Traceback" in text:  # re-raised from a worker: the real message is last
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text.splitlines()[0] if text else type(e).__name__


def _is_main_rank() -> bool:
    """Whether this process prints for the run (rank 0 under torchrun)."""
    import os

    return os.environ.get("RANK", "0") == "0"  # the process group is left by now


def load_plugins(names: str | None) -> None:
    """Import the modules named in FFVISION_PLUGINS (comma-separated): they register methods and models."""
    import importlib

    for name in filter(None, (n.strip() for n in (names or "").split(","))):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise ConfigError(f"FFVISION_PLUGINS names {name!r}, which cannot be imported ({e})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ffvision` command."""
    import os

    try:
        load_plugins(os.environ.get("FFVISION_PLUGINS"))  # before the flags: a plugin's options are flags too
    except FFVisionError as e:
        print(f"ffvision: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    args = build_parser().parse_args(argv)
    configure_logging(args.verbosity)
    if args.command in HEAP_COMMANDS:
        from ffvision.train.heap import keep_freed_memory

        keep_freed_memory()  # CPU steps reuse their large temporaries instead of page-faulting them in (train/heap.py)
    commands: dict[str, Any] = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "export": cmd_export,
                                "cam": cmd_cam,
                                "labels": cmd_labels, "bench": cmd_bench, "list": cmd_list, "diagnose": cmd_diagnose,
                                "hierarchy": cmd_hierarchy}
    try:
        return commands[args.command](args)
    except FFVisionError as e:
        if "torch" not in sys.modules or _is_main_rank():  # under torchrun every rank fails alike; one line is enough
            print(f"ffvision: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ffvision: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output's reader has all it wanted: not a failure
        stdout_closed()
        return 0


if __name__ == "__main__":
    sys.exit(main())
