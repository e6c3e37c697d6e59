"""Dataset loading in the real on-disk formats, splits, and clear errors for bad data."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pytest
import torch
from helpers import idx_bytes, write_cifar, write_imagefolder, write_mnist_like
from PIL import Image

from ffvision.data import ArrayImageDataset, build_dataset, build_splits
from ffvision.data.readers import read_idx
from ffvision.data.specs import AUGMENTS
from ffvision.errors import ConfigError, DataError


def test_read_idx_plain_and_gzipped(tmp_path: Path):
    import numpy as np

    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "b.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    for f in ("a", "b.gz"):
        assert torch.equal(read_idx(tmp_path / f), torch.from_numpy(arr))


@pytest.mark.parametrize("content,match", [
    (b"\x00\x00\x08", "bad magic"),
    (b"\x12\x34\x56\x78" + b"\x00" * 20, "bad magic"),
    (bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + b"\x00" * 10, "holds 10 bytes"),
    (b"\x1f\x8b" + b"garbage", "decompress"),
    # a valid gzip header over a damaged deflate stream: zlib.error, not OSError
    (gzip.compress(b"\x00" * 5000)[:20] + bytes(b ^ 0xFF for b in gzip.compress(b"\x00" * 5000)[20:40])
     + gzip.compress(b"\x00" * 5000)[40:], "decompress"),
])
def test_read_idx_rejects_corrupted_files(tmp_path: Path, content: bytes, match: str):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(DataError, match=match):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path: Path, gz: bool):
    root = write_mnist_like(tmp_path / "fm", gz=gz)
    s = build_splits("fashion-mnist", root, val_size=40)
    assert (len(s.train), len(s.val), len(s.test)) == (200, 40, 80)
    assert (s.num_classes, s.in_channels, s.image_size) == (10, 1, 32)
    assert s.classes[0] == "T-shirt/top"
    x, y = s.train[0]
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8 and 0 <= y < 10


def test_torchvision_raw_layout_and_mnist(tmp_path: Path):
    write_mnist_like(tmp_path / "MNIST" / "raw", gz=False)
    s = build_splits("mnist", tmp_path, val_size=0.25, image_size=28)
    assert len(s.val) == 60 and s.train[0][0].shape == (1, 28, 28)


def test_validation_split_is_seeded_and_disjoint(fake_fmnist: Path):
    a = build_splits("fashion-mnist", fake_fmnist, val_size=40, split_seed=42)
    b = build_splits("fashion-mnist", fake_fmnist, val_size=40, split_seed=42)
    c = build_splits("fashion-mnist", fake_fmnist, val_size=40, split_seed=7)
    assert torch.equal(a.val.indices, b.val.indices) and not torch.equal(a.val.indices, c.val.indices)
    assert not set(a.train.indices.tolist()) & set(a.val.indices.tolist())
    sub = build_splits("fashion-mnist", fake_fmnist, val_size=40, train_subset=50)
    assert len(sub.train) == 50 and set(sub.train.indices.tolist()) <= set(a.train.indices.tolist())
    assert torch.equal(sub.val.indices, a.val.indices)  # the subset never touches validation


def test_missing_and_incomplete_data_dirs(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        build_splits("fashion-mnist", tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte\[\.gz\].*--download"):
        build_splits("fashion-mnist", empty)
    part = write_mnist_like(tmp_path / "part")
    (part / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\] \(looked in"):
        build_splits("fashion-mnist", part)


def test_corrupted_idx_and_bad_labels(tmp_path: Path):
    root = write_mnist_like(tmp_path / "c")
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file at all"))
    with pytest.raises(DataError, match="corrupted IDX file .*train-images"):
        build_splits("fashion-mnist", root)
    root = write_mnist_like(tmp_path / "l")
    import numpy as np

    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(80, 12, np.uint8))))
    with pytest.raises(DataError, match="label 12 is out of range for 10 classes"):
        build_splits("fashion-mnist", root)
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DataError, match="do not match labels"):
        build_splits("fashion-mnist", root)


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_python_format(tmp_path: Path, hundred: bool):
    write_cifar(tmp_path, hundred=hundred)
    name = "cifar100" if hundred else "cifar10"
    s = build_splits(name, tmp_path, val_size=20)
    assert s.num_classes == (100 if hundred else 10) and s.in_channels == 3
    assert (len(s.train), len(s.val), len(s.test)) == (180, 20, 40)
    x, _ = s.train[0]  # with crop / flip / colour jitter / grayscale augmentation
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8


def test_cifar_missing_and_corrupted(tmp_path: Path):
    with pytest.raises(DataError, match="data_batch_1.*--download"):
        build_splits("cifar10", tmp_path)
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="corrupted CIFAR file .*test_batch"):
        build_splits("cifar10", tmp_path)


def test_imagefolder_layout(tmp_path: Path):
    write_imagefolder(tmp_path / "f", classes=3, per_class=6)
    s = build_splits("imagefolder", tmp_path / "f", val_size=0.25)
    assert s.image_size == 20 and s.augment == "shift"  # the images' own size; a mild, flip-free default
    assert "own" in s.describe() and "20x20 px, 3 channels" in s.describe()
    s = build_splits("imagefolder", tmp_path / "f", image_size=16, val_size=0.25)
    assert (s.num_classes, s.in_channels) == (3, 3)
    assert len(s.val) + len(s.train) == 18 and len(s.test) == 18  # val/ is the test set here
    x, y = s.train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8
    gray = write_imagefolder(tmp_path / "g", mode="L", splits=("train", "val", "test"))
    s = build_splits("imagefolder", gray, image_size=16)
    assert s.in_channels == 1 and s.test[0][0].shape == (1, 16, 16)
    assert len(s.val) == 18 and len(s.train) == 18  # with test/, val/ validates


def test_imagefolder_errors(tmp_path: Path):
    with pytest.raises(DataError, match="needs --data-dir"):
        build_splits("imagefolder")
    (tmp_path / "x" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="Couldn't find any class folder"):
        build_splits("imagefolder", tmp_path / "x")
    write_imagefolder(tmp_path / "y", splits=("train",))
    with pytest.raises(DataError, match="missing folder .*val"):
        build_splits("imagefolder", tmp_path / "y")
    root = write_imagefolder(tmp_path / "b")
    bad = root / "train" / "cls0" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):  # before any training
        build_splits("imagefolder", root, image_size=16)
    # ImageNet decodes on the fly: there the error names the file when it is read
    s = build_splits("imagenet", root, image_size=16, val_size=0.25)
    idx = next(i for i, (p, _) in enumerate(s.train.samples) if p.endswith("broken.png"))
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        s.train[idx]
    with pytest.raises(ConfigError, match="image_size must be at least 8"):
        build_splits("imagefolder", write_imagefolder(tmp_path / "z"), image_size=0)


def test_imagefolder_of_fashion_mnist_equals_the_builtin_loader(tmp_path: Path):
    """FashionMNIST's own images as PNG folders give the same tensors, labels, size and pipeline."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from fmnist_folder import write_fmnist_folder

    root = write_fmnist_folder(tmp_path / "png", train_subset=300, limits=(100, 100))
    folder = build_splits("imagefolder", root, augment="flip")
    builtin = build_splits("fashion-mnist", image_size=28, val_size=10000, train_subset=300, augment="flip")
    assert (folder.image_size, folder.in_channels, folder.num_classes) == (28, 1, 10)
    assert isinstance(folder.train, ArrayImageDataset)  # small: decoded once, into memory
    assert repr(folder.train.transform) == repr(builtin.train.transform) and folder.val.transform is None

    def content(ds, n):
        return sorted((ds[i][0].numpy().tobytes(), ds.classes[ds[i][1]].replace("/", "-")) for i in range(n))

    folder.train.transform = builtin.train.transform = None
    assert content(folder.train, 300) == content(builtin.train, 300)
    assert content(folder.test, 100) == content(builtin.test, 100)
    assert len(folder.val) == 100 and folder.describe().startswith("data: imagefolder, 28x28 px, 1 channel,")


