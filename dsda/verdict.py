"""The verdict rule, once: is a claim supported by paired results over (task, seed)? (docs/PROTOCOL.md)

A claim compares two things measured on the same (task, seed) pairs, e.g. "A_r of method A exceeds A_r of
method B" or "A_r of A is within 3 points of the oracle's". For each pair i the paired difference is
d_i = a_i - b_i (b may be absent: then d_i = a_i, a comparison with a fixed number). Over the n pairs:

- the mean difference and its 95 % confidence interval: Student's t by default,
  mean +- t_{0.975, n-1} s / sqrt(n) with s the sample standard deviation; or a percentile bootstrap of the
  mean (B resamples of the n pairs with replacement, drawn from a seeded torch.Generator);
- the two-sided Wilcoxon signed-rank p-value of H0 "the differences are symmetric about the threshold"
  (scipy.stats.wilcoxon on d_i - threshold; zero differences are dropped, scipy's default), reported, not
  used by the rule;
- the verdict, by where the interval lies relative to the claim's threshold and side:

  side "greater" (claim: d > threshold): holds if lo > threshold, does not hold if hi < threshold;
  side "less"    (claim: d < threshold): holds if hi < threshold, does not hold if lo > threshold;
  side "within"  (claim: |d| < threshold): holds if -threshold < lo and hi < threshold,
                                           does not hold if lo > threshold or hi < -threshold;
  anything else is "inconclusive". Every verdict is printed with n.

Why t is the default: with the few pairs we have (3 report tasks x 3 seeds = 9, often fewer) the percentile
bootstrap interval is too narrow (it never leaves the range of the observed means; at n = 3 a resample mean
takes only 10 distinct values), so it would call claims "holds" too easily; the t interval is exact for
normal differences and widens properly as n shrinks. The bootstrap is there as a check on skewed data.

Dev tasks (dsda.protocol) never enter a verdict: `paired_verdict` drops them, and says which it dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping

import numpy as np
import torch

SIDES = ("greater", "less", "within")
CI_METHODS = ("t", "bootstrap")
VERDICTS = ("holds", "does not hold", "inconclusive")
LEVEL = 0.95


@dataclass(frozen=True)
class Claim:
    """A comparison with a threshold and a side: d = a - b is claimed > (greater), < (less) or, in absolute
    value, < (within) `threshold`, in the metric's units (percentage points for accuracies)."""
    name: str
    threshold: float = 0.0
    side: str = "greater"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Claim.name must be a non-empty string, got {self.name!r}")
        if self.side not in SIDES:
            raise ValueError(f"Claim.side must be one of {', '.join(map(repr, SIDES))}, got {self.side!r}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"Claim.threshold must be a finite number, got {t!r}")
        if self.side == "within" and not t > 0:
            raise ValueError(f"Claim.threshold must be > 0 for side 'within' (a tolerance), got {t!r}")


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str                      # one of VERDICTS
    n: int                            # pairs used
    mean: float                       # mean paired difference
    ci: tuple[float, float]           # 95 % interval of the mean difference
    ci_method: str                    # "t" or "bootstrap"
    p_wilcoxon: float                 # two-sided, H0: differences symmetric about the threshold
    pairs: tuple = ()                 # the (task, seed) keys used, sorted
    excluded_dev: tuple = field(default=())   # keys dropped because their task is a dev task

    def text(self) -> str:
        """One line: verdict, n, mean difference, interval, p-value."""
        lo, hi = self.ci
        return (f"{self.verdict} (n = {self.n}): mean difference {self.mean:+.3g}, {LEVEL:.0%} {self.ci_method} "
                f"CI [{lo:+.3g}, {hi:+.3g}] vs {self.claim.side} {self.claim.threshold:g}; "
                f"Wilcoxon p = {self.p_wilcoxon:.3g}")


# ----------------------------------------------------------------------------- the pieces

def paired_differences(a: Mapping[Hashable, float], b: Mapping[Hashable, float] | None = None
                       ) -> tuple[tuple, np.ndarray]:
    """(sorted keys, d) with d[i] = a[k_i] - b[k_i] (or a[k_i] without b); unpaired keys or NaN raise."""
    if not isinstance(a, Mapping) or (b is not None and not isinstance(b, Mapping)):
        raise TypeError("a and b must be mappings from (task, seed) to a number (b may be None)")
    if b is not None and set(a) != set(b):
        only_a, only_b = sorted(map(str, set(a) - set(b))), sorted(map(str, set(b) - set(a)))
        raise ValueError(f"a and b must hold the same (task, seed) pairs; only in a: {only_a}, only in b: {only_b}")
    keys = tuple(sorted(a, key=str))
    d = np.array([_number("a", k, a[k]) - (0.0 if b is None else _number("b", k, b[k])) for k in keys])
    return keys, d


def _number(name: str, key: Any, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
        raise ValueError(f"{name}[{key!r}] must be a finite number, got {v!r}")
    return float(v)


def _check_n(d: np.ndarray) -> None:
    if len(d) < 2:
        raise ValueError(f"a verdict needs at least 2 (task, seed) pairs, got n = {len(d)}")


def t_interval(d: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """mean +- t_{(1+level)/2, n-1} s / sqrt(n), s the sample standard deviation (ddof 1)."""
    from scipy import stats
    d = np.asarray(d, dtype=float)
    _check_n(d)
    half = float(stats.t.ppf((1 + level) / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()) - half, float(d.mean()) + half


def bootstrap_interval(d: np.ndarray, level: float = LEVEL, n_boot: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean over `n_boot` resamples (with replacement) drawn from a CPU
    torch.Generator seeded `seed`; quantiles by numpy's default (linear) rule."""
    d = np.asarray(d, dtype=float)
    _check_n(d)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, len(d), (n_boot, len(d)), generator=gen).numpy()
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def wilcoxon_p(d: np.ndarray, threshold: float = 0.0) -> float:
    """Two-sided Wilcoxon signed-rank p-value of d - threshold (scipy); 1.0 when every difference equals the
    threshold (no signed rank at all: no evidence either way)."""
    from scipy import stats
    z = np.asarray(d, dtype=float) - threshold
    _check_n(z)
    if not np.any(z != 0):
        return 1.0
    return float(stats.wilcoxon(z, alternative="two-sided").pvalue)


def decide(claim: Claim, ci: tuple[float, float]) -> str:
    """The rule of the module docstring: where the interval lies relative to the threshold."""
    lo, hi = ci
    t = claim.threshold
    if claim.side == "greater":
        return "holds" if lo > t else "does not hold" if hi < t else "inconclusive"
    if claim.side == "less":
        return "holds" if hi < t else "does not hold" if lo > t else "inconclusive"
    if -t < lo and hi < t:
        return "holds"
    return "does not hold" if lo > t or hi < -t else "inconclusive"


# ----------------------------------------------------------------------------- the verdict

def paired_verdict(claim: Claim, a: Mapping[Hashable, float], b: Mapping[Hashable, float] | None = None, *,
                   profile: Any = None, ci: str = "t", n_boot: int = 10_000, seed: int = 0) -> Verdict:
    """The verdict on `claim` from paired results keyed by (task, seed).

    `profile` (a name or Profile): the pairs whose task is one of its dev tasks (dsda.protocol) are dropped
    first and listed in `excluded_dev`; None keeps every pair (for data with no dev tasks, e.g. tests).
    """
    if not isinstance(claim, Claim):
        raise TypeError(f"claim must be a dsda.verdict.Claim, got {type(claim).__name__}")
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {', '.join(map(repr, CI_METHODS))}, got {ci!r}")
    dropped: tuple = ()
    if profile is not None:
        from .protocol import drop_dev_pairs
        a, b, dropped = drop_dev_pairs(profile, a, b)
    keys, d = paired_differences(a, b)
    interval = t_interval(d) if ci == "t" else bootstrap_interval(d, n_boot=n_boot, seed=seed)
    return Verdict(claim, decide(claim, interval), len(d), float(d.mean()), interval, ci,
                   wilcoxon_p(d, claim.threshold), keys, dropped)


def pairs_from_rows(rows: Iterable[Mapping[str, Any]], label: str, metric: str) -> dict[tuple, float]:
    """{(task, seed): row[metric]} for the rows whose `label` matches (rows as dsda.results.load gives them,
    with keys label, task, seed); two rows for one (task, seed) raise."""
    out: dict[tuple, float] = {}
    for r in rows:
        if r["label"] != label:
            continue
        key = (r["task"], r["seed"])
        if key in out:
            raise ValueError(f"two rows for label {label!r}, task {key[0]!r}, seed {key[1]!r}")
        out[key] = r[metric]
    if not out:
        raise ValueError(f"no row has label {label!r}")
    return out
