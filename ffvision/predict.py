"""Use a trained checkpoint: classify image files, explain them with class activation maps, build a class hierarchy."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
import torchvision.transforms.v2 as T
from PIL import Image

from ffvision.errors import ConfigError, DataError
from ffvision.io import write_json
from ffvision.train.checkpoint import load_checkpoint, method_from_checkpoint
from ffvision.train.devices import resolve_device


def load_image(path: str | Path, channels: int, image_size: int) -> torch.Tensor:
    """Read an image as float (C, H, W) in [0, 1], resized (shorter side) and centre-cropped."""
    try:
        with Image.open(path) as im:
            img = im.convert("L" if channels == 1 else "RGB")
    except Exception as e:  # missing file, not an image, truncated...
        raise DataError(f"cannot read image {path}: {e}") from None
    t = T.Compose([T.PILToTensor(), T.Resize(image_size, antialias=True), T.CenterCrop(image_size)])
    return t(img).float() / 255


def predict_files(checkpoint: str | Path, paths: list[str], strategy: str | None = None, top_k: int = 3,
                  device: str = "auto") -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """Yield (path, [(class name, probability), ...]) for each image, best first (a checkpoint, or a model file
    `ffvision export` wrote: it has one strategy, its own)."""
    from ffvision.deploy import ExportedModel, is_exported

    if top_k < 1:
        raise ConfigError(f"--top-k must be positive, got {top_k}")
    if is_exported(checkpoint):
        model = ExportedModel(checkpoint)
        if strategy is not None and strategy != model.meta["strategy"]:
            raise ConfigError(f"{checkpoint} holds the {model.meta['strategy']} strategy only, not {strategy}")
        meta, dev, score = model.meta, torch.device("cpu"), model.scores
    else:
        method, meta = method_from_checkpoint(load_checkpoint(checkpoint))
        dev = resolve_device(device)
        method.to(dev)

        def score(x: torch.Tensor) -> torch.Tensor:
            return method.predict(x, strategy=strategy)
    classes = meta.get("classes") or [str(i) for i in range(meta["num_classes"])]
    images = [load_image(p, meta["in_channels"], meta["image_size"]) for p in paths]  # all errors first
    for path, img in zip(paths, images):
        probs = score(img[None].to(dev)).softmax(dim=1)[0]
        p, idx = probs.topk(min(top_k, len(classes)))
        yield path, [(classes[i], float(q)) for q, i in zip(p.tolist(), idx.tolist())]


def class_maps_files(checkpoint: str | Path, paths: list[str], out_dir: str | Path, target: str | None = None,
                     strategy: str | None = None, device: str = "auto") -> Iterator[Path]:
    """Write <out_dir>/<image stem>_cam.png for each image; yield the paths written."""
    from ffvision.viz.cam import class_activation_maps, save_cam_figure

    method, meta = method_from_checkpoint(load_checkpoint(checkpoint))
    dev = resolve_device(device)
    method.to(dev)
    classes = meta.get("classes") or [str(i) for i in range(meta["num_classes"])]
    cls = None
    if target is not None:
        if target in classes:
            cls = classes.index(target)
        elif target.isdigit() and int(target) < len(classes):
            cls = int(target)
        else:
            raise ConfigError(f"unknown class {target!r}; classes: {', '.join(classes[:20])}")
    images = [load_image(p, meta["in_channels"], meta["image_size"]) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path, img in zip(paths, images):
        x = img[None].to(dev)
        forced = None if cls is None else torch.tensor([cls], device=dev)
        used, maps = class_activation_maps(method, x, forced, strategy)
        name = classes[int(used[0])]
        dest = out / f"{Path(path).stem}_cam.png"
        save_cam_figure(img, [m[0] for m in maps], f"{Path(path).name}: {'predicted ' if cls is None else ''}{name}"
                        f" ({meta['config'].method})", dest)
        yield dest


def write_hierarchy(checkpoint: str | Path, out: str | Path, linkage: str = "ward") -> dict:
    """Write the class hierarchy of a trained run's head (methods/hierarchy.py) to out as JSON; returns it."""
    from ffvision.methods.hierarchy import class_prototypes, linkage_merges, tree_levels

    method, meta = method_from_checkpoint(load_checkpoint(checkpoint))
    protos = class_prototypes(method)
    classes = meta.get("classes") or [str(c) for c in range(protos.shape[0])]
    levels = tree_levels(linkage_merges(protos, linkage), protos.shape[0])
    data = {"description": f"{linkage} linkage of the normalised linear-head rows of {checkpoint} "
                           f"({meta.get('dataset', 'its dataset')}), read level by level from the root",
            "classes": classes, "levels": levels}
    write_json(out, data, indent=1)
    return data
