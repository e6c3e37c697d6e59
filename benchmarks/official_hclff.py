"""HCL-FF's official code beside ffvision's `hclff` and `deeperforward`: training speed and accuracy on the same data.

Needs a checkout of the official code (git clone https://github.com/JNNNNYao/HCL-FF), imported from its folder and
never copied here. Both sides train the 17-layer channel-wise ResNet (planes from --width-mult: 0.2 gives 20-40-80-160,
2 channels per class) on one thread.

report: the markdown table of `train` records beside the protocol official-hclff's (ffvision's side).
speed: the same random 28 px batches, taking turns (--rounds); ffvision in float32 and bf16. The official step is
  `Resnet.update` (all 17 layers, projection heads, linear head), ffvision's `train_step`.
train: one official run on ffvision's split of FashionMNIST (the first --train-subset images of its shuffled
  training part, its --val-size validation images, split seed 42; the 10,000 test images), one JSON line per run.
  Adapted to run here: the official loaders are rebuilt on that split with the official transforms (taken from
  its `get_fmnist_dataloader`, which reads FashionMNIST's raw files under --root) and no worker processes; the
  network's planes from --width-mult; the seed from --seed (the official main fixes 2222); the epoch with the
  best validation accuracy (the official per-epoch layer-range "pruning" on the validation split) is tested,
  as ffvision tests its best epoch (also reported: the last epoch, which the official main prints).
  `--method deeperforward` is the same code without the hierarchy (its `--pretrain` path) and with the
  supervised contrastive term set to zero: DeeperForward's training as HCL-FF releases it.

    python benchmarks/official_hclff.py speed --official ~/src/HCL-FF --batches 6 --rounds 2
    python benchmarks/official_hclff.py train --official ~/src/HCL-FF --root ~/fmnist-root --method hclff \
        --epochs 8 --seed 0 --record results/official-hclff-MACHINE-DATE.jsonl
    python benchmarks/official_hclff.py report results/official-hclff-*.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from protocol import mean_sd

import ffvision
from ffvision.data import build_splits
from ffvision.train.devices import cpu_name
from ffvision.train.placement import set_precision

ORDER = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def official_network(args: argparse.Namespace, hierarchy: dict | None, epochs: int) -> torch.nn.Module:
    """The official Resnet at ffvision's planes for this width, its FashionMNIST settings and layer levels."""
    from model.resnet import Resnet

    ours = ffvision.create_method("deeperforward", num_classes=10, in_channels=1, image_size=28,
                                  width_mult=args.width_mult)
    planes = [ours.blocks[i].body.conv.out_channels for i in (0, 5, 9, 13)]
    levels = None if hierarchy is None else [min(1 + (i * len(hierarchy)) // 17, len(hierarchy)) for i in range(17)]
    return Resnet(in_channels=1, num_class=10, planes=planes, learning_rate=0.04, lr_min=0.008, weight_decay=1e-4,
                  epochs=epochs, hierarchy=hierarchy, layer_to_level=levels, device=torch.device("cpu"))


def speed(args: argparse.Namespace) -> dict:
    """Median training img/s of each side over --rounds turns."""
    from data.build_hierarchy import json_to_hierarchy

    options = {"num_classes": 10, "in_channels": 1, "image_size": 28, "width_mult": args.width_mult,
               "hierarchy": "fashion-mnist"}
    ours = {amp: ffvision.create_method("hclff", **options) for amp in ("off", "bf16")}
    for amp, m in ours.items():
        set_precision(m, torch.device("cpu"), amp, False)
    tree = json.loads((args.official / "data" / "hierarchy_fashion_mnist.json").read_text())
    official = official_network(args, json_to_hierarchy(tree, ORDER), epochs=150)
    torch.manual_seed(0)
    batches = [(torch.rand(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,)))
               for _ in range(args.batches)]
    images = args.batch_size * args.batches

    def official_turn() -> float:
        official.update(batches[:1])
        t = time.perf_counter()
        official.update(batches)
        return images / (time.perf_counter() - t)

    def ours_turn(m: ffvision.LocalMethod) -> float:
        m.train_step(*batches[0])
        t = time.perf_counter()
        for x, y in batches:
            m.train_step(x, y)
        return images / (time.perf_counter() - t)

    speeds: dict[str, list[float]] = {"official": [], "ffvision float32": [], "ffvision bf16": []}
    for _ in range(args.rounds):
        speeds["official"].append(official_turn())
        speeds["ffvision float32"].append(ours_turn(ours["off"]))
        speeds["ffvision bf16"].append(ours_turn(ours["bf16"]))
    median = {k: statistics.median(v) for k, v in speeds.items()}
    params = (sum(p.numel() for p in official.layers.parameters()),
              ours["off"].trainable_parameters(ours["off"].blocks))
    return {"benchmark": "official-hclff-speed", "width_mult": args.width_mult, "batch_size": args.batch_size,
            "layer_parameters": {"official": params[0], "ffvision": params[1]},
            "images_per_second": {k: round(v, 1) for k, v in median.items()},
            "ffvision_over_official": {k: round(v / median["official"], 2) for k, v in median.items()}}


class OnSplit(torch.utils.data.Dataset):
    """ffvision's uint8 images of one split, as PIL images through the official transform."""

    def __init__(self, split: ffvision.data.ArrayImageDataset, transform: object) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        """Images in the split."""
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(transformed image, label)."""
        from PIL import Image

        img, label = self.split[i]
        return self.transform(Image.fromarray(img[0].numpy(), mode="L")), label


def train(args: argparse.Namespace) -> dict:
    """One official training run on ffvision's split; test accuracies of the best-validation and last epochs."""
    import model.resnet
    from data.fmnist_dataloader import get_fmnist_dataloader
    from main import test_model

    torch.manual_seed(args.seed)
    loaders = get_fmnist_dataloader(root=str(args.root), train_batch_size=128, test_batch_size=512)
    transform_train, transform_test = loaders[0].dataset.dataset.transform, loaders[2].dataset.transform
    hierarchy = loaders[3] if args.method == "hclff" else None
    if args.method == "deeperforward":
        class NoSupCon:  # the contrastive term off: its loss a constant zero, no gradient to the projections
            temperature = base_temperature = 0.0

            def __call__(self, *a: object, **k: object) -> tuple[torch.Tensor, dict]:
                return torch.zeros(()), {"pos_neg_gap": 0.0, "top1_pos_rate": 0.0}

        model.resnet.SupConLoss = NoSupCon
    splits = build_splits("fashion-mnist", args.data_dir, image_size=28, val_size=args.val_size,
                          train_subset=args.train_subset, augment="none")
    torch.manual_seed(args.seed)
    loader = torch.utils.data.DataLoader
    train_loader = loader(OnSplit(splits.train, transform_train), batch_size=128, shuffle=True, num_workers=0)
    val_loader = loader(OnSplit(splits.val, transform_test), batch_size=128, shuffle=False, num_workers=0)
    test_loader = loader(OnSplit(splits.test, transform_test), batch_size=512, shuffle=False, num_workers=0)
    net = official_network(args, hierarchy, args.epochs)
    best, history, train_seconds = (-1.0, None, 0), [], 0.0
    for epoch in range(args.epochs):
        t = time.perf_counter()
        net.train()
        net.update(train_loader)
        train_seconds += time.perf_counter() - t
        net.eval()
        val_accuracy, _ = net.pruning(val_loader)
        history.append({"epoch": epoch + 1, "val_accuracy": val_accuracy / 100, "layers": [int(net.start_layer),
                                                                                            int(net.end_layer)]})
        print(json.dumps(history[-1]), file=sys.stderr, flush=True)
        if val_accuracy > best[0]:
            best = (val_accuracy, copy.deepcopy(net.state_dict()), epoch + 1)
    last = [a / 100 for a in test_model(net, test_loader, torch.device("cpu"))]
    net.load_state_dict(best[1])
    tested = [a / 100 for a in test_model(net, test_loader, torch.device("cpu"))]
    names = ("goodness", "head", "ensemble")
    return {"benchmark": "official-hclff-train", "code": "official", "method": args.method, "seed": args.seed,
            "epochs": args.epochs, "train_subset": args.train_subset, "val_size": args.val_size,
            "width_mult": args.width_mult, "best_epoch": best[2], "val_accuracy": best[0] / 100,
            "test_accuracy_by_strategy": dict(zip(names, tested)), "last_epoch_test": dict(zip(names, last)),
            "train_images_per_second": round(args.epochs * len(splits.train) / train_seconds, 1),
            "history": history}


def report(paths: list[Path]) -> list[str]:
    """Rows: method, code (official, ffvision in bf16 or float32), test accuracy of each strategy and the
    difference of goodness means, mean ± sd over seeds, training img/s."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("benchmark") == "official-hclff-train":
                groups.setdefault((r["method"], "official"), []).append(r)
            elif r.get("protocol") == "official-hclff":
                amp = "float32" if r["name"].endswith("-float32") else "bf16"
                groups.setdefault((r["method"], f"ffvision {amp}"), []).append(r)
    rows = ["| method | code | seeds | goodness | head | ensemble | goodness: ffvision - official | train img/s |",
            "|---|---|---|---|---|---|---|---|"]
    for (method, code), recs in sorted(groups.items()):
        acc = {k: [r["test_accuracy_by_strategy"][k] for r in recs] for k in ("goodness", "head", "ensemble")}
        official = [r["test_accuracy_by_strategy"]["goodness"] for r in groups.get((method, "official"), [])]
        gap = "" if code == "official" or not official else (
            f"{100 * (statistics.mean(acc['goodness']) - statistics.mean(official)):+.2f}")
        ips = statistics.mean(r["train_images_per_second"] for r in recs)
        rows.append(f"| {method} | {code} | {len(recs)} | {mean_sd(acc['goodness'])} | {mean_sd(acc['head'])} | "
                    f"{mean_sd(acc['ensemble'])} | {gap} | {ips:.0f} |")
    return rows


def main() -> None:
    """Run the chosen benchmark and print one JSON line (also appended to --record)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["speed", "train", "report"])
    ap.add_argument("records", nargs="*", type=Path, help="report: JSON lines files")
    ap.add_argument("--official", type=Path, help="a checkout of JNNNNYao/HCL-FF")
    ap.add_argument("--width-mult", type=float, default=0.2, help="ffvision's width (0.2: 2 channels per class)")
    ap.add_argument("--batch-size", type=int, default=128, help="speed: images per batch")
    ap.add_argument("--batches", type=int, default=6, help="speed: timed batches per turn")
    ap.add_argument("--rounds", type=int, default=2, help="speed: turns each (the median is reported)")
    ap.add_argument("--method", choices=["hclff", "deeperforward"], default="hclff", help="train: which method")
    ap.add_argument("--root", type=Path, help="train: a folder with FashionMNIST/raw/*.gz for the official loader")
    ap.add_argument("--data-dir", default=None, help="train: ffvision's FashionMNIST folder (default: found)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--record", type=Path, help="append the JSON line to this file")
    args = ap.parse_args()
    if args.what == "report":
        print("\n".join(report(args.records)))
        return
    if args.official is None:
        ap.error(f"{args.what} needs --official")
    args.official = args.official.resolve()
    args.root = args.root.resolve() if args.root else None
    args.record = args.record.resolve() if args.record else None
    args.data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    sys.path.insert(0, str(args.official))
    os.chdir(args.official)  # the official loaders read ./data/hierarchy_*.json
    torch.set_num_threads(1)
    if args.what == "train" and args.root is None:
        ap.error("train needs --root")
    result = speed(args) if args.what == "speed" else train(args)
    result.update({"cpu": cpu_name(), "torch_threads": 1, "date": time.strftime("%Y-%m-%d")})
    line = json.dumps(result)
    print(line)
    if args.record:
        with args.record.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
