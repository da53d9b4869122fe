"""Small pieces shared by the baselines (not a method: no `METHOD`, not registered).

- the shared prologue of every `run` (`setup`): config, model, forget classes, seed and granted data
  sets checked before any work starts, the model moved to the device, the run's one seeded generator
  and its clock, all in a `Setup`;
- the argument checks behind it, and `check_fields` for the config classes' `__post_init__`;
- seeded minibatch indices, one optimiser step, the loss log and the forget-accuracy stopping test;
- the map between a model's normalised inputs and [0, 1] pixels, and the two adversarial attacks
  the baselines use (L-inf PGD / FGSM for Boundary Shrink, L2 PGD for ADV+IMP), run in pixel space
  so that radii mean what the papers mean by them (e.g. "bound 0.1" = 0.1 of the pixel range);
- a plain cross-entropy fine-tuning loop (UNSIR's impair and repair phases; other retain-data
  baselines may use it too) and an accuracy helper for early stopping.

Every random draw takes an explicit CPU `torch.Generator`; results are moved to the device afterwards,
so a seed gives the same draws on every device. Nothing here imports dsda.data at import time (only
`check_granted` reads its TensorDataset class), so the source-free baselines can share the prologue.
"""
from __future__ import annotations

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

from ..unlearn import validate_forget_classes
from ..utils import resolve_device

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
    needed = ["num_classes", "input_shape", "input_range", "features", "fc"] + (["stages", "feature_maps"] if need_maps else [])
    missing = [a for a in needed if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model lacks {missing}; this method needs a dsda.models.Classifier-like interface "
                        f"({', '.join(needed)})")
    return int(model.num_classes)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


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
    forget = validate_forget_classes(forget_classes, num_classes)
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


def loss_log(*keys: str) -> dict[str, list[float]]:
    return {k: [] for k in keys}


def log_losses(log: dict[str, list[float]], **values: torch.Tensor) -> None:
    """Append each loss (a tensor) to its curve as a float."""
    for k, v in values.items():
        log[k].append(float(v.detach()))


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

def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients: the fixed original (teacher / attack target)."""
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


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


# ----------------------------------------------------------------------------- pixel space and attacks

class PixelMap:
    """Normalised input x <-> pixels p in [0, 1]: x = (p - mean) / std per channel (DatasetInfo)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"):
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one entry per channel and std > 0, got {mean!r}, {std!r}")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    @classmethod
    def of(cls, ds: TensorDataset, device: torch.device | str = "cpu") -> "PixelMap":
        return cls(ds.info.mean, ds.info.std, device)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def to_inputs(self, p: torch.Tensor) -> torch.Tensor:
        return (p - self.mean) / self.std


def _attack_loss(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    # sum over the batch, so each sample's input gradient is its own loss gradient (no 1/N scaling)
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    return -loss if targeted else loss


def linf_pgd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, pixels: PixelMap, *, eps: float,
             step: float, iters: int, targeted: bool = False, random_start: bool = False,
             gen: torch.Generator | None = None, discretize: bool = False) -> torch.Tensor:
    """L-inf PGD in pixel space (FGSM = one step of size eps, no random start); returns normalised inputs.

    Untargeted: ascend CE(labels); targeted: descend CE(labels). Each step is projected onto the eps-ball
    around the clean pixels and onto [0, 1]; `discretize` rounds to 1/255 after every step (Boundary
    Unlearning's FGSM does). `model` should be a frozen eval-mode copy.
    """
    p0 = pixels.to_pixels(x.detach())
    p = p0.clone()
    if random_start:
        noise = (torch.rand(p.shape, generator=gen) * 2 - 1).to(p.device) * eps
        p = (p0 + noise).clamp(0, 1)
    for _ in range(iters):
        p.requires_grad_(True)
        g, = torch.autograd.grad(_attack_loss(model, pixels.to_inputs(p), labels, targeted), p)
        with torch.no_grad():
            p = p + step * g.sign()
            p = torch.min(torch.max(p, p0 - eps), p0 + eps).clamp(0, 1)
            if discretize:
                p = torch.round(p * 255) / 255
    return pixels.to_inputs(p.detach())


def l2_pgd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, pixels: PixelMap, *, eps: float,
           step: float, iters: int, targeted: bool = True, random_start: bool = True,
           gen: torch.Generator | None = None) -> torch.Tensor:
    """L2 PGD in pixel space (advertorch's L2PGDAttack semantics); returns normalised inputs.

    Each step moves `step` along the per-sample L2-normalised gradient, then projects the perturbation
    onto the L2 ball of radius eps and the image onto [0, 1]. The random start draws a uniform direction
    scaled to a uniform fraction of eps.
    """
    p0 = pixels.to_pixels(x.detach())
    n = p0.shape[0]

    def project(delta: torch.Tensor) -> torch.Tensor:
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)
        return delta * torch.clamp(eps / norm, max=1.0)

    delta = torch.zeros_like(p0)
    if random_start:
        d = torch.randn(p0.shape, generator=gen).to(p0.device)
        d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)
        r = torch.rand(n, generator=gen).to(p0.device).view(n, 1, 1, 1) * eps
        delta = ((p0 + d * r).clamp(0, 1) - p0)
    for _ in range(iters):
        delta.requires_grad_(True)
        g, = torch.autograd.grad(_attack_loss(model, pixels.to_inputs(p0 + delta), labels, targeted), delta)
        with torch.no_grad():
            g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)
            delta = project(delta + step * g)
            delta = (p0 + delta).clamp(0, 1) - p0
    return pixels.to_inputs((p0 + delta).detach())


def kl_to_target(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(target/T) || softmax(student/T)) * T^2, batch mean (Hinton-style distillation)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(target_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
