"""SSD: Selective Synaptic Dampening (Foster, Schoepf, Brintrup, AAAI 2024; arXiv 2308.07707).

Data access: "full" (importances over the whole training split D and over the forget set D_f).

Retraining-free and one-shot (Foster, Schoepf, Brintrup, AAAI 2024, arXiv 2308.07707; if-loops/selective-synaptic-dampening, `ssd.py`):

1. importances = diagonal of the empirical Fisher, estimated as in the reference code: the mean over
   minibatches of the squared gradient of the minibatch-mean cross-entropy,
       I = (1/B) sum_b (d/dtheta  mean_{i in b} CE(f(x_i), y_i))^2        (paper Eq. 2, code calc_importance)
   computed for D (`I_D`) and for D_f (`I_f`), with the model in eval mode (BatchNorm uses its running
   statistics; the code calls `model.eval()` first);
2. select the parameters with  I_f > alpha * I_D                              (paper Eq. 3)
3. multiply each selected parameter by  beta = min(lambda * I_D / I_f, 1)     (paper Eq. 4)

Batches follow the reference code: D is the retain set sorted by class followed by the forget set,
iterated in order (its `full_train_dl` concatenates the class-sorted retain list and the forget list
without shuffling), so each minibatch is essentially single-class; D_f likewise. This makes the
method deterministic: no random draw at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import TensorDataset
from . import _common as C
from .base import Method

# the paper this method comes from (the methods table)
REFERENCE = ("Foster, Schoepf, Brintrup. Fast Machine Unlearning Without Retraining Through Selective "
             "Synaptic Dampening. AAAI 2024 (arXiv 2308.07707)")


@dataclass(frozen=True)
class SSDConfig:
    alpha: float = 10.0          # selection weighting alpha (SSD code: selection_weighting = 10; x0.5 for ViT)
    lam: float = 1.0             # dampening constant lambda (SSD code: dampening_constant = 1)
    batch_size: int = 64         # importance minibatch size (SSD forget_full_class_main.py: -b default 64)
    full_fraction: float = 1.0   # share of D used for I_D, taken with a fixed stride (1.0 = all of D, as SSD);
    #                              ours: SSD's ParameterPerturber ships the same strided subsample_dataset
    progress: bool = False       # tqdm bar over the importance batches

    def __post_init__(self):
        C.check_fields(self, positive_int=("batch_size",), positive=("alpha", "lam"))
        if not 0 < self.full_fraction <= 1:
            raise ValueError(f"SSDConfig.full_fraction must lie in (0, 1], got {self.full_fraction!r}")


# where the defaults come from, and each profile's changes to them (Method.config)
DEFAULTS_SOURCE = ("if-loops/selective-synaptic-dampening (forget_full_class_main.py: alpha=10, lambda=1, "
                   "batch 64; ssd.py: importance = mean squared minibatch gradient)")
PROFILES = {
    "smoke": {"batch_size": 64},
    # ours: the whole 60k-image D at batch 64 takes ~40 s on 2 cores; a strided quarter of D keeps the
    # estimate of the same per-batch mean (every class still represented) at a quarter of the cost
    # alpha: ours, on a validation subset of the train split (benchmarks/tune_baselines.py, forget class 3; val
    # A_f / A_r, original 94.2 / 93.1): alpha 10 selects no parameter at all on this 131k-parameter CNN (94.2 /
    # 93.1, nothing forgotten); 5: 56.3 / 93.1; 4.5: 49.8 / 91.9; 4: 7.1 / 83.8; 3.5: 0.7 / 76.7; 3: 20.1 / 78.3;
    # 1: 30.8 / 30.5 (lam 0.1 changes little). 3.5 is the gentlest that forgets (val A_f <= 5 %).
    "cpu": {"batch_size": 64, "full_fraction": 0.25, "alpha": 3.5},
    # cpu-val: the cpu settings with study ssd's best trial (results/tuning/ssd.sqlite3: trial 12 of 12 distinct
    # points, mean gap to the oracle 14.682 points on the validation split of tuning tasks 3 and 3+5; issue 17;
    # trial 2 repeated trial 0's point and does not count, trial 13 is the 12th point).
    # The best gap still leaves A_f 40 % on class 3: the settings that forget cost A_r far more (trials 3, 6).
    "cpu-val": {"batch_size": 64, "full_fraction": 0.25, "alpha": 0.5814139771119952, "lam": 1.889422786815162},
    "paper": {"batch_size": 64, "alpha": 10.0, "lam": 1.0, "full_fraction": 1.0},
}


def fisher_diagonal(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    device: torch.device, progress: bool = False) -> dict[str, torch.Tensor]:
    """Mean over in-order minibatches of the squared gradient of the batch-mean CE (SSD's calc_importance).

    With batch_size=1 this is the textbook empirical Fisher diagonal (1/N) sum_i g_i^2. The model is
    put in eval mode; its parameters and buffers are not changed (gradients are read, not stored).
    """
    return _fisher(model, [(x, y)], batch_size, device, progress)


def _fisher(model: nn.Module, parts, batch_size: int, device: torch.device, progress: bool,
            index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """`parts` = [(x, y), ...] read as one concatenated sequence (rows `index` of it, in that order)."""
    from tqdm.auto import tqdm

    sizes = [len(y) for _, y in parts]
    offsets = torch.tensor([0] + sizes).cumsum(0)
    index = torch.arange(int(offsets[-1])) if index is None else index
    was = model.training
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in params}
    starts = range(0, len(index), batch_size)
    for i in tqdm(starts, disable=not progress, leave=False, desc="SSD importance"):
        rows = index[i:i + batch_size]
        part = torch.bucketize(rows, offsets[1:], right=True)     # which part each row comes from
        xb = torch.cat([parts[k][0][rows[part == k] - offsets[k]] for k in part.unique().tolist()])
        yb = torch.cat([parts[k][1][rows[part == k] - offsets[k]] for k in part.unique().tolist()])
        loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
        grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        for (n, _), g in zip(params, grads):
            if g is not None:
                imp[n] += g.detach() ** 2
    for n in imp:
        imp[n] /= float(len(starts))     # average over minibatches (code: imp /= len(dataloader))
    model.train(was)
    return imp


@torch.no_grad()
def dampen(model: nn.Module, imp_full: dict[str, torch.Tensor], imp_forget: dict[str, torch.Tensor],
           alpha: float, lam: float) -> dict[str, int]:
    """Eqs. 3-4 in place: theta_i *= min(lam * I_D,i / I_f,i, 1) where I_f,i > alpha * I_D,i.

    Returns the number of dampened entries per parameter tensor. A selected entry always has I_f > 0
    (I_f > alpha * I_D >= 0), so the ratio is finite.
    """
    counts = {}
    for n, p in model.named_parameters():
        if n not in imp_forget:
            continue
        i_d, i_f = imp_full[n], imp_forget[n]
        selected = i_f > alpha * i_d                                # Eq. 3
        beta = torch.where(selected, lam * i_d / torch.where(selected, i_f, torch.ones_like(i_f)),
                           torch.ones_like(i_f)).clamp(max=1.0)     # Eq. 4, bounded by 1
        p.mul_(beta)
        counts[n] = int(selected.sum())
    return counts


def _class_sorted(ds: TensorDataset) -> torch.Tensor:
    return torch.sort(ds.y, stable=True).indices


def run(model, forget_classes, *, config: SSDConfig | None = None, seed: int = 0, device="auto",
        forget: TensorDataset, retain: TensorDataset):
    s = C.setup(model, forget_classes, config, SSDConfig, seed, device, forget=forget, retain=retain)
    cfg, model, dev = s.cfg, s.model.eval(), s.device

    # D = class-sorted retain followed by class-sorted forget, read in order (the reference code's
    # full_train_dl); rows are gathered batch by batch, so the training split is never copied whole
    parts = [(retain.x, retain.y), (forget.x, forget.y)]
    f_order = _class_sorted(forget)
    d_order = torch.cat([_class_sorted(retain), len(retain) + f_order])
    keep = d_order[torch.arange(0, len(d_order), max(1, round(1 / cfg.full_fraction)))]   # strided share of D

    t0 = time.perf_counter()   # the data is ordered, the clock starts
    imp_f = _fisher(model, parts[1:], cfg.batch_size, dev, cfg.progress, index=f_order)
    t1 = time.perf_counter()
    imp_d = _fisher(model, parts, cfg.batch_size, dev, cfg.progress, index=keep)
    t2 = time.perf_counter()
    counts = dampen(model, imp_d, imp_f, cfg.alpha, cfg.lam)
    model.zero_grad(set_to_none=True)
    total = sum(p.numel() for n, p in model.named_parameters() if n in counts)
    n_sel = sum(counts.values())
    report = {
        "config": C.config_dict(cfg),
        "steps": 0,                                   # no optimisation step: a one-shot edit
        "importance_batches": {"forget": -(-len(f_order) // cfg.batch_size),
                               "full": -(-len(keep) // cfg.batch_size)},
        "n_samples": {"forget": len(f_order), "full": len(keep)},
        "n_selected": n_sel, "n_params": total, "selected_fraction": n_sel / max(1, total),
        "selected_per_tensor": counts,
        "time_s": {"importance_forget": t1 - t0, "importance_full": t2 - t1,
                   "dampen": time.perf_counter() - t2},
    }
    return model.eval(), report


METHOD = Method(name="ssd", title="SSD", data_access="full", config_cls=SSDConfig, run=run, reference=REFERENCE,
                defaults_source=DEFAULTS_SOURCE, profile_overrides=PROFILES)
