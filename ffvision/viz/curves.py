"""Training curves: loss, accuracy by strategy, and per-layer validation accuracy (PNG)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ffvision.io import write_atomic  # noqa: E402


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """Write a 3-panel figure of a run's per-epoch metrics to `path`."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set(title="training loss (sum of local losses)", xlabel="epoch", ylabel="loss")
    axes[1].plot(epochs, [r["train_accuracy"] for r in history], marker="o", label="train (default)")
    for name in history[-1]["val_accuracy_by_strategy"]:
        axes[1].plot(epochs, [r["val_accuracy_by_strategy"].get(name) for r in history], marker="o",
                     label=f"val {name}")
    axes[1].set(title="accuracy", xlabel="epoch", ylabel="accuracy")
    axes[1].legend()
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(history):
        layers = range(1, len(r["val_layer_accuracy"]) + 1)
        axes[2].plot(layers, r["val_layer_accuracy"], marker=".", color=cmap(i / max(1, len(history) - 1)),
                     label=f"epoch {r['epoch']}" if i in (0, len(history) - 1) else None)
    axes[2].set(title="validation accuracy of each layer's readout", xlabel="layer", ylabel="accuracy")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getbuffer())
