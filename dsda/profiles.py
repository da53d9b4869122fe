"""Named experiment profiles: which data, which model, which training recipe.

- `smoke`: scikit-learn digits (8x8), a tiny CNN, a handful of epochs. Seconds; for tests.
- `cpu`  : full Fashion-MNIST, the compact CNN. Minutes on 2 CPU cores; the default.
- `cpu-val`, `smoke-val`: the same as `cpu` / `smoke`, but the models train on the train split minus a held-out
           validation split (`fashion_mnist_val`, `digits_val`: dsda/data/validation.py). Tuning reads that
           split, never the test split (docs/PROTOCOL.md). Their checkpoints are distinct from the shipped ones
           (the data set's name is part of the cache key); recipes and budgets are shared with `cpu` / `smoke`.
- `paper`: CIFAR-10, ResNet-18, the paper's recipe (Adam, multi-step lr from 0.01). For a GPU.
           `paper-cifar100` is the same on CIFAR-100 and `paper-fmnist` runs the paper's code path
           (ResNet-18, same recipe) on Fashion-MNIST, for GPU machines without CIFAR on disk.

This module imports no data and no method: profiles are plain, frozen configuration.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .utils import check_choice


@dataclass(frozen=True)
class TrainRecipe:
    """How the original and the retrain-from-scratch models are trained (paper §5.1: Adam, multi-step lr)."""
    epochs: int = 5                          # passes over the training split
    batch_size: int = 256                    # paper: 256 for ResNet-18
    lr: float = 0.01                         # paper: Adam starting at 0.01
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all steps where lr *= gamma
    gamma: float = 0.1                       # multi-step decay factor
    weight_decay: float = 0.0                # Adam weight decay (paper: not stated)
    hflip: bool = False                      # random horizontal flips
    crop_pad: int = 0                        # random-crop padding in pixels (0 = off)

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainRecipe.{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainRecipe.lr must be positive, got {self.lr!r}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"TrainRecipe.milestones must be fractions in (0, 1), got {self.milestones!r}")


@dataclass(frozen=True)
class Profile:
    name: str
    dataset: str                             # name understood by dsda.load_dataset
    model: str                               # name understood by dsda.models.build_model
    width: int                               # base channel count of the model
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    forget_classes: tuple[int, ...] = (0,)   # default single-class task
    multi_forget_classes: tuple[int, ...] = (0, 1)  # default multi-class task (Table 2)
    eval_classes: tuple[int, ...] = (0,)     # forget classes the notebooks sweep over
    seeds: tuple[int, ...] = (0,)            # seeds the notebooks average over
    eval_batch_size: int = 256               # batch size for collecting probabilities (CPU: 256 is 2.7x faster
                                             # than 1024 for the cpu CNN, cache effects; GPU profiles use 1024)
    eval_train_per_class: int | None = None  # dsda.evaluate's train-split metrics (A_*_train, the MIAs) on a fixed
                                             # seeded subset of this many images per class; None = all of them
    device: str = "auto"                     # 'auto' = CUDA if present, else CPU
    family: str | None = None                # the profile whose recipes, method settings and budgets this one
                                             # shares (cpu-val: cpu); None = its own (dsda.recipes.profile_family)

    def __post_init__(self):
        if self.family is not None and (not isinstance(self.family, str) or self.family == self.name):
            raise ValueError(f"Profile.family must be None or the name of another profile, got {self.family!r}")
        n = self.eval_train_per_class
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ValueError(f"Profile.eval_train_per_class must be a positive integer or None (all images), got {n!r}")

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", dataset="digits", model="cnn", width=8,
        recipe=TrainRecipe(epochs=15, batch_size=64, lr=0.01, milestones=(0.6, 0.85)),
        forget_classes=(3,), multi_forget_classes=(3, 8), eval_classes=(3,), seeds=(0,),
    ),
    "cpu": Profile(
        name="cpu", dataset="fashion_mnist", model="cnn", width=32,
        recipe=TrainRecipe(epochs=5, batch_size=256, lr=0.01, milestones=(0.5, 0.75)),  # 5 x ~36 s on 2 cores; 91.9 % test
        forget_classes=(3,), multi_forget_classes=(3, 5), eval_classes=(0, 3, 7), seeds=(0,),
        # 1,000 train images per class (10k of 60k): one evaluate drops from ~27 s to ~10 s on 2 cores (the forward
        # pass over 70k images was 90 % of it); test-split metrics (A_f, A_r, A_test) still use all 10k test images
        eval_train_per_class=1000,
    ),
    # The validation-split protocol (issue 17): same data, model and recipe; the models never see `val`.
    "smoke-val": Profile(
        name="smoke-val", dataset="digits_val", model="cnn", width=8,
        recipe=TrainRecipe(epochs=15, batch_size=64, lr=0.01, milestones=(0.6, 0.85)),
        forget_classes=(3,), multi_forget_classes=(3, 8), eval_classes=(3,), seeds=(0,), family="smoke",
    ),
    "cpu-val": Profile(
        name="cpu-val", dataset="fashion_mnist_val", model="cnn", width=32,
        recipe=TrainRecipe(epochs=5, batch_size=256, lr=0.01, milestones=(0.5, 0.75)),
        forget_classes=(3,), multi_forget_classes=(3, 5), eval_classes=(0, 3, 7), seeds=(0, 1, 2),
        eval_train_per_class=1000, family="cpu",
    ),
    "paper": Profile(
        name="paper", dataset="cifar10", model="resnet18", width=64,
        recipe=TrainRecipe(epochs=40, batch_size=256, lr=0.01, milestones=(0.5, 0.75), hflip=True, crop_pad=4),
        forget_classes=(3,), multi_forget_classes=(3, 5), eval_classes=tuple(range(10)), seeds=(0, 1, 2), eval_batch_size=1024,
    ),
    "paper-cifar100": Profile(
        name="paper-cifar100", dataset="cifar100", model="resnet18", width=64,
        recipe=TrainRecipe(epochs=200, batch_size=256, lr=0.01, milestones=(0.3, 0.6, 0.8), hflip=True, crop_pad=4),
        # SSD's CIFAR-100 classes: baby (2), lamp (40), mushroom (51), rocket (69), sea (71)
        forget_classes=(69,), multi_forget_classes=(69, 51), eval_classes=(2, 40, 51, 69, 71), seeds=(0, 1, 2), eval_batch_size=1024,
    ),
    "paper-fmnist": Profile(
        name="paper-fmnist", dataset="fashion_mnist", model="resnet18", width=64,
        recipe=TrainRecipe(epochs=20, batch_size=256, lr=0.01, milestones=(0.5, 0.75)),
        forget_classes=(3,), multi_forget_classes=(3, 5), eval_classes=(0, 3, 7), seeds=(0,), eval_batch_size=1024,
    ),
}


def get_profile(name: "str | Profile") -> Profile:
    """Look up a profile by name (a Profile passes through unchanged)."""
    if isinstance(name, Profile):
        return name
    check_choice("profile", name, PROFILES)
    return PROFILES[name]
