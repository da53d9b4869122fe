"""One module of argument checks used by every entry point: the library, the CLI and the notebooks.

Each check raises before any work starts, with a message that names the parameter and the allowed values
or form. It imports only torch and numpy (never `dsda.data`), so the source-free method modules use it too.

- `check_choice`, `check_positive`: one value among allowed ones / a positive number.
- `validate_seed`: a non-negative integer (not a bool): 0.9, "0", False and -1 are errors, never coerced.
- `validate_forget_classes`: class ids of one forget task, sorted.
- `nonfinite_tensors`: which weights or buffers of a model hold NaN or inf (the cause, when outputs are not finite).
- `check_notebook_params`: the notebooks' parameters, right after papermill injected them.
- `check_classes`: the classes to synthesise (the order is kept).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

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


# ----------------------------------------------------------------------------- notebook parameters

def _nonneg_int(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _list_of(item: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A test for a non-empty list (or tuple) whose every item passes `item`."""
    return lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(item(x) for x in v)


def _classes(v: Any) -> bool:
    return _list_of(_nonneg_int)(v) and len(set(v)) == len(v)


def _device(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    if v == "auto":
        return True
    try:
        torch.device(v)
    except RuntimeError:
        return False
    return True


# form -> (test, what the message says is allowed); a trailing "?" in a notebook's form also allows None
NOTEBOOK_FORMS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and v != "", "a name (a non-empty string)"),
    "device": (_device, "a device name: 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'"),
    "flag": (lambda v: isinstance(v, bool), "True or False"),
    "positive_int": (lambda v: _is_int(v) and v > 0, "a positive integer"),
    "nonneg_int": (_nonneg_int, "a non-negative integer"),
    "positive_number": (lambda v: _number(v) and v > 0, "a positive number"),
    "fraction": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    # lists (papermill's -p and -r cannot pass them)
    "names": (_list_of(lambda x: isinstance(x, str)), "a non-empty list of names such as ['dsda', 'retrain']"),
    "positive_numbers": (_list_of(lambda x: _number(x) and x > 0),
                         "a non-empty list of positive numbers such as [1e-4, 1e-3]"),
    "classes": (_classes, "a non-empty list of distinct class ids (integers >= 0) such as [3] or [3, 5]"),
    "tasks": (_list_of(lambda t: _nonneg_int(t) or _classes(t)),
              "a non-empty list of forget tasks, each a class id or a list of class ids, such as [[3], [3, 5]]"),
    "seeds": (_list_of(_nonneg_int), "a non-empty list of non-negative integer seeds such as [0] or [0, 1, 2]"),
}
LIST_FORMS = ("names", "positive_numbers", "classes", "tasks", "seeds")


def _form(form: Any) -> tuple[Callable[[Any], bool], str, bool, bool]:
    """(test, description, None allowed, a list expected) of a declared form: a name of NOTEBOOK_FORMS or
    "profile" (with a trailing "?": None allowed too), or a tuple of allowed values (with None: None too)."""
    if isinstance(form, tuple):   # None among the values: None is allowed (and named as the default)
        values = [v for v in form if v is not None]
        return (lambda v: v in values), f"one of {', '.join(map(repr, values))}", None in form, False
    base = form[:-1] if isinstance(form, str) and form.endswith("?") else form
    if base == "profile":
        from .profiles import PROFILES  # at call time: profiles imports utils, which imports this module
        test, what = (lambda v: isinstance(v, str) and v in PROFILES), f"one of {', '.join(map(repr, PROFILES))}"
    elif base in NOTEBOOK_FORMS:
        test, what = NOTEBOOK_FORMS[base]
    else:
        raise ValueError(f"unknown parameter form {form!r}; allowed: a tuple of values, 'profile' or one of "
                         f"{', '.join(NOTEBOOK_FORMS)} (a trailing '?' also allows None)")
    return test, what, base != form, base in LIST_FORMS


def check_notebook_params(namespace: Mapping[str, Any], **forms: Any) -> None:
    """Check a notebook's parameters (`namespace`: its globals()) against their declared forms.

    Called first thing after the parameters cell, so a value papermill injected in the wrong form fails
    before any work, naming the parameter: e.g. `-r forget_classes 10` (the string "10", which `list()`
    would silently turn into the classes [1, 0]) or `-p seeds notalist`.
    """
    for name, form in forms.items():
        if name not in namespace:
            raise ValueError(f"check_notebook_params: the notebook has no parameter {name!r}")
        value = namespace[name]
        test, what, optional, is_list = _form(form)
        if (value is None and optional) or (value is not None and test(value)):
            continue
        hint = (f"; papermill's -p and -r pass one value: give a list as YAML, e.g. -y '{name}: [3, 5]'"
                if is_list and not isinstance(value, (list, tuple)) else "")
        raise ValueError(f"notebook parameter {name}={value!r} is not valid; expected {what}"
                         f"{' or None (the default)' if optional else ''}{hint}")


def check_classes(name: str, classes: Any, num_classes: int) -> list[int]:
    """Classes to synthesise: distinct integer ids in 0..num_classes-1, at least one, in the order given
    (a TypeError for a wrong type, a ValueError for a wrong value)."""
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if _is_int(classes):
        classes = [classes]
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple, range, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of class ids, got {type(classes).__name__}")
    out = []
    for c in classes:
        if not _is_int(c):
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
