"""The energy of a frozen classifier and its score, the quantities AEGDS samples with (paper §3.2).

    E(x, y) = -log softmax(f(x))[y]                                   # Eq. 1
    s(x, y) = -grad_x E(x, y)                                         # the score Langevin dynamics follows

The model is only read: it runs frozen (eval mode, no parameter gradients; `dsda.modes.frozen`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modes import frozen

ScoreFn = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]"]


def energy_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -log softmax(f(x))[y] from the logits f(x), in float32.   # Eq. 1"""
    return -F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)


def _check_xy(x: Any, y: Any) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != x.shape[:1]:
        raise TypeError(f"y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")


def energy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) energies E(x, y) of the frozen model in eval mode (no gradient)."""
    _check_xy(x, y)
    with frozen(model), torch.no_grad():
        return energy_from_logits(model(x), y)


def model_score_fn(model: nn.Module, y: torch.Tensor) -> ScoreFn:
    """s(x) for a model already frozen: one forward and ONE backward for the whole batch. `rows`, optional:
    x holds the samples y[rows] (the chains that still move, dsda/chains.py)."""
    def score_fn(x: torch.Tensor, rows: torch.Tensor | None = None):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            e = energy_from_logits(logits, y if rows is None else y[rows])   # Eq. 1, float32
            (g,) = torch.autograd.grad(e.sum(), x)                 # samples are independent: one pass
        return g.neg_(), e.detach(), logits.detach()               # s = -grad_x E

    return score_fn


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, E, logits) for the whole batch: s = -grad_x E(x, y) (one backward pass, gradient w.r.t.
    x only), E (N,) and the logits (N, K), all detached. The model is frozen for the call."""
    _check_xy(x, y)
    with frozen(model):
        return model_score_fn(model, y)(x)
