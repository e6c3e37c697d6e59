"""Where a training step's time goes: torch.profiler over a few steps of one method (CPU or CUDA).

    python benchmarks/profile_step.py                          # ASGE, VGG8 x0.25, batch 128, --amp auto
    python benchmarks/profile_step.py --method bp --amp off --no-channels-last
    python benchmarks/profile_step.py --compile --rows 30

Random inputs of FashionMNIST's shape (values do not change the cost); precision and memory format
resolve per method as in `ffvision train`. Prints img/s outside the profiler, then the ops by self time.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

import ffvision
from ffvision.train.devices import resolve_device
from ffvision.train.placement import set_precision


def main() -> None:
    """Profile `--steps` training steps after warm-up and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="asge")
    ap.add_argument("--model", default="vgg8")
    ap.add_argument("--width-mult", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=["auto", "off", "bf16"], default="auto")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--by-shape", action="store_true", help="group ops by input shapes (which tensor a cost is)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    m = ffvision.create_method(args.method, model=args.model, num_classes=10, in_channels=1, image_size=32,
                               width_mult=args.width_mult).to(dev)
    bf16, cl = set_precision(m, dev, args.amp, args.channels_last, args.compile)
    x = torch.rand(args.batch_size, 1, 32, 32, device=dev)
    y = torch.randint(0, 10, (args.batch_size,), device=dev)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        m.train_step(x, y)
    t = time.perf_counter()
    for _ in range(10):
        m.train_step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(f"{args.method} {args.model} x{args.width_mult}, batch {args.batch_size}, {dev}, "
          f"{'bf16' if bf16 else 'float32'}{', channels_last' if cl else ''}{', compiled' if args.compile else ''}: "
          f"{10 * args.batch_size / (time.perf_counter() - t):.0f} img/s")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts, record_shapes=args.by_shape) as prof:
        for _ in range(args.steps):
            m.train_step(x, y)
    averages = prof.key_averages(group_by_input_shape=args.by_shape)
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
