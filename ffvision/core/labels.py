"""How labels enter the input in Forward-Forward methods.

* `SpatialLabels` - Scodellaro et al. (arXiv 2312.14924): one H x W pattern T_c per class,
  mixed into every channel of the image, x_c = (1 - K) x + K T_c, so every receptive field
  of a shared-weight convolution sees the label. Two families (the paper's exact formulas
  are not published; these are ffvision's):
    fourier        T_c = 0.5 + 0.5 cos(2 pi (i cos t_c + j sin t_c) / P_c), (i, j) in pixels:
                   a plane wave with n_o = ceil(sqrt(N)) + 1 orientations t_c in [0, pi) and
                   wavelengths P_c from 6 to 3 px (geometric; class c has wavelength index
                   c // n_o, orientation index c % n_o). Short waves stay readable inside a
                   7x7 receptive field after the mix with an image; the first version (2-4
                   cycles per image, 7-14 px at 28 px) overlapped the images' own spectrum
                   (measured: the short waves gave +11 points on validation).
    morphological  binary textures: a class-seeded random point set dilated with a
                   class-specific structuring element - disk, square, cross, horizontal,
                   vertical or diagonal bar, or ring (c mod 8), radius 2 + (c div 8) mod 3 -
                   with the point density set so each pattern covers ~25% of the image.
                   Structure, not frequency, tells classes apart, which is what the paper
                   used against shortcut solutions on CIFAR-10.
  Every set is checked at construction: two patterns closer than 0.1 RMS is an error.
* `OneHotPixels` - Hinton (arXiv 2212.13345): the first N values of the flattened image
  are replaced by a one-hot label (1.0 at the class, 0 elsewhere).

Every spatial set is balanced (`balance_patterns`): each class pattern is rescaled to the
same mean (0.5) and standard deviation (that of the plane wave, 0.5/sqrt 2), so no class's
pattern carries more energy than another's. Unbalanced, the morphological patterns covered
13-39% of the pixels and, at initialisation, goodness inference picked one class for ~80% of
the images (a bright pattern wins whatever the image).

Both encodings are affine in the image, encode(x, c) = a * base(x) + b * T_c
(`affine_parts`), which lets goodness inference compute the first layer's response to all
N labels from one pass over the image plus one over the N templates.

Negative labels are drawn from the *other* classes, never by shuffling the batch (which
makes some "negatives" positives): uniformly (`negative_labels`) or in proportion to the
network's current belief (`hard_negative_labels`, Hinton's reference code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.errors import ConfigError, DataError, ImageTooSmall

LABEL_SETS = ("fourier", "morphological", "onehot")
_SHAPES = ("disk", "square", "cross", "hbar", "vbar", "diag", "antidiag", "ring")


def negative_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None,
                    k: int | None = None) -> torch.Tensor:
    """A label drawn uniformly from the classes other than y, for every sample: (B,), or k distinct ones (B, k)."""
    if k is None:
        shift = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)
        return (y + shift) % num_classes
    if not 1 <= k < num_classes:
        raise ValueError(f"k must be in 1..{num_classes - 1}, got {k}")
    keys = torch.rand(y.shape[0], num_classes, device=y.device, generator=generator)
    keys.scatter_(1, y[:, None], -1.0)  # the true class sorts last
    return keys.topk(k, dim=1).indices  # a uniformly random k-subset of the wrong classes


def hard_negative_labels(y: torch.Tensor, logits: torch.Tensor, uniform: float = 0.05,
                         k: int | None = None) -> torch.Tensor:
    """A wrong label per sample, drawn in proportion to softmax(logits) over the other classes ((B,), or (B, k)).

    The belief over the wrong classes is mixed with a little of the uniform distribution
    (weight `uniform`), so every wrong class is still visited; the true class has probability
    exactly zero. With k, k distinct wrong labels are drawn (without replacement).
    """
    n = logits.shape[1]
    wrong = torch.ones_like(logits, dtype=torch.bool).scatter(1, y[:, None], False)
    p = logits.detach().float().masked_fill(~wrong, float("-inf")).softmax(1)  # (B, N), 0 at the true class
    p = (1 - uniform) * p + (uniform / (n - 1)) * wrong
    if k is None:
        return torch.multinomial(p, 1).squeeze(1)
    if not 1 <= k < n:
        raise ValueError(f"k must be in 1..{n - 1}, got {k}")
    return torch.multinomial(p, k, replacement=False)


def balance_patterns(patterns: torch.Tensor, std: float = 0.5 / math.sqrt(2)) -> torch.Tensor:
    """Rescale each (H, W) pattern to mean 0.5 and standard deviation `std` (equal energy)."""
    flat = patterns.flatten(1)
    mean, sd = flat.mean(1, keepdim=True), flat.std(1, unbiased=False, keepdim=True)
    if bool((sd < 1e-6).any()):
        c = int((sd < 1e-6).nonzero()[0, 0])
        raise ConfigError(f"the label set is too small for {patterns.shape[0]} classes at {patterns.shape[1]}x"
                          f"{patterns.shape[2]} px: class {c}'s pattern is constant; use a larger image_size")
    return (0.5 + std * (flat - mean) / sd).view_as(patterns)


FOURIER_PERIODS_PX = (6.0, 3.0)  # the longest and shortest wavelength of the plane waves, in pixels


def fourier_patterns(num_classes: int, height: int, width: int) -> torch.Tensor:
    """(N, H, W) plane waves in [0, 1], one wavelength/orientation per class, wavelengths of 3-6 px."""
    n_o = math.ceil(math.sqrt(num_classes)) + 1
    n_f = math.ceil(num_classes / n_o)
    longest, shortest = FOURIER_PERIODS_PX
    if min(height, width) < 2 * longest:
        raise ImageTooSmall(f"the fourier label set cannot make {num_classes} distinct patterns at "
                            f"{height}x{width} px (its longest wave, {longest:g} px, needs at least "
                            f"{2 * longest:g} px); use a larger image_size or the morphological set",
                            math.ceil(2 * longest))
    periods = [math.sqrt(longest * shortest)] if n_f == 1 else \
        [longest * (shortest / longest) ** (j / (n_f - 1)) for j in range(n_f)]
    v, u = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    out = []
    for c in range(num_classes):
        period, t = periods[c // n_o], math.pi * (c % n_o) / n_o
        out.append(0.5 + 0.5 * torch.cos(2 * math.pi * (u * math.cos(t) + v * math.sin(t)) / period))
    return torch.stack(out)


def _element(shape: str, r: int) -> torch.Tensor:
    """A (2r+1) x (2r+1) binary structuring element."""
    i, j = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    d2 = i**2 + j**2
    masks = {"disk": d2 <= r * r, "square": torch.ones_like(d2, dtype=torch.bool),
             "cross": (i == 0) | (j == 0), "hbar": i == 0, "vbar": j == 0, "diag": i == j, "antidiag": i == -j,
             "ring": (d2 <= r * r) & (d2 > (r - 1) ** 2)}
    return masks[shape].float()


def morphological_patterns(num_classes: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(N, H, W) binary textures: class-seeded points dilated by a class-specific element."""
    out = []
    for c in range(num_classes):
        g = torch.Generator().manual_seed(seed * 100_003 + c)
        elem = _element(_SHAPES[c % len(_SHAPES)], 2 + (c // len(_SHAPES)) % 3)
        # Point density chosen so that every pattern covers about a quarter of the image.
        u = torch.rand(1, 1, height, width, generator=g)
        points = (u < 0.25 / float(elem.sum())).float()
        points.view(-1)[u.argmin()] = 1.0  # at least one point, also on tiny images
        r = elem.shape[-1] // 2
        out.append((F.conv2d(points, elem[None, None], padding=r)[0, 0] > 0).float())
    return torch.stack(out)


def check_distinct(patterns: torch.Tensor, name: str, min_rms: float = 0.1) -> None:
    """ConfigError if two class patterns are (nearly) the same."""
    flat = patterns.flatten(1)
    d = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # RMS distance
    d.fill_diagonal_(float("inf"))
    i, j = divmod(int(d.argmin()), d.shape[0])
    if d[i, j] < min_rms:
        raise ConfigError(f"the {name} label set is too small for {patterns.shape[0]} classes at "
                          f"{patterns.shape[1]}x{patterns.shape[2]} px: classes {i} and {j} get nearly the "
                          "same pattern; use a larger image_size or another label set")


class SpatialLabels(nn.Module):
    """Class patterns mixed into the image: x_c = (1 - K) x + K T_c on every channel."""

    def __init__(self, kind: str, num_classes: int, height: int, width: int, intensity: float = 0.35,
                 seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= intensity <= 1.0:
            raise ConfigError(f"label intensity K must be in [0, 1], got {intensity}")
        if kind == "fourier":
            patterns = fourier_patterns(num_classes, height, width)
        elif kind == "morphological":
            patterns = morphological_patterns(num_classes, height, width, seed)
        else:
            raise ConfigError(f"unknown spatial label set {kind!r}; choose fourier or morphological")
        check_distinct(patterns, kind)
        patterns = balance_patterns(patterns)
        self.kind, self.num_classes, self.intensity = kind, num_classes, intensity
        self.register_buffer("patterns", patterns)  # (N, H, W)

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != tuple(self.patterns.shape[-2:]):
            raise DataError(f"images are {x.shape[-2]}x{x.shape[-1]} px but the label patterns were built for "
                            f"{self.patterns.shape[-2]}x{self.patterns.shape[-1]}")

    def mix(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(1 - K) x + K t with t (B, H, W) broadcast over channels."""
        return (1 - self.intensity) * x + self.intensity * t[:, None].to(x.dtype)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each image with its label's pattern."""
        self._check(x)
        return self.mix(x, self.patterns[y])

    def neutral(self, x: torch.Tensor) -> torch.Tensor:
        """Each image with the mean of all patterns (no class preferred)."""
        self._check(x)
        return self.mix(x, self.patterns.mean(0).expand(x.shape[0], -1, -1))

    def affine_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """(base (B, C, H, W), templates (N, C, H, W), a, b) with encode(x, c) = a*base + b*templates[c]."""
        self._check(x)
        t = self.patterns[:, None].to(x.dtype).expand(-1, x.shape[1], -1, -1)
        return x, t, 1 - self.intensity, self.intensity


class OneHotPixels(nn.Module):
    """Hinton's label: the first N values of the flattened image hold a one-hot vector."""

    def __init__(self, num_classes: int, numel: int) -> None:
        super().__init__()
        if num_classes >= numel:
            raise ConfigError(f"one-hot labels need more than {num_classes} input values per image, got {numel}")
        self.kind, self.num_classes, self.numel = "onehot", num_classes, numel

    def _write(self, x: torch.Tensor, label_values: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.numel:
            raise DataError(f"images have {x[0].numel()} values but the label encoding was built for {self.numel}")
        flat = x.flatten(1).clone()
        flat[:, : self.num_classes] = label_values.to(flat.dtype)
        return flat.view_as(x)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images with a one-hot label in their first N values."""
        return self._write(x, F.one_hot(y, self.num_classes))

    def neutral(self, x: torch.Tensor) -> torch.Tensor:
        """Images with 1/N in every label position (Hinton's neutral label)."""
        return self._write(x, torch.full((x.shape[0], self.num_classes), 1 / self.num_classes, device=x.device))

    def affine_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """(base, templates (N, ...), 1, 1): the image with zeros in the label values, and one-hot images."""
        base = self._write(x, torch.zeros(x.shape[0], self.num_classes, device=x.device))
        t = torch.zeros(self.num_classes, *x.shape[1:], device=x.device, dtype=x.dtype)
        t.view(self.num_classes, -1)[:, : self.num_classes] = torch.eye(self.num_classes, device=x.device,
                                                                        dtype=x.dtype)
        return base, t, 1.0, 1.0


def make_label_encoding(kind: str, num_classes: int, in_channels: int, image_size: int, intensity: float,
                        seed: int = 0) -> nn.Module:
    """Build a label encoding by name: fourier | morphological | onehot."""
    if kind == "onehot":
        return OneHotPixels(num_classes, in_channels * image_size * image_size)
    if kind not in LABEL_SETS:
        raise ConfigError(f"unknown label set {kind!r}; choose one of: {', '.join(LABEL_SETS)}")
    return SpatialLabels(kind, num_classes, image_size, image_size, intensity, seed)
