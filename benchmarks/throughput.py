"""Training throughput of ASGE vs backprop on the same network, batch and machine, in one run.

Times `method.train_step` on random inputs of the right shape (the values do not change the
cost), after warm-up, alternating the methods round by round so that background load on the
machine affects both alike; reports the median of the rounds.

    python benchmarks/throughput.py --model vgg8 --width-mult 0.25 --batch-size 128 --in-channels 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import ffvision


def step_time(method: ffvision.LocalMethod, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Seconds per train_step, synchronised at the end only."""
    t = time.perf_counter()
    for _ in range(steps):
        method.train_step(x, y)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["asge", "bp"])
    ap.add_argument("--model", default="vgg8")
    ap.add_argument("--width-mult", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--in-channels", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    x = torch.rand(args.batch_size, args.in_channels, args.image_size, args.image_size, device=dev)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=dev)
    methods = {}
    for name in args.methods:
        m = ffvision.create_method(name, model=args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                                   image_size=args.image_size, width_mult=args.width_mult).to(dev)
        m.build_optimizers()
        step_time(m, x, y, 2)  # warm-up
        methods[name] = m
    times: dict[str, list[float]] = {n: [] for n in methods}
    for _ in range(args.rounds):
        for n, m in methods.items():
            times[n].append(step_time(m, x, y, args.steps))
    res = {n: {"images_per_second": args.batch_size / statistics.median(t),
               "seconds_per_step_median": statistics.median(t), "rounds": t} for n, t in times.items()}
    out = {"device": str(dev), "torch_threads": torch.get_num_threads(), "model": args.model,
           "width_mult": args.width_mult, "batch_size": args.batch_size, "runs": res}
    if "bp" in res:
        out["ratio_vs_bp"] = {n: r["images_per_second"] / res["bp"]["images_per_second"] for n, r in res.items()}
    for n, r in res.items():
        print(f"{n:>6}: {r['images_per_second']:8.1f} img/s  ({r['seconds_per_step_median'] * 1000:.0f} ms/step)")
    if "ratio_vs_bp" in out:
        print("ratio vs bp:", {k: round(v, 3) for k, v in out["ratio_vs_bp"].items()})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
