"""Stage 2 of DSDA: Discrimination-Aware Multitask Optimisation (DAMO), paper §3.3 (docs/EQUATIONS.md, "DAMO loop").

DAMO fine-tunes a copy of the original model on the synthetic retain set D^_r and the synthetic forget
set D^_f produced by stage 1, with three losses (`dsda.losses`: L_R, L_F, L_Disc) combined by the
Theorem 3.3 direction (`dsda.multitask.multitask_direction`). One step (`_step`):

    L_R on a retain batch, L_F on a forget batch, L_Disc on the retain batch's features
    g_R, g_F, g_Disc <- three backward passes into the rows of one (k, P) buffer
    d <- multitask_direction (Thm 3.3), or g_T when multitask=False (DSDA-wo-mt)
    p.grad <- d; Adam step                                   # "applying d to theta_o iteratively"

The stopping rule (`_check`, `_History.passed`) reads synthetic data only: every `check_every` steps, the
fraction of D^_f predicted as a forget class; stop after `patience` consecutive checks <= `stop_rate`.
The paper gives no optimiser, learning rate or stopping rule; ours are marked "not in the paper". Two
options of ours, used by the cpu recipe: `retain_loss="kd"` and `train_scope` ("all" | "last" | "fc").

This module imports only torch/numpy and dsda's method modules: it never sees real data.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .checks import NonFiniteError, check_finite_model, nonfinite_tensors, validate_seed
from .losses import (circle_center_loss, circle_features, class_centres, forget_loss, forget_teacher,
                     original_similarities, retain_loss, teacher_distribution, teacher_from_logits)
from .modes import eval_logits, kept_modes
from .damo_config import DAMO_FIELDS, OPTIMA, ORIGINS, TRAIN_SCOPES, DamoConfig  # noqa: F401  (re-exported)
from .multitask import GradBuffers, anchor_direction, multitask_direction
from .utils import check_choice, resolve_device


# False: head-only DAMO runs the backbone at every step as before issue 15 (the same weights bit for bit, a test
# checks); kept so benchmarks/dsda_speed.py can time both paths side by side.
FIXED_FEATURES = True


# ----------------------------------------------------------------------------- what DAMO updates and reads

def scope_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    """Parameters DAMO updates: all, the last feature stage plus the classifier head ("last"), or the head."""
    check_choice("train_scope", scope, TRAIN_SCOPES)
    if scope == "all":
        mods = [model]
    else:
        if not hasattr(model, "fc") or (scope == "last" and not hasattr(model, "stages")):
            raise ValueError(f"train_scope={scope!r} needs a dsda.models.Classifier (stages, fc); use 'all'")
        mods = [model.stages[-1], model.fc] if scope == "last" else [model.fc]
    return [p for m in mods for p in m.parameters() if p.requires_grad]


def forget_rate(model: nn.Module, x_f: torch.Tensor, forget_mask: torch.Tensor, batch: int = 512) -> float:
    """Fraction of synthetic forget samples predicted as *any* forget class (the stopping statistic).

    With one forget class this is the accuracy on D^_f; with several it also counts a sample of one forget
    class predicted as another, which the retrained model never does.
    """
    return float(forget_mask[eval_logits(model, x_f, batch).argmax(1)].float().mean())


def fixed_features(model: nn.Module, cfg: DamoConfig, x: torch.Tensor) -> torch.Tensor | None:
    """model.features(x) computed once, for head-only DAMO (ours; issue 15), else None.

    With train_scope="fc" only the head changes and the backbone runs with BatchNorm in eval mode
    (`_set_train_mode`), so the features of the synthetic samples are the same at every step: the head trains
    on them, with no forward or autograd through the backbone per step. Same batches as `eval_logits`, so the
    logits fc(h) equal the model's outputs. None where the backbone would act otherwise in training mode
    (an active dropout module) or for train_scope "all" / "last"."""
    dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())
    if cfg.train_scope != "fc" or dropout or not FIXED_FEATURES:
        return None
    b = cfg.eval_batch_size
    with kept_modes(model), torch.no_grad():
        return torch.cat([model.features(x[i:i + b]) for i in range(0, len(x), b)])


@torch.no_grad()
def head_logits(model: nn.Module, h: torch.Tensor, batch: int) -> torch.Tensor:
    """fc(h) in batches of `batch`, no gradient (the head's logits on fixed features)."""
    return torch.cat([model.fc(h[i:i + batch]) for i in range(0, len(h), batch)])


class _Batches:
    """Endless minibatches of indices 0..n-1: a fresh permutation per pass, drawn from `gen`."""

    def __init__(self, n: int, batch: int, gen: torch.Generator):
        self.n, self.batch, self.gen = n, min(batch, n), gen
        self._perm, self._pos = torch.randperm(n, generator=gen), 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch > self.n:
            self._perm, self._pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self._perm[self._pos:self._pos + self.batch]
        self._pos += self.batch
        return idx


def _set_train_mode(model: nn.Module) -> None:
    """Train mode, but BatchNorm in eval mode. Why: synthetic samples have statistics far from the real data;
    updating BN running statistics on them shifts every real-data activation. BN affine parameters train."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _holdout_split(y: torch.Tensor, frac: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, a random `frac` of the indices goes to the held-out set (at least one stays in training)."""
    train, val = [], []
    for c in y.unique().tolist():
        idx = (y == c).nonzero().flatten().cpu()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = min(int(round(frac * len(idx))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def _check_data(x_r, y_r, x_f, y_f, num_classes: int | None) -> None:
    for name, x, y in (("x_r", x_r, y_r), ("x_f", x_f, y_f)):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"{name} and its labels must be tensors")
        if x.shape[0] == 0 or x.shape[0] != y.shape[0] or y.dim() != 1:
            raise ValueError(f"{name} must be a non-empty batch with one integer label per sample, "
                             f"got {tuple(x.shape)} and labels {tuple(y.shape)}")
        if y.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"labels of {name} must be an integer tensor, got {y.dtype}")
        if num_classes is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"labels of {name} must lie in 0..{num_classes - 1}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} holds NaN or inf values; synthesise it again from a model with finite outputs")
    overlap = set(y_r.unique().tolist()) & set(y_f.unique().tolist())
    if overlap:
        raise ValueError(f"retain and forget labels overlap: classes {sorted(overlap)} appear in both")


