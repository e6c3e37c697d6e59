"""Training speed and peak memory of a method, and of backprop on the same network, in one run.

Speed and memory are measured in separate fresh Python processes (`python -m ffvision.bench
--worker ...`), so that neither setting distorts the other:
  * speed: images per second of `method.train_step` on random inputs of the right shape
    (values do not change the cost), after warm-up steps, synchronised once at the end; the
    process runs with the allocator's defaults, like `ffvision train`. With `repeats` > 1 the
    speed processes of all compared methods take turns (A, B, A, B, ...) and the median is
    reported: on a shared machine the speed drifts by 10-20% over minutes, which would otherwise
    land on whichever method ran in the slow minute.
  * precision: `--amp auto` and the default memory format resolve as in `ffvision train`, per
    method (train/placement.py), so a bench row measures what a default run of that method does.
  * memory, two ways:
      - exact: the peak of bytes held by tensors during one training step (parameters,
        gradients, optimizer state, inputs and everything autograd saves), from torch's own
        allocation records (the profiler's memory timeline); device-independent.
      - process: on CUDA torch.cuda.max_memory_allocated(); on the CPU the peak resident
        memory minus the resident memory before the model was built. For the latter a
        throwaway conv net is trained for one step first (math libraries resident in the
        baseline) and glibc serves allocations of 64 KiB and more with mmap
        (MALLOC_MMAP_THRESHOLD_, set only in this process), so freed tensors leave the
        resident set.
`--compare bp-checkpoint` is backprop with activation checkpointing per layer, `--compare
bp-accum` backprop over four micro-batches with gradients accumulated: what a memory-bound
user of backprop would run instead. With micro-batches, `--compare unsplit` is the method itself
on whole batches (what splitting costs in speed and saves in memory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Iterator

from ffvision.errors import ConfigError


def _rss_bytes() -> int:
    """Current resident set size of this process (0 where it cannot be read)."""
    from ffvision.train.devices import resident_bytes

    return resident_bytes() or 0


# bench rows that are backprop with a memory-saving variant (Backprop's memory_saving option)
BP_VARIANTS = {"bp-checkpoint": "checkpoint", "bp-accum": "accumulate"}
UNSPLIT = "unsplit"  # --compare: the method itself without micro-batches (the split step's speed against it)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to /dev/null: the profiler's C++ layer prints a line at each
    start and stop there, which no setting of its own silences."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def exact_peak_bytes(step: Any, device: str = "cpu") -> dict[str, int]:
    """Peak bytes held by tensors while `step()` runs, and by category at that moment (torch's records)."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                                  with_stack=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of a CUDA-only API; the CPU has no other
        path = os.path.join(d, "timeline.json")
        prof.export_memory_timeline(path, device=device)
        with open(path) as fh:
            _, sizes = json.load(fh)
    totals = [sum(s) for s in sizes]
    at = max(range(len(totals)), key=totals.__getitem__) if totals else 0
    # each entry: [unused, parameter, optimizer state, input, temporary, activation, gradient, autograd detail, other]
    names = ["parameter", "optimizer_state", "input", "temporary", "activation", "gradient", "autograd_detail",
             "other"]
    return {"peak": int(totals[at]) if totals else 0,
            **({f"at_peak_{n}": int(v) for n, v in zip(names, sizes[at][1:])} if sizes else {})}


def measure(opts: dict[str, Any]) -> dict[str, float]:
    """Train steps of one configuration in this process: img/s (opts['what'] = speed) or peak bytes (memory)."""
    import torch

    import ffvision
    from ffvision import kernels
    from ffvision.train.devices import resolve_device

    kernels.set_enabled(opts.get("kernels", "on") == "on")
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
    variant = BP_VARIANTS.get(opts["method"])
    name = "bp" if variant else opts["method"]
    if variant:
        kwargs = {**kwargs, "memory_saving": variant}
    m = ffvision.create_method(name, model=opts["model"], num_classes=opts["num_classes"], in_channels=c,
                               image_size=s, **kwargs).to(dev)
    from ffvision.train.placement import set_precision

    bf16, channels_last = set_precision(m, dev, opts.get("amp", "off"), opts.get("channels_last"),
                                        bool(opts.get("compile")))
    if opts.get("micro_batches"):
        m.micro_batches = opts["micro_batches"]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(max(1, opts["warmup"])):  # optimizer state exists after the first step
        m.train_step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    if opts.get("what") == "memory":
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        def step() -> None:
            m.train_step(x, y)

        exact = exact_peak_bytes(step, "cuda:0" if dev.type == "cuda" else "cpu")
        if dev.type == "cuda":
            torch.cuda.synchronize()
            process = torch.cuda.max_memory_allocated(dev)
        else:
            process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        return {"peak_memory_bytes": exact["peak"], "process_peak_bytes": int(process),
                "exact_breakdown": {k: v for k, v in exact.items() if k != "peak"}, "device": str(dev)}
    t = time.perf_counter()
    for _ in range(opts["steps"]):
        m.train_step(x, y)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    dropout = next((mod.p for mod in m.modules() if isinstance(mod, torch.nn.Dropout)), 0.0)
    return {"images_per_second": b * opts["steps"] / dt, "seconds_per_step": dt / opts["steps"], "device": str(dev),
            "amp": "bf16" if bf16 else "float32", "channels_last": channels_last, "dropout": dropout,
            "micro_batches": m.micro_batches}


WORKER_TIMEOUT_S = 3600  # one measurement's process: far above any measured (minutes at ImageNet size)


def run_in_fresh_process(opts: dict[str, Any], what: str) -> dict[str, Any]:
    """measure(opts) for `what` (speed or memory) in a new interpreter; its JSON result."""
    env = dict(os.environ)
    if what == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # only here: it slows a CPU step by ~30%
    try:
        res = subprocess.run([sys.executable, "-m", "ffvision.bench", "--worker", json.dumps({**opts, "what": what})],
                             capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"benchmark of {opts['method']} ({what}) did not finish in {WORKER_TIMEOUT_S} s") from None
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()
        raise ConfigError(f"benchmark of {opts['method']} failed: {lines[-1]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench(method: str, model: str, batch_size: int, *, device: str = "auto", compare: str | None = None,
          in_channels: int = 1, image_size: int = 32, num_classes: int = 10, steps: int = 10, warmup: int = 3,
          amp: str = "auto", channels_last: bool | None = None, compile: bool = False, kernels: str = "on",
          method_kwargs: dict[str, Any] | None = None, repeats: int = 1,
          micro_batches: int | None = None) -> dict[str, Any]:
    """Measure `method` (and `compare`, e.g. bp, on the same network) in fresh processes; `micro_batches` splits
    the method's steps and bp-accum's (the fair pairing: equal micro-batch, equal batch)."""
    if batch_size < 1 or steps < 1 or warmup < 0 or repeats < 1:
        raise ConfigError("batch size, steps and repeats must be positive")
    common = {"model": model, "batch_size": batch_size, "device": device, "in_channels": in_channels,
              "image_size": image_size, "num_classes": num_classes, "steps": steps, "warmup": warmup, "amp": amp,
              "channels_last": channels_last, "compile": compile, "kernels": kernels}
    kwargs = {k: v for k, v in (method_kwargs or {}).items() if v is not None}
    compares = [c for c in (compare or "").split(",") if c]
    shared = {k: v for k, v in kwargs.items() if k in ("width_mult", "dropout", "filters")}
    if UNSPLIT in compares and not micro_batches:
        raise ConfigError(f"--compare {UNSPLIT} measures the method without micro-batches against with them: give "
                          "--micro-batches or --micro-batch-size")
    jobs = {name: {**common, "method": method if name == UNSPLIT else name,
                   "method_kwargs": kwargs if name in (method, UNSPLIT) else shared,
                   "micro_batches": micro_batches if name == method or BP_VARIANTS.get(name) == "accumulate" else None}
            for name in [method, *compares]}
    speeds: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    for _ in range(repeats):  # the methods take turns, so a slow minute of a shared machine hits them alike
        for name, job in jobs.items():
            speeds[name].append(run_in_fresh_process(job, "speed"))
    runs: dict[str, dict[str, Any]] = {}
    for name, job in jobs.items():
        ordered = sorted(speeds[name], key=lambda r: r["images_per_second"])
        runs[name] = {**ordered[len(ordered) // 2], **run_in_fresh_process(job, "memory"),
                      "images_per_second_all": [r["images_per_second"] for r in speeds[name]]}
    out: dict[str, Any] = {"model": model, "batch_size": batch_size, "micro_batches": micro_batches,
                           "method_kwargs": kwargs, "repeats": repeats, "runs": runs}
    if compares:
        a = runs[method]
        out["ratios"] = {other: {"throughput": a["images_per_second"] / runs[other]["images_per_second"],
                                 "memory": a["peak_memory_bytes"] / max(1, runs[other]["peak_memory_bytes"]),
                                 "process_memory": a["process_peak_bytes"] / max(1, runs[other]["process_peak_bytes"])}
                         for other in compares}
    return out



UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9,
         "tb": 10**12}


def parse_bytes(text: str) -> int:
    """'8GiB' -> 8 * 2**30 (also KiB, MiB, TiB, kB, MB, GB, TB and plain bytes); ConfigError otherwise."""
    t = text.strip().lower().replace(" ", "")
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(digits):] or "b"
    try:
        value = float(digits) * UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(f"memory budget must look like 8GiB, 512MiB or 4GB, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"memory budget must be positive, got {text!r}")
    return int(value)


def batch_sweep(method: str, model: str, batch_sizes: list[int], *, micro_batch_size: int | None = None,
                budget: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """`bench` at each batch size (ascending): img/s and exact peak per variant, and the largest batch within
    `budget` bytes for each (measured, and where the line through the last two peaks crosses the budget).

    micro_batch_size: the method and bp-accum split each batch into micro-batches of this size (equal
    micro-batch, equal batch); every batch size must be a multiple of it.
    """
    sizes = sorted(set(batch_sizes))
    if not sizes or sizes[0] < 1:
        raise ConfigError("batch sizes must be positive")
    if micro_batch_size is not None:
        bad = [b for b in sizes if micro_batch_size < 1 or b % micro_batch_size]
        if bad:
            raise ConfigError(f"each batch size must be a multiple of --micro-batch-size {micro_batch_size}: "
                              f"{', '.join(map(str, bad))} is not")
    points = []
    for b in sizes:
        k = b // micro_batch_size if micro_batch_size else None
        res = bench(method, model, b, micro_batches=k, **kwargs)
        points.append({"batch_size": b, "micro_batches": k, "runs": res["runs"]})
        least = res["runs"][method]["peak_memory_bytes"]
        if budget is not None and len(points) == 1 and least > budget:
            raise ConfigError(f"--budget {budget / 2**20:,.1f} MiB is below what {method} takes at the smallest "
                              f"batch, {b}{f' in micro-batches of {micro_batch_size}' if k else ''}: "
                              f"{least / 2**20:,.1f} MiB")
    variants = list(points[0]["runs"])
    out: dict[str, Any] = {"method": method, "model": model, "micro_batch_size": micro_batch_size,
                           "batch_sizes": sizes, "budget_bytes": budget, "points": points, "variants": {}}
    for v in variants:
        peaks = [p["runs"][v]["peak_memory_bytes"] for p in points]
        ips = [p["runs"][v]["images_per_second"] for p in points]
        entry: dict[str, Any] = {"peak_memory_bytes": peaks, "images_per_second": ips}
        if budget is not None:
            fits = [b for b, m in zip(sizes, peaks) if m <= budget]
            entry["largest_measured_batch_within_budget"] = max(fits) if fits else None
            entry["images_per_second_at_it"] = ips[sizes.index(max(fits))] if fits else None
            entry["batch_at_budget"] = crossing(sizes, peaks, budget)
        out["variants"][v] = entry
    return out


def crossing(sizes: list[int], peaks: list[int], budget: int) -> float | None:
    """The batch size at which peak memory reaches `budget`, on the line through the two nearest measured points
    (peak memory grows linearly with the batch); None with fewer than two points, a flat line or beyond twice
    the largest batch measured."""
    if len(sizes) < 2:
        return None
    i = next((j for j in range(1, len(sizes)) if peaks[j] >= budget), len(sizes) - 1)
    (b0, m0), (b1, m1) = (sizes[i - 1], peaks[i - 1]), (sizes[i], peaks[i])
    if m1 <= m0:
        return None
    at = b0 + (budget - m0) * (b1 - b0) / (m1 - m0)
    return at if at <= 2 * sizes[-1] else None  # further out the line says little


def format_sweep(res: dict[str, Any]) -> str:
    """The sweep as a table: per variant, img/s and peak at each batch size, and where it meets the budget."""
    lines = [f"{res['model']}, batch sizes {', '.join(map(str, res['batch_sizes']))}"
             + (f", micro-batches of {res['micro_batch_size']}" if res["micro_batch_size"] else "")
             + (f", budget {res['budget_bytes'] / 2**20:,.0f} MiB" if res["budget_bytes"] else "") + ":"]
    for v, e in res["variants"].items():
        cells = ", ".join(f"{b}: {i:.0f} img/s {m / 2**20:,.1f} MiB" for b, i, m in
                          zip(res["batch_sizes"], e["images_per_second"], e["peak_memory_bytes"]))
        lines.append(f"  {v:<14} {cells}")
        if res["budget_bytes"]:
            at, fits = e["batch_at_budget"], e["largest_measured_batch_within_budget"]
            lines.append(f"  {'':<14} largest batch measured within the budget: {fits}"
                         + (f"; reaches it at batch ~{at:,.0f}" if at else
                            "; not within twice the largest batch measured" if fits == res["batch_sizes"][-1]
                            else ""))
    return "\n".join(lines)


def format_table(res: dict[str, Any]) -> str:
    """The human-readable table `ffvision bench` prints."""
    lines = [f"{res['model']}, batch {res['batch_size']}, {next(iter(res['runs'].values()))['device']}:",
             f"  {'method':<14} {'img/s':>10} {'peak (tensors)':>16} {'peak (process)':>16}"]
    for name, r in res["runs"].items():
        k = r.get("micro_batches", 1)
        how = (f"  {r['amp']}{', channels_last' if r['channels_last'] else ''}, dropout {r.get('dropout', 0):g}"
               f"{f', {k} micro-batches' if k > 1 else ''}" if "amp" in r else "")
        lines.append(f"  {name:<14} {r['images_per_second']:>10.1f} {r['peak_memory_bytes'] / 2**20:>12.1f} MiB "
                     f"{r['process_peak_bytes'] / 2**20:>12.1f} MiB{how}")
    first = next(iter(res["runs"]))
    for other, q in res.get("ratios", {}).items():
        lines.append(f"  {first}/{other}: throughput x{q['throughput']:.2f}, peak memory x{q['memory']:.2f} "
                     f"(process x{q['process_memory']:.2f})")
    return "\n".join(lines)


def main() -> None:
    """Worker entry point: python -m ffvision.bench --worker JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    args = ap.parse_args()
    from ffvision.train.heap import keep_freed_memory

    keep_freed_memory()  # as `ffvision train` does (the memory worker's MALLOC_MMAP_THRESHOLD_ skips it)
    sys.stdout.write(json.dumps(measure(json.loads(args.worker))) + "\n")  # the worker's answer to bench()


if __name__ == "__main__":
    main()