def test_imagefolder_colour_mode_and_size_come_from_all_files(tmp_path: Path):
    root = write_imagefolder(tmp_path / "m", mode="L", per_class=8)
    Image.new("RGB", (20, 20), (200, 10, 10)).save(root / "train" / "cls2" / "zz-colour.png")
    s = build_splits("imagefolder", root)
    assert s.in_channels == 3 and "RGB" in s.describe()  # one colour file: the whole folder is read as RGB
    assert s.train[0][0].shape == (3, 20, 20)
    sizes = write_imagefolder(tmp_path / "s", per_class=5, size=24)
    for i, wh in enumerate([(40, 30), (30, 40), (36, 36)]):
        Image.new("RGB", wh).save(sizes / "train" / "cls0" / f"odd{i}.png")
    s = build_splits("imagefolder", sizes)
    assert s.image_size == 24 and "resized" in s.describe()  # the typical (median) size
    assert {tuple(s.train[i][0].shape) for i in range(len(s.train))} == {(3, 24, 24)}


def test_bad_names_and_options(fake_fmnist: Path):
    with pytest.raises(ConfigError, match="unknown dataset 'svhn'.*cifar10"):
        build_splits("svhn")
    with pytest.raises(ConfigError, match="train_subset 10000 exceeds"):
        build_splits("fashion-mnist", fake_fmnist, val_size=40, train_subset=10000)
    with pytest.raises(ConfigError, match="val_size"):
        build_splits("fashion-mnist", fake_fmnist, val_size=240)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_splits("fashion-mnist", fake_fmnist, val_size=40, augment="mixup")
    assert len(build_dataset("fmnist", fake_fmnist, split="test", val_size=40)) == 80


@pytest.mark.parametrize("augment", AUGMENTS)
def test_every_augmentation_keeps_size_and_type(fake_fmnist: Path, augment: str):
    s = build_splits("fashion-mnist", fake_fmnist, val_size=40, image_size=28, augment=augment)
    torch.manual_seed(0)
    x, _ = s.train[0]
    assert s.augment == augment and x.shape == (1, 28, 28) and x.dtype == torch.uint8
    if augment.startswith("affine"):  # rotated / shifted / scaled: the pixels move, the image stays
        plain = build_splits("fashion-mnist", fake_fmnist, val_size=40, image_size=28, augment="none").train[0][0]
        assert not torch.equal(x, plain) and x.float().mean() > 0.3 * plain.float().mean()
