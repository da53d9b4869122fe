"""The adversarial attacks of the baselines, in pixel space (not a method: no `METHOD`, not registered).

The map between a model's normalised inputs and [0, 1] pixels, and the two attacks the baselines use
(L-inf PGD / FGSM for Boundary Shrink, L2 PGD for ADV+IMP), run in pixel space so that radii mean what
the papers mean by them (e.g. "bound 0.1" = 0.1 of the pixel range). Every random draw takes an explicit
CPU `torch.Generator` and is moved to the device afterwards. _common re-exports the three names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..data import TensorDataset


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
