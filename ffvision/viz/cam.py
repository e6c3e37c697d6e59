"""Class activation maps: which image regions drive each layer's score of the predicted class.

Grad-CAM (Selvaraju et al. 2017) applied to every block's own readout: for layer l with
feature map A (C, H, W) and class score S (ASGE: the fixed-projection score a_l[c]; FF-CNN:
the goodness G_l with class c's label pattern overlaid; bp: the classifier's logit),
  alpha_k = mean_{h,w} dS/dA_k,   CAM_l = ReLU(sum_k alpha_k A_k),
normalised to [0, 1] and upsampled to the image. The gradient is taken only inside one
block (its input is detached), so this is a per-layer explanation, not a backward pass
through the network.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ffvision.methods.base import LocalMethod  # noqa: E402


def class_activation_maps(method: LocalMethod, x: torch.Tensor, cls: torch.Tensor | None = None,
                          strategy: str | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Return (class used (B,), one map per layer (B, H, W) in [0, 1] at the input's size)."""
    method.eval()
    if cls is None:
        cls = method.predict(x, strategy).argmax(1)
    maps = []
    for h, score in method.cam_targets(x, cls):
        (grad,) = torch.autograd.grad(score.sum(), h)
        alpha = grad.float().mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        cam = torch.relu((alpha * h.detach().float()).sum(1, keepdim=True))  # (B, 1, H, W)
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        maps.append(cam / peak)
    return cls, maps


def save_cam_figure(image: torch.Tensor, maps: list[torch.Tensor], title: str, path: str | Path) -> None:
    """One PNG: the image, then each layer's map overlaid on it."""
    img = image.detach().cpu().float()
    shown = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy()
    n = len(maps) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
    axes[0].imshow(shown, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=9)
    for i, m in enumerate(maps, start=1):
        axes[i].imshow(shown, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
        axes[i].imshow(m.detach().cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[i].set_title(f"layer {i}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_label_patterns(patterns: torch.Tensor, path: str | Path, names: list[str] | None = None) -> None:
    """A grid of label patterns (N, H, W) as one PNG."""
    n = patterns.shape[0]
    cols = min(10, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(patterns[i].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(names[i] if names else str(i), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