def _diverged(step: int, cfg: DamoConfig, what: str) -> str:
    """Where DAMO's numbers became NaN/inf, and what to change."""
    if step == 0:  # before any update the learning rate cannot be the cause
        return (f"DAMO at step 0, before any update: {what}, so the learning rate is not the cause: the model's "
                "outputs or their gradients on the synthetic samples overflow; check the model and the samples")
    updates = f"{step} update" + ("s" if step > 1 else "")
    return (f"DAMO diverged at step {step} (after {updates} with adam, lr={cfg.lr:g}): {what}; "
            f"lower lr (e.g. lr={cfg.lr / 10:g})")


def _raise_if_diverged(rows: torch.Tensor, step: int, cfg: DamoConfig, losses: Sequence[torch.Tensor]) -> None:
    """Stop at the first step whose task gradients hold NaN/inf (before Thm 3.3 would meet them)."""
    if bool(torch.isfinite(rows).all()):
        return
    shown = ", ".join(f"{n} {v.item():.3g}" for n, v in zip(("L_R", "L_F", "L_Disc"), losses))
    raise NonFiniteError(_diverged(step, cfg, f"the losses or their gradients are not finite ({shown})"))


def _raise_if_final_diverged(model: nn.Module, x: torch.Tensor, steps: int, cfg: DamoConfig) -> None:
    """The last update may have diverged unseen (a check on such a model can even pass the stopping rule):
    its weights, then its eval-mode outputs on `x` (read only: no weight, buffer or random draw changes)."""
    bad = nonfinite_tensors(model)
    if not bad and bool(torch.isfinite(eval_logits(model, x, cfg.eval_batch_size)).all()):
        return
    what = f"the parameters {bad[:5]} are not finite" if bad else "the model's outputs are not finite"
    raise NonFiniteError(_diverged(steps, cfg, what))


# ----------------------------------------------------------------------------- set-up, step, check, history

