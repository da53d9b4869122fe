"""Theorem 3.3: the CAGrad-style multitask direction of DAMO, solved exactly for two or three tasks.

Given task gradients g_1..g_k (k = 2 or 3: L_R, L_F and, with the Circle loss, L_Disc) and weights lambda,
the anchor is g_T = sum_i lambda_i g_i and the update is

    w* = argmin_{w in simplex} g_w . g_T + c ||g_T|| ||g_w||,   g_w = sum_i w_i g_i        # Eq. 10
    d  = g_T + c ||g_T|| g_w* / ||g_w*||                                                   # Thm 3.3

Everything is a function of the k x k Gram matrix G = [g_i . g_j], so a step costs k backward passes plus a
few k x k operations (`simplex_weights` enumerates the stationary points of every face in closed form).
`GradBuffers` holds the k flat gradients in one (k, P) tensor whose rows DAMO fills, and one flat (P,)
tensor that every parameter's .grad is a view of, so writing d there hands it to the optimiser.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn


def _objective(w: np.ndarray, b: np.ndarray, G: np.ndarray, phi: float) -> float:
    """f(w) = w.b + phi sqrt(w^T G w)  (Thm 3.3: g_w . g_T + c ||g_T|| ||g_w||)."""
    return float(w @ b + phi * math.sqrt(max(float(w @ G @ w), 0.0)))


def _edge_candidates(G: np.ndarray, b: np.ndarray, phi: float, i: int, j: int) -> list[float]:
    """Stationary points t in [0, 1] of f on the edge w = (1-t) e_i + t e_j.

    On the edge, ||g_w||^2 = A t^2 + 2 B t + C = A (t - t0)^2 + E with A = ||g_j - g_i||^2 and E >= 0 the
    squared distance of the line {g_i + t (g_j - g_i)} from 0, so f(t) = const + beta t + phi sqrt(A (t-t0)^2 + E)
    with beta = b_j - b_i. f' = 0 gives t = t0 - beta sqrt(E / (A (phi^2 A - beta^2))), a minimum only when
    phi^2 A > beta^2 (otherwise f is monotone on the line). t0 itself (the kink when E = 0) is also returned.
    """
    A = G[i, i] - 2 * G[i, j] + G[j, j]
    if A <= 1e-12:  # g_i == g_j: f is linear along the edge, so its minimum is at a vertex
        return []
    B = G[i, j] - G[i, i]
    t0 = -B / A
    E = max(G[i, i] - B * B / A, 0.0)
    beta = b[j] - b[i]
    out = [t0]
    disc = phi * phi * A - beta * beta
    if disc > 0:
        out.append(t0 - beta * math.sqrt(E / (A * disc)))
    return [t for t in out if 0.0 <= t <= 1.0]


def _interior_candidate(G: np.ndarray, lam: np.ndarray, gT2: float, c: float) -> np.ndarray | None:
    """The KKT point of the full 3-simplex face when G is invertible.

    Stationarity b + phi G w / n = mu 1 with n = sqrt(w^T G w) gives w = (n/phi) G^-1 (mu 1 - b); inserting it in
    w^T G w = n^2 yields the quadratic a mu^2 - 2 s mu + ||g_T||^2 (1 - c^2) = 0 with a = 1^T G^-1 1,
    s = 1^T lambda (G^-1 b = lambda since b = G lambda), and 1^T w = 1 with n > 0 selects the root
    mu = (s + sqrt(s^2 - a ||g_T||^2 (1-c^2))) / a, so w = (mu G^-1 1 - lambda) / sqrt(s^2 - a ||g_T||^2 (1-c^2)).
    When G is singular the face has either a flat direction (then an edge attains the same value) or f is
    unbounded below on the plane (then the minimum is on the boundary), so skipping it loses nothing.
    """
    ev = np.linalg.eigvalsh(G)
    if ev[0] <= 1e-10 * ev[-1]:
        return None
    ginv1 = np.linalg.solve(G, np.ones(len(lam)))
    a = float(ginv1.sum())
    s = float(lam.sum())
    disc = s * s - a * gT2 * (1 - c * c)
    if a <= 0 or disc <= 0:
        return None
    mu = (s + math.sqrt(disc)) / a
    w = (mu * ginv1 - lam) / math.sqrt(disc)
    return w if np.all(w >= -1e-12) else None


def simplex_weights(G: np.ndarray | torch.Tensor, lambdas: Sequence[float], c: float) -> tuple[np.ndarray, float]:
    """Exact argmin over the simplex of f(w) = w.b + c ||g_T|| sqrt(w^T G w), b = G lambda (Thm 3.3).

    G is the k x k Gram matrix (k = 1, 2 or 3) of the task gradients. f is convex, so its minimum lies in the
    relative interior of some face of the simplex, where it is a stationary point of f on that face's affine
    hull. We collect every such point in closed form (vertices, `_edge_candidates`, `_interior_candidate`),
    keep the feasible ones and return the best, with f (in the units of G). Each candidate is a feasible
    point whose value is evaluated exactly, so degenerate G (colinear or zero gradients, rank < k, c = 0)
    can only make a face contribute no candidate, never a wrong one. Ties go to the first candidate.
    """
    G = np.asarray(G.detach().cpu().double() if isinstance(G, torch.Tensor) else G, dtype=np.float64)
    lam = np.asarray(lambdas, dtype=np.float64)
    k = len(lam)
    if G.shape != (k, k) or k not in (1, 2, 3):
        raise ValueError(f"G must be k x k with k = len(lambdas) in (1, 2, 3), got G {G.shape} and {k} lambdas")
    if not 0 <= c < 1:
        raise ValueError(f"c must be in [0, 1), got {c!r}")
    G = (G + G.T) / 2
    scale = float(np.max(np.diag(G)))
    if not math.isfinite(scale):
        raise ValueError("the Gram matrix G has non-finite entries (a loss produced NaN/inf gradients)")
    if scale <= 0:  # every gradient is zero: f == 0 everywhere
        return np.full(k, 1.0 / k), 0.0
    Gn = G / scale  # argmin is invariant to scaling G; this keeps the 3x3 arithmetic well conditioned
    b = Gn @ lam
    gT2 = max(float(lam @ Gn @ lam), 0.0)
    phi = c * math.sqrt(gT2)
    cands = [np.eye(k)[i] for i in range(k)]  # vertices
    if phi > 0:
        for i in range(k):
            for j in range(i + 1, k):
                for t in _edge_candidates(Gn, b, phi, i, j):
                    w = np.zeros(k)
                    w[i], w[j] = 1 - t, t
                    cands.append(w)
        if k == 3:
            w = _interior_candidate(Gn, lam, gT2, c)
            if w is not None:
                cands.append(w)
    cands = [np.clip(w, 0, None) / np.clip(w, 0, None).sum() for w in cands]
    vals = [_objective(w, b, Gn, phi) for w in cands]
    best = int(np.argmin(vals))
    return cands[best], vals[best] * scale


def gradient_stats(G: torch.Tensor | np.ndarray, lambdas: Sequence[float]) -> dict[str, Any]:
    """Conflict diagnostics from the Gram matrix: <g_i, g_T>, whether any is < 0, pairwise cosines, norms."""
    G = np.asarray(G.detach().cpu().double() if isinstance(G, torch.Tensor) else G, dtype=np.float64)
    lam = np.asarray(lambdas, dtype=np.float64)
    b = G @ lam
    norms = np.sqrt(np.clip(np.diag(G), 0, None))
    k = len(lam)
    cos = [float(G[i, j] / (norms[i] * norms[j])) if norms[i] * norms[j] > 0 else 0.0
           for i in range(k) for j in range(i + 1, k)]
    return {"gi_dot_gT": b.tolist(), "conflict": bool(np.any(b < 0)), "cos": cos,
            "g_norms": norms.tolist(), "gT_norm": math.sqrt(max(float(lam @ G @ lam), 0.0))}


def _gram(g: torch.Tensor, k: int) -> np.ndarray:
    if g.dim() != 2 or g.shape[0] != k:
        raise ValueError(f"grads must be (k, P) with k = len(lambdas) = {k}, got {tuple(g.shape)}")
    return (g @ g.T).double().cpu().numpy()


def _apply(g: torch.Tensor, G: np.ndarray, coef: torch.Tensor, out: torch.Tensor | None,
           info: dict[str, Any]) -> torch.Tensor:
    """d = sum_i coef_i g_i (into `out` when given) and its norm from G, recorded in `info`."""
    c64 = coef.numpy()
    info.update(coef=c64.tolist(), d_norm=math.sqrt(max(float(c64 @ G @ c64), 0.0)))
    return torch.mv(g.T, coef.to(g), out=out) if out is not None else torch.mv(g.T, coef.to(g))


def multitask_direction(grads: torch.Tensor | Sequence[torch.Tensor], lambdas: Sequence[float],
                        c: float, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
    """The Theorem 3.3 update direction from k = 2 or 3 flat task gradients.

    grads: a (k, P) tensor or k flat tensors of length P. Returns (d, w, info) with
        g_T = sum_i l_i g_i                                   (anchor)
        w   = argmin_{w in simplex} g_w . g_T + c ||g_T|| ||g_w||  (Eq. 10, exact, `simplex_weights`)
        d   = g_T + c ||g_T|| g_w / ||g_w||                   (Thm 3.3)
    d = g_T when c ||g_T|| = 0 or g_w = 0 (the latter only when 0 lies in the gradients' convex hull; any d
    in the ball is then a primal maximiser only up to degeneracy, and g_T is the natural choice).
    No rescaling by 1/(1+c^2) as in the CAGrad code: the paper does not mention it. `out` (P,), optional:
    where d is written (DAMO passes the flat buffer its parameters' .grad views live in).
    """
    g = grads if isinstance(grads, torch.Tensor) else torch.stack([t.reshape(-1) for t in grads])
    G = _gram(g, len(lambdas))
    w, obj = simplex_weights(G, lambdas, c)
    info = gradient_stats(G, lambdas)
    coef = _direction_coefficients(G, np.asarray(lambdas, dtype=np.float64), w, c)
    info.update(w=w.tolist(), objective=obj, gw_norm=math.sqrt(max(float(w @ G @ w), 0.0)))
    return _apply(g, G, coef, out, info), w, info


def anchor_direction(grads: torch.Tensor, lambdas: Sequence[float],
                     out: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """d = g_T = sum_i l_i g_i, the plain weighted sum (the ablation DSDA-wo-mt of Fig. 4), with the same info."""
    G = _gram(grads, len(lambdas))
    info = gradient_stats(G, lambdas)
    return _apply(grads, G, torch.tensor(list(lambdas), dtype=torch.float64), out, info), info


def _direction_coefficients(G: np.ndarray, lam: np.ndarray, w: np.ndarray, c: float) -> torch.Tensor:
    """d = sum_i coef_i g_i with coef = lambda + c ||g_T|| w / ||g_w||  (Thm 3.3), from the Gram matrix alone."""
    gT = math.sqrt(max(float(lam @ G @ lam), 0.0))
    gw = math.sqrt(max(float(w @ G @ w), 0.0))
    coef = lam.copy()
    if c * gT > 0 and gw > 1e-12 * max(gT, 1e-300):
        coef = coef + (c * gT / gw) * w
    return torch.from_numpy(coef)


# ----------------------------------------------------------------------------- flat gradient buffers

class GradBuffers:
    """Preallocated flat storage: `rows` (k, P) holds the task gradients, `flat` (P,) the update.

    Each parameter's `.grad` is a permanent view into `flat`, so writing d into `flat` hands it to the
    optimiser without any copy or allocation per step.
    """

    def __init__(self, params: Sequence[nn.Parameter], k: int):
        self.params = list(params)
        n = sum(p.numel() for p in self.params)
        dev, dt = self.params[0].device, self.params[0].dtype
        self.rows = torch.zeros(k, n, device=dev, dtype=dt)
        self.flat = torch.zeros(n, device=dev, dtype=dt)
        self._row_views, offs = [], 0
        for p in self.params:
            m = p.numel()
            self._row_views.append(slice(offs, offs + m))
            p.grad = self.flat[offs:offs + m].view_as(p)
            offs += m

    def fill(self, i: int, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """rows[i] <- d loss / d params (one backward pass; unused parameters get 0)."""
        grads = torch.autograd.grad(loss, self.params, retain_graph=retain_graph, allow_unused=True)
        row = self.rows[i]
        for sl, p, g in zip(self._row_views, self.params, grads):
            if g is None:
                row[sl].zero_()
            else:
                row[sl].copy_(g.reshape(-1))
