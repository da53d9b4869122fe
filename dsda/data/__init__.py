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
wraps source-free methods in it to show that they never read data. `forbid_split("test", reason)` does
the same for one split (tuning runs inside it).

Validation variants (`VALIDATION_SETS`): `load_dataset("fashion_mnist_val", "val")` is a stratified,
seeded held-out part of Fashion-MNIST's train split (600 images per class); its `train` split is the
rest, and its `test` split is Fashion-MNIST's. The `cpu-val` and `smoke-val` profiles train on them.

Nothing here downloads implicitly: `prepare(name)` (behind `python -m dsda prepare-data`) is the
one place that installs or downloads, and only when allowed.

The package, one concern per module (everything public is re-exported here, so
`from dsda.data import X` is the way in):

    dataset.py        DatasetInfo, TensorDataset, DatasetError
    guard.py          forbid_data_access, DataAccessError (every reader is guarded)
    common.py         data set and split names, data_roots, normalisation, the fixed per-class split
    fashion_mnist.py  IDX reader, checksums, lookup       digits.py  scikit-learn's digits
    cifar.py          pickled batches, archive extraction, the opt-in download
    pins.py           identity folders, per-identity split
    load.py           load_dataset, dataset_info, the cache
    splits.py         validate_forget_classes, class_split, split_dataset
    validation.py     validation variants (fashion_mnist_val, digits_val): train minus a held-out `val` split
    preparation.py    prepare (apt, torchvision download)

Tests that replace a module-level name (a folder, the checksums, a side effect of `prepare`) patch
it in the module that reads it, e.g. `dsda.data.fashion_mnist.SYSTEM_FASHION_MNIST_DIR` or
`dsda.data.preparation._is_online`: a re-exported copy here is not what the code looks up.
"""
from __future__ import annotations

from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, CIFAR_LAYOUTS, CifarLayout, find_cifar, read_cifar
from .common import DATA_DIR_ENV, DATASET_NAMES, SPLITS, data_roots
from .dataset import DatasetError, DatasetInfo, TensorDataset
from .digits import (DIGITS_CLASSES, DIGITS_MEAN, DIGITS_SPLIT_SEED, DIGITS_STD, DIGITS_TEST_FRACTION,
                     digits_split_indices, read_digits)
from .fashion_mnist import (FASHION_MNIST_CHECKSUMS, FASHION_MNIST_CLASSES, FASHION_MNIST_FILES,
                            FASHION_MNIST_MEAN, FASHION_MNIST_SIZES, FASHION_MNIST_STD, IDX_IMAGES_MAGIC,
                            IDX_LABELS_MAGIC, SYSTEM_FASHION_MNIST_DIR, find_fashion_mnist, read_fashion_mnist,
                            read_idx)
from .guard import DataAccessError, data_access_forbidden, forbid_data_access, forbid_split
from .load import clear_cache, dataset_info, load_dataset
from .pins import (PINS_DIR_NAMES, PINS_EXTENSIONS, PINS_IMAGE_SIZE, PINS_KAGGLE_SUBDIR, PINS_MEAN,
                   PINS_NUM_IDENTITIES, PINS_PREFIX, PINS_SPLIT_SEED, PINS_STD, PINS_TEST_FRACTION, find_pins,
                   pins_file_split, pins_identities, read_pins)
from .preparation import prepare
from .splits import class_split, split_dataset, validate_forget_classes
from .validation import VALIDATION_SETS, ValidationSet, base_dataset, validation_indices

__all__ = [
    "CIFAR100_CLASSES", "CIFAR10_CLASSES", "CIFAR_LAYOUTS", "CifarLayout", "DATASET_NAMES", "DATA_DIR_ENV",
    "DIGITS_CLASSES", "DIGITS_MEAN", "DIGITS_SPLIT_SEED", "DIGITS_STD", "DIGITS_TEST_FRACTION",
    "DataAccessError", "DatasetError", "DatasetInfo", "FASHION_MNIST_CHECKSUMS", "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES", "FASHION_MNIST_MEAN", "FASHION_MNIST_SIZES", "FASHION_MNIST_STD",
    "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "PINS_DIR_NAMES", "PINS_EXTENSIONS", "PINS_IMAGE_SIZE",
    "PINS_KAGGLE_SUBDIR", "PINS_MEAN", "PINS_NUM_IDENTITIES", "PINS_PREFIX", "PINS_SPLIT_SEED", "PINS_STD",
    "PINS_TEST_FRACTION", "SPLITS", "SYSTEM_FASHION_MNIST_DIR", "TensorDataset", "class_split", "clear_cache",
    "data_access_forbidden", "data_roots", "dataset_info", "digits_split_indices", "find_cifar",
    "find_fashion_mnist", "find_pins", "forbid_data_access", "forbid_split", "load_dataset", "pins_file_split",
    "pins_identities", "prepare", "read_cifar", "read_digits", "read_fashion_mnist", "read_idx", "read_pins",
    "split_dataset", "validate_forget_classes",
    "VALIDATION_SETS", "ValidationSet", "base_dataset", "validation_indices",
]
