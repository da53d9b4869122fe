"""Data sets as in-memory tensors, class-level forget/retain splits, and the data-access guard.

One API for every data set:

    ds = load_dataset("fashion_mnist", "train")   # TensorDataset(x, y, info)
    ds.x  # (N, C, H, W) float32, normalised per channel with info.mean / info.std
    ds.y  # (N,) int64 class labels in 0 .. info.num_classes - 1

Data sets (`DATASET_NAMES`):

- `fashion_mnist`: the four gzipped IDX files, looked up in `$DSDA_DATA_DIR/fashion-mnist`,
  `$DSDA_DATA_DIR`, `$DSDA_DATA_DIR/FashionMNIST/raw`, the same three under `./data`, and finally
  `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`). A set but missing
  `$DSDA_DATA_DIR` is warned about (once) and skipped. A file of the official size must match the
  published checksum (`FASHION_MNIST_CHECKSUMS`), so an altered copy is refused.
- `digits`: scikit-learn's 8x8 digits with a fixed stratified 80/20 split. Tiny; for fast tests.
- `cifar10`, `cifar100`: torchvision's on-disk layout (pickled batches) under `$DSDA_DATA_DIR` or
  `./data`; the official `.tar.gz` is extracted when only it is present. Downloads happen only with
  `download=True`.
- `pins`: PinsFaceRecognition (Kaggle `hereisburak/pins-face-recognition`), one folder per
  identity, with a fixed per-identity 80/20 split.

Loaded data sets are cached in-process (evaluation asks for the same split many times). **The
returned tensors are shared between callers and must be treated as read-only**: never modify
`ds.x` / `ds.y` in place. `subset` and `to` return new tensors and are safe to modify.

`forbid_data_access(reason)` turns every loader into a `DataAccessError`; the experiment runner
wraps source-free methods in it to show that they never read data.

Nothing here downloads implicitly: `prepare(name)` (behind `python -m dsda prepare-data`) is the
one place that installs or downloads, and only when allowed.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import math
import os
import pickle
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .checks import validate_forget_classes  # noqa: F401  (re-exported: one definition, in dsda.checks)
from .utils import check_choice, resolve_device

DATASET_NAMES = ("fashion_mnist", "digits", "cifar10", "cifar100", "pins")
SPLITS = ("train", "test")
DATA_DIR_ENV = "DSDA_DATA_DIR"


class DatasetError(RuntimeError):
    """A data set is missing, truncated, corrupt or inconsistent (the message says what to do)."""


class DataAccessError(PermissionError):
    """Raised by every loader while `forbid_data_access` is active."""


# ----------------------------------------------------------------------------- shared types

@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]   # (C, H, W) after preprocessing
    mean: tuple[float, ...]             # per-channel normalisation applied to x: (x01 - mean) / std
    std: tuple[float, ...]
    input_range: tuple[float, float]    # image of the pixel range [0, 1] (min, max over channels)

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"DatasetInfo.class_names has {len(self.class_names)} entries but "
                             f"num_classes={self.num_classes}")
        if not len(self.mean) == len(self.std) == self.image_shape[0]:
            raise ValueError(f"DatasetInfo.mean/std need one value per channel ({self.image_shape[0]}), "
                             f"got {len(self.mean)} and {len(self.std)}")


def _make_info(name: str, class_names: Sequence[str], image_shape: Sequence[int],
               mean: Sequence[float], std: Sequence[float]) -> DatasetInfo:
    mean = tuple(float(m) for m in mean)
    std = tuple(float(s) for s in std)
    # the normalised image of pixel 0 and pixel 1, taken over all channels
    lo = min((0.0 - m) / s for m, s in zip(mean, std))
    hi = max((1.0 - m) / s for m, s in zip(mean, std))
    return DatasetInfo(name=name, num_classes=len(class_names), class_names=tuple(class_names),
                       image_shape=tuple(int(v) for v in image_shape), mean=mean, std=std,
                       input_range=(lo, hi))


@dataclass(eq=False)
class TensorDataset:
    """A whole split in memory. Tensors coming from `load_dataset` are shared: treat them as read-only."""
    x: torch.Tensor   # (N, C, H, W) float32, normalised
    y: torch.Tensor   # (N,) int64
    info: DatasetInfo

    def __post_init__(self):
        if not isinstance(self.x, torch.Tensor) or self.x.dim() != 4 or self.x.dtype != torch.float32:
            raise TypeError(f"TensorDataset.x must be a float32 tensor of shape (N, C, H, W), got "
                            f"{getattr(self.x, 'dtype', type(self.x).__name__)} {tuple(getattr(self.x, 'shape', ()))}")
        if not isinstance(self.y, torch.Tensor) or self.y.dim() != 1 or self.y.dtype != torch.int64:
            raise TypeError(f"TensorDataset.y must be an int64 tensor of shape (N,), got "
                            f"{getattr(self.y, 'dtype', type(self.y).__name__)} {tuple(getattr(self.y, 'shape', ()))}")
        if len(self.x) != len(self.y):
            raise ValueError(f"TensorDataset.x has {len(self.x)} rows but y has {len(self.y)}")
        if tuple(self.x.shape[1:]) != tuple(self.info.image_shape):
            raise ValueError(f"TensorDataset.x has image shape {tuple(self.x.shape[1:])}, "
                             f"info.image_shape is {self.info.image_shape}")

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (f"TensorDataset(name={self.info.name!r}, n={len(self)}, image_shape={self.info.image_shape}, "
                f"num_classes={self.info.num_classes}, device={self.x.device})")

    def subset(self, idx) -> "TensorDataset":
        """Rows `idx` (integer indices in [0, N) or a boolean mask of length N) as a new TensorDataset."""
        index = _as_index(idx, len(self))
        index = index.to(self.x.device)
        return TensorDataset(self.x[index], self.y[index], self.info)

    def to(self, device: str | torch.device = "auto") -> "TensorDataset":
        dev = resolve_device(device)
        return TensorDataset(self.x.to(dev), self.y.to(dev), self.info)


def _as_index(idx, n: int) -> torch.Tensor:
    """Turn indices or a boolean mask into a 1-D int64 tensor, checking the range."""
    if isinstance(idx, (slice, int)) or idx is None:
        raise TypeError(f"idx must be a 1-D sequence of indices or a boolean mask, got {type(idx).__name__}")
    t = idx if isinstance(idx, torch.Tensor) else torch.as_tensor(np.asarray(idx))
    if t.dim() != 1:
        raise ValueError(f"idx must be one-dimensional, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        if len(t) != n:
            raise ValueError(f"idx is a boolean mask of length {len(t)}, the data set has {n} rows")
        return t.nonzero().flatten().cpu()
    if t.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"idx must hold integers or booleans, got dtype {t.dtype}")
    t = t.to(torch.int64).cpu()
    if int(t.min()) < 0 or int(t.max()) >= n:
        raise ValueError(f"idx must lie in [0, {n}), got values from {int(t.min())} to {int(t.max())}")
    return t


# ----------------------------------------------------------------------------- data-access guard

_GUARD_LOCK = threading.Lock()
_GUARD_REASONS: list[tuple[object, str]] = []   # process-wide stack of (token, reason)


@contextlib.contextmanager
def forbid_data_access(reason: str) -> Iterator[None]:
    """While active (in any thread of this process), every loader raises DataAccessError(reason).

    Re-entrant: nested guards stack, and leaving an inner one keeps the outer one in force.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason must be a non-empty string, got {reason!r}")
    token = object()
    with _GUARD_LOCK:
        _GUARD_REASONS.append((token, reason))
    try:
        yield
    finally:
        with _GUARD_LOCK:
            # remove our own entry (not simply the last one: threads may exit guards out of order)
            _GUARD_REASONS[:] = [(t, r) for t, r in _GUARD_REASONS if t is not token]


