"""Training speed and peak memory of a method, and of backprop on the same network, in one run.

Every measurement runs in a fresh Python process (`python -m ffvision.bench --worker ...`) so
that one run's allocations cannot hide another's peak:
  * CUDA: torch.cuda.max_memory_allocated() over the timed steps (weights, gradients,
    optimizer state and activations; reset after the model is on the GPU, so it counts them).
  * CPU: peak resident memory of the process (ru_maxrss) minus its resident memory before
    the model was built, i.e. what training itself allocated. Two precautions make this the
    allocator's peak rather than noise: a throwaway conv net is trained for one step first so
    the math libraries' code and caches are already resident in the baseline, and glibc is
    told to serve allocations of 64 KiB and more with mmap (MALLOC_MMAP_THRESHOLD_), so freed
    tensors leave the resident set instead of lingering in malloc's arenas.
Throughput is images per second of `method.train_step` on random inputs of the right shape
(values do not change the cost), after warm-up steps, synchronised once at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from ffvision.errors import ConfigError


def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize()


def measure(opts: dict[str, Any]) -> dict[str, float]:
    """Time train steps of one configuration in this process; return img/s and peak bytes."""
    import torch

    import ffvision
    from ffvision.train.devices import resolve_device

    dev = resolve_device(opts["device"])
    torch.manual_seed(0)
    b, c, s = opts["batch_size"], opts["in_channels"], opts["image_size"]
    x = torch.rand(b, c, s, s, device=dev)
    y = torch.randint(0, opts["num_classes"], (b,), device=dev)
    if dev.type == "cpu":  # load the conv/GEMM code paths before the baseline is taken
        warm = torch.nn.Sequential(torch.nn.Conv2d(c, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.LazyLinear(2))
        warm(x[:2]).square().mean().backward()
        del warm
    base = _rss_bytes()
    kwargs = opts["method_kwargs"]  # bench() has dropped the unset (None) options
    m = ffvision.create_method(opts["method"], model=opts["model"], num_classes=opts["num_classes"], in_channels=c,
                               image_size=s, **kwargs).to(dev)
    if opts.get("channels_last"):
        m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if opts.get("amp") == "bf16":
        m.amp_dtype = torch.bfloat16
    m.build_optimizers()
    if opts.get("compile"):
        for block in m.blocks:
            block.compile()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(opts["warmup"]):
        m.train_step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(opts["steps"]):
        m.train_step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"images_per_second": b * opts["steps"] / dt, "peak_memory_bytes": int(peak),
            "seconds_per_step": dt / opts["steps"], "device": str(dev)}


def run_in_fresh_process(opts: dict[str, Any]) -> dict[str, float]:
    """measure(opts) in a new interpreter; its JSON result."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    res = subprocess.run([sys.executable, "-m", "ffvision.bench", "--worker", json.dumps(opts)],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()
        raise ConfigError(f"benchmark of {opts['method']} failed: {lines[-1]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench(method: str, model: str, batch_size: int, *, device: str = "auto", compare: str | None = None,
          in_channels: int = 1, image_size: int = 32, num_classes: int = 10, steps: int = 10, warmup: int = 3,
          amp: str = "off", channels_last: bool = False, compile: bool = False,
          method_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure `method` (and `compare`, e.g. bp, on the same network) in fresh processes."""
    if batch_size < 1 or steps < 1 or warmup < 0:
        raise ConfigError("batch size and steps must be positive")
    common = {"model": model, "batch_size": batch_size, "device": device, "in_channels": in_channels,
              "image_size": image_size, "num_classes": num_classes, "steps": steps, "warmup": warmup, "amp": amp,
              "channels_last": channels_last, "compile": compile}
    kwargs = {k: v for k, v in (method_kwargs or {}).items() if v is not None}
    runs = {method: run_in_fresh_process({**common, "method": method, "method_kwargs": kwargs})}
    out: dict[str, Any] = {"model": model, "batch_size": batch_size, "method_kwargs": kwargs, "runs": runs}
    if compare:
        shared = {k: v for k, v in kwargs.items() if k in ("width_mult", "dropout", "filters")}
        runs[compare] = run_in_fresh_process({**common, "method": compare, "method_kwargs": shared})
        a, b = runs[method], runs[compare]
        out["ratios"] = {"throughput": a["images_per_second"] / b["images_per_second"],
                         "memory": a["peak_memory_bytes"] / max(1, b["peak_memory_bytes"])}
    return out


def format_table(res: dict[str, Any]) -> str:
    """The human-readable table `ffvision bench` prints."""
    lines = [f"{res['model']}, batch {res['batch_size']}, {next(iter(res['runs'].values()))['device']}:",
             f"  {'method':<8} {'img/s':>10} {'peak memory':>14}"]
    for name, r in res["runs"].items():
        lines.append(f"  {name:<8} {r['images_per_second']:>10.1f} {r['peak_memory_bytes'] / 2**20:>11.1f} MiB")
    if "ratios" in res:
        names = list(res["runs"])
        lines.append(f"  {names[0]}/{names[1]}: throughput x{res['ratios']['throughput']:.2f}, "
                     f"peak memory x{res['ratios']['memory']:.2f}")
    return "\n".join(lines)


def main() -> None:
    """Worker entry point: python -m ffvision.bench --worker JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    args = ap.parse_args()
    print(json.dumps(measure(json.loads(args.worker))))


if __name__ == "__main__":
    main()



