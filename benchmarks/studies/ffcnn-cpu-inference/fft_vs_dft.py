"""The frequency-domain convolution two ways: ffvision's real-DFT matrix stages with a hand-written backward
(ffvision/kernels/spectral.py) against torch.fft.rfft2 / irfft2 with autograd's backward, same padding, float32.

Prints, per channel count: the largest difference from F.conv2d (float64 reference) of each, and rows per
second for inference (kernel spectrum computed once) and for a training step (forward + backward to the weight,
the input detached as in a local FF block), the two taking turns.

    OMP_NUM_THREADS=1 python benchmarks/studies/ffcnn-cpu-inference/fft_vs_dft.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ffvision.kernels.spectral import kernel_spectrum, spectral_conv2d


def fft_spectrum(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """rfft2 of the kernel laid out for a cross-correlation on an (h + p) x (w + p) grid, (P*Fx, C, O) complex."""
    o, c, k, _ = weight.shape
    p = k // 2
    py, px = h + p, w + p
    grid = weight.new_zeros(o, c, py, px)
    idx_y = [(-d) % py for d in range(-p, p + 1)]
    idx_x = [(-d) % px for d in range(-p, p + 1)]
    grid[:, :, torch.tensor(idx_y)[:, None], torch.tensor(idx_x)[None, :]] = weight
    spec = torch.fft.rfft2(grid)  # (O, C, P, Fx)
    return spec.permute(2, 3, 1, 0).reshape(-1, c, o)


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               spectrum: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=k // 2) through torch.fft (autograd differentiates it)."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    p = k // 2
    spec = spectrum if spectrum is not None else fft_spectrum(weight, h, w)
    xs = torch.fft.rfft2(F.pad(x.float(), (0, p, 0, p)))  # (N, C, P, Fx)
    fy, fx = xs.shape[-2:]
    xs = xs.permute(2, 3, 0, 1).reshape(fy * fx, n, c)
    ys = torch.bmm(xs, spec).reshape(fy, fx, n, -1).permute(2, 3, 0, 1)  # (N, O, P, Fx)
    y = torch.fft.irfft2(ys, s=(h + p, w + p))[..., :h, :w]
    return y + bias[:, None, None] if bias is not None else y


def seconds(fn, reps: int = 3) -> float:
    """Median seconds of fn() over reps calls, after one warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def compare(c: int, h: int = 28, k: int = 7, bs: int = 64) -> str:
    """One line: both versions' errors against F.conv2d and their rows per second, c -> c channels."""
    w = torch.nn.Parameter(torch.randn(c, c, k, k) * 0.05)
    b = torch.nn.Parameter(torch.randn(c) * 0.1)
    x = torch.randn(bs, c, h, h).relu()
    versions = {"dft": spectral_conv2d, "fft": fft_conv2d}
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=k // 2)
    gw_ref = torch.autograd.grad(F.conv2d(x.double(), w.double(), None, padding=k // 2).square().mean(), w)[0]
    err = {name: (fn(x, w, b) - ref).abs().max().item() for name, fn in versions.items()}
    gerr = {name: (torch.autograd.grad(fn(x, w).double().square().mean(), w)[0] - gw_ref).abs().max().item()
            for name, fn in versions.items()}
    with torch.no_grad():
        spectra = {"dft": kernel_spectrum(w, h, h), "fft": fft_spectrum(w, h, h)}
    rows: dict[str, list[float]] = {}
    for _ in range(2):  # the two take turns
        for name, fn in versions.items():
            with torch.no_grad():
                rows.setdefault(f"eval {name}", []).append(bs / seconds(lambda: fn(x, w, b, spectra[name])))  # noqa: B023
            rows.setdefault(f"train {name}", []).append(bs / seconds(lambda: fn(x, w).square().mean().backward()))  # noqa: B023
    return (f"C{c}->O{c}, {h}x{h}, {k}x{k}, batch {bs}: max |y - conv2d| dft {err['dft']:.1e} fft {err['fft']:.1e}; "
            f"max |dW - conv2d's| dft {gerr['dft']:.1e} fft {gerr['fft']:.1e}; rows/s "
            + ", ".join(f"{kk} {max(v):.0f}" for kk, v in sorted(rows.items())))


def main() -> None:
    torch.manual_seed(0)
    for c in (64, 128):
        print(compare(c), flush=True)


if __name__ == "__main__":
    main()
