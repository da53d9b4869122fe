"""PinsFaceRecognition (Kaggle `hereisburak/pins-face-recognition`): one folder per identity.

The split is a fixed per-identity 80/20 split; the class names are the folder names, so listing
them is reading the data set. It is never downloaded automatically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..utils import check_choice
from .common import SPLITS, _group_split, _normalise_uint8, data_roots
from .dataset import DatasetError, TensorDataset, _make_info
from .guard import _guarded

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