def data_access_forbidden() -> bool:
    with _GUARD_LOCK:
        return bool(_GUARD_REASONS)


def _check_access(what: str) -> None:
    with _GUARD_LOCK:
        reasons = [r for _, r in _GUARD_REASONS]
    if reasons:
        raise DataAccessError(f"data access is forbidden here ({'; '.join(reasons)}); refused: {what}")


def _guarded(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _check_access(f"{fn.__name__}()")
        return fn(*args, **kwargs)
    return wrapper


# ----------------------------------------------------------------------------- constants

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
# Searched last; the Debian package `dataset-fashion-mnist` installs here (module-level so tests can move it).
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_SPLIT_SEED = 0          # seeds the per-class permutations of the stratified 80/20 split
DIGITS_TEST_FRACTION = 0.2
# Train-split statistics of pixel / 16 (tests/test_data.py recomputes them).
DIGITS_MEAN = (0.3044,)
DIGITS_STD = (0.3758,)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


@dataclass(frozen=True)
class CifarLayout:
    folder: str                    # extracted folder name (torchvision's layout)
    archive: str                   # official archive name
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str                 # key of the labels in each batch dict
    names_key: str                 # key of the class names in the meta dict
    class_names: tuple[str, ...]
    mean: tuple[float, ...]        # train-split per-channel statistics of x / 255
    std: tuple[float, ...]
    sizes: tuple[int, int]         # official (train, test) sizes
    torchvision_class: str
    url_host: str


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        meta_file="batches.meta", label_key="labels", names_key="label_names", class_names=CIFAR10_CLASSES,
        # the true train-set std; the often-copied (0.2023, 0.1994, 0.2010) is a mis-computed value
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        sizes=(50_000, 10_000), torchvision_class="CIFAR10", url_host="www.cs.toronto.edu"),
    "cifar100": CifarLayout(
        folder="cifar-100-python", archive="cifar-100-python.tar.gz",
        train_files=("train",), test_files=("test",),
        meta_file="meta", label_key="fine_labels", names_key="fine_label_names", class_names=CIFAR100_CLASSES,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        sizes=(50_000, 10_000), torchvision_class="CIFAR100", url_host="www.cs.toronto.edu"),
}

