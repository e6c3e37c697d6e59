"""Datasets by name, their train/validation/test splits and transforms.

`build_splits(name, root, ...)` returns the training split, a validation split carved from
the training data (seeded, so every run of a recipe sees the same split) and the test split.
MNIST, FashionMNIST and CIFAR are held in memory as uint8 tensors, resized once to the
target size. A user's ImageFolder gets its defaults from its own files (`imagefolder`): the
image size is the images' typical size, the colour mode is RGB if any file is colour, the
augmentation is a mild shift (no flips, no crop that can remove the object), and when the
decoded images fit in memory (FOLDER_CACHE_BYTES) they are decoded once, in parallel, and
then handled exactly like the built-in in-memory datasets. `imagenet` keeps ImageNet's
pipeline (random-resized crops and flips, 0.875 centre crop for evaluation), decoded on the
fly in DataLoader workers. Every sample is a uint8 tensor (C, H, W); the trainer scales it
to [0, 1] on the device. `DataSplits.describe()` is the one line a run prints about them.

Where data is looked for (first hit wins):
  --data-dir DIR given: DIR, then DIR/<TorchvisionFolder>/raw (MNIST family) or
                        DIR/cifar-10-batches-py | DIR/cifar-100-python (CIFAR).
  no --data-dir:        $FFVISION_DATA (default ./data) the same way, then the system copy
                        /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
With --download, missing MNIST/FashionMNIST/CIFAR files are fetched by torchvision.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torchvision
import torchvision.transforms.v2 as T
from PIL import Image
from torch.utils.data import Dataset

from ffvision.data.readers import read_cifar_batches, read_cifar_meta, read_idx
from ffvision.data.specs import AUGMENTS, SPECS, DatasetSpec, canonical_name
from ffvision.errors import ConfigError, DataError, unknown_name

log = logging.getLogger(__name__)

SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
               "mnist": [Path("/usr/share/datasets/mnist")]}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


FOLDER_CACHE_BYTES = 2 << 30  # an ImageFolder whose decoded images fit in 2 GiB is decoded once, into memory
MAX_AUTO_SIZE = 256  # a folder of larger images defaults to this size (pass --image-size for more)
def default_root() -> Path:
    """Where datasets live when no --data-dir is given ($FFVISION_DATA or ./data)."""
    return Path(os.environ.get("FFVISION_DATA", "data"))


# --------------------------------------------------------------------------- datasets
class ArrayImageDataset(Dataset):
    """In-memory uint8 images (N, C, H, W) viewed through an index list and a transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None,
                 transform: Callable | None = None, classes: list[str] | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.indices = torch.arange(len(labels)) if indices is None else indices
        self.classes = classes or [str(i) for i in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        """Number of samples in this view."""
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(uint8 image (C, H, W), label)."""
        j = int(self.indices[i])
        img = self.images[j]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[j])


class FolderImageDataset(Dataset):
    """(path, label) samples decoded with PIL in `mode` ('L' or 'RGB') and transformed."""

    def __init__(self, samples: list[tuple[str, int]], mode: str, transform: Callable,
                 classes: list[str]) -> None:
        self.samples, self.mode, self.transform, self.classes = samples, mode, transform, classes
        self.to_tensor = T.PILToTensor()

    def __len__(self) -> int:
        """Number of images."""
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """(uint8 image (C, H, W), label); DataError naming the file if it cannot be read."""
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert(self.mode)
        except Exception as e:  # PIL raises many types for damaged files
            raise DataError(f"cannot read image {path}: {e}") from None
        return self.to_tensor(self.transform(img)), label


@dataclass
class DataSplits:
    """Train / validation / test datasets and what the model needs to know about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    classes: list[str] = field(default_factory=list)
    name: str = ""
    augment: str = "none"
    notes: list[str] = field(default_factory=list)  # how the size and mode were chosen, caching

    def info(self) -> dict[str, object]:
        """The resolved data settings (summary.json's "data")."""
        return {"dataset": self.name, "image_size": self.image_size, "channels": self.in_channels,
                "augment": self.augment, "num_classes": self.num_classes, "num_train": len(self.train),
                "num_val": len(self.val), "num_test": len(self.test), "notes": list(self.notes)}

    def meta(self) -> dict[str, object]:
        """What a checkpoint records about its data, to rebuild the model and check a dataset against it."""
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "image_size": self.image_size,
                "classes": list(self.classes), "dataset": self.name}

    def describe(self) -> str:
        """One line: size, channels, augmentation and split sizes, as resolved."""
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (f"data: {self.name}, {self.image_size}x{self.image_size} px, {self.in_channels} channel"
                f"{'s' if self.in_channels > 1 else ''}, {self.num_classes} classes, augment {self.augment}, "
                f"train {len(self.train):,} / val {len(self.val):,} / test {len(self.test):,} images{notes}")


