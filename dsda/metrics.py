"""Evaluation: accuracies and three membership-inference attacks (MIAs).

The paper (§5, "Metrics"; definitions in docs/EQUATIONS.md, "Metric") reports A_f (accuracy on forget
data, target: the retrained model's 0 %), A_r (accuracy on retain data, higher is better), MIA and the
execution time. It cites the SSD / bad-teaching lineage for MIA, so `MIA` below is that attack; the two
other lineages in use are implemented as well, because their numbers are not comparable with each other
(they differ in feature, attack training data and in which direction is "good"):

- `MIA` = `mia_entropy_lr` (SSD): feature entropy; % of forget-train predicted MEMBER.
  LOWER is better, down to the retrained model's value (near 0).
- `MIA_loss_cv` = `mia_loss_cv` (starting kit / SCRUB): feature CE loss; 10-fold CV accuracy of
  forget-train vs forget-class test. The retrained model's value (about 50) is the ideal.
- `MIA_conf_svc` = `mia_confidence_svc` (SalUn "MIA-efficacy"): feature p_y; % of forget-train
  predicted NON-member. HIGHER is better, up to the retrained model's value (near 100).

For every attack the reference is the value of the retrain-from-scratch model on the same data,
not an absolute ideal: "lower" or "higher" is only better up to the retrained model's value.

Each attack is a pure function of probabilities and labels (so it can be checked on hand-built
cases), with a `*_model` convenience that collects the probabilities itself. `evaluate` runs one
forward pass over the train and test splits and derives every number from those probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from .attacks import (EPS, MIA_FEATURES, ROW_SUM_TOL, _balanced_subsample, _check_labels, _check_probs,  # noqa: F401
                      _probs_and_labels, _to_numpy, attack_features, confidence, cross_entropy_loss, entropy,
                      mia_confidence_svc, mia_entropy_lr, mia_loss_cv, modified_entropy)
from .checks import check_finite_model, validate_seed
from .inference import _channels_last, _model_on, _same_device, predict_logits, predict_proba  # noqa: F401
from .inference import split_probabilities, splits_by_backbone
from .profiles import Profile, get_profile
from .utils import check_positive, resolve_device, state_digest

# ----------------------------------------------------------------------------- predictions (dsda/inference.py)

# ----------------------------------------------------------------------------- accuracy

def _scores(model_or_probs: Any, x: torch.Tensor | None, batch_size: int, device) -> torch.Tensor:
    """Class scores (probabilities or logits) from either a model plus inputs, or given scores."""
    if isinstance(model_or_probs, nn.Module):
        if x is None:
            raise ValueError("x is required when model_or_probs is a model")
        return predict_logits(model_or_probs, x, batch_size, device)
    if x is not None:
        raise ValueError("x must be None when model_or_probs is an array of probabilities or logits")
    s = torch.as_tensor(_to_numpy("model_or_probs", model_or_probs))
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"model_or_probs must be a model or a non-empty (N, K) array of scores, "
                         f"got shape {tuple(s.shape)}")
    return s


def _labels_tensor(y: Any, n: int, k: int) -> torch.Tensor:
    return torch.as_tensor(_check_labels("y", y, n, k))


def accuracy(model_or_probs: Any, y: Any, x: torch.Tensor | None = None, *, batch_size: int = 1024,
             device: str | torch.device = "auto") -> float:
    """Top-1 accuracy in percent, from (N, K) probabilities/logits, or from a model and inputs `x`."""
    s = _scores(model_or_probs, x, batch_size, device)
    y = _labels_tensor(y, s.shape[0], s.shape[1])
    return 100.0 * (s.argmax(1) == y).double().mean().item()


def per_class_accuracy(model_or_probs: Any, y: Any, x: torch.Tensor | None = None, *,
                       num_classes: int | None = None, batch_size: int = 1024,
                       device: str | torch.device = "auto") -> list[float]:
    """Accuracy in percent for each class c = 0..K-1 (over the samples whose label is c).

    A class with no sample in `y` gets NaN (undefined), not 0. K defaults to the score width.
    """
    s = _scores(model_or_probs, x, batch_size, device)
    k = s.shape[1] if num_classes is None else check_positive("num_classes", num_classes)
    y = _labels_tensor(y, s.shape[0], k)
    correct = torch.bincount(y, weights=(s.argmax(1) == y).double(), minlength=k)
    total = torch.bincount(y, minlength=k).double()
    return [100.0 * c / t if t > 0 else math.nan for c, t in zip(correct.tolist(), total.tolist())]


# ----------------------------------------------------------------------------- groups of samples

@dataclass(frozen=True)
class _Groups:
    """Probabilities and labels of the four class/split groups plus the whole test split."""
    forget_train: tuple[torch.Tensor, torch.Tensor]
    retain_train: tuple[torch.Tensor, torch.Tensor]
    forget_test: tuple[torch.Tensor, torch.Tensor]
    retain_test: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def _xy(name: str, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels from a dsda TensorDataset (anything with .x and .y) or an (x, y) pair."""
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"{name} must be a dsda TensorDataset (with .x and .y) or an (x, y) pair, "
                        f"got {type(data).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y):
        raise ValueError(f"{name} must hold tensors x and y of the same length")
    return x, y


