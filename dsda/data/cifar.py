"""CIFAR-10 / CIFAR-100: torchvision's on-disk layout (pickled batches) under `$DSDA_DATA_DIR` or `./data`.

The official `.tar.gz` is extracted when only it is present. Downloads happen only with
`download=True` (`_download_cifar`, the one place that touches the network for CIFAR).
"""
from __future__ import annotations

import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..utils import check_choice
from .common import DATA_DIR_ENV, SPLITS, _normalise_uint8, data_roots
from .dataset import DatasetError, DatasetInfo, TensorDataset, _make_info
from .guard import _check_access, _guarded

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


def fixed_info(name: str) -> DatasetInfo:
    """Metadata without reading any file (`read_cifar` takes the class names from the meta file)."""
    layout = CIFAR_LAYOUTS[name]
    return _make_info(name, layout.class_names, (3, 32, 32), layout.mean, layout.std)


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


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: (uint8 rows of 3072 pixels, int64 labels), both checked."""
    k = len(layout.class_names)
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
    return data, labels.astype(np.int64)


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
    xs, ys = zip(*[_read_batch(folder / f, layout)
                   for f in (layout.train_files if split == "train" else layout.test_files)])
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