# --------------------------------------------------------------------------- transforms
def train_transform(augment: str, image_size: int, channels: int, folder: bool) -> Callable | None:
    """Training augmentation preset (uint8 tensors for in-memory data, PIL for folders)."""
    if augment not in AUGMENTS:
        raise unknown_name("augmentation", augment, list(AUGMENTS))
    if augment == "imagenet":
        return T.Compose([T.RandomResizedCrop(image_size, antialias=True), T.RandomHorizontalFlip()])
    ops: list[Callable] = [] if not folder else [T.Resize(image_size, antialias=True), T.CenterCrop(image_size)]
    if augment == "contrastive":  # HCL-FF's for CIFAR (SimCLR's, milder)
        jitter = T.ColorJitter(0.2, 0.2, 0.2, 0.1) if channels == 3 else T.ColorJitter(0.2, 0.2)
        ops += [T.RandomResizedCrop(image_size, scale=(0.4, 1.0), antialias=True), T.RandomHorizontalFlip(),
                T.RandomApply([jitter], p=0.8)]
        if channels == 3:
            ops.append(T.RandomGrayscale(0.2))
    if augment == "shift":  # translation only: the whole object stays (at least 3/4 of each side) in view
        ops.append(T.RandomCrop(image_size, padding=max(1, image_size // 8), padding_mode="edge"))
    if augment in ("affine", "affine-flip"):  # HCL-FF's for MNIST and FashionMNIST
        ops += [T.RandomRotation(10), T.RandomAffine(0, translate=(0.1, 0.1), scale=(0.9, 1.1))]
    if augment == "affine-flip":
        ops.append(T.RandomHorizontalFlip(0.2))
    if augment in ("crop", "cifar"):
        ops.append(T.RandomCrop(image_size, padding=4))
    if augment in ("flip", "crop", "cifar"):
        ops.append(T.RandomHorizontalFlip())
    if augment == "cifar":
        # Hue and grayscale need colour; on 1-channel data only brightness/contrast jitter.
        if channels == 3:
            ops += [T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomGrayscale(0.2)]
        else:
            ops.append(T.ColorJitter(0.4, 0.4))
    return T.Compose(ops) if ops else None


def eval_transform(image_size: int, folder: bool, imagenet_crop: bool = True) -> Callable | None:
    """Evaluation transform: none for in-memory data; for folders resize + centre crop (ImageNet's 0.875)."""
    if not folder:
        return None
    resize = round(image_size / 0.875) if imagenet_crop else image_size
    return T.Compose([T.Resize(resize, antialias=True), T.CenterCrop(image_size)])


# --------------------------------------------------------------------------- sources
def _find(name: str, dirs: list[Path]) -> Path | None:
    """First of dir/name or dir/name.gz that exists."""
    for d in dirs:
        for cand in (d / name, d / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


def _mnist_like(name: str, root: Path | None, download: bool) -> tuple[dict, list[str]]:
    """Load MNIST or FashionMNIST IDX files -> ({split: (images, labels)}, classes)."""
    tv = torchvision.datasets.FashionMNIST if name == "fashion-mnist" else torchvision.datasets.MNIST
    base = root if root is not None else default_root()
    dirs = [base, base / tv.__name__ / "raw", base / name]
    if root is None:
        dirs += SYSTEM_DIRS.get(name, [])
    wanted = [f for pair in IDX_FILES.values() for f in pair]
    found = {f: _find(f, dirs) for f in wanted}
    if not all(found.values()) and download:
        try:
            for train in (True, False):
                tv(str(base), train=train, download=True)
        except Exception as e:  # no network, a proxy, a full disk...
            raise DataError(f"{name}: download into {base} failed ({e})") from None
        found = {f: _find(f, dirs) for f in wanted}
    missing = [f for f, p in found.items() if p is None]
    if missing:
        hint = " or install Debian's package dataset-fashion-mnist" if name == "fashion-mnist" else ""
        raise DataError(
            f"{name}: missing {', '.join(m + '[.gz]' for m in missing)} (looked in "
            f"{', '.join(str(d) for d in dirs)}); put the four IDX files in --data-dir DIR, "
            f"pass --download to fetch them with torchvision{hint}")
    out = {}
    for split, (img_f, lab_f) in IDX_FILES.items():
        images, labels = read_idx(found[img_f]), read_idx(found[lab_f])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != torch.uint8:
            raise DataError(f"corrupted IDX files {found[img_f]} / {found[lab_f]}: images of shape "
                            f"{tuple(images.shape)} do not match labels of shape {tuple(labels.shape)}")
        out[split] = (images[:, None], labels.long())  # (N, 1, 28, 28)
    return out, list(tv.classes)


def _cifar(name: str, root: Path | None, download: bool) -> tuple[dict, list[str]]:
    """Load CIFAR-10/100 python batches -> ({split: (images, labels)}, classes)."""
    ten = name == "cifar10"
    tv = torchvision.datasets.CIFAR10 if ten else torchvision.datasets.CIFAR100
    folder = tv.base_folder
    base = root if root is not None else default_root()
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
    test_names = ["test_batch"] if ten else ["test"]
    meta_name, meta_key = ("batches.meta", "label_names") if ten else ("meta", "fine_label_names")
    wanted = train_names + test_names + [meta_name]

    def locate() -> Path | None:
        for d in (base / folder, base):
            if all((d / f).is_file() for f in wanted):
                return d
        return None

    d = locate()
    if d is None and download:
        try:
            tv(str(base), train=True, download=True)
        except Exception as e:
            raise DataError(f"{name}: download into {base} failed ({e})") from None
        d = locate()
    if d is None:
        raise DataError(f"{name}: expected {', '.join(wanted)} in {base / folder} (the python version of "
                        f"the dataset); put them there with --data-dir {base}, or pass --download")
    label_key = "labels" if ten else "fine_labels"
    out = {"train": read_cifar_batches([d / f for f in train_names], label_key),
           "test": read_cifar_batches([d / f for f in test_names], label_key)}
    return out, read_cifar_meta(d / meta_name, meta_key)


def _check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """DataError if any label is outside [0, num_classes)."""
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"{where}: label {bad} is out of range for {num_classes} classes")


def _carve(n: int, val_size: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split range(n) into (train, val) indices with a seeded permutation (like random_split)."""
    n_val = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
    if n_val < 1 or n_val >= n:
        raise ConfigError(f"val_size {val_size:g} leaves no training or no validation data "
                          f"out of {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - n_val], perm[n - n_val:]


def _subset(train_idx: torch.Tensor, train_subset: int | None) -> torch.Tensor:
    """The first `train_subset` training indices (already shuffled), validated."""
    if train_subset is None:
        return train_idx
    if train_subset < 1:
        raise ConfigError(f"train_subset must be positive, got {train_subset}")
    if train_subset > len(train_idx):
        raise ConfigError(f"train_subset {train_subset} exceeds the {len(train_idx)} training images")
    return train_idx[:train_subset]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _scan_images(paths: list[str], limit: int = 200_000) -> tuple[str, list[tuple[int, int]], int]:
    """Colour mode over the files ('RGB' if any is colour, else 'L') and their sizes, from the headers.

    Every file is looked at up to `limit` files, an even sample of `limit` beyond; returns
    (mode, sizes (w, h) of the files looked at, number looked at).
    """
    step = max(1, -(-len(paths) // limit))
    seen = paths[::step]

    def head(path: str) -> tuple[str, tuple[int, int]]:
        try:
            with Image.open(path) as im:
                return im.mode, im.size
        except Exception as e:  # PIL raises many types for damaged files
            raise DataError(f"cannot read image {path}: {e}") from None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        heads = list(pool.map(head, seen, chunksize=256))
    mode = "L" if all(m in GREY_MODES for m, _ in heads) else "RGB"
    return mode, [sz for _, sz in heads], len(seen)


def _decode_all(samples: list[tuple[str, int]], mode: str, image_size: int, what: str) -> torch.Tensor:
    """Every image decoded once into a uint8 tensor (N, C, S, S); a progress line every 10 s."""
    channels = 1 if mode == "L" else 3
    out = torch.empty(len(samples), channels, image_size, image_size, dtype=torch.uint8)
    resize = T.Compose([T.Resize(image_size, antialias=True), T.CenterCrop(image_size)])
    to_tensor = T.PILToTensor()

    def load(i: int) -> None:
        path = samples[i][0]
        try:
            with Image.open(path) as im:
                img = im.convert(mode)
        except Exception as e:
            raise DataError(f"cannot read image {path}: {e}") from None
        if img.size != (image_size, image_size):
            img = resize(img)
        out[i] = to_tensor(img)

    start = last = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        for done, _ in enumerate(pool.map(load, range(len(samples)), chunksize=64), 1):
            if time.perf_counter() - last > 10:
                last = time.perf_counter()
                log.info("decoding %s: %s/%s images", what, f"{done:,}", f"{len(samples):,}")
    if time.perf_counter() - start > 10:
        log.info("decoded %s: %s images in %.0f s", what, f"{len(samples):,}", time.perf_counter() - start)
    return out


def _folder_splits(name: str, root: Path | None, spec: DatasetSpec, image_size: int | None, val_size: float,
                   split_seed: int, train_subset: int | None, augment: str | None) -> DataSplits:
    """ImageFolder layout: ROOT/train/<class>/*, ROOT/val/<class>/*, optional ROOT/test/<class>/*.

    Test split: ROOT/test if present, else ROOT/val. Validation split: ROOT/val when ROOT/test
    exists, else carved from ROOT/train. For `imagefolder` the size and colour mode come from
    the files, and a folder whose decoded images fit in FOLDER_CACHE_BYTES is decoded once
    into memory; `imagenet` keeps ImageNet's transforms and decodes on the fly.
    """
    if root is None:
        raise DataError(f"{name} needs --data-dir ROOT laid out as ROOT/train/<class>/*.jpg and "
                        "ROOT/val/<class>/*.jpg")

    def scan(sub: str) -> torchvision.datasets.ImageFolder:
        d = root / sub
        if not d.is_dir():
            raise DataError(f"{name}: missing folder {d} (expected ROOT/train/<class>/*.jpg and ROOT/val/<class>/*)")
        try:
            return torchvision.datasets.ImageFolder(str(d))
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"{name}: {d}: {e}") from None

    train = scan("train")
    classes = train.classes
    has_test = (root / "test").is_dir()
    held = {"test": scan("test" if has_test else "val")}
    if has_test:
        held["val"] = scan("val")
    for ds in held.values():
        extra = sorted(set(ds.classes) - set(classes))
        if extra:
            raise DataError(f"{name}: {root / ds.root} has classes not in train/: {', '.join(extra[:5])}")
    relabel = {c: i for i, c in enumerate(classes)}

    def remap(ds: torchvision.datasets.ImageFolder) -> list[tuple[str, int]]:
        return [(p, relabel[ds.classes[y]]) for p, y in ds.samples]

    samples = train.samples
    if has_test:
        train_idx = torch.randperm(len(samples), generator=torch.Generator().manual_seed(split_seed))
        val_samples = remap(held["val"])
    else:
        train_idx, val_idx = _carve(len(samples), val_size, split_seed)
        val_samples = [samples[int(i)] for i in val_idx]
    train_idx = _subset(train_idx, train_subset)
    splits = {"train": [samples[int(i)] for i in train_idx], "val": val_samples, "test": remap(held["test"])}
    notes: list[str] = []
    generic = name == "imagefolder"
    every = [p for ss in splits.values() for p, _ in ss]
    if generic:
        mode, sizes, looked = _scan_images(every)
        kinds = f"{looked:,} files" if looked == len(every) else f"a sample of {looked:,} files"
        if mode == "RGB":
            notes.append(f"read as RGB: colour images among {kinds}")
        else:
            notes.append(f"read as greyscale: no colour image among {kinds}")
        if image_size is None:
            common = statistics.median_low(min(w, h) for w, h in sizes)
            image_size = min(common, MAX_AUTO_SIZE)
            notes.insert(0, f"size: the images' own{'' if len(set(sizes)) == 1 else ' typical (median) size'}"
                         + (f", capped at {MAX_AUTO_SIZE}" if common > MAX_AUTO_SIZE else ""))
        if len(set(sizes)) > 1 or sizes[0] != (image_size, image_size):
            notes.append(f"resized to {image_size} px (shorter side) and centre-cropped square")
    else:  # ImageNet: colour photographs (a few greyscale / CMYK files are converted)
        mode = "RGB"
        image_size = image_size or spec.image_size
    if image_size < 8:
        raise ConfigError(f"image_size must be at least 8, got {image_size}")
    channels = 1 if mode == "L" else 3
    augment = augment or spec.augment
    if generic and len(every) * channels * image_size * image_size <= FOLDER_CACHE_BYTES:
        # Decode once; from here on the folder is an in-memory dataset like FashionMNIST's.
        mib = len(every) * channels * image_size * image_size / 2**20
        notes.append(f"decoded once into memory, {mib:,.0f} MiB")
        tensors = {k: _decode_all(v, mode, image_size, f"{root / k}") for k, v in splits.items()}
        trt = train_transform(augment, image_size, channels, folder=False)
        views = {k: ArrayImageDataset(t, torch.tensor([y for _, y in splits[k]], dtype=torch.long), None,
                                      trt if k == "train" else None, classes)
                 for k, t in tensors.items()}
    else:
        if generic:
            notes.append("decoded on the fly (too large to hold in memory)")
        trt = train_transform(augment, image_size, channels, folder=True)
        evt = eval_transform(image_size, folder=True, imagenet_crop=not generic)
        views = {k: FolderImageDataset(v, mode, trt if k == "train" else evt, classes) for k, v in splits.items()}
    return DataSplits(train=views["train"], val=views["val"], test=views["test"], num_classes=len(classes),
                      in_channels=channels, image_size=image_size, classes=classes, name=name, augment=augment,
                      notes=notes)


def build_splits(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    val_size: float | None = None,
    split_seed: int = 42,
    train_subset: int | None = None,
    augment: str | None = None,
) -> DataSplits:
    """Train, validation (carved from train, seeded) and test datasets for `name`."""
    name = canonical_name(name)
    spec = SPECS[name]
    root = Path(root).expanduser() if root is not None else None
    if root is not None and not root.exists():
        raise DataError(f"data directory {root} does not exist")
    if image_size is not None and image_size < 8:
        raise ConfigError(f"image_size must be at least 8, got {image_size}")
    val_size = spec.val_size if val_size is None else val_size
    if augment is not None and augment not in AUGMENTS:
        raise unknown_name("augmentation", augment, list(AUGMENTS))
    if spec.folder:
        return _folder_splits(name, root, spec, image_size, val_size, split_seed, train_subset, augment)
    image_size = image_size or spec.image_size
    augment = augment or spec.augment
    loader = _cifar if name.startswith("cifar") else _mnist_like
    arrays, classes = loader(name, root, download)
    for split, (images, labels) in arrays.items():
        _check_labels(labels, len(classes), f"{name} {split} labels")
        if images.shape[-1] != image_size or images.shape[-2] != image_size:
            # Resize once up front (the official code resizes MNIST-family 28 -> 32 every epoch).
            arrays[split] = (T.functional.resize(images, [image_size, image_size], antialias=True), labels)
    (tr_x, tr_y), (te_x, te_y) = arrays["train"], arrays["test"]
    channels = tr_x.shape[1]
    train_idx, val_idx = _carve(len(tr_y), val_size, split_seed)
    train_idx = _subset(train_idx, train_subset)
    trt = train_transform(augment, image_size, channels, folder=False)
    return DataSplits(
        train=ArrayImageDataset(tr_x, tr_y, train_idx, trt, classes),
        val=ArrayImageDataset(tr_x, tr_y, val_idx, None, classes),
        test=ArrayImageDataset(te_x, te_y, None, None, classes),
        num_classes=len(classes), in_channels=channels, image_size=image_size, classes=classes, name=name,
        augment=augment,
    )


def build_dataset(name: str, root: str | Path | None = None, split: str = "train", download: bool = False,
                  **kwargs: object) -> Dataset:
    """One split ('train', 'val' or 'test') of a dataset; see build_splits for the options."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    return getattr(build_splits(name, root, download=download, **kwargs), split)
