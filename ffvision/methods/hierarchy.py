"""Class hierarchies for HCL-FF: read a shipped or user file, or build one from a trained run.

A hierarchy is a list of levels, coarse to fine, each a partition of the classes into groups:
{"classes": [...], "levels": [[[class, ...], ...], ...]}. HCL-FF's official code derives it from a binary class
tree read level by level from the root (a class whose branch ended earlier stays a group of its own); for
MNIST and FashionMNIST the tree clusters the classes' images, for CIFAR the classes' rows of a pretrained
network's linear head (L2-normalised, Ward linkage). `ffvision hierarchy RUN_DIR --out FILE` (predict.py's
`write_hierarchy`) does the latter for any ffvision run with a linear head: train `hclff` without a hierarchy
first, as the official `--pretrain` runs do.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ffvision.errors import ConfigError

if TYPE_CHECKING:
    import torch

LINKAGES = ("ward", "average", "complete", "single")


def shipped_hierarchies() -> list[str]:
    """Names of the hierarchy files shipped with ffvision."""
    folder = resources.files("ffvision.methods").joinpath("hierarchies")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_hierarchy(spec: str, num_classes: int) -> list[list[list[int]]]:
    """The levels (coarse to fine) of a shipped hierarchy name or a JSON file {"levels": [[[class, ...], ...], ...]};
    each level must be a partition of the classes 0..num_classes-1. A one-line ConfigError otherwise."""
    shipped = resources.files("ffvision.methods").joinpath("hierarchies", f"{spec}.json")
    path = Path(str(shipped)) if shipped.is_file() else Path(spec).expanduser()
    try:
        data = json.loads(path.read_text())
    except OSError:
        raise ConfigError(f"hierarchy {spec!r}: no such file, and not a shipped one "
                          f"({', '.join(shipped_hierarchies())})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"hierarchy {path}: not valid JSON ({e})") from None
    levels = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(levels, list) or not levels:
        raise ConfigError(f"hierarchy {path}: expected {{\"levels\": [[[class, ...], ...], ...]}}, coarse to fine")
    for n, level in enumerate(levels, 1):
        try:
            members = sorted(int(c) for group in level for c in group)
        except (TypeError, ValueError):
            raise ConfigError(f"hierarchy {path}: level {n} must be a list of groups of class indices") from None
        if members != list(range(num_classes)):
            raise ConfigError(f"hierarchy {path}: level {n} does not split the {num_classes} classes into groups "
                              "(each class exactly once)")
    return [[[int(c) for c in group] for group in level] for level in levels]


def linkage_merges(points: torch.Tensor, linkage: str = "ward") -> list[tuple[int, int]]:
    """Agglomerative clustering of the rows of points (C, D), as scipy's `linkage`: the pairs merged, in order;
    clusters 0..C-1 are the rows, cluster C + k the k-th merge. Lance-Williams updates of the distances (Ward's
    on squared Euclidean distances)."""
    import torch

    if linkage not in LINKAGES:
        raise ConfigError(f"unknown linkage {linkage!r}; choose one of: {', '.join(LINKAGES)}")
    x = points.double()
    d = torch.cdist(x, x)
    if linkage == "ward":
        d = d.square()
    n = x.shape[0]
    ids = list(range(n))  # the cluster id held by each row of d
    nk = torch.ones(n, dtype=torch.double)  # the size of each row's cluster
    alive = torch.ones(n, dtype=torch.bool)
    merges = []
    for step in range(n - 1):
        masked = d.masked_fill(~(alive[:, None] & alive[None, :]) | torch.eye(n, dtype=torch.bool), float("inf"))
        i, j = sorted(divmod(int(masked.argmin()), n))
        merges.append((min(ids[i], ids[j]), max(ids[i], ids[j])))
        ni, nj = float(nk[i]), float(nk[j])
        if linkage == "ward":
            new = ((ni + nk) * d[i] + (nj + nk) * d[j] - nk * d[i, j]) / (ni + nj + nk)
        elif linkage == "average":
            new = (ni * d[i] + nj * d[j]) / (ni + nj)
        elif linkage == "complete":
            new = torch.maximum(d[i], d[j])
        else:
            new = torch.minimum(d[i], d[j])
        d[i], d[:, i] = new, new
        alive[j] = False
        ids[i], nk[i] = n + step, ni + nj
    return merges


def tree_levels(merges: list[tuple[int, int]], num_classes: int) -> list[list[list[int]]]:
    """The levels of a binary tree given by its merges: level L groups the classes under each node L steps from
    the root (breadth first), each class whose branch ended above L a group of its own; the last level is the
    classes themselves."""
    children = {num_classes + k: pair for k, pair in enumerate(merges)}

    def leaves(node: int) -> list[int]:
        return [node] if node < num_classes else sorted(leaves(children[node][0]) + leaves(children[node][1]))

    levels, frontier = [], [num_classes + len(merges) - 1] if merges else [0]
    while any(node >= num_classes for node in frontier):
        frontier = [c for node in frontier if node >= num_classes for c in children[node]]
        groups = [leaves(node) for node in frontier]
        covered = {c for g in groups for c in g}
        levels.append(groups + [[c] for c in range(num_classes) if c not in covered])
    return levels or [[[c] for c in range(num_classes)]]


def class_prototypes(method: torch.nn.Module) -> torch.Tensor:
    """Each class's row of the method's linear head, L2-normalised (C, D)."""
    import torch

    head = getattr(method, "head", None)
    weight = getattr(getattr(head, "fc", None), "weight", None)
    if weight is None:
        raise ConfigError(f"a hierarchy is built from a linear head; {type(method).__name__.lower()} has none "
                          "(train deeperforward or hclff)")
    return torch.nn.functional.normalize(weight.detach().float(), dim=1)
