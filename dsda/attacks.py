"""The three membership-inference attacks (MIAs) as pure functions of probabilities and labels.

Each lineage's numbers are not comparable with the others' (they differ in feature, attack training data
and in which direction is "good"); `dsda.metrics.evaluate` reports all three. For every attack the
reference is the value of the retrain-from-scratch model on the same data (docs/EQUATIONS.md, "Metric: MIA, three attacks").

- `mia_entropy_lr` (SSD): feature entropy; % of forget-train predicted MEMBER (lower, down to Retrain's).
- `mia_loss_cv` (starting kit / SCRUB): CE loss; 10-fold CV accuracy, forget-train vs forget-class test.
- `mia_confidence_svc` (SalUn "MIA-efficacy"): p_y; % of forget-train predicted NON-member (higher).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .checks import validate_seed
from .utils import check_choice, check_positive

MIA_FEATURES = ("entropy", "m_entropy", "confidence", "loss")

# Smallest normal float32: probabilities come from a float32 softmax, so this clamp only replaces
# exact zeros (underflow) before a log and never changes a representable probability. A larger eps
# (1e-12 is common) would cap the loss at 27.6 and hide differences between strongly forgotten samples.
EPS = float(torch.finfo(torch.float32).tiny)
ROW_SUM_TOL = 1e-3  # rows of a probability matrix must sum to 1 within this (float32 softmax: ~1e-6)


# ----------------------------------------------------------------------------- input checks

def _to_numpy(name: str, a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, (np.ndarray, list, tuple)):
        return np.asarray(a)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(a).__name__}")


def _check_probs(name: str, probs: Any) -> np.ndarray:
    """(N, K) float64 probabilities with N >= 1, K >= 2, entries in [0, 1] and rows summing to 1."""
    p = _to_numpy(name, probs)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array (N, K) of class probabilities with K >= 2, got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one sample, got 0 rows")
    p = p.astype(np.float64)
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or inf")
    if p.min() < -1e-6 or p.max() > 1 + 1e-6 or np.abs(p.sum(1) - 1).max() > ROW_SUM_TOL:
        raise ValueError(f"{name} must hold probabilities (entries in [0, 1], rows summing to 1); "
                         f"pass softmax outputs (predict_proba), not logits")
    return np.clip(p, 0.0, 1.0)


def _check_labels(name: str, labels: Any, n: int, k: int) -> np.ndarray:
    """(N,) int64 class indices in [0, k)."""
    if labels is None:
        raise ValueError(f"{name} is required (the chosen feature depends on the true class)")
    y = _to_numpy(name, labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array with one label per probability row ({n}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"{name} must hold class indices in [0, {k - 1}], got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _probs_and_labels(prefix: str, probs: Any, labels: Any, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    p = _check_probs(f"{prefix}_probs", probs)
    if labels is None and not need_labels:
        return p, None
    return p, _check_labels(f"{prefix}_labels", labels, p.shape[0], p.shape[1])


# ----------------------------------------------------------------------------- attack features

def entropy(probs: Any) -> np.ndarray:
    """Shannon entropy H(p) = -sum_i p_i log p_i (nats) of each row, float64. 0 log 0 = 0."""
    p = _check_probs("probs", probs)
    return -(p * np.log(np.clip(p, EPS, 1.0))).sum(1)


def modified_entropy(probs: Any, labels: Any) -> np.ndarray:
    """Song & Mittal (2021) modified entropy, float64:

        Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)

    It is 0 for a confident correct prediction and grows without bound for a confident wrong one.
    (The copy in SalUn / Unlearn-Sparse / ISPF takes log p_i instead of log(1 - p_i) in the second
    term and indexes the whole label vector; this is the formula as published.)
    """
    p = _check_probs("probs", probs)
    y = _check_labels("labels", labels, p.shape[0], p.shape[1])
    rows = np.arange(p.shape[0])
    p_y = p[rows, y]
    true_term = -(1.0 - p_y) * np.log(np.clip(p_y, EPS, 1.0))
    other = -p * np.log(np.clip(1.0 - p, EPS, 1.0))
    other[rows, y] = 0.0  # the sum runs over i != y
    return true_term + other.sum(1)


def confidence(probs: Any, labels: Any) -> np.ndarray:
    """True-class probability p_y of each row, float64."""
    p = _check_probs("probs", probs)
    y = _check_labels("labels", labels, p.shape[0], p.shape[1])
    return p[np.arange(p.shape[0]), y]


def cross_entropy_loss(probs: Any, labels: Any) -> np.ndarray:
    """Per-sample cross-entropy -log p_y, float64."""
    return -np.log(np.clip(confidence(probs, labels), EPS, 1.0))


def attack_features(probs: Any, labels: Any = None, feature: str = "entropy") -> np.ndarray:
    """(N,) float64 attack feature: 'entropy' (no labels needed), 'm_entropy', 'confidence' or 'loss'."""
    check_choice("feature", feature, MIA_FEATURES)
    if feature == "entropy":
        return entropy(probs)
    fn = {"m_entropy": modified_entropy, "confidence": confidence, "loss": cross_entropy_loss}[feature]
    return fn(probs, labels)


# ----------------------------------------------------------------------------- attack helpers

def _balanced_subsample(a: np.ndarray, b: np.ndarray, cap: int | None,
                        gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random subsets of equal size min(len(a), len(b), cap), drawn with `gen` (order preserved)."""
    n = min(len(a), len(b), cap if cap is not None else len(a))
    ia = torch.randperm(len(a), generator=gen)[:n].sort().values.numpy()
    ib = torch.randperm(len(b), generator=gen)[:n].sort().values.numpy()
    return a[ia], b[ib]