def _num_classes(model: nn.Module, num_classes: int | None) -> int:
    k = getattr(model, "num_classes", None) if num_classes is None else num_classes
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (pass it, or use a model with .num_classes), got {k!r}")
    return k


def _groups(p_train: torch.Tensor, y_train: torch.Tensor, p_test: torch.Tensor, y_test: torch.Tensor,
            forget_classes: Sequence[int], num_classes: int) -> _Groups:
    from .data import class_split, validate_forget_classes
    fc = validate_forget_classes(forget_classes, num_classes)
    f_tr, r_tr = class_split(y_train, fc, num_classes)
    f_te, r_te = class_split(y_test, fc, num_classes)
    pick = lambda p, y, idx: (p[idx], y[idx])  # noqa: E731
    return _Groups(pick(p_train, y_train, f_tr), pick(p_train, y_train, r_tr),
                   pick(p_test, y_test, f_te), pick(p_test, y_test, r_te), (p_test, y_test))


def _check_finite_outputs(*probs: torch.Tensor) -> None:
    """Probabilities with NaN would fail later inside an attack, far from the cause: say it here."""
    n_bad, n = sum(int((~torch.isfinite(p)).any(dim=1).sum()) for p in probs), sum(len(p) for p in probs)
    if n_bad:
        raise ValueError(f"the model's outputs are not finite (NaN or inf) on {n_bad} of {n} images although its "
                         "weights and buffers are finite: its forward pass overflows")


def _collect(model: nn.Module, train: Any, test: Any, forget_classes: Sequence[int], num_classes: int | None,
             batch_size: int, device) -> _Groups:
    (x_tr, y_tr), (x_te, y_te) = _xy("train", train), _xy("test", test)
    k = _num_classes(model, num_classes)
    check_finite_model(model)
    p_tr = predict_proba(model, x_tr, batch_size, device)
    p_te = predict_proba(model, x_te, batch_size, device)
    _check_finite_outputs(p_tr, p_te)
    if p_tr.shape[1] != k:
        raise ValueError(f"the model outputs {p_tr.shape[1]} classes but num_classes={k}")
    return _groups(p_tr, y_tr, p_te, y_te, forget_classes, k)


def _mia_a(g: _Groups, feature: str = "entropy") -> float:
    (pm, ym), (pn, yn), (pt, yt) = g.retain_train, g.test, g.forget_train
    return mia_entropy_lr(pm, pn, pt, member_labels=ym, nonmember_labels=yn, target_labels=yt, feature=feature)


def _mia_b(g: _Groups, seed: int) -> float:
    return mia_loss_cv(*g.forget_train, *g.forget_test, seed=seed)


