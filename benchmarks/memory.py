"""Exact peak training memory (bytes held by tensors in one step) of ASGE against backprop's variants.

Each row runs `ffvision.bench.measure(..., what="memory")` (torch's allocation records over one
training step after a warm-up step), VGG8 at batch 128 on 1x32x32 inputs, 10 classes:

    python benchmarks/memory.py --width-mult 0.25 --json benchmarks/results/memory-vgg8-w0.25-b128.json
    python benchmarks/memory.py --width-mult 1 --rows asge,bp,bp-checkpoint,bp-accum
    python benchmarks/memory.py --model resnet18 --width-mult 1 --rows sff,bp,bp-checkpoint,bp-accum
    python benchmarks/memory.py --channels-last      # the same rows in channels_last
    python benchmarks/memory.py --dropout 0.1        # every row at the same dropout
"""

from __future__ import annotations

import argparse
import json
import platform

from ffvision.bench import measure

ROWS = {"asge": ("asge", {}), "asge-unfused": ("asge", {"fused_readout": False}), "bp": ("bp", {}),
        "bp-checkpoint": ("bp-checkpoint", {}), "bp-accum": ("bp-accum", {}), "sff": ("sff", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width-mult", type=float, default=0.25)
    ap.add_argument("--model", default="vgg8")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    ap.add_argument("--channels-last", action="store_true", help="model and inputs in channels_last")
    ap.add_argument("--dropout", type=float, default=None,
                    help="dropout of every row (default: each method's own: asge 0, bp 0.1)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    base = {"model": args.model, "batch_size": args.batch_size, "device": "cpu", "in_channels": 1,
            "image_size": 32, "num_classes": 10, "steps": 1, "warmup": 1, "amp": "off",
            "channels_last": args.channels_last, "compile": False,
            "what": "memory"}
    out = {"model": args.model, "width_mult": args.width_mult, "batch_size": args.batch_size,
           "channels_last": args.channels_last, "dropout": args.dropout,
           "machine": platform.processor() or platform.machine(), "rows": {}}
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    for name in args.rows.split(","):
        method, extra = ROWS[name]
        kwargs = {"width_mult": args.width_mult, **extra}
        if args.dropout is not None:
            kwargs["dropout"] = args.dropout
        r = measure({**base, "method": method, "method_kwargs": kwargs})
        out["rows"][name] = r
        print(f"{name:<14} {r['peak_memory_bytes'] / 2**20:8.1f} MiB exact, {r['process_peak_bytes'] / 2**20:8.1f} "
              "MiB process", flush=True)
    if "bp" in out["rows"]:
        ref = out["rows"]["bp"]["peak_memory_bytes"]
        out["ratio_to_bp"] = {k: v["peak_memory_bytes"] / ref for k, v in out["rows"].items()}
        print(" ".join(f"{k} {v:.3f}x" for k, v in out["ratio_to_bp"].items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
