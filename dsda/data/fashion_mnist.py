"""Fashion-MNIST: the four gzipped IDX files, found in the documented folders and checked against checksums.

Lookup order: `$DSDA_DATA_DIR/fashion-mnist`, `$DSDA_DATA_DIR`, `$DSDA_DATA_DIR/FashionMNIST/raw`, the
same three under `./data`, and finally `SYSTEM_FASHION_MNIST_DIR` (Debian package
`dataset-fashion-mnist`). A file of the official size must match the published checksum
(`FASHION_MNIST_CHECKSUMS`), so an altered copy is refused.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..utils import check_choice
from .common import DATA_DIR_ENV, SPLITS, _normalise_uint8, data_roots
from .dataset import DatasetError, DatasetInfo, TensorDataset, _make_info
from .guard import _guarded

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Fashion-MNIST train-split pixel statistics (of x / 255 over all 60,000 images).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_SIZES = {"train": 60_000, "test": 10_000}
# Checksums of the uncompressed IDX data in each file (independent of the gzip header): (length in
# bytes, MD5, SHA-256); `read_fashion_mnist` checks the SHA-256 of every file of the official length.
# The MD5s are the published ones of the uncompressed zalandoresearch files (listed by loaders and
# tutorials next to the published .gz MD5s 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...). Both
# were computed here on the Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1 in
# /usr/share/datasets/fashion-mnist, whose uncompressed data match those MD5s; its .gz files themselves
# do not match the .gz MD5s because the package rewrote the gzip headers (no stored file name, the
# build date as mtime), which is why the data, not the .gz bytes, are checked.
FASHION_MNIST_CHECKSUMS = {
    "train-images-idx3-ubyte.gz": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": (60_008, "9018921c3c673c538a1fc5bad174d6f9",
                                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a",
                                  "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": (10_008, "15d484375f8d13e6eb1aabb0c3f46965",
                                  "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
IDX_IMAGES_MAGIC = 2051   # 0x00000803: unsigned byte, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049   # 0x00000801: unsigned byte, 1 dimension (N,)
# Searched last; the Debian package `dataset-fashion-mnist` installs here (module-level so tests can move it:
# they patch `dsda.data.fashion_mnist.SYSTEM_FASHION_MNIST_DIR`, the name this module reads).
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def fixed_info() -> DatasetInfo:
    """Metadata without reading any file (the class names and statistics are constants)."""
    return _make_info("fashion_mnist", FASHION_MNIST_CLASSES, (1, 28, 28), FASHION_MNIST_MEAN, FASHION_MNIST_STD)


def _fix_fmnist_hint(path: Path) -> str:
    return (f"Delete or replace {path} with an intact copy: run `python -m dsda prepare-data` "
            f"(or `sudo apt-get install --reinstall dataset-fashion-mnist`).")


def _gunzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}. {_fix_fmnist_hint(path)}") from e
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:   # BadGzipFile is an OSError; truncation is an EOFError
        raise DatasetError(f"{path} is not a valid gzip file or is truncated ({type(e).__name__}: {e}). "
                           f"{_fix_fmnist_hint(path)}") from e


def _parse_idx(path: Path, data: bytes, expected_magic: int) -> np.ndarray:
    if len(data) < 4:
        raise DatasetError(f"{path}: IDX header is truncated ({len(data)} bytes). {_fix_fmnist_hint(path)}")
    magic = struct.unpack(">i", data[:4])[0]
    if magic != expected_magic:
        raise DatasetError(f"{path}: wrong IDX magic number {magic}, expected {expected_magic} "
                           f"({'images' if expected_magic == IDX_IMAGES_MAGIC else 'labels'}). "
                           f"{_fix_fmnist_hint(path)}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header is truncated ({len(data)} of {header} bytes). {_fix_fmnist_hint(path)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)
    if len(data) - header != count:
        what = "short read" if len(data) - header < count else "unexpected trailing bytes"
        raise DatasetError(f"{path}: {what}: header {dims} needs {count} data bytes, found "
                           f"{len(data) - header}. {_fix_fmnist_hint(path)}")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=header).reshape(dims)


@_guarded
def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read a gzipped IDX file (unsigned bytes) into an array shaped by its header dimensions.

    Header: a big-endian int32 magic number 0x0000TTDD (TT = 0x08 for unsigned byte, DD = number of
    dimensions), then DD big-endian uint32 sizes, then the data in C order.
    """
    path = Path(path)
    return _parse_idx(path, _gunzip(path), expected_magic)