def _mia_c(g: _Groups) -> float:
    return mia_confidence_svc(*g.retain_train, *g.retain_test, *g.forget_train)


# ----------------------------------------------------------------------------- model-level attacks

def mia_entropy_lr_model(model: nn.Module, train: Any, test: Any, forget_classes: Sequence[int], *,
                         feature: str = "entropy", num_classes: int | None = None, batch_size: int = 1024,
                         device: str | torch.device = "auto") -> float:
    """`mia_entropy_lr` on a model: retain-train (member) vs whole test split (non-member), targets
    = forget-train. LOWER = less leakage; target = the retrained model's value (near 0)."""
    return _mia_a(_collect(model, train, test, forget_classes, num_classes, batch_size, device), feature)


def mia_loss_cv_model(model: nn.Module, train: Any, test: Any, forget_classes: Sequence[int], *,
                      seed: int = 0, num_classes: int | None = None, batch_size: int = 1024,
                      device: str | torch.device = "auto") -> float:
    """`mia_loss_cv` on a model: forget-train (member) vs forget-class test (non-member).
    Ideal = the retrained model's value (about 50)."""
    seed = validate_seed(seed)
    return _mia_b(_collect(model, train, test, forget_classes, num_classes, batch_size, device), seed)


def mia_confidence_svc_model(model: nn.Module, train: Any, test: Any, forget_classes: Sequence[int], *,
                             num_classes: int | None = None, batch_size: int = 1024,
                             device: str | torch.device = "auto") -> float:
    """`mia_confidence_svc` on a model: shadow = retain-train vs retain-class test, targets =
    forget-train. HIGHER = more forgetting; target = the retrained model's value (near 100)."""
    return _mia_c(_collect(model, train, test, forget_classes, num_classes, batch_size, device))


# ----------------------------------------------------------------------------- evaluate