@dataclass
class _State:
    """What the loop reads: the data on the device, the task masks, the Circle-loss terms, the optimiser."""
    x_r: torch.Tensor
    y_r: torch.Tensor
    x_f: torch.Tensor
    y_f: torch.Tensor
    row_of: torch.Tensor                    # class id -> row of its centre (retain classes)
    forget_mask: torch.Tensor               # (K,) True for forget classes
    params: list
    buf: GradBuffers
    opt: torch.optim.Optimizer
    rb: _Batches
    fb: _Batches
    centres: torch.Tensor | None = None
    origin: torch.Tensor | None = None
    o_p: float = 0.0
    o_n: float = 0.0
    teacher: torch.Tensor | None = None
    val: tuple[torch.Tensor, torch.Tensor] | None = None   # held-out part of D^_r (holdout > 0)
    forget_teacher: torch.Tensor | None = None              # target of forget_loss "kd_retain" on D^_f
    forget_temperature: float | None = None                 # its temperature (chosen or fixed)
    h_r: torch.Tensor | None = None                         # fixed features of x_r, x_f (head-only DAMO)
    h_f: torch.Tensor | None = None


def _masks(num_classes: int, retain: list[int], forget: list[int], dev) -> tuple[torch.Tensor, torch.Tensor]:
    row_of = torch.full((num_classes,), -1, dtype=torch.long, device=dev)
    row_of[torch.tensor(retain, device=dev)] = torch.arange(len(retain), device=dev)
    forget_mask = torch.zeros(num_classes, dtype=torch.bool, device=dev)
    forget_mask[torch.tensor(forget, device=dev)] = True
    return row_of, forget_mask


def _circle_terms(model: nn.Module, cfg: DamoConfig, x_r, y_r, retain: list[int], row_of, centres):
    """Centres of the retain classes (the original model's, on D^_r), the origin and the optima of Eq. 7."""
    if centres is None:
        centres = class_centres(model, x_r, y_r, retain, cfg.eval_batch_size, cfg.circle_features)
    centres = centres.detach().clone().to(x_r.device)
    if centres.shape[0] != len(retain):
        raise ValueError(f"centres must have one row per retain class ({len(retain)}), got {tuple(centres.shape)}")
    origin = centres.mean(dim=0) if cfg.origin == "centre_mean" else None
    o_p, o_n = cfg.o_p, cfg.o_n
    if cfg.optima == "original":
        o_p, o_n = original_similarities(model, x_r, row_of[y_r], centres, origin, cfg.eval_batch_size,
                                         cfg.circle_features)
    return centres, origin, o_p, o_n


def _prepare(model, cfg: DamoConfig, x_r, y_r, x_f, y_f, seed: int, centres) -> tuple[_State, list, list]:
    dev = resolve_device(cfg.device)
    model.to(dev)
    num_classes = getattr(model, "num_classes", int(max(y_r.max(), y_f.max())) + 1)
    retain, forget = sorted(y_r.unique().tolist()), sorted(y_f.unique().tolist())
    if cfg.disc and len(retain) < 2:
        raise ValueError("disc=True needs at least two retain classes (Eq. 7 has no negatives otherwise)")
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same batches on every device
    val = None
    if cfg.holdout > 0:
        tr_idx, val_idx = _holdout_split(y_r.cpu(), cfg.holdout, gen)
        val = (x_r[val_idx].to(dev), y_r[val_idx].to(dev))
        x_r, y_r = x_r[tr_idx], y_r[tr_idx]
    x_r, y_r, x_f, y_f = x_r.to(dev), y_r.to(dev).long(), x_f.to(dev), y_f.to(dev).long()
    row_of, forget_mask = _masks(num_classes, retain, forget, dev)
    circle = _circle_terms(model, cfg, x_r, y_r, retain, row_of, centres) if cfg.disc else (None, None, 0.0, 0.0)
    params = scope_parameters(model, cfg.train_scope)
    h_r, h_f = fixed_features(model, cfg, x_r), fixed_features(model, cfg, x_f)
    teacher = _teacher(model, cfg, x_r, h_r, forget_mask) if cfg.retain_loss == "kd" else None
    f_teacher = (forget_teacher(model, x_f, forget_mask, cfg.forget_temperature, cfg.forget_entropy,
                                cfg.eval_batch_size) if cfg.forget_loss == "kd_retain" else (None, None))
    buf = GradBuffers(params, cfg.n_tasks)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rb, fb = _Batches(len(x_r), cfg.batch_retain, gen), _Batches(len(x_f), cfg.batch_forget, gen)
    state = _State(x_r, y_r, x_f, y_f, row_of, forget_mask, params, buf, opt, rb, fb, *circle, teacher, val,
                   *f_teacher, h_r, h_f)
    return state, retain, forget


