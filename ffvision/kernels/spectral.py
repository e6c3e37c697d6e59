"""Large-kernel "same" convolutions as matrix products in the frequency domain (FF-CNN's 7x7 layers).

A stride-1 convolution with k x k kernels and padding p = k // 2 over an H x W map is diagonal in
the 2-D discrete Fourier basis of size (H + p) x (W + p): zero-padding the map to that size
leaves no wrap-around in the H x W outputs (a circular correlation of length P aliases output
y only from inputs y - p - P ... which are zero when P >= H + p). So

    y = T_inv( K * T(x) ) + bias,    K[f, c, o] = sum_taps w[o, c, dy, dx] e^{2 pi i (f_y (dy-p)/P_y + f_x (dx-p)/P_x)}

exactly (up to rounding), where T is the real DFT (half spectrum along W) and the channel mix
`K *` is one complex (N x C) @ (C x O) product per frequency. Every stage is a dense matrix
product (the DFTs too, as small real matrices: no FFT library), and the data stay in a
spatial-major (H, W, N, C) layout between the stages, so no stage transposes: the output is an
(N, O, H, W)-shaped view of an (H, W, N, O) buffer, which the next spectral layer reads without a
copy. It runs in float32 also under autocast (`compute_dtype`: a bf16 spectrum moved FF's goodness),
exact to ~1e-6.

Cost per image for 128 -> 128 channels at 28 x 28, 7 x 7: ~0.11 GFLOP against the direct
convolution's 1.26. Measured on an AMD EPYC Zen 4, one thread (benchmarks/studies/ffcnn-cpu-inference):
FF-CNN's goodness inference at 128 filters ~1.7x the img/s of the direct bf16 convolution (3.3x the
direct float32 one). For 3 x 3 kernels the direct convolution stays the faster
(`prefer_spectral`).

The backward pass is hand-written (the transposes of the same stages): it keeps only the
input's spectrum, skips the input gradient when the input is detached (a local FF block), and
returns the gradient of the spectrum K, from which autograd reaches the weight through
`kernel_spectrum` (a linear map).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ffvision import kernels

# "auto" runs a convolution in the frequency domain on a CPU from this kernel size and these channel counts
# on both sides: below them the direct bf16 convolution measured as fast or faster (1 thread, 28 px,
# 7x7, float32 spectral against direct bf16, inference / training: 32 -> 32 channels 1.1x / 1.0x, 64 -> 64
# 1.6x / 1.3x, 128 -> 128 1.7x / 1.4x; 1 -> 128 (FF-CNN's layer 1) 0.1x / 0.2x; 3x3 slower at every width;
# benchmarks/studies/ffcnn-cpu-inference/spectral-crossover.txt)
SPECTRAL_MIN_KERNEL = 5
SPECTRAL_MIN_CHANNELS = 64
CONV_IMPLS = ("auto", "direct", "spectral")


def prefer_spectral(conv: nn.Conv2d, x: torch.Tensor, impl: str = "auto") -> bool:
    """Whether conv(x) runs in the frequency domain: impl "spectral", or "auto" for a large, wide conv on a CPU.

    Only stride-1 "same" convolutions (odd kernel, padding k // 2, no dilation or groups) qualify.
    """
    k = conv.kernel_size
    same = (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and k[0] == k[1]
            and k[0] % 2 == 1 and conv.padding == (k[0] // 2, k[0] // 2) and x.ndim == 4)
    if impl == "direct" or not same or not kernels.enabled():
        return False
    wide = min(conv.in_channels, conv.out_channels) >= SPECTRAL_MIN_CHANNELS
    return impl == "spectral" or (x.device.type == "cpu" and k[0] >= SPECTRAL_MIN_KERNEL and wide)


@functools.lru_cache(maxsize=32)
def _angles(n: int, size: int, shift: int = 0) -> torch.Tensor:
    """2 pi f (j - shift) / size for f < size (rows), j < n (columns), float64."""
    f = torch.arange(size, dtype=torch.float64)
    return 2 * math.pi * torch.outer(f, torch.arange(n, dtype=torch.float64) - shift) / size


@functools.lru_cache(maxsize=32)
def _stage_matrices(h: int, w: int, p: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The four real DFT stages for an h x w map and padding p: (fwd W, fwd H, inverse H, inverse W).

    fwd W:   (2Fx, W)   real x -> (re, im) of the half spectrum along W, rows (r, fx).
    fwd H:   (2Py, 2H)  (h, r) -> (r, fy): complex DFT along H.
    inv H:   (2H, 2Py)  (r, fy) -> (h, r): inverse complex DFT along H (outputs h < H only).
    inv W:   (W, 2Fx)   (r, fx) -> real output along W, Hermitian weights and 1 / (Py Px) folded in.
    """
    py, px = h + p, w + p
    fx = px // 2 + 1
    tx = _angles(w, px)[:fx]  # (Fx, W)
    fwd_w = torch.cat([tx.cos(), -tx.sin()], 0)
    ty = _angles(h, py)  # (Py, H)
    c, s = ty.cos(), ty.sin()
    fwd_h = torch.zeros(2, py, h, 2, dtype=torch.float64)
    fwd_h[0, :, :, 0], fwd_h[0, :, :, 1] = c, s  # re = c a_re + s a_im   (e^{-i theta})
    fwd_h[1, :, :, 0], fwd_h[1, :, :, 1] = -s, c  # im = -s a_re + c a_im
    inv_h = torch.zeros(h, 2, 2, py, dtype=torch.float64)
    inv_h[:, 0, 0], inv_h[:, 0, 1] = c.T, -s.T  # re = c y_re - s y_im   (e^{+i theta})
    inv_h[:, 1, 0], inv_h[:, 1, 1] = s.T, c.T  # im = s y_re + c y_im
    weight = torch.full((fx,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if px % 2 == 0:
        weight[-1] = 1.0
    inv_w = torch.cat([weight * tx.T.cos(), -weight * tx.T.sin()], 1) / (py * px)  # (W, 2Fx)
    mats = (fwd_w, fwd_h.reshape(2 * py, 2 * h), inv_h.reshape(2 * h, 2 * py), inv_w)
    return tuple(m.to(device=device, dtype=dtype).contiguous() for m in mats)


@functools.lru_cache(maxsize=32)
def _spectrum_basis(k: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi (fy (dy-p)/Py + fx (dx-p)/Px), (Py*Fx, k*k) each, float32."""
    p = k // 2
    py, px = h + p, w + p
    ay = _angles(k, py, p)  # (Py, k)
    ax = _angles(k, px, p)[: px // 2 + 1]  # (Fx, k)
    theta = (ay[:, None, :, None] + ax[None, :, None, :]).reshape(py * (px // 2 + 1), k * k)
    return theta.cos().float().to(device), theta.sin().float().to(device)


def kernel_spectrum(weight: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of the kernel's spectrum for an h x w map, (Py*Fx, C_in, C_out), differentiable."""
    o, c, k, _ = weight.shape
    cos, sin = _spectrum_basis(k, h, w, weight.device)
    taps = weight.float().reshape(o * c, k * k).T  # (k*k, O*C)
    with torch.autocast(device_type=weight.device.type, enabled=False):  # float32 whatever the caller's autocast
        return ((cos @ taps).view(-1, o, c).transpose(1, 2), (sin @ taps).view(-1, o, c).transpose(1, 2))


class SpectrumCache:
    """The last `kernel_spectrum` of a weight, reused while the weight is unchanged and no gradient is wanted."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(self, weight: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The spectrum for an h x w map (cached), or None while autograd needs it built afresh."""
        if torch.is_grad_enabled() and weight.requires_grad:
            self.key = self.value = None  # training: the weight changes every step; free the memory
            return None
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, h, w)
        if key != self.key:
            with torch.no_grad():
                self.value = kernel_spectrum(weight, h, w)
            self.key = key
        return self.value


def _spatial_major(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, C, H, W) -> a contiguous (H, W, N, C) tensor in dtype (free when x is a view of one)."""
    t = x.permute(2, 3, 0, 1)
    if t.dtype == dtype and t.is_contiguous():
        return t
    out = torch.empty(t.shape, dtype=dtype, device=x.device)
    out.copy_(t)
    return out


def _mix(xr: torch.Tensor, xi: torch.Tensor, kr: torch.Tensor, ki: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[0] + i out[1] = (xr + i xi) @ (kr + i ki), one product per frequency (batched), accumulated in place."""
    torch.bmm(xr, kr, out=out[0])
    out[0].baddbmm_(xi, ki, alpha=-1.0)
    torch.bmm(xr, ki, out=out[1])
    out[1].baddbmm_(xi, kr)
    return out


class _SpectralConv(torch.autograd.Function):
    """y = T_inv(K * T(x)) + bias with the real DFT stages of `_stage_matrices`; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kr: torch.Tensor, ki: torch.Tensor, bias: torch.Tensor | None,
                dtype: torch.dtype, p: int) -> torch.Tensor:
        n, c, h, w = x.shape
        o = kr.shape[-1]
        fwd_w, fwd_h, inv_h, inv_w = _stage_matrices(h, w, p, x.device, dtype)
        py, fx = h + p, (w + p) // 2 + 1
        with torch.autocast(device_type=x.device.type, enabled=False):
            xs = _spatial_major(x, dtype).view(h, w, n * c)
            a = torch.matmul(fwd_w, xs)  # (H, 2Fx, N*C)
            spec = (fwd_h @ a.view(2 * h, fx * n * c)).view(2, py * fx, n, c)
            krc, kic = kr.to(dtype), ki.to(dtype)
            ys = _mix(spec[0], spec[1], krc, kic, torch.empty(2, py * fx, n, o, dtype=dtype, device=x.device))
            z = inv_h @ ys.view(2 * py, fx * n * o)  # (2H, Fx*N*O)
            y = torch.empty(h, w, n, o, dtype=dtype, device=x.device)  # a base tensor: autograd forbids
            torch.matmul(inv_w, z.view(h, 2 * fx, n * o), out=y.view(h, w, n * o))  # in-place ops on a view
            if bias is not None:
                y += bias.to(dtype)
        ctx.save_for_backward(spec, krc, kic)
        ctx.shape, ctx.padding, ctx.dtype, ctx.has_bias = (n, c, h, w), p, dtype, bias is not None
        ctx.x_dtype = x.dtype
        return y  # (H, W, N, O); spectral_conv2d returns its (N, O, H, W) view

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        spec, kr, ki = ctx.saved_tensors
        n, c, h, w = ctx.shape
        dtype, p, o = ctx.dtype, ctx.padding, kr.shape[-1]
        fwd_w, fwd_h, inv_h, inv_w = _stage_matrices(h, w, p, gy.device, dtype)
        py, fx = h + p, (w + p) // 2 + 1
        with torch.autocast(device_type=gy.device.type, enabled=False):
            g = gy.to(dtype).contiguous().view(h, w, n * o)
            gb = g.view(h * w * n, o).float().sum(0) if ctx.has_bias else None
            gz = torch.matmul(inv_w.T, g)  # (H, 2Fx, N*O)
            gys = (inv_h.T @ gz.view(2 * h, fx * n * o)).view(2, py * fx, n, o)
            # K's gradient per frequency, from y_re = xr kr - xi ki, y_im = xr ki + xi kr
            xr_t, xi_t = spec[0].transpose(1, 2), spec[1].transpose(1, 2)
            gkr = torch.baddbmm(torch.bmm(xr_t, gys[0]), xi_t, gys[1]).float()
            gki = torch.baddbmm(torch.bmm(xr_t, gys[1]), xi_t, gys[0], alpha=-1.0).float()
            gx = None
            if ctx.needs_input_grad[0]:
                gspec = torch.empty(2, py * fx, n, c, dtype=dtype, device=gy.device)
                kr_t, ki_t = kr.transpose(1, 2), ki.transpose(1, 2)
                torch.bmm(gys[0], kr_t, out=gspec[0])
                gspec[0].baddbmm_(gys[1], ki_t)  # g_xr = g_yr kr^T + g_yi ki^T
                torch.bmm(gys[1], kr_t, out=gspec[1])
                gspec[1].baddbmm_(gys[0], ki_t, alpha=-1.0)  # g_xi = -g_yr ki^T + g_yi kr^T
                ga = fwd_h.T @ gspec.view(2 * py, fx * n * c)  # (2H, Fx*N*C)
                gx = torch.matmul(fwd_w.T, ga.view(h, 2 * fx, n * c)).view(h, w, n, c)
                gx = gx.permute(2, 3, 0, 1).to(ctx.x_dtype)
        return gx, gkr, gki, gb, None, None


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 (float64 for float64 inputs) whatever autocast says: a spectrum is not rounded to 16 bits.

    bf16 rounding of a spectrum is coherent over the whole map (its large low-frequency terms), and FF's
    goodness, in its loss as in inference, compares overlays of one image whose goodness differs by tenths
    of a percent: with the channel mix in bf16 the argmax over labels changed for 4-5% of validation images
    against float32, where the direct bf16 convolution changes 1-2% (one trained
    128-filter checkpoint evaluated both ways; benchmarks/studies/ffcnn-cpu-inference). Float32 spectral convolutions
    are exact to ~1e-6 and still faster than the direct bf16 convolution from 64 channels (`prefer_spectral`).
    """
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def spectral_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    spectrum: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=k // 2) for odd k, computed in the frequency domain (same values up to rounding).

    `spectrum` may pass `kernel_spectrum(weight, H, W)` computed before (a cache). The output is an
    (N, O, H, W)-shaped view of a spatial-major float32 buffer (`compute_dtype`), also under autocast.
    """
    n, c, h, w = x.shape
    kr, ki = spectrum if spectrum is not None else kernel_spectrum(weight, h, w)
    return _SpectralConv.apply(x, kr, ki, bias, compute_dtype(x), weight.shape[-1] // 2).permute(2, 3, 0, 1)


def spectral_conv2d_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The same convolution, direct: conv2d with padding k // 2."""
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
