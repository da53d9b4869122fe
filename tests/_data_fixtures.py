"""Writers for tiny data sets in the real on-disk formats, used by tests/test_data.py.

- IDX files (gzipped), as Fashion-MNIST ships them.
- CIFAR batches pickled the way the official files are: Python 2 pickles (protocol 2) whose keys,
  class names and numpy buffers are Python 2 `str` objects (BINSTRING opcodes) and whose arrays
  are rebuilt through `numpy.core.multiarray._reconstruct`.
- Pins-style identity folders of small JPEGs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from dsda.data import CIFAR_LAYOUTS


# ----------------------------------------------------------------------------- IDX

def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Uncompressed IDX: magic 0x0000 08 <ndim>, big-endian uint32 dims, then uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    return struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray, magic: int | None = None, payload: bytes | None = None,
                 level: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array, magic) if payload is None else payload
    path.write_bytes(gzip.compress(data, compresslevel=level))
    return path


def write_fmnist_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, level: int = 6) -> None:
    prefix = "train" if split == "train" else "t10k"
    write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images, level=level)
    write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, level=level)


def write_full_size_fmnist(folder: Path) -> Path:
    """Official-size Fashion-MNIST stand-in (60k/10k, 28x28, balanced labels) with cheap pixel values.

    Its files have the official sizes but not the official contents, so the checksum check refuses
    them unless a test declares their checksums (`idx_checksums`) as the expected ones.
    """
    for split, n in (("train", 60_000), ("test", 10_000)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        write_fmnist_split(folder, split, images, (np.arange(n) % 10).astype(np.uint8), level=1)
    return folder


def idx_checksums(folder: Path) -> dict[str, tuple[int, str, str]]:
    """`dsda.data.FASHION_MNIST_CHECKSUMS` for the files in `folder`: (length, MD5, SHA-256) of the IDX data."""
    out = {}
    for path in sorted(folder.glob("*-ubyte.gz")):
        data = gzip.decompress(path.read_bytes())
        out[path.name] = (len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    return out


# ----------------------------------------------------------------------------- CIFAR (Python 2 pickles)

class _Py2Pickler(pickle._Pickler):   # the pure-Python pickler lets us change how bytes are written
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes):
        # Python 2 `str`: SHORT_BINSTRING / BINSTRING, exactly what cPickle wrote in 2009
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle_bytes(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (what wrote the official files) lives at numpy.core; GLOBAL opcodes are plain text
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _py2(obj):
    """Turn str keys / names into bytes so that they are written as Python 2 str."""
    if isinstance(obj, dict):
        return {_py2(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_py2(v) for v in obj]
    if isinstance(obj, str):
        return obj.encode("latin1")
    return obj


def make_cifar_arrays(name: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3072) uint8 random images and labels with `per_class` images of every class, shuffled."""
    k = len(CIFAR_LAYOUTS[name].class_names)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(k), per_class))
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return data, labels


def write_cifar_folder(root: Path, name: str, per_class_train: int = 2, per_class_test: int = 1,
                       py2: bool = True, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write root/<torchvision folder>/... and return {split: (data (N, 3072), labels)} as written."""
    layout = CIFAR_LAYOUTS[name]
    folder = root / layout.folder
    folder.mkdir(parents=True, exist_ok=True)

    def dump(obj, path: Path):
        if py2:
            path.write_bytes(py2_pickle_bytes(_py2(obj)))
        else:   # a Python 3 pickle with bytes keys, as pickle.dump would write them today
            path.write_bytes(pickle.dumps({k.encode(): v for k, v in obj.items()}, protocol=4))

    meta = {layout.names_key: list(layout.class_names)}
    if name == "cifar100":
        meta["coarse_label_names"] = [f"super{i}" for i in range(20)]
    else:
        meta["num_cases_per_batch"] = 10000
        meta["num_vis"] = 3072
    dump(meta, folder / layout.meta_file)
    out = {}
    for split, files, per_class in (("train", layout.train_files, per_class_train),
                                    ("test", layout.test_files, per_class_test)):
        datas, labs = [], []
        for i, fname in enumerate(files):
            data, labels = make_cifar_arrays(name, per_class, seed=seed * 100 + (0 if split == "train" else 50) + i)
            batch = {"batch_label": f"{split} batch {i + 1}", "data": data,
                     "filenames": [f"img_{j}.png" for j in range(len(labels))]}
            batch[layout.label_key] = [int(v) for v in labels]
            if name == "cifar100":
                batch["coarse_labels"] = [int(v) // 5 for v in labels]
            dump(batch, folder / fname)
            datas.append(data)
            labs.append(labels)
        out[split] = (np.concatenate(datas), np.concatenate(labs))
    return out


def write_cifar_archive(root: Path, name: str, **kwargs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write only root/<official archive>.tar.gz (built from a temporary folder)."""
    layout = CIFAR_LAYOUTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        arrays = write_cifar_folder(Path(tmp), name, **kwargs)
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(root / layout.archive, "w:gz") as tf:
            tf.add(Path(tmp) / layout.folder, arcname=layout.folder)
    return arrays


def write_evil_archive(path: Path, top: str) -> None:
    """A tar.gz with a legitimate-looking member and one that climbs out of the target folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for member_name, payload in ((f"{top}/batches.meta", b"x"), (f"{top}/../../escaped.txt", b"pwned")):
            info = tarfile.TarInfo(member_name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))


# ----------------------------------------------------------------------------- Pins

def pins_colour(identity: int, file_index: int) -> tuple[int, int, int]:
    """A solid colour that encodes (identity, file index), far enough apart to survive JPEG."""
    return (20 + 40 * identity, 20 + 20 * file_index, 128)


def write_pins_tree(root: Path, counts: dict[str, int], size: tuple[int, int] = (24, 30)) -> Path:
    """root/pins_<Name>/<Name><i>.jpg solid-colour JPEGs, plus a stray non-image file per folder."""
    from PIL import Image
    root.mkdir(parents=True, exist_ok=True)
    for identity, (name, n) in enumerate(sorted(counts.items())):
        folder = root / f"pins_{name}"
        folder.mkdir()
        for i in range(n):
            Image.new("RGB", size, pins_colour(identity, i)).save(folder / f"{name}{i:03d}.jpg", quality=95)
        (folder / "README.txt").write_text("not an image")
    return root


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        dst.write_bytes(src.read_bytes())