def _teacher(model: nn.Module, cfg: DamoConfig, x_r, h_r, forget_mask) -> torch.Tensor:
    """The original model's softened retain-class distribution on D^_r (damo runs on a fresh copy)."""
    if h_r is None:
        return teacher_distribution(model, x_r, forget_mask, cfg.kd_temperature, cfg.eval_batch_size)
    return teacher_from_logits(head_logits(model, h_r, cfg.eval_batch_size), forget_mask, cfg.kd_temperature)


def _step(model: nn.Module, cfg: DamoConfig, s: _State, step: int) -> dict[str, Any]:
    """One DAMO step (the loop body, docs/EQUATIONS.md, "DAMO loop"); returns what the history records."""
    dev = s.x_r.device
    ri, fi = s.rb.next().to(dev), s.fb.next().to(dev)
    h_r = model.features(s.x_r[ri]) if s.h_r is None else s.h_r[ri]
    l_r = retain_loss(model.fc(h_r), s.y_r[ri], None if s.teacher is None else s.teacher[ri], cfg.kd_temperature)
    logits_f = model(s.x_f[fi]) if s.h_f is None else model.fc(s.h_f[fi])
    l_f = forget_loss(logits_f, s.y_f[fi], cfg.forget_loss, s.forget_mask, cfg.forget_bound,
                      None if s.forget_teacher is None else s.forget_teacher[fi])
    s.buf.fill(1, l_f)
    pre = cfg.disc and cfg.circle_features == "pre_relu"
    s.buf.fill(0, l_r, retain_graph=cfg.disc and not pre)  # h_r's graph is reused by post-ReLU L_Disc
    l_d = None
    if cfg.disc:   # pre-ReLU features: one more backbone pass on the retain batch
        h_d = circle_features(model, s.x_r[ri], "pre_relu") if pre else h_r
        l_d = circle_center_loss(h_d, s.row_of[s.y_r[ri]], s.centres, cfg.delta, s.o_p, s.o_n, s.origin)
        s.buf.fill(2, l_d)
    _raise_if_diverged(s.buf.rows, step, cfg, (l_r, l_f) if l_d is None else (l_r, l_f, l_d))
    lam = cfg.lambdas[:cfg.n_tasks]
    if cfg.multitask:
        _, w, info = multitask_direction(s.buf.rows, lam, cfg.c, out=s.buf.flat)   # Thm 3.3
    else:  # DSDA-wo-mt: plain weighted sum g_T
        (_, info), w = anchor_direction(s.buf.rows, lam, out=s.buf.flat), None
    s.opt.step()
    return {"loss_retain": l_r.item(), "loss_forget": l_f.item(), "loss_disc": None if l_d is None else l_d.item(),
            "w": None if w is None else [float(v) for v in w], "conflict": info["conflict"], "cos": info["cos"],
            "g_norms": info["g_norms"], "gT_norm": info["gT_norm"], "d_norm": info["d_norm"]}


def _check(model: nn.Module, cfg: DamoConfig, s: _State, step: int, callback) -> tuple[dict[str, Any], float]:
    """The stopping statistic on D^_f (and the held-out retain accuracy); the callback's time is returned apart."""
    if s.h_f is None:
        rate = forget_rate(model, s.x_f, s.forget_mask, cfg.eval_batch_size)
    else:  # the same statistic from the fixed features
        rate = float(s.forget_mask[head_logits(model, s.h_f, cfg.eval_batch_size).argmax(1)].float().mean())
    check = {"step": step, "forget_rate": rate}
    if s.val is not None:
        pred = eval_logits(model, s.val[0], cfg.eval_batch_size).argmax(1)
        check["val_retain_acc"] = float((pred == s.val[1]).float().mean())
    t_cb = 0.0
    if callback is not None:
        t0 = time.perf_counter()
        with kept_modes(model), torch.no_grad():
            out = callback(step, model)
        if out is not None:
            check["callback"] = out
        t_cb = time.perf_counter() - t0
    return check, t_cb