PINS_NUM_IDENTITIES = 105
PINS_PREFIX = "pins_"
PINS_KAGGLE_SUBDIR = "105_classes_pins_dataset"          # how the Kaggle zip nests the identity folders
PINS_DIR_NAMES = ("pins", "pins-face-recognition", "PinsFaceRecognition")   # tried under each data dir
PINS_SPLIT_SEED = 0
PINS_TEST_FRACTION = 0.2
PINS_IMAGE_SIZE = 32
PINS_EXTENSIONS = (".jpg", ".jpeg", ".png")
# ImageNet statistics: Pins has no official split to measure on, and faces are close to ImageNet colours.
PINS_MEAN = (0.485, 0.456, 0.406)
PINS_STD = (0.229, 0.224, 0.225)

# keyword arguments each data set accepts, with their defaults
_DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    "fashion_mnist": {"data_dir": None, "verify_sizes": True},
    "digits": {},
    "cifar10": {"data_dir": None, "verify_sizes": True, "download": False},
    "cifar100": {"data_dir": None, "verify_sizes": True, "download": False},
    "pins": {"data_dir": None, "verify_sizes": True, "image_size": PINS_IMAGE_SIZE},
}


def _check_kwargs(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    allowed = _DEFAULT_KWARGS[name]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"data set {name!r} got unexpected keyword(s) {unknown}; "
                        f"allowed: {sorted(allowed) or 'none'}")
    opts = {**allowed, **kwargs}
    if opts.get("data_dir") is not None:
        if not isinstance(opts["data_dir"], (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path (str or os.PathLike) or None, got {type(opts['data_dir']).__name__}")
        opts["data_dir"] = str(Path(opts["data_dir"]).expanduser().resolve())
    for key in ("verify_sizes", "download"):
        if key in opts and not isinstance(opts[key], bool):
            raise TypeError(f"{key} must be True or False, got {opts[key]!r}")
    if "image_size" in opts:
        v = opts["image_size"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise ValueError(f"image_size must be an integer >= 2, got {v!r}")
    return opts


# ----------------------------------------------------------------------------- shared helpers

def data_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data: `data_dir` alone if given, else `$DSDA_DATA_DIR` then `./data`."""
    if data_dir is not None:
        return [Path(data_dir).expanduser().resolve()]
    roots = []
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        roots.append(Path(env).expanduser().resolve())
        _warn_missing_data_dir(env, roots[0])
    roots.append((Path.cwd() / "data").resolve())
    return list(dict.fromkeys(roots))


_WARNED_DATA_DIRS: set[Path] = set()


def _warn_missing_data_dir(env: str, folder: Path) -> None:
    """A set but missing $DSDA_DATA_DIR is most likely a typo: say so (once per folder), then search on."""
    if folder.is_dir() or folder in _WARNED_DATA_DIRS:
        return
    _WARNED_DATA_DIRS.add(folder)
    warnings.warn(f"${DATA_DIR_ENV}={env!r} is not an existing folder ({folder}); it is skipped and the "
                  f"other data folders are searched. Fix or unset {DATA_DIR_ENV}.", UserWarning, stacklevel=3)


def _normalise_uint8(a: np.ndarray, mean: Sequence[float], std: Sequence[float], max_value: int = 255) -> torch.Tensor:
    """(N, C, H, W) integer pixels in 0..max_value -> float32 ((a / max_value) - mean_c) / std_c.

    One float32 conversion, then an in-place multiply-subtract per channel: x * 1/(max std_c) -
    mean_c/std_c. (0.1 s for the 47M Fashion-MNIST train pixels on 2 cores; a lookup table or
    float64 arithmetic is several times slower.)
    """
    x = torch.from_numpy(np.asarray(a).astype(np.float32))   # astype copies: writable, owned by x
    for c, (m, s) in enumerate(zip(mean, std)):
        x[:, c].mul_(1.0 / (max_value * s)).sub_(m / s)
    return x


def _group_split(n: int, key: str, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..n-1 of one class into (train, test), each sorted.

    The permutation is drawn from a generator seeded by (seed, crc32(key)), so one class's split
    depends only on its own size and name, not on the other classes. n_test = round(f * n),
    kept in [1, n - 1] so that every class appears in both splits.
    """
    if n < 2:
        raise ValueError(f"class {key!r} has {n} sample(s); at least 2 are needed to appear in train and test")
    n_test = min(max(1, int(math.floor(test_fraction * n + 0.5))), n - 1)
    g = torch.Generator().manual_seed(seed * 2**32 + zlib.crc32(key.encode("utf-8")))
    perm = torch.randperm(n, generator=g).numpy()
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _fingerprint(paths: Iterable[Path]) -> tuple:
    """(path, size, mtime) of each file, so the cache notices files that were replaced."""
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


# ----------------------------------------------------------------------------- Fashion-MNIST

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
    return TensorDataset(x, y, _fixed_info("fashion_mnist"))


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


# ----------------------------------------------------------------------------- digits

def digits_split_indices() -> dict[str, np.ndarray]:
    """Indices into `sklearn.datasets.load_digits()` for the fixed stratified 80/20 split.

    Per class (in class order): the class's indices in file order, a permutation from
    `_group_split(n, str(class), 0.2, DIGITS_SPLIT_SEED)`, the first round(0.2 n) go to test.
    Returned indices are sorted (file order).
    """
    from sklearn.datasets import load_digits
    target = load_digits().target
    train, test = [], []
    for c in range(10):
        members = np.flatnonzero(target == c)
        tr, te = _group_split(len(members), str(c), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
        train.append(members[tr])
        test.append(members[te])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


@_guarded
def read_digits(split: str) -> TensorDataset:
    check_choice("split", split, SPLITS)
    from sklearn.datasets import load_digits
    d = load_digits()
    images = d.images   # (1797, 8, 8) float64 holding integers 0..16
    if images.shape[1:] != (8, 8) or images.min() < 0 or images.max() > 16:
        raise DatasetError("scikit-learn's load_digits returned unexpected data; reinstall scikit-learn")
    idx = digits_split_indices()[split]
    a = images[idx].astype(np.uint8)[:, None]
    x = _normalise_uint8(a, DIGITS_MEAN, DIGITS_STD, max_value=16)
    y = torch.from_numpy(d.target[idx].astype(np.int64))
    return TensorDataset(x, y, _fixed_info("digits"))


# ----------------------------------------------------------------------------- CIFAR-10 / CIFAR-100

class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: a pickle from the internet cannot run code."""
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def _cifar_hint(layout: CifarLayout) -> str:
    return (f"Replace it with the official files: extract {layout.archive} "
            f"(https://{layout.url_host}/~kriz/{layout.archive}) into ${DATA_DIR_ENV} or ./data.")


def _unpickle(path: Path, layout: CifarLayout) -> dict:
    try:
        with open(path, "rb") as f:
            # latin1: the official files are Python 2 pickles; latin1 keeps numpy's byte buffers intact
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError as e:
        raise DatasetError(f"{path} is missing. {_cifar_hint(layout)}") from e
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error) as e:
        raise DatasetError(f"{path} is not a valid CIFAR pickle ({type(e).__name__}: {e}). {_cifar_hint(layout)}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} should hold a dict, found {type(obj).__name__}. {_cifar_hint(layout)}")
    return obj


def _get(d: dict, key: str, path: Path, layout: CifarLayout):
    """Keys are str in the official files read with latin1, bytes in files written by Python 3."""
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise DatasetError(f"{path} has no {key!r} entry (keys: {sorted(map(str, d))}). {_cifar_hint(layout)}")


def _decode(s) -> str:
    return s.decode("utf-8") if isinstance(s, bytes) else str(s)


@_guarded
def read_cifar(folder: str | os.PathLike, name: str, split: str, verify_sizes: bool = True) -> TensorDataset:
    """Read torchvision's extracted CIFAR folder (`cifar-10-batches-py` or `cifar-100-python`)."""
    check_choice("name", name, tuple(CIFAR_LAYOUTS))
    check_choice("split", split, SPLITS)
    layout = CIFAR_LAYOUTS[name]
    folder = Path(folder)
    meta_path = folder / layout.meta_file
    names = [_decode(n) for n in _get(_unpickle(meta_path, layout), layout.names_key, meta_path, layout)]
    k = len(layout.class_names)
    if len(names) != k:
        raise DatasetError(f"{meta_path}: {len(names)} class names, {name} has {k}. {_cifar_hint(layout)}")
    xs, ys = [], []
    for fname in (layout.train_files if split == "train" else layout.test_files):
        path = folder / fname
        batch = _unpickle(path, layout)
        data = np.asarray(_get(batch, "data", path, layout))
        labels = np.asarray(_get(batch, layout.label_key, path, layout))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}. "
                               f"{_cifar_hint(layout)}")
        if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"{path}: {len(data)} images but {labels.shape} {labels.dtype} labels. "
                               f"{_cifar_hint(layout)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= k):
            raise DatasetError(f"{path}: labels must be in 0..{k - 1}, found {int(labels.min())}..{int(labels.max())}. "
                               f"{_cifar_hint(layout)}")
        xs.append(data)
        ys.append(labels.astype(np.int64))
    data = np.concatenate(xs)
    expected = layout.sizes[0 if split == "train" else 1]
    if verify_sizes and len(data) != expected:
        raise DatasetError(f"{folder}: the {split} split has {len(data)} images, the official one {expected}. "
                           f"{_cifar_hint(layout)} (Pass verify_sizes=False for a deliberately smaller copy.)")
    # rows are 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order
    x = _normalise_uint8(data.reshape(-1, 3, 32, 32), layout.mean, layout.std)
    info = _make_info(name, names, (3, 32, 32), layout.mean, layout.std)
    return TensorDataset(x, torch.from_numpy(np.concatenate(ys)), info)


def _safe_extract(archive: Path, dest_root: Path, top: str) -> Path:
    """Extract `archive` (tar.gz) into dest_root/top, refusing anything outside `top/` or not a file/folder.

    Extracts into a temporary folder next to the target, then renames it into place, so an
    interrupted extraction never leaves a half-filled data folder behind.
    """
    try:
        with tarfile.open(archive, "r:gz") as tf:
            members = tf.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if (PurePosixPath(m.name).is_absolute() or ".." in parts or not parts or parts[0] != top
                        or not (m.isfile() or m.isdir())):
                    raise DatasetError(f"{archive}: refusing to extract unsafe or unexpected member {m.name!r} "
                                       f"(expected only files under {top}/). Use the official archive.")
            tmp = Path(tempfile.mkdtemp(prefix=f".{top}.", suffix=".extract", dir=dest_root))
            try:
                if hasattr(tarfile, "data_filter"):   # Python >= 3.11.4 / 3.10.12: a second line of defence
                    tf.extractall(tmp, members=members, filter="data")
                else:
                    tf.extractall(tmp, members=members)
                target = dest_root / top
                if not target.exists():
                    os.replace(tmp / top, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except DatasetError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetError(f"cannot extract {archive} ({type(e).__name__}: {e}); the archive may be truncated. "
                           f"Download it again or extract it by hand into {dest_root}.") from e
    if not (dest_root / top).is_dir():
        raise DatasetError(f"{archive} did not contain the folder {top}/. Use the official archive.")
    return dest_root / top


def find_cifar(name: str, data_dir: str | os.PathLike | None = None, extract: bool = True) -> Path | None:
    """The extracted folder, extracting the official archive when only it is present (None if neither)."""
    layout = CIFAR_LAYOUTS[name]
    for root in data_roots(data_dir):
        if (root / layout.folder).is_dir():
            return root / layout.folder
        if extract and (root / layout.archive).is_file():
            _check_access(f"extracting {root / layout.archive}")
            print(f"dsda: extracting {root / layout.archive} into {root}", flush=True)
            return _safe_extract(root / layout.archive, root, layout.folder)
    return None


def _cifar_missing_message(name: str, data_dir: str | None) -> str:
    layout = CIFAR_LAYOUTS[name]
    roots = data_roots(data_dir)
    return (f"{name} was not found: neither {layout.folder}/ nor {layout.archive} is in "
            f"{', '.join(map(str, roots))}. Put the official archive https://{layout.url_host}/~kriz/"
            f"{layout.archive} (or its extracted {layout.folder}/ folder) into {roots[0]} "
            f"(set ${DATA_DIR_ENV} to choose another folder), or allow a download with "
            f"load_dataset({name!r}, split, download=True) / `python -m dsda prepare-data --dataset {name}`.")


def _download_cifar(name: str, root: Path) -> None:
    """Download through torchvision (the only place that touches the network for CIFAR)."""
    import torchvision
    layout = CIFAR_LAYOUTS[name]
    root.mkdir(parents=True, exist_ok=True)
    print(f"dsda: downloading {name} with torchvision into {root}", flush=True)
    getattr(torchvision.datasets, layout.torchvision_class)(root=str(root), train=True, download=True)


def _cifar_folder(name: str, data_dir: str | None, download: bool) -> Path:
    folder = find_cifar(name, data_dir)
    if folder is not None:
        return folder
    if download:
        root = data_roots(data_dir)[0]
        try:
            _download_cifar(name, root)
        except Exception as e:   # URLError, OSError, RuntimeError (checksum) ...: all mean "no data"
            raise DatasetError(f"downloading {name} failed ({type(e).__name__}: {e}); the machine may be offline. "
                               + _cifar_missing_message(name, data_dir)) from e
        folder = find_cifar(name, data_dir)
        if folder is not None:
            return folder
    raise DatasetError(_cifar_missing_message(name, data_dir))


# ----------------------------------------------------------------------------- Pins face recognition

def _pins_identity_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PINS_PREFIX))
    except OSError:
        return []


def find_pins(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Folder holding the `pins_<Name>` identity folders (directly or under 105_classes_pins_dataset/)."""
    for root in data_roots(data_dir):
        for base in [root / n for n in PINS_DIR_NAMES] + [root]:
            for folder in (base, base / PINS_KAGGLE_SUBDIR):
                if folder.is_dir() and _pins_identity_dirs(folder):
                    return folder
    return None


def _pins_folder(data_dir: str | None) -> Path:
    folder = find_pins(data_dir)
    if folder is None:
        roots = data_roots(data_dir)
        raise DatasetError(
            f"PinsFaceRecognition was not found in {', '.join(map(str, roots))} (looked for folders named "
            f"{PINS_PREFIX}<Name> in {', '.join(PINS_DIR_NAMES)}, the data dir itself, or their "
            f"{PINS_KAGGLE_SUBDIR}/). It cannot be downloaded automatically: get it from "
            f"https://www.kaggle.com/datasets/hereisburak/pins-face-recognition (e.g. `kaggle datasets download "
            f"-d hereisburak/pins-face-recognition`) and unzip it into {roots[0] / 'pins'}.")
    return folder


def pins_identities(root: str | os.PathLike, verify_sizes: bool = True) -> list[tuple[str, Path]]:
    """(class name, folder) per identity, sorted by folder name; the class index is the list position."""
    root = Path(root)
    dirs = _pins_identity_dirs(root)
    if not dirs:
        raise DatasetError(f"{root} holds no {PINS_PREFIX}<Name> identity folders")
    if verify_sizes and len(dirs) != PINS_NUM_IDENTITIES:
        raise DatasetError(f"{root} holds {len(dirs)} identity folders, PinsFaceRecognition has "
                           f"{PINS_NUM_IDENTITIES}. Unzip the complete Kaggle archive (or pass verify_sizes=False).")
    return [(d.name[len(PINS_PREFIX):], d) for d in dirs]


def pins_file_split(root: str | os.PathLike, verify_sizes: bool = True) -> dict[str, list[tuple[Path, int]]]:
    """The fixed per-identity 80/20 split: {"train": [(file, label), ...], "test": [...]}.

    Per identity: its image files sorted by name, then `_group_split(n, folder name, 0.2,
    PINS_SPLIT_SEED)`; lists are ordered by (label, file name).
    """
    out: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for label, (_, folder) in enumerate(pins_identities(root, verify_sizes)):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PINS_EXTENSIONS)
        try:
            tr, te = _group_split(len(files), folder.name, PINS_TEST_FRACTION, PINS_SPLIT_SEED)
        except ValueError as e:
            raise DatasetError(f"{folder}: {e}") from e
        out["train"] += [(files[i], label) for i in tr]
        out["test"] += [(files[i], label) for i in te]
    return out


def _read_face(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as im:
            im.draft("RGB", (2 * size, 2 * size))   # JPEG: decode at a reduced scale (>= 2x target), much faster
            # centre crop to a square, then resize (bilinear with antialiasing): faces keep their aspect ratio
            im = ImageOps.fit(im.convert("RGB"), (size, size), method=Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path} ({type(e).__name__}: {e}); delete or replace the file") from e


@_guarded
def read_pins(root: str | os.PathLike, split: str, image_size: int = PINS_IMAGE_SIZE,
              verify_sizes: bool = True) -> TensorDataset:
    check_choice("split", split, SPLITS)
    identities = pins_identities(root, verify_sizes)
    files = pins_file_split(root, verify_sizes)[split]
    a = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        a[i] = _read_face(path, image_size)
    x = _normalise_uint8(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), PINS_MEAN, PINS_STD)
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    info = _make_info("pins", [n for n, _ in identities], (3, image_size, image_size), PINS_MEAN, PINS_STD)
    return TensorDataset(x, y, info)


# ----------------------------------------------------------------------------- public API

def _fixed_info(name: str) -> DatasetInfo:
    if name == "fashion_mnist":
        return _make_info(name, FASHION_MNIST_CLASSES, (1, 28, 28), FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    if name == "digits":
        return _make_info(name, DIGITS_CLASSES, (1, 8, 8), DIGITS_MEAN, DIGITS_STD)
    layout = CIFAR_LAYOUTS[name]
    return _make_info(name, layout.class_names, (3, 32, 32), layout.mean, layout.std)


def dataset_info(name: str, **kwargs) -> DatasetInfo:
    """Metadata without loading pixels. Takes the same keywords as `load_dataset`.

    Reads no files, except for `pins`, whose class names are its folder names: listing them is
    reading the data set, so for `pins` this is subject to `forbid_data_access`.
    """
    check_choice("name", name, DATASET_NAMES)
    opts = _check_kwargs(name, kwargs)
    if name != "pins":
        return _fixed_info(name)
    _check_access("dataset_info('pins')")
    identities = pins_identities(_pins_folder(opts["data_dir"]), opts["verify_sizes"])
    size = opts["image_size"]
    return _make_info("pins", [n for n, _ in identities], (3, size, size), PINS_MEAN, PINS_STD)


def _locate(name: str, split: str, opts: dict[str, Any]) -> tuple[str | None, tuple]:
    """(resolved folder, fingerprint of the files a load will read); the cache key includes both."""
    if name == "digits":
        return None, ()
    if name == "fashion_mnist":
        folder = _fashion_mnist_folder(opts["data_dir"])
        return str(folder), _fingerprint(folder / f for f in FASHION_MNIST_FILES[split])
    if name in CIFAR_LAYOUTS:
        layout = CIFAR_LAYOUTS[name]
        folder = _cifar_folder(name, opts["data_dir"], opts["download"])
        files = (layout.train_files if split == "train" else layout.test_files) + (layout.meta_file,)
        return str(folder), _fingerprint(folder / f for f in files)
    folder = _pins_folder(opts["data_dir"])
    return str(folder), _fingerprint([folder] + _pins_identity_dirs(folder))


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, opts: tuple, location: str | None, fingerprint: tuple) -> TensorDataset:
    o = dict(opts)
    if name == "fashion_mnist":
        return read_fashion_mnist(location, split, o["verify_sizes"])
    if name == "digits":
        return read_digits(split)
    if name in CIFAR_LAYOUTS:
        return read_cifar(location, name, split, o["verify_sizes"])
    return read_pins(location, split, o["image_size"], o["verify_sizes"])


def load_dataset(name: str, split: str, **kwargs) -> TensorDataset:
    """Load one split of a data set as normalised tensors (cached; treat the tensors as read-only).

    Keywords: `data_dir` (search only there instead of $DSDA_DATA_DIR / ./data), `verify_sizes`
    (default True: check the official sizes; consistency is always checked, and a Fashion-MNIST file
    of the official size always has to match its published checksum), `download` (CIFAR only,
    default False), `image_size` (Pins only, default 32).
    """
    _check_access(f"load_dataset({name!r}, {split!r})")
    check_choice("name", name, DATASET_NAMES)
    check_choice("split", split, SPLITS)
    opts = _check_kwargs(name, kwargs)
    location, fingerprint = _locate(name, split, opts)
    cache_opts = tuple(sorted((k, v) for k, v in opts.items() if k not in ("data_dir", "download")))
    return _load_cached(name, split, cache_opts, location, fingerprint)


def clear_cache() -> None:
    """Forget every cached data set (tests call this between cases)."""
    _load_cached.cache_clear()


# ----------------------------------------------------------------------------- class-level splits

def class_split(y: torch.Tensor, forget_classes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted int64 indices of the samples whose label is a forget class, and of all the others."""
    classes = validate_forget_classes(forget_classes, num_classes)
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"y must be a 1-D integer tensor of labels, got {y.dtype} {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"y holds labels {int(y.min())}..{int(y.max())}, outside 0..{num_classes - 1}")
    mask = torch.isin(y, torch.tensor(classes, dtype=y.dtype, device=y.device))
    return mask.nonzero().flatten(), (~mask).nonzero().flatten()   # nonzero is sorted and int64


def split_dataset(ds: TensorDataset, forget_classes) -> tuple[TensorDataset, TensorDataset]:
    """(forget part, retain part) of a data set, as new TensorDatasets."""
    forget_idx, retain_idx = class_split(ds.y, forget_classes, ds.info.num_classes)
    return ds.subset(forget_idx), ds.subset(retain_idx)


# ----------------------------------------------------------------------------- prepare (make data)

def _run_command(cmd: list[str]) -> int:
    """Run a command, streaming its output; returns the exit status (tests replace this)."""
    print("$ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, check=False).returncode
    except OSError as e:
        print(f"dsda: {cmd[0]} failed: {e}", flush=True)
        return 127


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _which(program: str) -> str | None:
    return shutil.which(program)


def _is_online(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to `host`? (DNS failure or a firewall both mean no.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_fashion_mnist(root: Path) -> None:
    """torchvision stores the files under root/FashionMNIST/raw/, which the lookup also searches."""
    import torchvision
    root.mkdir(parents=True, exist_ok=True)
    print(f"dsda: downloading Fashion-MNIST with torchvision into {root / 'FashionMNIST' / 'raw'}", flush=True)
    torchvision.datasets.FashionMNIST(root=str(root), train=True, download=True)


def _verified_fashion_mnist(data_dir: str | None) -> Path | None:
    folder = find_fashion_mnist(data_dir)
    if folder is None:
        return None
    for split in SPLITS:   # full check: a truncated download should fail here, not during training
        read_fashion_mnist(folder, split)
    return folder


def prepare(name: str = "fashion_mnist", allow_apt: bool = True, allow_download: bool = True,
            data_dir: str | os.PathLike | None = None) -> Path:
    """Make sure a data set is on disk and return its folder (installs or downloads only if allowed).

    Fashion-MNIST: found -> done; else apt (as root, if apt-get exists and `allow_apt`); else a
    torchvision download (if `allow_download` and online); else DatasetError with the commands.
    CIFAR: found (or its archive extracted) -> done; else download if allowed and online.
    Pins: found -> done; otherwise DatasetError explaining where to put it. Digits ship with scikit-learn.
    """
    _check_access(f"prepare({name!r})")
    check_choice("name", name, DATASET_NAMES)
    for key, v in (("allow_apt", allow_apt), ("allow_download", allow_download)):
        if not isinstance(v, bool):
            raise TypeError(f"{key} must be True or False, got {v!r}")
    data_dir = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    if name == "digits":
        from importlib.resources import files
        return Path(str(files("sklearn.datasets") / "data"))
    if name == "pins":
        return _pins_folder(data_dir)
    if name in CIFAR_LAYOUTS:
        return _prepare_cifar(name, allow_download, data_dir)
    return _prepare_fashion_mnist(allow_apt, allow_download, data_dir)


def _prepare_fashion_mnist(allow_apt: bool, allow_download: bool, data_dir: str | None) -> Path:
    folder = _verified_fashion_mnist(data_dir)
    if folder is not None:
        print(f"dsda: Fashion-MNIST found in {folder}", flush=True)
        return folder
    tried = []
    if allow_apt and data_dir is None:   # apt installs into the system folder, not into a chosen data_dir
        if _is_root() and _which("apt-get"):
            print("dsda: Fashion-MNIST not found; installing the Debian package dataset-fashion-mnist", flush=True)
            ok = all(_run_command(cmd) == 0 for cmd in (["apt-get", "update"],
                                                         ["apt-get", "install", "-y", "dataset-fashion-mnist"]))
            folder = _verified_fashion_mnist(data_dir) if ok else None
            if folder is not None:
                return folder
            tried.append("apt-get install dataset-fashion-mnist failed")
        else:
            tried.append("apt skipped (needs root and apt-get)")
    if allow_download:
        root = data_roots(data_dir)[0]
        host = "fashion-mnist.s3-website.eu-central-1.amazonaws.com"
        if _is_online(host, port=80):
            try:
                _download_fashion_mnist(root)
            except Exception as e:   # network errors, checksum errors: fall through to the instructions
                tried.append(f"torchvision download failed ({type(e).__name__}: {e})")
            else:
                folder = _verified_fashion_mnist(data_dir)
                if folder is not None:
                    return folder
                tried.append("torchvision download produced no files")
        else:
            tried.append(f"offline ({host} unreachable)")
    raise DatasetError(_fashion_mnist_missing_message(data_dir) + (f"\n(Tried: {'; '.join(tried)}.)" if tried else ""))


def _prepare_cifar(name: str, allow_download: bool, data_dir: str | None) -> Path:
    folder = find_cifar(name, data_dir)
    if folder is not None:
        print(f"dsda: {name} found in {folder}", flush=True)
        return folder
    layout = CIFAR_LAYOUTS[name]
    if allow_download and _is_online(layout.url_host):
        return _cifar_folder(name, data_dir, download=True)
    raise DatasetError(_cifar_missing_message(name, data_dir)
                       + ("" if not allow_download else f" ({layout.url_host} is unreachable: offline?)"))
