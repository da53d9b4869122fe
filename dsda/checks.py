"""One module of argument checks used by every entry point: the library and the CLI.

Each check raises before any work starts, with a message that names the parameter and the allowed values
or form. It imports only torch and numpy (never `dsda.data`), so the source-free method modules use it too.

- `check_choice`, `check_positive`: one value among allowed ones / a positive number.
- `validate_seed`: a non-negative integer (not a bool): 0.9, "0", False and -1 are errors, never coerced.
- `validate_forget_classes`: class ids of one forget task, sorted.
- `nonfinite_tensors`: which weights or buffers of a model hold NaN or inf (the cause, when outputs are not finite).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn


class NonFiniteError(RuntimeError):
    """A computation (sampling, optimisation) produced NaN or inf; the message says where and what to change."""


def check_choice(name: str, value: Any, allowed) -> Any:
    """Raise a ValueError naming the parameter and its allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; allowed values: {', '.join(map(repr, allowed))}")
    return value


def check_positive(name: str, value: Any, integer: bool = True) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float))
    if not ok or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def validate_seed(seed: Any, name: str = "seed") -> int:
    """A seed is a non-negative integer; anything else (a float, a string, a bool) is an error, not coerced."""
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _class_items(forget_classes: Any, name: str) -> list:
    """The raw items of an int or an iterable of class ids (a 0-d tensor counts as an int)."""
    if isinstance(forget_classes, (str, bytes)) or forget_classes is None:
        raise ValueError(f"{name} must be an int or an iterable of ints, got {forget_classes!r}")
    if isinstance(forget_classes, torch.Tensor) and forget_classes.dim() == 0:
        forget_classes = forget_classes.item()
    if _is_int(forget_classes):
        return [forget_classes]
    try:
        return list(forget_classes)
    except TypeError:
        raise ValueError(f"{name} must be an int or an iterable of ints, got {forget_classes!r}") from None


def validate_forget_classes(forget_classes: Any, num_classes: int, name: str = "forget_classes") -> tuple[int, ...]:
    """An int or an iterable of ints, all in [0, num_classes), no duplicates, not every class -> sorted tuple."""
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    items = _class_items(forget_classes, name)
    if not items:
        raise ValueError(f"{name} is empty; name at least one class to forget (allowed range 0..{num_classes - 1})")
    classes = []
    for c in items:
        if isinstance(c, torch.Tensor) and c.dim() == 0 and not c.dtype.is_floating_point and c.dtype != torch.bool:
            c = c.item()
        if not _is_int(c):
            raise ValueError(f"{name} must contain integers, got {c!r} ({type(c).__name__})")
        classes.append(int(c))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"{name} {bad} out of range; allowed range 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{name} contains duplicates {sorted({c for c in classes if classes.count(c) > 1})}")
    if len(classes) == num_classes:
        raise ValueError(f"{name} names all {num_classes} classes; at least one class must be retained")
    return tuple(sorted(classes))


# ----------------------------------------------------------------------------- finiteness

def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers of `model` that hold NaN or inf (reads only)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return [n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())]


def check_finite_model(model: nn.Module, name: str = "model") -> None:
    """A model whose weights or buffers hold NaN or inf has non-finite outputs: say so, naming them."""
    bad = nonfinite_tensors(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(f"{name}'s outputs are not finite: its weights or buffers hold NaN or inf ({shown}); "
                         "load or train a valid model")

