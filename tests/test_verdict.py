"""The verdict rule (dsda/verdict.py) on constructed data: each outcome, hand-computed intervals, scipy's Wilcoxon."""
import math

import numpy as np
import pytest

from dsda.verdict import (Claim, bootstrap_interval, decide, paired_differences, paired_verdict, pairs_from_rows,
                          t_interval, wilcoxon_p)


def keyed(values, tasks=("1", "5", "8")):
    """{(task, seed): value}, seeds 0, 1, ... per task, in the order given."""
    n = len(values) // len(tasks)
    return {(t, s): v for (t, s), v in zip(((t, s) for t in tasks for s in range(n)), values)}


def test_t_interval_by_hand():
    # d = 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302652729749462 (table value), half = 4.3027 / sqrt(3)
    lo, hi = t_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729749462 / math.sqrt(3)
    assert lo == pytest.approx(2 - half, abs=1e-12) and hi == pytest.approx(2 + half, abs=1e-12)
    assert (lo, hi) == pytest.approx((-0.4841, 4.4841), abs=1e-4)


def test_wilcoxon_on_a_tiny_case_by_hand():
    # d = 1, 2, 3: all ranks positive, W- = 0; exact P(W- = 0) = 1/2^3, two-sided p = 2/8
    assert wilcoxon_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.25)
    # d = 1, 2, -3: W- = 3 (the rank of 3); two-sided p = 1 (W+ = W- = 3 is the centre of the distribution)
    assert wilcoxon_p(np.array([1.0, 2.0, -3.0])) == pytest.approx(1.0)
    # the threshold is subtracted first: 11, 12, 13 against 10 is the first case
    assert wilcoxon_p(np.array([11.0, 12.0, 13.0]), threshold=10.0) == pytest.approx(0.25)
    assert wilcoxon_p(np.zeros(4)) == 1.0      # no signed rank at all: no evidence


@pytest.mark.parametrize("claim, values, verdict", [
    (Claim("A beats B", 0.0, "greater"), [5.1, 4.9, 5.0, 5.2, 5.05, 4.95], "holds"),
    (Claim("A beats B", 0.0, "greater"), [-5.1, -4.9, -5.0, -5.2, -5.05, -4.95], "does not hold"),
    (Claim("A beats B", 0.0, "greater"), [1.0, -1.0, 2.0, -2.0, 0.5, -0.5], "inconclusive"),
    (Claim("A is cheaper", 0.0, "less"), [-3.0, -2.9, -3.1, -3.05, -2.95, -3.0], "holds"),
    (Claim("A is cheaper", 0.0, "less"), [3.0, 2.9, 3.1, 3.05, 2.95, 3.0], "does not hold"),
    (Claim("A within 3 of oracle", 3.0, "within"), [0.1, -0.2, 0.0, 0.15, -0.1, 0.05], "holds"),
    (Claim("A within 3 of oracle", 3.0, "within"), [-8.0, -8.2, -7.9, -8.1, -8.0, -7.95], "does not hold"),
    (Claim("A within 3 of oracle", 3.0, "within"), [2.0, 4.0, 3.0, 2.5, 3.5, 3.0], "inconclusive"),
    (Claim("A gains at least 1 point", 1.0, "greater"), [0.5, 0.4, 0.6, 0.5, 0.45, 0.55], "does not hold"),
])
def test_each_outcome_on_constructed_data(claim, values, verdict):
    v = paired_verdict(claim, keyed(values))
    assert v.verdict == verdict and v.n == 6 and v.ci_method == "t"
    assert v.mean == pytest.approx(np.mean(values))
    assert f"(n = 6)" in v.text() and verdict in v.text()


def test_paired_difference_of_two_methods():
    a, b = keyed([90.0, 91.0, 92.0]), keyed([89.0, 89.0, 89.0])
    keys, d = paired_differences(a, b)
    assert keys == (("1", 0), ("5", 0), ("8", 0)) and d.tolist() == [1.0, 2.0, 3.0]
    v = paired_verdict(Claim("A > B"), a, b)
    assert v.ci == pytest.approx(t_interval(np.array([1.0, 2.0, 3.0]))) and v.verdict == "inconclusive"
    assert v.p_wilcoxon == pytest.approx(0.25)


def test_decide_is_strict_at_the_threshold():
    assert decide(Claim("x", 0.0, "greater"), (0.0, 1.0)) == "inconclusive"
    assert decide(Claim("x", 0.0, "less"), (-1.0, 0.0)) == "inconclusive"
    assert decide(Claim("x", 1.0, "within"), (-1.0, 0.5)) == "inconclusive"
    assert decide(Claim("x", 1.0, "within"), (1.5, 2.0)) == "does not hold"


