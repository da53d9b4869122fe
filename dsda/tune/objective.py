"""The tuning objective: the mean absolute gap to the retrained oracle, on the VALIDATION split.

For an unlearned model m and the oracle r of the same task and seed (both of a profile with a validation split,
e.g. cpu-val), `validation_metrics` computes, in percent:

- `A_f`, `A_r`: accuracy on the forget-class / retain-class images of the validation split;
- `A_all`: accuracy on the whole validation split (the role `A_test` plays in dsda.evaluate);
- `MIA`: the entropy attack of dsda.evaluate (dsda.attacks.mia_entropy_lr) with the validation split in the
  place of the test split: members = retain-class training images, non-members = the whole validation split,
  targets = forget-class training images (training images: the profile's fixed seeded subset,
  `Profile.eval_train_per_class` per class, of the train split minus the validation split).

`average_gap(m, r)` = mean over OBJECTIVE_KEYS of |m[k] - r[k]|: the `avg_abs_gap` of dsda.distance (issue 14:
A_f, A_r, A_test, MIA) with validation images in place of test images. A trial's objective is its mean over the
study's dev tasks and seeds. No image of the test split is read here: tuning runs inside
`forbid_split("test", ...)` (dsda/tune/study.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

OBJECTIVE_KEYS = ("A_f", "A_r", "A_all", "MIA")


@dataclass(frozen=True)
class ValidationData:
    """What the objective reads: the validation split and the training images of the membership attack."""
    profile: str
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_member: torch.Tensor
    y_member: torch.Tensor
    batch_size: int


def load_validation(profile: Any) -> ValidationData:
    """The profile's validation split and its fixed subset of training images (ValueError without a `val` split)."""
    from ..data import VALIDATION_SETS, load_dataset
    from ..metrics import eval_train_subset
    from ..profiles import get_profile
    prof = get_profile(profile)
    if prof.dataset not in VALIDATION_SETS:
        from ..profiles import PROFILES
        with_val = sorted(n for n, p in PROFILES.items() if p.dataset in VALIDATION_SETS)
        raise ValueError(f"profile {prof.name!r} has no validation split (data set {prof.dataset!r}); tuning runs on "
                         f"a profile that has one: {', '.join(with_val)}")
    val, train = load_dataset(prof.dataset, "val"), load_dataset(prof.dataset, "train")
    idx = eval_train_subset(train.y, prof.eval_train_per_class)
    return ValidationData(prof.name, val.x, val.y, train.x[idx], train.y[idx], prof.eval_batch_size)


def _accuracy(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return 100.0 * float((pred[mask] == y[mask]).double().mean()) if bool(mask.any()) else math.nan


def validation_metrics(model: nn.Module, data: ValidationData, forget: Sequence[int]) -> dict[str, float]:
    """A_f, A_r, A_all on the validation split and MIA against it (module docstring), in percent."""
    from ..attacks import mia_entropy_lr
    from ..metrics import predict_proba
    p_val = predict_proba(model, data.x_val, data.batch_size)
    p_mem = predict_proba(model, data.x_member, data.batch_size)
    for p in (p_val, p_mem):
        if not bool(torch.isfinite(p).all()):
            raise ValueError("the model's outputs are not finite on the validation or member images")
    classes = torch.tensor(list(forget))
    f_val, f_mem = torch.isin(data.y_val, classes), torch.isin(data.y_member, classes)
    pred = p_val.argmax(1)
    mia = mia_entropy_lr(p_mem[~f_mem], p_val, p_mem[f_mem])
    return {"A_f": _accuracy(pred, data.y_val, f_val), "A_r": _accuracy(pred, data.y_val, ~f_val),
            "A_all": _accuracy(pred, data.y_val, torch.ones_like(f_val)), "MIA": mia}


def average_gap(metrics: Mapping[str, float], reference: Mapping[str, float],
                keys: Sequence[str] = OBJECTIVE_KEYS) -> float:
    """Mean over `keys` of |metrics[k] - reference[k]|, in points (NaN in, ValueError out)."""
    gaps = []
    for k in keys:
        if k not in metrics or k not in reference:
            raise KeyError(f"average_gap needs the metric {k!r} in both dicts (validation_metrics gives it)")
        gap = float(metrics[k]) - float(reference[k])
        if not math.isfinite(gap):
            raise ValueError(f"the gap on {k!r} is not finite ({metrics[k]!r} vs reference {reference[k]!r})")
        gaps.append(abs(gap))
    return sum(gaps) / len(gaps)
