"""Inference cost of FF-CNN's two modes: goodness (one pass per class) vs the probe (one pass).

    python benchmarks/inference_ff.py --json benchmarks/results/inference-ffcnn-cpu.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import ffvision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    out = {"device": "cpu", "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size, "runs": {}}
    for name, kw in (("ffcnn", {"model": "ffcnn3", "filters": args.filters}), ("hinton", {"model": "mlp"})):
        m = ffvision.create_method(name, num_classes=10, in_channels=1, image_size=28, **kw)
        x = torch.rand(args.batch_size, 1, 28, 28)
        for strategy in m.strategies:
            m.predict(x[:8], strategy)  # warm-up
            t = time.perf_counter()
            for _ in range(args.repeats):
                m.predict(x, strategy)
            ips = args.batch_size * args.repeats / (time.perf_counter() - t)
            out["runs"][f"{name}/{strategy}"] = {"images_per_second": ips,
                                                 "forward_passes": m.strategy_info()[strategy]["forward_passes"]}
            print(f"{name:>7} {strategy:<9} {ips:9.1f} img/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