def test_bootstrap_is_seeded_and_stays_in_the_data_range():
    d = np.array([0.31, 1.47, 2.03, 4.11, 0.97, 1.62, 2.88])
    first = bootstrap_interval(d, n_boot=2000, seed=3)
    assert first == bootstrap_interval(d, n_boot=2000, seed=3)
    assert first != bootstrap_interval(d, n_boot=2000, seed=4)
    assert d.min() <= first[0] < d.mean() < first[1] <= d.max()
    v = paired_verdict(Claim("x"), keyed([0.5, 1.5, 2.0, 4.0, 1.0, 2.0]), ci="bootstrap", n_boot=2000, seed=3)
    assert v.ci_method == "bootstrap" and v.verdict == "holds"


def test_dev_tasks_never_enter_a_verdict():
    a = {("3", 0): 100.0, ("3+5", 0): -100.0, ("1", 0): 1.0, ("5", 0): 2.0, ("8", 0): 3.0}
    v = paired_verdict(Claim("x"), a, profile="cpu")
    assert v.n == 3 and v.excluded_dev == (("3", 0), ("3+5", 0)) and {k[0] for k in v.pairs} == {"1", "5", "8"}
    v_val = paired_verdict(Claim("x"), a, profile="cpu-val")     # cpu-val shares cpu's dev tasks
    assert v_val.excluded_dev == v.excluded_dev


@pytest.mark.parametrize("a, b, kwargs, match", [
    ({("1", 0): 1.0, ("5", 0): 2.0}, {("1", 0): 1.0, ("8", 0): 2.0}, {}, "same \\(task, seed\\) pairs"),
    ({("1", 0): 1.0}, None, {}, "at least 2"),
    ({("1", 0): 1.0, ("5", 0): float("nan")}, None, {}, "finite number"),
    ({("1", 0): 1.0, ("5", 0): 2.0}, {("1", 0): 1.0, ("5", 0): None}, {}, "finite number"),
    ({("1", 0): 1.0, ("5", 0): 2.0}, None, {"ci": "wald"}, "ci must be one of"),
    ({("1", 0): 1.0, ("5", 0): 2.0}, None, {"ci": "bootstrap", "n_boot": 5}, "n_boot"),
    ({("3", 0): 1.0, ("3+5", 0): 2.0, ("1", 0): 3.0}, None, {"profile": "cpu"}, "at least 2"),
])
def test_bad_input_fails_clearly(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_verdict(Claim("x"), a, b, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": ""}, "name"), ({"name": "x", "side": "above"}, "side must be one of"),
    ({"name": "x", "threshold": float("inf")}, "finite"), ({"name": "x", "threshold": 0.0, "side": "within"}, "> 0"),
])
def test_bad_claims_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Claim(**kwargs)


def test_pairs_from_rows():
    rows = [{"label": "A", "task": "1", "seed": 0, "A_r": 90.0}, {"label": "B", "task": "1", "seed": 0, "A_r": 80.0},
            {"label": "A", "task": "5", "seed": 0, "A_r": 91.0}]
    assert pairs_from_rows(rows, "A", "A_r") == {("1", 0): 90.0, ("5", 0): 91.0}
    with pytest.raises(ValueError, match="two rows"):
        pairs_from_rows(rows + [rows[0]], "A", "A_r")
    with pytest.raises(ValueError, match="no row"):
        pairs_from_rows(rows, "C", "A_r")


# ----------------------------------------------------------------------------- benchmarks/dsda_speed_seeds.py

def _speed_seeds():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "dsda_speed_seeds.py"
    spec = importlib.util.spec_from_file_location("dsda_speed_seeds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shift, expected", [(0.0, "holds"), (-1.0, "does not hold"), (-0.3, "inconclusive")])
def test_speed_seeds_verdicts_follow_the_rule(shift, expected):
    """Issue 15's bar over seeds: after's A_r shifted by `shift` from before's (plus small noise)."""
    noise = [0.02, -0.01, 0.0, 0.03, -0.02, 0.01]
    rows = [{"task": [c], "seed": s, "before": {"A_r": 91.0 + 0.01 * s, "A_f": 0.0},
             "after": {"A_r": 91.0 + shift + noise[2 * s + i], "A_f": 0.5 + 0.1 * i}}
            for s in (0, 1, 2) for i, c in enumerate((1, 5))]
    out = _speed_seeds().verdicts(rows)
    assert out["A_r(after) - A_r(before)"]["verdict"] == expected
    assert out["A_r(after) - A_r(before)"]["n"] == 6
    assert out["A_f(after)"]["verdict"] == "holds"                       # 0.5-0.6 %, below 1 %
    own = out["A_r(before, seed s) - A_r(before, seed 0)"]
    assert own["verdict"] == "holds" and own["n"] == 4 and own["mean"] == pytest.approx(0.015)
