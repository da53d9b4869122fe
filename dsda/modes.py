"""Train/eval flags and gradient flags, saved and restored per module.

`model.train(was)` after a helper that switched to eval mode is wrong whenever some modules were in a
different mode than the root (DAMO keeps BatchNorm frozen in eval mode inside a training model): it sets
every module to `was`. These context managers record each module's own flag and put it back, even on error.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def kept_modes(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Every module in `train` mode (default: eval) for the duration; each module's flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(train)
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration (BatchNorm uses its running statistics and
    autograd builds no graph through the weights); modes and requires_grad flags restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with kept_modes(model):
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


@torch.no_grad()
def eval_logits(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Eval-mode logits in batches of `batch`, no gradient; every module's flag restored afterwards."""
    with kept_modes(model):
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