def _attack_set(member: np.ndarray, nonmember: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column feature matrix and labels, 1 = member, 0 = non-member."""
    x = np.concatenate([member, nonmember]).astype(np.float64)[:, None]
    y = np.concatenate([np.ones(len(member), np.int64), np.zeros(len(nonmember), np.int64)])
    return x, y


def _logistic(balanced: bool):
    # Deviation from SSD / the starting kit: the 1-D feature is standardised before the logistic
    # regression. This only helps lbfgs converge (losses reach ~87); with hundreds of samples the
    # L2 penalty on a single weight is negligible, so the fitted threshold is essentially the same.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), LogisticRegression(
        class_weight="balanced" if balanced else None, solver="lbfgs", max_iter=1000, random_state=0))


# ----------------------------------------------------------------------------- (a) SSD entropy LR

def mia_entropy_lr(member_probs: Any, nonmember_probs: Any, target_probs: Any, *,
                   member_labels: Any = None, nonmember_labels: Any = None, target_labels: Any = None,
                   feature: str = "entropy") -> float:
    """Primary MIA (SSD / bad-teaching lineage, the one DSDA cites): % of targets predicted MEMBER.

    A balanced logistic regression (`class_weight="balanced"`) on a 1-D feature (the softmax entropy
    by default) is trained to tell members (label 1) from non-members (label 0); the result is the
    percentage of `target` samples it calls "member". In `evaluate`: members = retain-train samples,
    non-members = the WHOLE test split (forget-class test samples included, as in the SSD code),
    targets = forget-train samples.

    Direction: LOWER = less leakage of the forgotten class; the target value is the retrained
    (retrain-from-scratch) model's value on the same data, which is near 0 for class unlearning.
    Going below the retrained value is not better.

    `feature` is one of 'entropy' (default, SSD), 'm_entropy', 'confidence', 'loss'; all but
    'entropy' need the matching `*_labels`.
    """
    check_choice("feature", feature, MIA_FEATURES)
    need = feature != "entropy"
    sets = {}
    for prefix, probs, labels in (("member", member_probs, member_labels),
                                  ("nonmember", nonmember_probs, nonmember_labels),
                                  ("target", target_probs, target_labels)):
        p, y = _probs_and_labels(prefix, probs, labels, need)
        sets[prefix] = attack_features(p, y, feature)
    x, y = _attack_set(sets["member"], sets["nonmember"])
    clf = _logistic(balanced=True).fit(x, y)
    return 100.0 * float((clf.predict(sets["target"][:, None]) == 1).mean())


# ----------------------------------------------------------------------------- (b) loss LR, CV

def mia_loss_cv(member_probs: Any, member_labels: Any, nonmember_probs: Any, nonmember_labels: Any, *,
                n_splits: int = 10, seed: int = 0) -> float:
    """Loss MIA (NeurIPS'23 starting kit / SCRUB lineage): CV accuracy (%) at telling members apart.

    Feature: per-sample cross-entropy -log p_y. The larger side is subsampled (seeded torch
    generator) so both sides have the same size, then a logistic regression is scored by
    `n_splits`-fold stratified cross-validation (shuffled with `seed`); the mean test-fold accuracy
    is returned in percent.

    In `evaluate`: members = forget-train samples, non-members = test samples OF THE FORGET CLASSES.
    Deviation from the starting kit (forget vs all test samples): for class unlearning that attack
    separates the forget class from the other classes (the unlearned model misclassifies the former
    with high loss), so it measures class identity, not membership. With the same classes on both
    sides it can only succeed if the model treats seen and unseen forget-class samples differently.

    Direction: neither high nor low is good; the ideal is the retrained (retrain-from-scratch)
    model's value on the same data, about 50 since it never saw either side. Clearly above 50 =
    forget-train samples are still recognisable; below the retrained value is no better.
    """
    seed = validate_seed(seed)
    check_positive("n_splits", n_splits)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2 for cross-validation, got {n_splits}")
    m = cross_entropy_loss(*_probs_and_labels("member", member_probs, member_labels, True))
    nm = cross_entropy_loss(*_probs_and_labels("nonmember", nonmember_probs, nonmember_labels, True))
    m, nm = _balanced_subsample(m, nm, None, torch.Generator().manual_seed(seed))
    if len(m) < n_splits:
        raise ValueError(f"mia_loss_cv needs at least n_splits={n_splits} samples on each side after "
                         f"balancing, got {len(m)} (members {len(member_probs)}, non-members {len(nonmember_probs)})")
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    x, y = _attack_set(m, nm)
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return 100.0 * float(cross_val_score(_logistic(balanced=False), x, y, cv=cv, scoring="accuracy").mean())


# ----------------------------------------------------------------------------- (c) SalUn conf. SVC

def mia_confidence_svc(member_probs: Any, member_labels: Any, nonmember_probs: Any, nonmember_labels: Any,
                       target_probs: Any, target_labels: Any) -> float:
    """SalUn "MIA-efficacy": % of targets predicted NON-member by an RBF SVC on confidence p_y.

    SalUn's protocol (its `SVC_MIA` with `shadow_train` = `Subset(retain, range(len(test)))`,
    `shadow_test` = the test set, `target_test` = the forget set, reported as `confidence` x 100):
    the shadow set is the FIRST len(non-members) members in their given order (all of them when there
    are fewer) labelled 1, and every non-member labelled 0; `SVC(C=3, gamma="auto", kernel="rbf")` is
    fitted on the 1-D confidence feature, and the result is the share of targets it calls non-member.
    No random draw is involved, so the value is a function of the probabilities alone. In `evaluate`:
    members = retain-train samples (the profile's fixed evaluation subset, in dataset order),
    non-members = test samples of the retain classes, targets = forget-train samples.

    Differences from SalUn's code: the confidences are float32 softmax outputs as there, but we hand
    them to the SVC as float64 (libsvm computes in double either way); SalUn fails when there are fewer
    members than non-members, we then use every member. An earlier version of this function capped
    each side at a random 5,000 samples: on a nearly saturated confidence the RBF threshold moved with
    the draw (class 3 of the cpu profile, original model: 9.4 to 18.2 over four draws; SalUn's 16.1).

    Direction (OPPOSITE to `mia_entropy_lr`): HIGHER = more forgetting, since it counts forget
    samples that look unseen. The target value is the retrained (retrain-from-scratch) model's
    value on the same data, near 100 for class unlearning.
    """
    m = confidence(*_probs_and_labels("member", member_probs, member_labels, True))
    nm = confidence(*_probs_and_labels("nonmember", nonmember_probs, nonmember_labels, True))
    t = confidence(*_probs_and_labels("target", target_probs, target_labels, True))
    from sklearn.svm import SVC
    x, y = _attack_set(m[:len(nm)], nm)
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * float((clf.predict(t[:, None]) == 0).mean())