@dataclass
class _History:
    """Per-step records (one list per key) and the checks; `streak` counts consecutive passing checks."""
    records: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "loss_retain", "loss_forget", "loss_disc", "w", "conflict", "cos", "g_norms", "gT_norm", "d_norm")})
    checks: list = field(default_factory=list)
    streak: int = 0

    def add(self, rec: dict[str, Any]) -> None:
        for k, v in rec.items():
            self.records[k].append(v)

    def passed(self, check: dict[str, Any], cfg: DamoConfig) -> bool:
        """Record a check; True once `patience` consecutive checks had forget_rate <= stop_rate."""
        self.checks.append(check)
        self.streak = self.streak + 1 if check["forget_rate"] <= cfg.stop_rate else 0
        return self.streak >= cfg.patience


# ----------------------------------------------------------------------------- the loop

def damo(model: nn.Module, x_r: torch.Tensor, y_r: torch.Tensor, x_f: torch.Tensor, y_f: torch.Tensor,
         config: DamoConfig | None = None, seed: int = 0, centres: torch.Tensor | None = None,
         callback: Callable[[int, nn.Module], Any] | None = None, **overrides) -> dict[str, Any]:
    """Run DAMO in place on `model` (the caller passes a copy of the original) and return the report.

    x_r, y_r: synthetic retain samples and their synthesis labels (D^_r); x_f, y_f: synthetic forget
    samples (D^_f). Retain/forget classes are the label sets of y_r / y_f. `centres` (R, D), rows in the
    sorted order of the retain classes, defaults to `class_centres` of `model` on the training part of D^_r
    (i.e. of the original model when called on a fresh copy). See the module docstring for one step.

    `callback(step, model)`, if given, is called after each check (model in eval mode, no gradient; its
    return value, if not None, is stored in that check's record under "callback"). It lets a caller that
    owns data trace e.g. real-data accuracy against time (paper Fig. 3) without DAMO ever seeing the data;
    the time it takes is excluded from `time_s`. The model is left in eval mode.
    """
    cfg = (config or DamoConfig()).replace(**overrides) if overrides else (config or DamoConfig())
    if not isinstance(cfg, DamoConfig):
        raise TypeError(f"config must be a DamoConfig, got {type(cfg).__name__}")
    seed = validate_seed(seed)
    _check_data(x_r, y_r, x_f, y_f, getattr(model, "num_classes", None))
    check_finite_model(model)
    t_start = time.perf_counter()
    s, retain, forget = _prepare(model, cfg, x_r, y_r, x_f, y_f, seed, centres)
    hist, stop_reason, step, t_callbacks = _History(), "max_steps", 0, 0.0
    from tqdm.auto import tqdm
    bar = tqdm(range(cfg.max_steps), desc="DAMO", disable=not cfg.progress, leave=False)
    _set_train_mode(model)
    for step in bar:
        hist.add(_step(model, cfg, s, step))
        if (step + 1) % cfg.check_every == 0:
            check, t_cb = _check(model, cfg, s, step + 1, callback)
            t_callbacks += t_cb
            bar.set_postfix(forget_rate=check["forget_rate"])
            if hist.passed(check, cfg):
                stop_reason = "forgotten"
                break
    bar.close()
    model.eval()
    _raise_if_final_diverged(model, s.x_f, step + 1, cfg)
    for p in s.params:  # drop the views into our buffer so the caller's model holds no stale gradients
        p.grad = None
    conflicts = hist.records["conflict"]
    return {"config": dataclasses.asdict(cfg), "seed": seed, "steps": step + 1, "stop_reason": stop_reason,
            "retain_classes": retain, "forget_classes": forget, "n_params": s.buf.rows.shape[1],
            "forget_temperature": s.forget_temperature,
            "conflict_rate": float(np.mean(conflicts)) if conflicts else 0.0,
            "time_s": time.perf_counter() - t_start - t_callbacks, **hist.records, "checks": hist.checks}
