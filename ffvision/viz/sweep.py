"""A bench sweep drawn: peak memory and img/s against the batch size, one line per variant (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_sweep(res: dict[str, Any], path: str | Path) -> None:
    """Two panels of `bench.batch_sweep`'s result: peak memory and img/s vs batch size; with a budget, its line and
    the batch size at which each variant reaches it."""
    sizes = res["batch_sizes"]
    fig, (mem, speed) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, e in res["variants"].items():
        line, = mem.plot(sizes, [m / 2**20 for m in e["peak_memory_bytes"]], marker="o", label=name)
        speed.plot(sizes, e["images_per_second"], marker="o", label=name, color=line.get_color())
        at = e.get("batch_at_budget")
        if at:
            mem.axvline(at, color=line.get_color(), linestyle=":", alpha=0.8)
            mem.plot([at], [res["budget_bytes"] / 2**20], marker="x", markersize=10, color=line.get_color())
    if res.get("budget_bytes"):
        mem.axhline(res["budget_bytes"] / 2**20, color="grey", linestyle="--",
                    label=f"budget {res['budget_bytes'] / 2**20:,.0f} MiB")
    micro = f" (micro-batches of {res['micro_batch_size']})" if res.get("micro_batch_size") else ""
    mem.set(title=f"peak training memory, {res['model']}{micro}", xlabel="batch size", ylabel="MiB (tensors)")
    speed.set(title="training throughput", xlabel="batch size", ylabel="images / s")
    for ax in (mem, speed):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
