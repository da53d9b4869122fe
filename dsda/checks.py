"""Argument checks shared by every entry point: each names the parameter and what is allowed.

This module imports no data and no method, so the source-free modules may use it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def check_seed(seed: Any, name: str = "seed") -> int:
    """A non-negative integer (bool, float and str are refused: 0.9 or "0" must not silently mean 0)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _as_list(name: str, classes: Any) -> list:
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        classes = [classes]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple, range, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of class ids, got {type(classes).__name__}")
    return list(classes)


def check_classes(name: str, classes: Any, num_classes: int) -> list[int]:
    """Distinct integer class ids in 0..num_classes-1, at least one, in the order given."""
    out = []
    for c in _as_list(name, classes):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"{name} must hold integer class ids, got {c!r}")
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"class id {int(c)} is out of range; allowed: 0..{num_classes - 1} "
                             f"(model.num_classes = {num_classes})")
        out.append(int(c))
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat, got {out}")
    return out


def check_forget_classes(forget_classes: Any, num_classes: int) -> list[int]:
    """Forget classes: integers in 0..num_classes-1, no repeats, not empty, not every class (sorted)."""
    fc = forget_classes
    if isinstance(fc, torch.Tensor):
        fc = fc.tolist()
    if isinstance(fc, (int, np.integer)) and not isinstance(fc, bool):
        fc = [fc]
    if isinstance(fc, (str, bytes)) or not isinstance(fc, (list, tuple, range, np.ndarray)):
        raise ValueError(f"forget_classes must be a class id or a sequence of class ids in 0..{num_classes - 1}, "
                         f"got {forget_classes!r}")
    out = []
    for c in list(fc):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ValueError(f"forget_classes must hold integers in 0..{num_classes - 1}, got {c!r}")
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"forget_classes: class {int(c)} is out of range 0..{num_classes - 1}")
        out.append(int(c))
    if not out:
        raise ValueError("forget_classes must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"forget_classes must not repeat a class, got {out}")
    if len(out) >= num_classes:
        raise ValueError(f"forget_classes must leave at least one retain class; got all {num_classes} classes")
    return sorted(out)
