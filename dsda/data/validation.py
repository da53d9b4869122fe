"""Validation variants of a data set: a stratified, seeded part of its TRAIN split held out from every model.

A variant such as `fashion_mnist_val` is a data set of its own name with three splits:

- `val`:   `per_class` images of every class drawn from the base data set's train split (seeded, see below);
- `train`: the base train split minus `val` (what the models of a profile with this data set train on);
- `test`:  the base test split, unchanged (for reporting only).

Because the variant has its own name, a profile that uses it (`cpu-val`, `smoke-val` in dsda/profiles.py) trains
models whose checkpoint config, and so their cache key, differ from the shipped `cpu` / `smoke` models: those and
the goldens built on them are untouched. Tuning reads `val` (and `train` for the membership attack) and is kept
off `test` by `dsda.data.forbid_split` (dsda/tune/).

The draw, per class c (in class order): the positions of class c in the base train split (file order), permuted
by a CPU torch.Generator seeded with crc32("<base>/<c>/<seed>") (one 32-bit number: the generator ignores
higher bits of its seed); the first `per_class` go to `val`.
So one class's draw depends only on its own members, and the indices are a pure function of (base, per_class,
seed): `validation_indices` is deterministic and the tests recompute it.
"""
from __future__ import annotations

import dataclasses
import functools
import zlib
from dataclasses import dataclass

import torch

from .dataset import DatasetInfo, TensorDataset

VAL_SPLIT = "val"
VARIANT_SPLITS = ("train", VAL_SPLIT, "test")


@dataclass(frozen=True)
class ValidationSet:
    """How a variant is cut from its base data set (see the module docstring)."""
    base: str           # a name in DATASET_NAMES
    per_class: int      # validation images per class
    seed: int           # seeds the per-class permutations


# Fashion-MNIST: 600 of the 6,000 train images per class (10 %, 6,000 in all, as many as the earlier tuning
# subset had) leave 5,400 per class to train on. Digits: ~144 train images per class, 30 held out (about 20 %).
VALIDATION_SETS: dict[str, ValidationSet] = {
    "fashion_mnist_val": ValidationSet("fashion_mnist", 600, 2026),
    "digits_val": ValidationSet("digits", 30, 2026),
}


def validation_indices(y: torch.Tensor, base: str, per_class: int, seed: int) -> torch.Tensor:
    """Sorted int64 positions in the base train split (labels `y`) that form the validation split."""
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class <= 0:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    picks = []
    for c in torch.unique(y).tolist():
        members = (y == c).nonzero().flatten()
        if len(members) <= per_class:
            raise ValueError(f"class {c} of {base!r} has {len(members)} train images; holding out {per_class} "
                             f"would leave none to train on")
        # one 32-bit number: torch's CPU generator (mt19937) keeps only the low 32 bits of its seed
        g = torch.Generator().manual_seed(zlib.crc32(f"{base}/{c}/{seed}".encode("utf-8")))
        picks.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


def variant_info(name: str, base_info: DatasetInfo) -> DatasetInfo:
    """The base data set's metadata under the variant's name (same classes, shape, normalisation)."""
    return dataclasses.replace(base_info, name=name)


@functools.lru_cache(maxsize=4)
def _cut(name: str, split: str, base_train: TensorDataset) -> TensorDataset:
    """`train` or `val` of a variant from the base train split (cached; the cache holds `base_train`, so the
    identity it is keyed by cannot be reused while the entry lives)."""
    v = VALIDATION_SETS[name]
    val = validation_indices(base_train.y, v.base, v.per_class, v.seed)
    keep = torch.ones(len(base_train), dtype=torch.bool)
    keep[val] = False
    part = base_train.subset(val if split == VAL_SPLIT else keep)
    return TensorDataset(part.x, part.y, variant_info(name, base_train.info))


def variant_split(name: str, split: str, base_train: TensorDataset, base_test: TensorDataset | None) -> TensorDataset:
    """One split of a variant, given the base data set's train split (and, for `test`, its test split)."""
    if split == "test":
        return TensorDataset(base_test.x, base_test.y, variant_info(name, base_test.info))
    return _cut(name, split, base_train)


def base_dataset(name: str) -> str:
    """The data set a name reads its images from: the base of a validation variant, else the name itself."""
    return VALIDATION_SETS[name].base if name in VALIDATION_SETS else name


def clear_variant_cache() -> None:
    _cut.cache_clear()