def eval_train_subset(y: torch.Tensor, per_class: int | None, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of a fixed subset of a labelled split: `per_class` images of every class (all of a
    class that has fewer), drawn with a seeded generator that does not depend on any model, so every model
    is evaluated on the same images. `per_class=None`: every index."""
    seed = validate_seed(seed)
    if per_class is None:
        return torch.arange(len(y))
    check_positive("per_class", per_class)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    keep = []
    for c in torch.unique(y).tolist():
        keep.append(perm[y[perm] == c][:per_class])
    return torch.cat(keep).sort().values


# Probabilities of recently evaluated models: notebooks evaluate the same original model for several forget tasks,
# and the forward pass is ~90 % of `evaluate` on CPU. Keyed by a hash of the weights and by the identity (and
# in-place version counter) of the image tensors, which each entry holds, so an id cannot be reused while cached.
# Exact: same weights, same images, same device -> same probabilities.
_PROBA_CACHE: "dict[tuple, tuple]" = {}
_PROBA_CACHE_SIZE = 4


def _model_fingerprint(model: nn.Module) -> tuple[str, str]:
    """(class and architecture, SHA-256 of the weights as checkpoints store it)."""
    return f"{type(model).__module__}.{type(model).__qualname__}|{model!r}", state_digest(model.state_dict())


def _images_key(train_x: torch.Tensor, idx: torch.Tensor, test_x: torch.Tensor) -> tuple:
    """Which images an evaluation reads: identity and in-place version of both tensors, and the train subset."""
    return (id(train_x), train_x._version, id(test_x), test_x._version, hash(idx.numpy().tobytes()), len(idx))


def _cached_proba(model: nn.Module, train_x: torch.Tensor, idx: torch.Tensor, test_x: torch.Tensor,
                  batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities on train_x[idx], probabilities on test_x), from the cache when possible."""
    images = _images_key(train_x, idx, test_x)
    # CPU sums depend on the thread count, so probabilities computed with other threads are not reused
    key = (_model_fingerprint(model), *images, batch_size, str(device), torch.get_num_threads())
    hit = _PROBA_CACHE.pop(key, None)
    if hit is None or hit[0] is not train_x or hit[1] is not test_x:
        if splits_by_backbone(model):   # same values; the backbone's features may be cached (dsda/inference.py)
            p_tr, p_te = split_probabilities(model, lambda: (train_x[idx], test_x), images, (train_x, test_x),
                                             batch_size, device)
        else:
            p_tr, p_te = predict_proba(model, train_x[idx], batch_size, device), predict_proba(model, test_x,
                                                                                            batch_size, device)
        hit = (train_x, test_x, p_tr, p_te)
    _PROBA_CACHE[key] = hit                                 # most recently used last
    while len(_PROBA_CACHE) > _PROBA_CACHE_SIZE:
        _PROBA_CACHE.pop(next(iter(_PROBA_CACHE)))
    return hit[2], hit[3]


# Metrics of recent references (retrained oracles): the sweep and the notebooks evaluate many unlearned models
# against the same oracle of a (task, seed), and each `evaluate(..., reference=oracle)` would otherwise refit the
# oracle's attacks (the SalUn SVC alone is ~2/3 of an evaluate on cpu). Exact: the key holds everything the
# oracle's metrics depend on (weights, profile, forget classes, seed, device, torch threads, the backbone-cache
# switch); callers get copies. `REFERENCE_CACHE = False` recomputes them every time (benchmarks/evaluate_speed.py).
REFERENCE_CACHE = True
_REFERENCE_METRICS: "dict[tuple, dict]" = {}
_REFERENCE_METRICS_SIZE = 8


def reference_evaluation(reference: nn.Module, prof: Profile, forget_classes: Sequence[int], seed: int,
                         device: torch.device, data: tuple) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """(`evaluate(reference, prof, forget_classes, device, seed)`, its probabilities on the train subset and on the
    test split), memoised; `data` = evaluate's (train, test, train-subset indices, K)."""
    import copy

    from . import inference
    train, test, idx, _ = data

    def fresh():
        out = evaluate(reference, prof, forget_classes, device=device, seed=seed)
        return (out, *_cached_proba(reference, train.x, idx, test.x, prof.eval_batch_size, device))  # a cache hit
    if not REFERENCE_CACHE:
        return fresh()
    key = (_model_fingerprint(reference), prof.name, tuple(int(c) for c in forget_classes), seed, str(device),
           torch.get_num_threads(), inference.BACKBONE_CACHE, _images_key(train.x, idx, test.x))
    hit = _REFERENCE_METRICS.pop(key, None)
    if hit is None or hit[0] is not train.x or hit[1] is not test.x:   # the entry holds its images: ids stay unique
        hit = (train.x, test.x, fresh())
    _REFERENCE_METRICS[key] = hit                            # most recently used last
    while len(_REFERENCE_METRICS) > _REFERENCE_METRICS_SIZE:
        _REFERENCE_METRICS.pop(next(iter(_REFERENCE_METRICS)))
    out, p_tr, p_te = hit[2]
    return copy.deepcopy(out), p_tr, p_te


def evaluate(model: nn.Module, profile: str | Profile, forget_classes: Sequence[int],
             device: str | torch.device = "auto", seed: int = 0, reference: nn.Module | None = None,
             relearn: bool | nn.Module = False, tolerance: float | None = None) -> dict[str, Any]:
    """All metrics of one model for one forget set, as floats in percent.

    One forward pass over the profile's test split and its train split (batch size
    `profile.eval_batch_size`); the model is not modified (modes restored, inference mode). Train-split
    numbers use a fixed seeded subset of `profile.eval_train_per_class` images per class when the profile
    sets one (cpu: 1,000 of ~6,000 per class, for speed), else the whole split. Keys:

    - `A_f`, `A_r`: accuracy on the forget-class / retain-class TEST samples (paper's A_f / A_r; the test
      split as SSD uses it, docs/EQUATIONS.md, "A_f and A_r"). A_f target = retrain (0); A_r higher.
    - `A_f_train`, `A_r_train`: the same on the (subset of the) train split.
    - `A_test`: accuracy on the whole test split; `per_class_test`: list of per-class test accuracies.
    - `MIA`: `mia_entropy_lr` (the paper's metric; lower, target = retrain).
    - `MIA_loss_cv`: `mia_loss_cv` (target = retrain, about 50).
    - `MIA_conf_svc`: `mia_confidence_svc`, SalUn's protocol (higher, target = retrain).
    - `n_train_eval`: how many train images the train-split numbers used.

    With `reference` (the retrained oracle of the same task and seed) it adds the distance to it
    (`dsda.distance.reference_metrics`: signed gaps `gap_*`, `avg_abs_gap`, `ToW`, `ToW_MIA`, `JS_forget`,
    `JS_retain` (Jensen-Shannon divergence in nats, natural log), `pred_dist_forget`, `pred_dist_forget_ref`,
    `JS_pred_dist`, `forgetting`, `forgetting_rule`; `tolerance` = the reference's spread across seeds, if
    known, for the over/under flag). `relearn=True` (or the original model itself; True loads the profile's
    original, seed 0) adds `relearn_steps` (and `relearn_steps_ref` with a reference): steps of
    `dsda.distance.relearn_steps`'s fixed recipe until A_f is back at 95 % of the original's; seconds on cpu,
    so off by default. docs/EQUATIONS.md, "Distance to the retrained model".

    The probabilities of the last few models are kept in memory (keyed by a hash of the weights), so
    evaluating one model for several forget tasks costs one forward pass.
    """
    from .data import load_dataset
    _check_reference_args(reference, relearn)
    seed = validate_seed(seed)
    prof = get_profile(profile)
    train, test = load_dataset(prof.dataset, "train"), load_dataset(prof.dataset, "test")
    k = int(train.info.num_classes)
    model_k = getattr(model, "num_classes", k)
    if model_k != k:
        raise ValueError(f"model has num_classes={model_k} but dataset {prof.dataset!r} has {k} classes")
    idx = eval_train_subset(train.y, prof.eval_train_per_class)
    y_tr = train.y[idx]
    dev = resolve_device(device)
    check_finite_model(model)
    p_tr, p_te = _cached_proba(model, train.x, idx, test.x, prof.eval_batch_size, dev)
    _check_finite_outputs(p_tr, p_te)
    if p_tr.shape[1] != k:
        raise ValueError(f"the model outputs {p_tr.shape[1]} classes but num_classes={k}")
    g = _groups(p_tr, y_tr, p_te, test.y, forget_classes, k)
    acc = lambda group: accuracy(*group) if len(group[1]) else math.nan  # noqa: E731
    out = {
        "A_f": acc(g.forget_test), "A_r": acc(g.retain_test),
        "A_f_train": acc(g.forget_train), "A_r_train": acc(g.retain_train),
        "MIA": _mia_a(g), "MIA_loss_cv": _mia_b(g, seed), "MIA_conf_svc": _mia_c(g),
        "A_test": accuracy(*g.test), "per_class_test": per_class_accuracy(*g.test, num_classes=k),
        "n_train_eval": int(len(idx)),
    }
    if reference is not None or relearn is not False:   # docs/EQUATIONS.md, "Distance to the retrained model"
        from .distance import evaluation_extras
        out.update(evaluation_extras(out, g, model, reference, relearn, tolerance, prof, forget_classes, seed, dev,
                                     (train, test, idx, k)))
    return out


def _check_reference_args(reference: Any, relearn: Any) -> None:
    if reference is not None and not isinstance(reference, nn.Module):
        raise TypeError(f"reference must be a model (the retrained oracle) or None, got {type(reference).__name__}")
    if not isinstance(relearn, (bool, nn.Module)):
        raise TypeError(f"relearn must be True, False or the original model, got {type(relearn).__name__}")
