"""Small pieces shared by the baselines (not a method: no `METHOD`, not registered).

- the shared prologue of every `run` (`setup`): config, model, forget classes, seed and granted data
  sets checked before any work starts, the model moved to the device, the run's one seeded generator
  and its clock, all in a `Setup`;
- the argument checks behind it, and `check_fields` for the config classes' `__post_init__`;
- frozen teachers, training only a part of a model, seeded minibatch indices, one optimiser step, the
  loss curves and the forget-accuracy stopping test;
- a plain cross-entropy fine-tuning loop (UNSIR's impair and repair phases; other retain-data
  baselines may use it too) and an accuracy helper for early stopping;
- re-exported from _attacks.py: `PixelMap`, `linf_pgd`, `l2_pgd` (the attacks in pixel space).

Every random draw takes an explicit CPU `torch.Generator`; results are moved to the device afterwards,
so a seed gives the same draws on every device. Nothing here imports dsda.data at import time (only
`check_granted` reads its TensorDataset class), so the source-free baselines can share the prologue.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import validate_forget_classes, validate_seed
from ..utils import resolve_device
from ._attacks import PixelMap, l2_pgd, linf_pgd  # noqa: F401  (re-exported: the methods' one namespace)

if TYPE_CHECKING:
    from ..data import TensorDataset


# ----------------------------------------------------------------------------- argument checks

def check_config(config: Any, cls: type) -> Any:
    """`None` -> the default config; otherwise it must be an instance of the method's config class."""
    if config is None:
        return cls()
    if not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__} (e.g. METHOD.config('cpu'), or None for the defaults), "
                        f"got {type(config).__name__}")
    return config


def check_classifier(model: Any, need_maps: bool = False) -> int:
    """The model must look like a dsda.models.Classifier; returns its class count."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a dsda.models.Classifier), got {type(model).__name__}")
    needed = ["num_classes", "input_shape", "input_range", "features", "fc"]
    needed += ["stages", "feature_maps"] if need_maps else []
    missing = [a for a in needed if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model lacks {missing}; this method needs a dsda.models.Classifier-like interface "
                        f"({', '.join(needed)})")
    return int(model.num_classes)


def check_seed(seed: Any) -> int:
    return validate_seed(seed)


def check_granted(name: str, ds: Any, *, classes: Sequence[int] | None = None, image_shape=None,
                  labelled: bool = True) -> TensorDataset:
    """A granted data set must be a non-empty TensorDataset whose labels lie in `classes` (when given)."""
    from ..data import TensorDataset   # noqa: F811  (here, not at import: the source-free baselines share this module)

    if not isinstance(ds, TensorDataset):
        raise TypeError(f"{name} must be a dsda.data.TensorDataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise ValueError(f"{name} is empty; the method needs at least one sample")
    if image_shape is not None and tuple(ds.x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"{name} has image shape {tuple(ds.x.shape[1:])}, the model expects {tuple(image_shape)}")
    if labelled and classes is not None:
        bad = sorted(set(torch.unique(ds.y).tolist()) - set(classes))
        if bad:
            raise ValueError(f"{name} holds labels {bad} outside the allowed classes {list(classes)}")
    return ds


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


# kind of config field -> (test, what the message says the value must be)
FIELD_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive_int": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "non_negative_int": (lambda v: _is_int(v) and v >= 0, "a non-negative integer (0 = off)"),
    "positive": (lambda v: _is_num(v) and v > 0, "a positive number"),
    "non_negative": (lambda v: _is_num(v) and v >= 0, "a non-negative number"),
    "fraction": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "open_fraction": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "flag": (lambda v: isinstance(v, bool), "True or False"),
}


def check_fields(cfg: Any, **kinds: Sequence[str]) -> None:
    """Range checks for config fields, e.g. `check_fields(self, positive_int=("epochs",), fraction=("p",))`;
    the kinds are FIELD_KINDS' keys, and a message names `Class.field` and what is allowed."""
    name = type(cfg).__name__
    for kind, fields in kinds.items():
        if kind not in FIELD_KINDS:
            raise ValueError(f"check_fields: kind={kind!r} is not valid; allowed values: {', '.join(FIELD_KINDS)}")
        test, what = FIELD_KINDS[kind]
        for f in fields:
            v = getattr(cfg, f)
            if not test(v):
                raise ValueError(f"{name}.{f} must be {what}, got {v!r}")


def as_int_tuple(obj: Any, field: str, length: int) -> None:
    """Normalise a list/tuple field of a frozen dataclass to a tuple of `length` positive ints."""
    v = getattr(obj, field)
    if not isinstance(v, (list, tuple)) or len(v) != length or any(not _is_int(c) or c <= 0 for c in v):
        raise ValueError(f"{type(obj).__name__}.{field} must be {length} positive integers, got {v!r}")
    object.__setattr__(obj, field, tuple(int(c) for c in v))


def config_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- the shared prologue

@dataclass
class Setup:
    """What a baseline's `run` starts from, once every argument has passed its check."""
    cfg: Any                    # the method's config (its defaults when `run` got None)
    model: nn.Module            # the model handed to `run`, now on `device`
    forget: list[int]           # sorted forget classes
    retain: list[int]           # the other classes, sorted
    seed: int
    device: torch.device
    gen: torch.Generator        # the run's only source of randomness (CPU; draws are moved to the device)
    t0: float                   # time.perf_counter() when the checks were done

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def header(self, title: str) -> dict[str, Any]:
        """The first entries of a report: method, forget classes, seed, device, config."""
        return {"method": title, "forget_classes": self.forget, "seed": self.seed, "device": str(self.device),
                "config": config_dict(self.cfg)}


