"""Distance to the retrained model (dsda/distance.py): every definition on hand-built cases whose answer is known,
and `evaluate(..., reference=...)` on the smoke profile (fake splits with exact outputs, then real digits)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dsda import distance as D
from dsda import metrics as M

from test_metrics import Lookup, _fake_splits, _patch_data

LN2 = math.log(2.0)
BASE = {"A_f": 0.0, "A_r": 90.0, "A_f_train": 0.0, "A_r_train": 95.0, "A_test": 80.0, "MIA": 10.0,
        "MIA_loss_cv": 50.0, "MIA_conf_svc": 99.0}


# ----------------------------------------------------------------------------- JS divergence

def test_js_on_a_hand_computed_2x3_table():
    p = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]
    q = [[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]
    # row 1: disjoint supports, m = (.5, .5, 0): KL(p||m) = KL(q||m) = log 2 -> JS = log 2
    # row 2: m = (.5, .25, .25): KL(p||m) = .5 log(.5/.5) + .5 log(.5/.25) = (log 2)/2, likewise KL(q||m)
    np.testing.assert_allclose(D.js_divergence(p, q), [LN2, LN2 / 2], rtol=1e-12)
    assert D.mean_js(p, q) == pytest.approx(0.75 * LN2, rel=1e-12)
    np.testing.assert_allclose(D.js_divergence(q, p), D.js_divergence(p, q), rtol=1e-12)   # symmetric


def test_js_of_a_table_with_itself_is_zero_and_bad_inputs_are_refused():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert D.js_divergence(p, p).tolist() == [0.0, 0.0]
    assert math.isnan(D.mean_js(np.zeros((0, 3)), np.zeros((0, 3))))
    with pytest.raises(ValueError, match="same shape"):
        D.js_divergence(p, p[:1])
    with pytest.raises(ValueError, match="probabilities"):
        D.js_divergence(p, [[2.0, -1.0, 0.0], [0.1, 0.1, 0.8]])


def test_prediction_distribution_counts_top1_classes():
    probs = [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]
    assert D.prediction_distribution(probs) == [0.25, 0.5, 0.25]
    assert D.prediction_distribution(probs, 3) == [0.25, 0.5, 0.25]
    with pytest.raises(ValueError, match="num_classes=4"):
        D.prediction_distribution(probs, 4)


# ----------------------------------------------------------------------------- gaps, ToW

def test_gaps_average_gap_and_tow_on_hand_values():
    ref = dict(BASE)
    m = {**BASE, "A_f_train": 10.0, "A_r_train": 93.0, "A_test": 85.0, "MIA_conf_svc": 79.0, "A_r": 88.0,
         "MIA": 4.0, "A_f": 2.0}
    g = D.signed_gaps(m, ref)
    assert g == {"gap_A_f": 2.0, "gap_A_r": -2.0, "gap_A_f_train": 10.0, "gap_A_r_train": -2.0, "gap_A_test": 5.0,
                 "gap_MIA": -6.0, "gap_MIA_loss_cv": 0.0, "gap_MIA_conf_svc": -20.0}
    assert D.average_absolute_gap(g) == pytest.approx((2 + 2 + 5 + 6) / 4)
    tow = D.tug_of_war(m, ref)
    assert tow["ToW"] == pytest.approx(100 * 0.90 * 0.98 * 0.95)       # forget-train, retain-train, test terms
    assert tow["ToW_MIA"] == pytest.approx(100 * 0.80 * 0.98 * 0.95)   # MIA_conf_svc replaces the forget term
    assert D.tug_of_war(ref, ref) == {"ToW": 100.0, "ToW_MIA": 100.0}
    with pytest.raises(KeyError, match="metrics lacks the metric 'A_r'"):
        D.signed_gaps({"A_f": 0.0}, ref)


# ----------------------------------------------------------------------------- over / under forgetting

def test_binomial_se_and_the_default_tolerance():
    assert D.binomial_se(50.0, 100) == pytest.approx(5.0) and D.binomial_se(0.0, 100) == 0.0
    assert D.default_tolerance(50.0, 100) == pytest.approx(5.0)
    assert D.default_tolerance(0.0, 1000) == pytest.approx(0.1)          # at least one image of 1000
    flag = lambda a_f: D.forgetting_flag({**BASE, "A_f": a_f}, {**BASE, "A_f": 0.0}, 1000, 1000)["forgetting"]  # noqa
    assert flag(0.1) == "matched" and flag(0.2) == "under"              # one image more is no evidence; two are


@pytest.mark.parametrize("mia, a_f, tolerance, label", [
    (3.0, 0.0, None, "over"),       # 7 points below; 1 SE of 10 % on 1000 images is 0.95
    (9.5, 0.0, None, "matched"),
    (12.0, 0.0, None, "under"),
    (9.5, 5.0, None, "under"),      # still classifies the forget class: under, whatever the MIA
    (3.0, 5.0, None, "under"),
    (8.5, 0.0, 2.0, "matched"),     # within the given seed spread
    (7.0, 0.0, 2.0, "over"),
])
def test_forgetting_flag_both_ways(mia, a_f, tolerance, label):
    out = D.forgetting_flag({**BASE, "MIA": mia, "A_f": a_f}, BASE, n_forget_train=1000, n_forget_test=1000,
                            tolerance=tolerance)
    assert out["forgetting"] == label
    assert ("seed spread" if tolerance is not None else "1 SE, at least 1 image") in out["forgetting_rule"]


def test_forgetting_flag_bad_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        D.forgetting_flag(BASE, BASE, 10, 10, tolerance=-1.0)


# ----------------------------------------------------------------------------- relearn

def _two_point_task():
    """Class 0 at x = (+1, 0), class 1 at (-1, 0); a linear model that starts by predicting class 1 everywhere."""
    x = torch.tensor([[1.0, 0.0]] * 8)
    y = torch.zeros(8, dtype=torch.long)
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([-1.0, 1.0]))
    return model, x, y


def test_relearn_steps_counts_until_the_target_and_leaves_the_model_alone():
    model, x, y = _two_point_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    steps = D.relearn_steps(model, x, y, x, y, target=95.0, lr=0.1, batch_size=4, max_steps=200)
    # Adam moves each parameter by ~lr per step: the gap of 2 between the two logits closes after ~7 steps
    assert steps is not None and 3 <= steps <= 20
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert D.relearn_steps(model, x, y, x, y, target=0.0) == 0                        # already there
    assert D.relearn_steps(model, x, y, x, y, target=95.0, lr=1e-6, max_steps=3) is None
    assert D.relearn_steps(model, x, y, x, y, target=95.0, lr=0.1, batch_size=4) == steps   # seeded: repeatable
    with pytest.raises(ValueError, match="max_steps"):
        D.relearn_steps(model, x, y, x, y, target=95.0, max_steps=0)


# ----------------------------------------------------------------------------- evaluate(reference=...)

class Rolled(Lookup):
    """Logits = the input row shifted one class up: predicts class c + 1 where Lookup predicts c."""

    def forward(self, x):
        return self.scale * torch.roll(x, 1, dims=1)


DISTANCE_KEYS = {"gap_A_f", "gap_A_r", "gap_A_f_train", "gap_A_r_train", "gap_A_test", "gap_MIA", "gap_MIA_loss_cv",
                 "gap_MIA_conf_svc", "avg_abs_gap", "ToW", "ToW_MIA", "JS_forget", "JS_retain", "pred_dist_forget",
                 "pred_dist_forget_ref", "JS_pred_dist", "forgetting", "forgetting_rule"}


def test_evaluate_with_itself_as_reference_gives_zero_gaps(monkeypatch):
    k, forget = 4, 1
    _patch_data(monkeypatch, _fake_splits(k, forget, False))
    model = Lookup(k)
    plain = M.evaluate(model, "smoke", [forget], device="cpu")
    out = M.evaluate(model, "smoke", [forget], device="cpu", reference=model)
    assert set(out) == set(plain) | DISTANCE_KEYS and {key: out[key] for key in plain} == plain
    assert all(out[key] == 0.0 for key in out if key.startswith("gap_")) and out["avg_abs_gap"] == 0.0
    assert out["ToW"] == out["ToW_MIA"] == 100.0
    assert out["JS_forget"] == out["JS_retain"] == out["JS_pred_dist"] == 0.0
    assert out["pred_dist_forget"] == out["pred_dist_forget_ref"] == [0.0, 0.0, 1.0, 0.0]   # forget test -> y + 1
    assert out["forgetting"] == "matched"


def test_evaluate_against_another_model_hand_values(monkeypatch):
    k, forget = 4, 1
    _patch_data(monkeypatch, _fake_splits(k, forget, False))
    out = M.evaluate(Rolled(k), "smoke", [forget], device="cpu", reference=Lookup(k))
    assert out["gap_A_r"] == -100.0 and out["gap_A_f"] == 0.0 and out["gap_A_test"] == -75.0
    assert out["pred_dist_forget"] == [0.0, 0.0, 0.0, 1.0] and out["pred_dist_forget_ref"] == [0.0, 0.0, 1.0, 0.0]
    assert out["JS_pred_dist"] == pytest.approx(LN2)              # disjoint predicted classes
    assert 0.0 < out["JS_forget"] < LN2 and 0.0 < out["JS_retain"] < LN2
    assert out["ToW"] == pytest.approx(0.0)                        # retain-train accuracy 0 vs 100
    with pytest.raises(TypeError, match="reference"):
        M.evaluate(Lookup(k), "smoke", [forget], device="cpu", reference="retrain")
    with pytest.raises(TypeError, match="relearn"):
        M.evaluate(Lookup(k), "smoke", [forget], device="cpu", relearn="yes")


def test_evaluate_with_reference_on_digits():
    """Real smoke data, two untrained smoke CNNs: the keys, zero distance to itself, relearn with itself as original."""
    pytest.importorskip("dsda.data")
    from dsda.models import build_model
    from dsda.profiles import get_profile
    prof = get_profile("smoke")
    torch.manual_seed(0)
    a = build_model(prof.model, 10, (1, 8, 8), width=prof.width)
    b = build_model(prof.model, 10, (1, 8, 8), width=prof.width)
    same = M.evaluate(a, prof, prof.forget_classes, device="cpu", reference=a, relearn=a)
    assert all(same[key] == 0.0 for key in same if key.startswith("gap_")) and same["JS_forget"] == 0.0
    assert same["relearn_steps"] == 0 == same["relearn_steps_ref"]     # already at 95 % of its own A_f
    other = M.evaluate(a, prof, prof.forget_classes, device="cpu", reference=b)
    assert DISTANCE_KEYS <= set(other) and other["JS_forget"] > 0.0 and len(other["pred_dist_forget"]) == 10
    assert sum(other["pred_dist_forget"]) == pytest.approx(1.0) and 0.0 <= other["ToW"] <= 100.0
