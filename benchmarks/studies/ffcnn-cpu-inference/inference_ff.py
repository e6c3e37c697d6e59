"""Inference cost of FF-CNN's and Hinton's two modes: goodness (one pass per class) vs the probe (one pass).

Goodness inference computes layer 1 for all N labels from one pass (its linearity in the label);
layers 2..L still run once per class. `--amp bf16` and `--channels-last` measure the CPU's bf16
units and memory layout (on a CPU without avx512_bf16, bf16 is emulated and slower).

    python benchmarks/studies/ffcnn-cpu-inference/inference_ff.py --json inference.json
    python benchmarks/studies/ffcnn-cpu-inference/inference_ff.py --filters 128 --amp bf16 --channels-last
    python benchmarks/studies/ffcnn-cpu-inference/inference_ff.py --filters 128 --amp bf16 --conv direct  # torch's conv
    python benchmarks/studies/ffcnn-cpu-inference/inference_ff.py --filters 128 --heap default  # glibc's heap defaults

`--heap keep` (the default) tunes the C heap as the `ffvision` command does (ffvision/train/heap.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import ffvision
from ffvision.kernels.spectral import CONV_IMPLS
from ffvision.models.convstack import set_conv_impl
from ffvision.train.heap import keep_freed_memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--amp", choices=["off", "bf16"], default="off")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--conv", choices=CONV_IMPLS, default="auto",
                    help="how the 7x7 convolutions run (auto: in the frequency domain on a CPU from 64 channels)")
    ap.add_argument("--only", nargs="*", default=["ffcnn", "hinton"])
    ap.add_argument("--max-eval-batch", type=int, default=None,
                    help="rows (images x labels) of one goodness pass (default: the method's)")
    ap.add_argument("--heap", choices=["keep", "default"], default="keep",
                    help="keep: reuse freed memory as the ffvision command does (train/heap.py); default: glibc's")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    heap = args.heap == "keep" and keep_freed_memory()
    torch.manual_seed(0)
    out = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
           "batch_size": args.batch_size, "filters": args.filters, "amp": args.amp,
           "channels_last": args.channels_last, "conv": args.conv, "max_eval_batch": args.max_eval_batch,
           "heap_tuned": heap, "runs": {}}
    models = {"ffcnn": {"model": "ffcnn3", "filters": args.filters}, "hinton": {"model": "mlp"}}
    for name in args.only:
        extra = {} if args.max_eval_batch is None else {"max_eval_batch": args.max_eval_batch}
        m = ffvision.create_method(name, num_classes=10, in_channels=1, image_size=28, **models[name], **extra)
        set_conv_impl(m, args.conv)
        x = torch.rand(args.batch_size, 1, 28, 28)
        if args.amp == "bf16":
            m.amp_dtype = torch.bfloat16
        if args.channels_last and name == "ffcnn":
            m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        for strategy in m.strategies:
            m.predict(x[:8], strategy)  # warm-up
            t = time.perf_counter()
            for _ in range(args.repeats):
                m.predict(x, strategy)
            ips = args.batch_size * args.repeats / (time.perf_counter() - t)
            out["runs"][f"{name}/{strategy}"] = {"images_per_second": ips,
                                                 "forward_passes": m.strategy_info()[strategy]["forward_passes"]}
            print(f"{name:>7} {strategy:<9} {ips:9.1f} img/s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