def _read_fmnist_idx(path: Path, expected_magic: int) -> np.ndarray:
    """`read_idx`, plus: a file as long as the official one must be the official one.

    An altered copy (say, every pixel inverted) keeps the length and the format, so only its checksum
    tells. Shorter files (subsets, the tests' tiny files) are left to `verify_sizes`. The hash (~40 ms
    for the train images) is small next to the decompression it follows, and `load_dataset` caches
    each split per process (keyed by the files' size and mtime), so it normally runs once per file.
    """
    data = _gunzip(path)
    array = _parse_idx(path, data, expected_magic)
    length, _, sha256 = FASHION_MNIST_CHECKSUMS.get(path.name, (-1, None, None))
    if len(data) == length and hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(f"{path} has the size of the official Fashion-MNIST file but not its contents (SHA-256 "
                           f"of its IDX data differs from the genuine file's): it was altered or is another "
                           f"data set. {_fix_fmnist_hint(path)}")
    return array


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path | None:
    """First folder that holds any Fashion-MNIST file, in the documented search order (None if none)."""
    candidates = []
    for root in data_roots(data_dir):
        candidates += [root / "fashion-mnist", root, root / "FashionMNIST" / "raw"]
    if data_dir is None:
        candidates.append(Path(SYSTEM_FASHION_MNIST_DIR))
    names = [f for files in FASHION_MNIST_FILES.values() for f in files]
    for folder in dict.fromkeys(candidates):
        if any((folder / f).is_file() for f in names):
            return folder
    return None


def _fashion_mnist_folder(data_dir: str | None) -> Path:
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        raise DatasetError(_fashion_mnist_missing_message(data_dir))
    return folder


@_guarded
def read_fashion_mnist(folder: str | os.PathLike, split: str, verify_sizes: bool = True) -> TensorDataset:
    check_choice("split", split, SPLITS)
    folder = Path(folder)
    img_name, lab_name = FASHION_MNIST_FILES[split]
    for f in (img_name, lab_name):
        if not (folder / f).is_file():
            raise DatasetError(f"{folder / f} is missing (the folder holds other Fashion-MNIST files). "
                               f"Copy all four files {sorted(n for v in FASHION_MNIST_FILES.values() for n in v)} "
                               f"into {folder}, or run `python -m dsda prepare-data`.")
    images = _read_fmnist_idx(folder / img_name, IDX_IMAGES_MAGIC)
    labels = _read_fmnist_idx(folder / lab_name, IDX_LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{folder / img_name}: expected 28x28 images, header says {images.shape}. "
                           f"{_fix_fmnist_hint(folder / img_name)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"{folder}: {img_name} holds {len(images)} images but {lab_name} holds "
                           f"{len(labels)} labels; the pair does not match. {_fix_fmnist_hint(folder / lab_name)}")
    if verify_sizes and len(images) != FASHION_MNIST_SIZES[split]:
        raise DatasetError(f"{folder / img_name}: {len(images)} images, the official {split} split has "
                           f"{FASHION_MNIST_SIZES[split]}. {_fix_fmnist_hint(folder / img_name)}")
    if len(labels) and labels.max() > 9:
        raise DatasetError(f"{folder / lab_name}: labels must be in 0..9, found {int(labels.max())}. "
                           f"{_fix_fmnist_hint(folder / lab_name)}")
    x = _normalise_uint8(images[:, None], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorDataset(x, y, fixed_info())


def _fashion_mnist_missing_message(data_dir: str | None) -> str:
    where = [str(r / "fashion-mnist") for r in data_roots(data_dir)]
    return (
        "Fashion-MNIST was not found (searched " + ", ".join(where)
        + ("" if data_dir else f", {SYSTEM_FASHION_MNIST_DIR}") + "). Do one of:\n"
        "  sudo apt-get install -y dataset-fashion-mnist     # Debian/Ubuntu; installs "
        f"{SYSTEM_FASHION_MNIST_DIR}\n"
        "  python -m dsda prepare-data                       # tries apt, then a torchvision download\n"
        "  python -c \"import torchvision; torchvision.datasets.FashionMNIST(root='data', download=True)\"\n"
        f"or copy {', '.join(FASHION_MNIST_FILES['train'] + FASHION_MNIST_FILES['test'])} into "
        f"${DATA_DIR_ENV}/fashion-mnist or ./data/fashion-mnist."
    )

