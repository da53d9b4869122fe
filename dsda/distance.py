"""Distance to the retrained model: how close an unlearned model comes to the oracle, in both directions.

The gold standard of class unlearning is the model retrained without the forget classes. Doing "better"
than it on a metric is not better (an MIA below the oracle's is itself a signal an attacker can read), so
`dsda.metrics.evaluate(model, ..., reference=oracle)` adds, through `reference_metrics`:

- `gap_<key>`: signed gaps, unlearned minus reference, in points (`signed_gaps`);
- `avg_abs_gap`: the mean absolute gap over A_f, A_r, A_test and MIA (`average_absolute_gap`);
- `ToW`, `ToW_MIA`: RUM's tug-of-war scores (Zhao et al., NeurIPS 2024), in percent (`tug_of_war`);
- `JS_forget`, `JS_retain`: the mean Jensen-Shannon divergence between the two models' softmax outputs
  on forget-class / retain-class test images (`js_divergence`);
- `pred_dist_forget`, `pred_dist_forget_ref`, `JS_pred_dist`: where the forget-class test images go
  (`prediction_distribution`) and the JS divergence between the two distributions;
- `forgetting`, `forgetting_rule`: over-, under- or matched forgetting (`forgetting_flag`);
- `relearn_steps`, `relearn_steps_ref` (optional): steps of a fixed fine-tuning recipe on forget-class
  train images until A_f recovers 95 % of the original model's (`relearn_steps`).

Every definition is in docs/EQUATIONS.md, "Distance to the retrained model". Pure functions of
probabilities and metric values, except `relearn_steps`, which fine-tunes a copy of a model.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import _check_probs, _to_numpy
from .utils import check_positive

GAP_KEYS = ("A_f", "A_r", "A_f_train", "A_r_train", "A_test", "MIA", "MIA_loss_cv", "MIA_conf_svc")
AVG_GAP_KEYS = ("A_f", "A_r", "A_test", "MIA")       # the "average gap" of the issue: test-split accuracies + MIA
LN2 = math.log(2.0)                                  # the largest JS divergence in nats
RELEARN = {"lr": 1e-3, "batch_size": 64, "max_steps": 200, "target": 0.95}   # the fixed relearn recipe


# ----------------------------------------------------------------------------- gaps and ToW

def _metric(name: str, m: Mapping[str, Any], key: str) -> float:
    if key not in m:
        raise KeyError(f"{name} lacks the metric {key!r} (pass the dict dsda.evaluate returns)")
    return float(m[key])


def signed_gaps(metrics: Mapping[str, Any], reference: Mapping[str, Any],
                keys: Sequence[str] = GAP_KEYS) -> dict[str, float]:
    """{'gap_<key>': metrics[key] - reference[key]} in points: positive = above the retrained model."""
    return {f"gap_{k}": _metric("metrics", metrics, k) - _metric("reference", reference, k) for k in keys}


def average_absolute_gap(gaps: Mapping[str, float], keys: Sequence[str] = AVG_GAP_KEYS) -> float:
    """Mean of |gap| over `keys` (default A_f, A_r, A_test, MIA), in points; NaN if any gap is NaN."""
    return float(np.mean([abs(_metric("gaps", gaps, f"gap_{k}")) for k in keys]))


def tug_of_war(metrics: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, float]:
    """RUM's ToW and ToW-MIA, in percent (100 = indistinguishable from the reference on these numbers).

    ToW     = (1 - |dA_f,train|) (1 - |dA_r,train|) (1 - |dA_test|)
    ToW_MIA = (1 - |dMIA_conf_svc|) (1 - |dA_r,train|) (1 - |dA_test|)
    with each d a gap to the reference as a fraction (points / 100). As in RUM's code, forget and retain
    accuracies are on the (train-split) forget and retain sets, and its MIA is SalUn's MIA-efficacy,
    which is our `MIA_conf_svc`.
    """
    g = signed_gaps(metrics, reference, ("A_f_train", "A_r_train", "A_test", "MIA_conf_svc"))
    term = lambda k: 1.0 - abs(g[f"gap_{k}"]) / 100.0  # noqa: E731
    shared = term("A_r_train") * term("A_test")
    return {"ToW": 100.0 * term("A_f_train") * shared, "ToW_MIA": 100.0 * term("MIA_conf_svc") * shared}


# ----------------------------------------------------------------------------- output distributions

def js_divergence(p: Any, q: Any) -> np.ndarray:
    """Jensen-Shannon divergence of each row pair, natural log (nats, in [0, ln 2]), float64:
    JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2 with m = (p + q) / 2 and 0 log 0 = 0."""
    p, q = _check_probs("p", p), _check_probs("q", q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> np.ndarray:   # where a > 0, m >= a / 2 > 0: the log is finite
        safe = np.where(a > 0, a, 1.0)
        return np.where(a > 0, a * np.log(safe / np.where(a > 0, m, 1.0)), 0.0).sum(axis=1)
    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, LN2)


def mean_js(p: Any, q: Any) -> float:
    """Mean JS divergence (nats) over the rows; NaN for zero rows (an empty group has no images)."""
    if len(p) == 0 and len(q) == 0:
        return math.nan
    return float(js_divergence(p, q).mean())


def prediction_distribution(probs: Any, num_classes: int | None = None) -> list[float]:
    """Fraction of the rows whose top-1 class is c, for c = 0..K-1 (sums to 1); K defaults to the width."""
    p = _check_probs("probs", probs)
    k = p.shape[1] if num_classes is None else check_positive("num_classes", num_classes)
    if k != p.shape[1]:
        raise ValueError(f"num_classes={k} but probs has {p.shape[1]} columns")
    return (np.bincount(p.argmax(axis=1), minlength=k) / p.shape[0]).tolist()


# ----------------------------------------------------------------------------- over / under forgetting

def binomial_se(p_percent: float, n: int) -> float:
    """Standard error (points) of a percentage p measured on n independent images: 100 sqrt(p (1 - p) / n)."""
    check_positive("n", n)
    p = min(max(p_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def default_tolerance(p_percent: float, n: int) -> float:
    """One binomial standard error of the reference's value, but at least one image (100 / n points): at 0 % or
    100 % the standard error is 0, and a difference of a single image is no evidence either way."""
    return max(binomial_se(p_percent, n), 100.0 / n)


def forgetting_flag(metrics: Mapping[str, Any], reference: Mapping[str, Any], n_forget_train: int,
                    n_forget_test: int, tolerance: float | None = None) -> dict[str, Any]:
    """'under' when A_f or MIA lie ABOVE the reference's by more than the tolerance, 'over' when MIA lies
    BELOW it by more, else 'matched' (under wins: a model that still classifies the forget class has not
    over-forgotten, whatever its MIA).

    tolerance: the reference's own spread across seeds in points (one value for both numbers), when
    known; None = `default_tolerance` of the reference's value (one binomial standard error, at least one
    image), MIA on the `n_forget_train` images it is measured on, A_f on the `n_forget_test` images.
    """
    mia, mia_ref = _metric("metrics", metrics, "MIA"), _metric("reference", reference, "MIA")
    a_f, a_f_ref = _metric("metrics", metrics, "A_f"), _metric("reference", reference, "A_f")
    if tolerance is None:
        tol_mia, tol_af = default_tolerance(mia_ref, n_forget_train), default_tolerance(a_f_ref, n_forget_test)
        source = "1 SE, at least 1 image"
    else:
        if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0 (points) or None, got {tolerance!r}")
        tol_mia = tol_af = float(tolerance)
        source = "seed spread"
    if a_f - a_f_ref > tol_af or mia - mia_ref > tol_mia:
        label = "under"
    elif mia_ref - mia > tol_mia:
        label = "over"
    else:
        label = "matched"
    rule = (f"under if A_f - ref > {tol_af:.2f} or MIA - ref > {tol_mia:.2f}; over if ref - MIA > {tol_mia:.2f} "
            f"(tolerance: {source})")
    return {"forgetting": label, "forgetting_rule": rule}


# ----------------------------------------------------------------------------- relearn time

def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    with torch.no_grad():
        pred = torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return 100.0 * float((pred == y).double().mean())


def relearn_steps(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
                  y_eval: torch.Tensor, target: float, *, lr: float = RELEARN["lr"],
                  batch_size: int = RELEARN["batch_size"], max_steps: int = RELEARN["max_steps"], seed: int = 0,
                  device: str | torch.device = "cpu") -> int | None:
    """How many fine-tuning steps a COPY of `model` needs until its accuracy on (x_eval, y_eval) reaches
    `target` percent: Adam(lr), cross-entropy on seeded minibatches of (x_train, y_train), all parameters,
    BatchNorm statistics frozen (eval mode: batches of one class would shift them); accuracy checked after
    every step. 0 if the model is there already; None if `max_steps` steps do not reach it."""
    check_positive("batch_size", batch_size)
    check_positive("max_steps", max_steps)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if len(x_train) == 0 or len(x_eval) == 0:
        raise ValueError("relearn_steps needs at least one training and one evaluation image")
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).eval()   # eval mode throughout: BN statistics stay the model's
    x_tr, y_tr, x_ev, y_ev = x_train.to(dev), y_train.to(dev), x_eval.to(dev), y_eval.to(dev)
    if _accuracy(net, x_ev, y_ev) >= target:
        return 0
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    order, pos = torch.randperm(len(x_tr), generator=gen), 0
    for step in range(1, max_steps + 1):
        if pos + min(batch_size, len(x_tr)) > len(x_tr):
            order, pos = torch.randperm(len(x_tr), generator=gen), 0
        idx = order[pos:pos + batch_size].to(dev)
        pos += batch_size
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x_tr[idx]), y_tr[idx]).backward()
        opt.step()
        if _accuracy(net, x_ev, y_ev) >= target:
            return step
    return None


# ----------------------------------------------------------------------------- everything evaluate adds

def reference_metrics(metrics: Mapping[str, Any], reference: Mapping[str, Any], forget_probs: Any,
                      forget_probs_ref: Any, retain_probs: Any, retain_probs_ref: Any, n_forget_train: int,
                      tolerance: float | None = None) -> dict[str, Any]:
    """The keys `dsda.metrics.evaluate` adds with a reference model (module docstring): `metrics` and
    `reference` are the two models' evaluate dicts, the probabilities their outputs on the forget-class and
    retain-class TEST images (same images, same order)."""
    gaps = signed_gaps(metrics, reference)
    k = _to_numpy("forget_probs", forget_probs).shape[-1]
    dist = prediction_distribution(forget_probs, k) if len(forget_probs) else [math.nan] * k
    dist_ref = prediction_distribution(forget_probs_ref, k) if len(forget_probs_ref) else [math.nan] * k
    js_dist = mean_js([dist], [dist_ref]) if len(forget_probs) else math.nan
    return {**gaps, "avg_abs_gap": average_absolute_gap(gaps), **tug_of_war(metrics, reference),
            "JS_forget": mean_js(forget_probs, forget_probs_ref), "JS_retain": mean_js(retain_probs, retain_probs_ref),
            "pred_dist_forget": dist, "pred_dist_forget_ref": dist_ref, "JS_pred_dist": js_dist,
            **forgetting_flag(metrics, reference, n_forget_train, len(forget_probs), tolerance)}


def evaluation_extras(out: dict, g: Any, model: nn.Module, reference: nn.Module | None, relearn: Any,
                      tolerance: float | None, prof: Any, forget_classes: Sequence[int], seed: int, dev,
                      data: tuple) -> dict[str, Any]:
    """What `dsda.metrics.evaluate` adds with a reference and/or relearn: `out` and `g` are its metrics and
    probability groups, `data` its (train, test, train-subset indices, K). The reference is evaluated the
    same way (its probabilities through the same cache, and its metrics memoised by
    `dsda.metrics.reference_evaluation`, so a second call against the same oracle costs neither its forward
    pass nor its attacks)."""
    from .metrics import _groups, reference_evaluation   # lazy: metrics imports this module lazily too
    train, test, idx, k = data
    extra: dict[str, Any] = {}
    if reference is not None:    # memoised: the same oracle gives the same values without a forward pass
        ref, p_tr, p_te = reference_evaluation(reference, prof, forget_classes, seed, dev, data)
        g_ref = _groups(p_tr, train.y[idx], p_te, test.y, forget_classes, k)
        extra.update(reference_metrics(out, ref, g.forget_test[0], g_ref.forget_test[0], g.retain_test[0],
                                       g_ref.retain_test[0], len(g.forget_train[1]), tolerance))
    if relearn is not False:
        extra.update(relearn_keys(model, reference, relearn, prof, forget_classes, seed, dev, data))
    return extra


def relearn_keys(model: nn.Module, reference: nn.Module | None, relearn: Any, prof: Any,
                 forget_classes: Sequence[int], seed: int, dev, data: tuple) -> dict[str, Any]:
    """`relearn_steps` of the model (and of the reference) until A_f (forget-class test images) reaches
    RELEARN["target"] (95 %) of the original model's A_f, fine-tuning on the forget-class images of the
    evaluated train subset; `relearn` is True (the profile's original model, seed 0) or the original itself."""
    from .metrics import accuracy
    from .train import original_model   # lazy: metrics must stay importable without the training stack
    train, test, idx, _ = data
    original = relearn if isinstance(relearn, nn.Module) else original_model(prof, device=dev, progress=False)
    fc = torch.tensor(sorted(set(int(c) for c in forget_classes)))
    sel_tr, sel_te = torch.isin(train.y[idx], fc), torch.isin(test.y, fc)
    x_tr, y_tr = train.x[idx][sel_tr], train.y[idx][sel_tr]
    x_te, y_te = test.x[sel_te], test.y[sel_te]
    target = RELEARN["target"] * accuracy(original, y_te, x_te, batch_size=prof.eval_batch_size, device=dev)
    steps = lambda m: relearn_steps(m, x_tr, y_tr, x_te, y_te, target, seed=seed, device=dev)  # noqa: E731
    out = {"relearn_steps": steps(model), "relearn_target": target}
    if reference is not None:
        out["relearn_steps_ref"] = steps(reference)
    return out