def setup(model: Any, forget_classes: Any, config: Any, config_cls: type, seed: Any, device: Any, *,
          need_maps: bool = False, **granted: Any) -> Setup:
    """Check everything `run` received (granted data sets by keyword: forget=, retain=, ood=), then move
    the model to the device and seed the run's generator; nothing is computed before the checks pass."""
    cfg = check_config(config, config_cls)
    num_classes = check_classifier(model, need_maps)
    forget = list(validate_forget_classes(forget_classes, num_classes))   # a list: the methods index tensors with it
    retain = [c for c in range(num_classes) if c not in forget]
    seed = check_seed(seed)
    for name, ds in granted.items():   # ood: any labels and image shape (the method converts it)
        labelled = {"forget": forget, "retain": retain}.get(name)
        check_granted(name, ds, classes=labelled, image_shape=None if labelled is None else model.input_shape,
                      labelled=labelled is not None)
    dev = resolve_device(device)
    model.to(dev)
    return Setup(cfg, model, forget, retain, seed, dev, torch.Generator().manual_seed(seed), time.perf_counter())


# ----------------------------------------------------------------------------- training steps and stopping

def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: tuple[Any, float] | None = None) -> None:
    """zero_grad, backward, (clip_grad_norm_(params, max_norm) when `clip` is given), step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(*clip)
    opt.step()


def lists(*keys: str) -> dict[str, list]:
    """One empty list per key: the curves of a report."""
    return {k: [] for k in keys}


def append_row(curves: dict[str, list], **values: Any) -> None:
    for k, v in values.items():
        curves[k].append(v)


def log_losses(curves: dict[str, list[float]], **values: torch.Tensor) -> None:
    """Append each loss (a tensor) to its curve as a float."""
    append_row(curves, **{k: float(v.detach()) for k, v in values.items()})


class ForgetCheck:
    """The stopping test of the forget-data baselines: `measure()` gives the forget accuracy, recorded with
    its step in `history`; `forgotten` once it is <= `stop_acc`. The first measurement is step 0."""

    def __init__(self, measure: Callable[[], float], stop_acc: float):
        self.measure, self.stop_acc, self.history = measure, stop_acc, []
        self.acc = self.check(0)

    def check(self, step: int) -> float:
        self.acc = self.measure()
        self.history.append((step, self.acc))
        return self.acc

    @property
    def forgotten(self) -> bool:
        return self.acc <= self.stop_acc


# ----------------------------------------------------------------------------- models and batches

def freeze(model: nn.Module) -> nn.Module:
    """Teacher mode, in place: eval (BN running statistics) and no parameter gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients: the fixed original (teacher / attack target)."""
    return freeze(copy.deepcopy(model))


@contextlib.contextmanager
def trainable_only(model: nn.Module, part: nn.Module) -> Iterator[None]:
    """Gradients for `part`'s parameters only (e.g. the classification layer); every flag restored afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in part.parameters():
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


def batch_indices(n: int, batch_size: int, gen: torch.Generator | None = None,
                  drop_last: bool = False) -> list[torch.Tensor]:
    """One epoch of minibatch indices; shuffled with `gen`, in order when `gen` is None."""
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and out and len(out[-1]) < batch_size and len(out) > 1:
        out = out[:-1]
    return out


def endless_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Reshuffled epochs, forever (the `cycle(loader)` of the reference codes)."""
    while True:
        yield from batch_indices(n, batch_size, gen)


def per_class_subset(y: torch.Tensor, classes: Sequence[int], per_class: int,
                     gen: torch.Generator) -> torch.Tensor:
    """Indices of up to `per_class` random samples of each class in `classes` (sorted by class)."""
    idx = []
    for c in classes:
        members = (y == c).nonzero().flatten().cpu()
        members = members[torch.randperm(len(members), generator=gen)[:per_class]]
        idx.append(members.sort().values)
    return torch.cat(idx) if idx else torch.zeros(0, dtype=torch.int64)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 1024) -> float:
    """Top-1 accuracy in [0, 1] in eval mode; the model's mode is restored."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size].to(device)).argmax(1) == y[i:i + batch_size].to(device)).sum())
    model.train(was)
    return correct / max(1, len(y))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Logits of `x` in eval mode (on the device), mode restored."""
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def fit_cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
                      batch_size: int, gen: torch.Generator, device: torch.device,
                      optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0) -> list[float]:
    """Plain supervised fine-tuning in train mode (shuffled minibatches from `gen`); returns the step losses."""
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer={optimizer!r} is not valid; allowed values: 'adam', 'sgd'")
    model.train()
    losses = []
    for _ in range(epochs):
        for idx in batch_indices(len(y), batch_size, gen):
            loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            optimizer_step(opt, loss)
            losses.append(float(loss.detach()))
    model.eval()
    return losses


def kl_to_target(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(target/T) || softmax(student/T)) * T^2, batch mean (Hinton-style distillation)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(target_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
