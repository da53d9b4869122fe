"""One entry point for every data set: `load_dataset(name, split)`, `dataset_info(name)`, the cache.

Loaded data sets are cached in-process (evaluation asks for the same split many times), keyed by
the options, the resolved folder and the (path, size, mtime) of the files a load reads, so a
replaced file is read again. The returned tensors are shared between callers: treat them as
read-only.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from ..utils import check_choice
from . import cifar, digits, fashion_mnist
from .cifar import CIFAR_LAYOUTS, _cifar_folder, read_cifar
from .common import DATASET_NAMES, SPLITS, _fingerprint
from .dataset import DatasetInfo, TensorDataset, _make_info
from .digits import read_digits
from .fashion_mnist import FASHION_MNIST_FILES, _fashion_mnist_folder, read_fashion_mnist
from .guard import _check_access, _check_split
from .validation import VALIDATION_SETS, VARIANT_SPLITS, variant_info, variant_split
from .pins import PINS_IMAGE_SIZE, PINS_MEAN, PINS_STD, _pins_folder, _pins_identity_dirs, pins_identities, read_pins

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


def _fixed_info(name: str) -> DatasetInfo:
    if name == "fashion_mnist":
        return fashion_mnist.fixed_info()
    if name == "digits":
        return digits.fixed_info()
    return cifar.fixed_info(name)


def dataset_info(name: str, **kwargs) -> DatasetInfo:
    """Metadata without loading pixels. Takes the same keywords as `load_dataset`.

    Reads no files, except for `pins`, whose class names are its folder names: listing them is
    reading the data set, so for `pins` this is subject to `forbid_data_access`. A validation variant
    (`fashion_mnist_val`, ...; dsda/data/validation.py) has its base data set's metadata under its own name.
    """
    check_choice("name", name, DATASET_NAMES + tuple(VALIDATION_SETS))
    if name in VALIDATION_SETS:
        return variant_info(name, dataset_info(VALIDATION_SETS[name].base, **kwargs))
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

    A validation variant (`fashion_mnist_val`, `digits_val`; dsda/data/validation.py) has the splits
    `train` (the base train split minus the validation images), `val` and `test` (the base test split).
    While `forbid_split(split, ...)` is active, asking for that split raises DataAccessError.
    """
    _check_access(f"load_dataset({name!r}, {split!r})")
    _check_split(f"load_dataset({name!r}, {split!r})", split)
    check_choice("name", name, DATASET_NAMES + tuple(VALIDATION_SETS))
    if name in VALIDATION_SETS:
        return _load_variant(name, split, kwargs)
    if split == "val":
        raise ValueError(f"split='val' exists only for the validation variants ({', '.join(VALIDATION_SETS)}), "
                         f"not for {name!r}; allowed values: {', '.join(map(repr, SPLITS))}")
    check_choice("split", split, SPLITS)
    opts = _check_kwargs(name, kwargs)
    location, fingerprint = _locate(name, split, opts)
    cache_opts = tuple(sorted((k, v) for k, v in opts.items() if k not in ("data_dir", "download")))
    return _load_cached(name, split, cache_opts, location, fingerprint)


def _load_variant(name: str, split: str, kwargs: dict[str, Any]) -> TensorDataset:
    """One split of a validation variant, cut from the (cached) base data set."""
    check_choice("split", split, VARIANT_SPLITS)
    base = VALIDATION_SETS[name].base
    if split == "test":
        return variant_split(name, split, None, load_dataset(base, "test", **kwargs))
    return variant_split(name, split, load_dataset(base, "train", **kwargs), None)


def clear_cache() -> None:
    """Forget every cached data set (tests call this between cases)."""
    from .validation import clear_variant_cache
    _load_cached.cache_clear()
    clear_variant_cache()

