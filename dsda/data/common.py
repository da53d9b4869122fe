"""What every loader shares: the data set and split names, the data folders, normalisation, fixed splits."""
from __future__ import annotations

import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

DATASET_NAMES = ("fashion_mnist", "digits", "cifar10", "cifar100", "pins")
SPLITS = ("train", "test")
DATA_DIR_ENV = "DSDA_DATA_DIR"


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

