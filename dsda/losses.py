"""The three losses of DAMO (paper §3.3) and what they need: class centres and the teacher distribution.

- `retain_loss`        L_R    cross-entropy on synthetic retain samples with their synthesis labels, or (ours,
                              `retain_loss="kd"`) distillation of the original model's retain-class outputs;
- `forget_loss`        L_F    the paper's definition did not survive (docs/EQUATIONS.md); four candidates, one of
                              them (`"kd_retain"`, ours) distils a retrained-like target, `forget_teacher`;
- `circle_center_loss` L_Disc the class-centre Circle loss of Eq. 7 on `model.features(x)`, with the centres
                              of `class_centres` and, optionally, the optima of `original_similarities`.

Pure functions of tensors (plus the model for the no-grad helpers); no data is read here.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modes import eval_logits, kept_modes
from .utils import check_choice

FORGET_LOSSES = ("neg_ce_bounded", "relabel_nearest", "kl_uniform", "kd_retain")
RETAIN_LOSSES = ("ce", "kd")


def retain_loss(logits: torch.Tensor, y: torch.Tensor, teacher_p: torch.Tensor | None = None,
                temperature: float = 4.0) -> torch.Tensor:
    """L_R on synthetic retain samples.

    Without `teacher_p`: cross-entropy with the labels they were synthesised for (the paper's L_R).
    With `teacher_p` (retain_loss="kd", ours): T^2 KL(q_T || p_T), q_T = the ORIGINAL model's temperature-T
    distribution renormalised over the retain classes (`teacher_p`, probabilities, 0 on forget classes), p_T the
    current model's. Why: AEGDS samples sit at the energy minimum, so their CE is ~0 and gives almost no
    gradient until the model has already drifted; the softened teacher keeps the original's whole ranking of
    the retain classes (its "dark knowledge") while asking for zero mass on the forget classes, as the
    retrained model has.
    """
    if teacher_p is None:
        return F.cross_entropy(logits, y)
    # kl_div takes 0 log 0 = 0, so the forget classes' zero targets are fine
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), teacher_p, reduction="batchmean") * temperature ** 2


def teacher_distribution(model: nn.Module, x: torch.Tensor, forget_mask: torch.Tensor, temperature: float,
                         batch: int = 512) -> torch.Tensor:
    """The model's temperature-softened class distribution on `x`, renormalised over the retain classes."""
    return teacher_from_logits(eval_logits(model, x, batch), forget_mask, temperature)


def teacher_from_logits(logits: torch.Tensor, forget_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """`teacher_distribution` from the logits themselves (head-only DAMO computes them from fixed features)."""
    logits = logits / temperature
    return torch.softmax(logits.masked_fill(forget_mask, float("-inf")), dim=1)


def forget_loss(logits: torch.Tensor, y: torch.Tensor, kind: str, forget_mask: torch.Tensor,
                bound: float = 10.0, teacher_p: torch.Tensor | None = None) -> torch.Tensor:
    """L_F on synthetic forget samples (the paper names L_F but its definition did not survive; four candidates).

    - "neg_ce_bounded": -min(CE_F(x), bound) per sample, CE_F = -log sum_{c in C_f} p(c | x) (gradient ascent
      on the cross-entropy of the forget *set*, capped so a sample already far from it stops pulling; the loss
      is bounded below by -bound). With one forget class this is -min(CE(x, y), bound). With several, ascending
      each sample's own CE lets the mass move from one forget class to another (we measured forget classes
      3 and 5 trading samples and DAMO needing ~200 steps instead of ~30), so the whole set is the target;
    - "relabel_nearest": CE towards the highest-scoring retain class of the current model (detached);
    - "kl_uniform": KL(u || p) with u uniform over the *retain* classes. Deviation: uniform over all K
      classes would leave the forget class tied for the argmax, so A_f would not reach 0.
    - "kd_retain" (ours): KL(q || p) with q = `teacher_p`, the ORIGINAL model's temperature-T distribution
      renormalised over the retain classes (`forget_teacher`), p the current model's (T = 1): the output a
      model that never saw the forget classes would plausibly give, not merely a low forget-class score.
    `forget_mask` is a bool tensor of length K, True for forget classes.
    """
    check_choice("kind", kind, FORGET_LOSSES)
    if kind == "kd_retain":
        if teacher_p is None:
            raise ValueError("forget_loss kind='kd_retain' needs teacher_p (dsda.losses.forget_teacher)")
        return F.kl_div(F.log_softmax(logits, dim=1), teacher_p, reduction="batchmean")   # 0 log 0 = 0
    if kind == "neg_ce_bounded":
        ce_set = logits.logsumexp(dim=1) - logits[:, forget_mask].logsumexp(dim=1)  # -log p(C_f | x)
        return -ce_set.clamp(max=bound).mean()
    if kind == "relabel_nearest":
        target = logits.detach().masked_fill(forget_mask, float("-inf")).argmax(dim=1)
        return F.cross_entropy(logits, target)
    logp = F.log_softmax(logits, dim=1)[:, ~forget_mask]  # kl_uniform
    r = logp.shape[1]
    return -(logp.mean(dim=1) + math.log(r)).mean()


def retain_entropy(logits: torch.Tensor, forget_mask: torch.Tensor, temperature: float) -> float:
    """Mean entropy (nats) of softmax(logits / T) renormalised over the retain classes."""
    logp = torch.log_softmax((logits / temperature).masked_fill(forget_mask, float("-inf")), dim=1)
    p = logp.exp()
    return float(-(p * logp.masked_fill(forget_mask, 0.0)).sum(dim=1).mean())


def entropy_matched_temperature(logits: torch.Tensor, forget_mask: torch.Tensor, target: float,
                                bounds: tuple[float, float] = (0.05, 20.0), iters: int = 60) -> float:
    """The temperature T at which `retain_entropy(logits, forget_mask, T)` equals `target` nats (ours).

    Each row's entropy grows with T (from 0 towards log R, R retain classes), so the mean does too and a
    bisection on log T finds it; a target outside the range reached within `bounds` gives the nearer bound.
    Reads only the given logits (in DAMO: the original model's, on the synthetic forget samples)."""
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    for _ in range(iters):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if retain_entropy(logits, forget_mask, math.exp(mid)) < target else (lo, mid)
    return math.exp((lo + hi) / 2.0)


def forget_teacher(model: nn.Module, x_f: torch.Tensor, forget_mask: torch.Tensor, temperature: float,
                   target_entropy: float | None = None, batch: int = 512) -> tuple[torch.Tensor, float]:
    """(q, T) for forget_loss "kd_retain": the model's distribution on the synthetic forget samples `x_f` at
    temperature T, renormalised over the retain classes. T = `temperature`, or, with `target_entropy`, the
    T at which q's mean entropy is that many nats (`entropy_matched_temperature`): a criterion on synthetic
    data only, so the method stays source-free and needs no reference model."""
    logits = eval_logits(model, x_f, batch)
    if target_entropy is not None:
        temperature = entropy_matched_temperature(logits, forget_mask, target_entropy)
    return torch.softmax((logits / temperature).masked_fill(forget_mask, float("-inf")), dim=1), float(temperature)


def circle_center_loss(features: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor,
                       delta: float = 64.0, o_p: float = 1.25, o_n: float = -0.25,
                       origin: torch.Tensor | None = None) -> torch.Tensor:
    """L_Disc, Eq. 7: Circle loss with one positive (own-class centre) and the other centres as negatives.

    `labels` index the rows of `centres` (R retain-class centres, D dims). Per sample i of class y:
        s_p = cos(c_y, h_i), s_n^j = cos(c_j, h_i) for j != y,
        alpha_p = [O_p - s_p]_+, alpha_n^j = [s_n^j - O_n]_+          (detached, as in Circle loss)
        loss_i = log(1 + sum_j exp(delta alpha_n^j s_n^j) exp(-delta alpha_p s_p))       # Eq. 7
    computed stably as softplus(logsumexp_j(delta alpha_n^j s_n^j) - delta alpha_p s_p); mean over i.

    `origin` (D,), deviation, optional: measure the cosines from this point instead of from zero, i.e.
    cos(c_j - o, normalize(h_i) - o). Post-ReLU, mean-pooled features lie in the positive orthant, so every
    cosine measured from zero is >= 0 and O_n = -0.25 is unreachable: the loss never saturates and keeps
    reshaping the features (we measured the retain accuracy collapse). From the mean of the centres the
    cosines span [-1, 1] as Circle loss assumes.
    """
    if centres.shape[0] < 2:
        raise ValueError("circle_center_loss needs at least two centres (one positive, one negative)")
    if origin is not None:
        features, centres = F.normalize(features, dim=1) - origin, centres - origin
    s = F.normalize(features, dim=1) @ F.normalize(centres, dim=1).T  # (N, R) cosine similarities
    pos = F.one_hot(labels, centres.shape[0]).bool()
    s_p = s[pos]                                                       # (N,)
    s_n = s[~pos].view(s.shape[0], -1)                                 # (N, R-1)
    a_p = (o_p - s_p.detach()).clamp_min(0)
    a_n = (s_n.detach() - o_n).clamp_min(0)
    return F.softplus(torch.logsumexp(delta * a_n * s_n, dim=1) - delta * a_p * s_p).mean()


def circle_features(model: nn.Module, x: torch.Tensor, which: str = "post_relu") -> torch.Tensor:
    """The features L_Disc reads: `model.features(x)` ("post_relu", as the paper's feature extractor) or
    `model.pre_relu_features(x)` ("pre_relu", ours: before the last ReLU the cosines take both signs, so the
    Circle loss's negative optimum O_n < 0 becomes reachable)."""
    if which == "pre_relu":
        return model.pre_relu_features(x)
    if which != "post_relu":
        raise ValueError(f"circle_features={which!r} is not valid; allowed: 'post_relu', 'pre_relu'")
    return model.features(x)


@torch.no_grad()
def original_similarities(model: nn.Module, x: torch.Tensor, rows: torch.Tensor, centres: torch.Tensor,
                          origin: torch.Tensor | None = None, batch_size: int = 512,
                          features: str = "post_relu") -> tuple[float, float]:
    """Mean s_p and mean s_n of Eq. 7 under `model` (the original, before DAMO) on D^_r.

    Used as O_p, O_n with `optima="original"` (deviation, ours): with the Circle-loss optima 1.25 / -0.25 the
    loss is far from its optimum on the original model and, DAMO's retain cross-entropy being near zero on
    synthetic data, its gradient dominates and reshapes the features; we measured retain accuracy falling
    by 12-25 points on Fashion-MNIST. With the original model's own similarities as optima, L_Disc is near
    zero at the start and pushes back only where forgetting erodes the class structure."""
    sp, sn, n = 0.0, 0.0, 0
    with kept_modes(model):
        for i in range(0, len(x), batch_size):
            h = F.normalize(circle_features(model, x[i:i + batch_size], features), dim=1)
            c = centres
            if origin is not None:
                h, c = h - origin, centres - origin
            s = F.normalize(h, dim=1) @ F.normalize(c, dim=1).T
            pos = F.one_hot(rows[i:i + batch_size], centres.shape[0]).bool()
            sp += float(s[pos].sum())
            sn += float(s[~pos].sum()) / (centres.shape[0] - 1)
            n += len(h)
    return sp / n, sn / n


@torch.no_grad()
def class_centres(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int],
                  batch_size: int = 512, features: str = "post_relu") -> torch.Tensor:
    """Centre c_i of each class in `classes`: mean of the L2-normalised features `model.features(x)` (the
    paper's "class centre" of §3.3, read as the mean normalised feature), computed in eval mode without
    gradients. Returns (len(classes), D), rows normalised."""
    with kept_modes(model):
        feats = torch.cat([F.normalize(circle_features(model, x[i:i + batch_size], features), dim=1)
                           for i in range(0, x.shape[0], batch_size)])
    rows = []
    for c in classes:
        sel = y == c
        if not bool(sel.any()):
            raise ValueError(f"class {c} has no synthetic samples; cannot compute its centre")
        rows.append(feats[sel].mean(dim=0))
    return F.normalize(torch.stack(rows), dim=1)
