"""Training img/s of HCL-FF's official code against ffvision's `hclff`, on the same network, batches and thread.

Needs a checkout of the official code (git clone https://github.com/JNNNNYao/HCL-FF), read from its folder and never
copied here. Both train the 17-layer channel-wise ResNet with FashionMNIST's class tree on the same random batches of
28 px images; they take turns (--rounds), and ffvision runs in float32 and with --amp bf16.

    python benchmarks/official_speed.py --official ~/src/HCL-FF --width-mult 0.2 --batches 6 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from protocol import cpu_name

import ffvision
from ffvision.train.placement import set_precision

ORDER = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def main() -> None:
    """Measure and print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of JNNNNYao/HCL-FF")
    ap.add_argument("--width-mult", type=float, default=0.2, help="ffvision's width (0.2: 2 channels per class)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=6, help="timed batches per turn")
    ap.add_argument("--rounds", type=int, default=2, help="turns each (the median is reported)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.official))
    from data.build_hierarchy import json_to_hierarchy  # the official code's
    from model.resnet import Resnet

    torch.set_num_threads(1)
    options = {"num_classes": 10, "in_channels": 1, "image_size": 28, "width_mult": args.width_mult,
               "hierarchy": "fashion-mnist"}
    ours = {amp: ffvision.create_method("hclff", **options) for amp in ("off", "bf16")}
    for amp, m in ours.items():
        set_precision(m, torch.device("cpu"), amp, False)
    planes = ours["off"].blocks[0].body.conv.out_channels, *(ours["off"].blocks[i].body.conv.out_channels
                                                              for i in (5, 9, 13))
    tree = json.loads((args.official / "data" / "hierarchy_fashion_mnist.json").read_text())
    hierarchy = json_to_hierarchy(tree, ORDER)
    levels = [min(1 + (i * len(hierarchy)) // 17, len(hierarchy)) for i in range(17)]
    official = Resnet(in_channels=1, num_class=10, planes=list(planes), learning_rate=0.04, lr_min=0.008,
                      weight_decay=1e-4, epochs=150, hierarchy=hierarchy, layer_to_level=levels)
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
    print(json.dumps({"planes": planes, "layer_parameters": {"official": params[0], "ffvision": params[1]},
                      "images_per_second": {k: round(v, 1) for k, v in median.items()},
                      "ffvision_over_official": {k: round(v / median["official"], 2) for k, v in median.items()},
                      "cpu": cpu_name(), "torch_threads": 1}))


if __name__ == "__main__":
    main()
