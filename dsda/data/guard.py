"""The data-access guards: `forbid_data_access(reason)` turns every loader into a `DataAccessError`;
`forbid_split(split, reason)` does so for one split only.

The experiment runner wraps source-free methods in the first to show that they never read data. Every
reader is decorated with `_guarded`; `load_dataset`, `dataset_info('pins')`, archive extraction and
`prepare` call `_check_access` themselves. Tuning (dsda/tune/) runs inside `forbid_split("test", ...)`:
`load_dataset(name, "test")` then raises, for every data set and validation variant (the split guard is
checked by `load_dataset`, the one entry point; the low-level readers such as `read_fashion_mnist` are
not split-aware).
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable, Iterator


class DataAccessError(PermissionError):
    """Raised by every loader while `forbid_data_access` is active."""


_GUARD_LOCK = threading.Lock()
_GUARD_REASONS: list[tuple[object, str]] = []   # process-wide stack of (token, reason)


@contextlib.contextmanager
def forbid_data_access(reason: str) -> Iterator[None]:
    """While active (in any thread of this process), every loader raises DataAccessError(reason).

    Re-entrant: nested guards stack, and leaving an inner one keeps the outer one in force.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason must be a non-empty string, got {reason!r}")
    token = object()
    with _GUARD_LOCK:
        _GUARD_REASONS.append((token, reason))
    try:
        yield
    finally:
        with _GUARD_LOCK:
            # remove our own entry (not simply the last one: threads may exit guards out of order)
            _GUARD_REASONS[:] = [(t, r) for t, r in _GUARD_REASONS if t is not token]


def data_access_forbidden() -> bool:
    with _GUARD_LOCK:
        return bool(_GUARD_REASONS)


def _check_access(what: str) -> None:
    with _GUARD_LOCK:
        reasons = [r for _, r in _GUARD_REASONS]
    if reasons:
        raise DataAccessError(f"data access is forbidden here ({'; '.join(reasons)}); refused: {what}")


def _guarded(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _check_access(f"{fn.__name__}()")
        return fn(*args, **kwargs)
    return wrapper



_SPLIT_GUARDS: list[tuple[object, str, str]] = []   # process-wide stack of (token, split, reason)


@contextlib.contextmanager
def forbid_split(split: str, reason: str) -> Iterator[None]:
    """While active (in any thread of this process), `load_dataset(..., split)` raises DataAccessError(reason)."""
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"split must be a non-empty string such as 'test', got {split!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"reason must be a non-empty string, got {reason!r}")
    token = object()
    with _GUARD_LOCK:
        _SPLIT_GUARDS.append((token, split, reason))
    try:
        yield
    finally:
        with _GUARD_LOCK:
            _SPLIT_GUARDS[:] = [g for g in _SPLIT_GUARDS if g[0] is not token]


def _check_split(what: str, split: str) -> None:
    with _GUARD_LOCK:
        reasons = [r for _, s, r in _SPLIT_GUARDS if s == split]
    if reasons:
        raise DataAccessError(f"the {split!r} split is forbidden here ({'; '.join(reasons)}); refused: {what}")
