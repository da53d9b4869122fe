"""dsda.metrics: features and attacks against hand-computed answers, predictions, evaluate()."""
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from dsda import metrics as M
from dsda.profiles import get_profile

K = 10


def _probs_with_confidence(p_true: torch.Tensor, labels: torch.Tensor, k: int = K) -> torch.Tensor:
    """Rows with p_y = p_true and the rest (1 - p_y) spread evenly over the other k - 1 classes."""
    p = ((1 - p_true) / (k - 1))[:, None].repeat(1, k)
    p[torch.arange(len(labels)), labels] = p_true
    return p


def _draw(n: int, lo: float, hi: float, seed: int, k: int = K):
    """n rows whose true-class probability is uniform in [lo, hi] (seeded), and their labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    p_true = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return _probs_with_confidence(p_true, y, k), y


# ----------------------------------------------------------------------------- features

def test_entropy_hand_computed():
    p = torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    h = M.entropy(p)
    # 0.5 ln 2 + 2 * 0.25 ln 4 = 1.5 ln 2; uniform over 3 = ln 3; one-hot = 0 (0 log 0 = 0)
    np.testing.assert_allclose(h, [1.5 * math.log(2), math.log(3), 0.0], rtol=1e-6, atol=1e-12)
    assert h.dtype == np.float64


def test_modified_entropy_hand_computed():
    p = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [1.0, 0.0, 0.0]])
    y = np.array([0, 1, 0])
    # y = 0: -(1 - 0.7) ln 0.7 - 0.2 ln(1 - 0.2) - 0.1 ln(1 - 0.1)
    row0 = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    # y = 1: -(1 - 0.2) ln 0.2 - 0.7 ln(1 - 0.7) - 0.1 ln(1 - 0.1)
    row1 = -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    got = M.modified_entropy(p, y)
    np.testing.assert_allclose(got, [row0, row1, 0.0], rtol=1e-12, atol=1e-12)
    assert row0 == pytest.approx(0.16216729, abs=1e-7) and row1 == pytest.approx(2.14086734, abs=1e-7)
    # the widely copied variant (log p_i instead of log(1 - p_i) in the second term) gives another value
    buggy0 = -0.3 * math.log(0.7) - 0.2 * math.log(0.2) - 0.1 * math.log(0.1)
    assert abs(got[0] - buggy0) > 0.1


def test_modified_entropy_confident_wrong_is_large_and_finite():
    got = M.modified_entropy(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    # both terms hit the clamp: -(1) ln EPS - 1 * ln EPS
    assert np.isfinite(got).all() and got[0] == pytest.approx(-2 * math.log(M.EPS))


def test_confidence_and_loss():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    y = torch.tensor([2, 1])
    np.testing.assert_allclose(M.confidence(p, y), [0.1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(M.cross_entropy_loss(p, y), [math.log(10), math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(M.attack_features(p, y, "loss"), M.cross_entropy_loss(p, y))
    np.testing.assert_allclose(M.attack_features(p, None, "entropy"), M.entropy(p))


def test_attack_features_bad_feature_and_missing_labels():
    p = torch.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="feature=.*allowed values.*'entropy'"):
        M.attack_features(p, None, "auc")
    with pytest.raises(ValueError, match="labels is required"):
        M.attack_features(p, None, "confidence")


# ----------------------------------------------------------------------------- input checks

def test_probability_checks():
    with pytest.raises(ValueError, match="not logits"):
        M.entropy(torch.tensor([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="2-D array"):
        M.entropy(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="at least one sample"):
        M.entropy(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="NaN"):
        M.entropy(torch.tensor([[float("nan"), 0.5]]))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        M.entropy("probs")


def test_label_checks():
    p = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="one label per probability row"):
        M.confidence(p, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
        M.confidence(p, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class indices"):
        M.confidence(p, torch.tensor([0.0, 1.0, 1.0]))


# ----------------------------------------------------------------------------- accuracy

PROBS = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
LABELS = torch.tensor([0, 1, 1, 1])


def test_accuracy_and_per_class_on_tiny_tensors():
    assert M.accuracy(PROBS, LABELS) == pytest.approx(75.0)
    assert M.accuracy(PROBS.numpy(), LABELS.numpy()) == pytest.approx(75.0)
    assert M.accuracy(PROBS.log(), LABELS) == pytest.approx(75.0)  # logits give the same argmax
    pc = M.per_class_accuracy(PROBS, LABELS)
    assert pc == pytest.approx([100.0, 200.0 / 3])
    pc3 = M.per_class_accuracy(PROBS, LABELS, num_classes=3)
    assert pc3[:2] == pytest.approx([100.0, 200.0 / 3]) and math.isnan(pc3[2])  # class 2 has no sample


def test_accuracy_bad_inputs():
    with pytest.raises(ValueError, match="one label per probability row"):
        M.accuracy(PROBS, LABELS[:3])
    with pytest.raises(ValueError, match="non-empty"):
        M.accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="x is required"):
        M.accuracy(nn.Linear(2, 2), LABELS)
    with pytest.raises(ValueError, match="x must be None"):
        M.accuracy(PROBS, LABELS, PROBS)


# ----------------------------------------------------------------------------- predictions

class TinyNet(nn.Module):
    """Conv + BatchNorm + linear head: BN makes eval and train mode give different outputs."""

    def __init__(self, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, k)
        self.num_classes = k

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _tiny_net_and_inputs(n: int = 37):
    torch.manual_seed(0)  # weights only; the test compares against the same model, not fixed numbers
    net = TinyNet()
    with torch.no_grad():  # non-trivial running statistics, so eval != train mode
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    return net, x


def test_predict_proba_is_softmax_of_eval_output_and_restores_mode():
    net, x = _tiny_net_and_inputs()
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    p = M.predict_proba(net, x, batch_size=8, device="cpu")
    assert net.training and net.bn.training  # mode restored
    for k, v in net.state_dict().items():  # BN running stats untouched
        assert torch.equal(v, state[k]), k
    assert all(q.grad is None for q in net.parameters())
    net.eval()
    with torch.no_grad():
        expected = torch.softmax(net(x), dim=1)
    assert p.shape == (37, 3) and p.dtype == torch.float32 and p.device.type == "cpu"
    torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(M.predict_logits(net, x, device="cpu"), net(x).detach(), rtol=1e-5, atol=1e-5)
    assert not net.training  # an eval-mode model stays in eval mode


def test_predict_restores_mixed_submodule_modes():
    net, x = _tiny_net_and_inputs()
    net.train()
    net.bn.eval()  # frozen BN inside a training model
    M.predict_proba(net, x, device="cpu")
    assert net.training and net.conv.training and net.fc.training and not net.bn.training


def test_predict_batch_size_independent():
    net, x = _tiny_net_and_inputs()
    ref = M.predict_proba(net, x, batch_size=1024, device="cpu")
    for bs in (1, 5, 36):
        torch.testing.assert_close(M.predict_proba(net, x, batch_size=bs, device="cpu"), ref, rtol=1e-5, atol=1e-6)
    assert M.accuracy(net, torch.zeros(37, dtype=torch.long), x, batch_size=5, device="cpu") == pytest.approx(
        M.accuracy(ref, torch.zeros(37, dtype=torch.long)))


def test_model_on_other_device_is_copied_not_moved():
    net, _ = _tiny_net_and_inputs()
    assert M._model_on(net, torch.device("cpu")) is net
    other = M._model_on(net, torch.device("meta"))  # a device that needs no hardware
    assert other is not net and next(other.parameters()).device.type == "meta"
    assert all(q.device.type == "cpu" for q in net.parameters())  # the caller's model stays put


def test_predict_bad_inputs():
    net, x = _tiny_net_and_inputs()
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        M.predict_proba(net, x, batch_size=0)
    with pytest.raises(ValueError, match="N >= 1"):
        M.predict_proba(net, x[:0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        M.predict_proba(net, x.numpy())
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        M.predict_proba(lambda t: t, x)
    with pytest.raises(ValueError, match="device="):
        M.predict_proba(net, x, device="tpu")


# ----------------------------------------------------------------------------- (a) entropy LR

def test_mia_entropy_lr_known_answers():
    # members: entropy ~0 (p_y in [0.999, 1]); non-members: uniform over K (entropy ln K)
    member, _ = _draw(300, 0.999, 1.0, seed=0)
    nonmember = torch.full((200, K), 1.0 / K)
    assert M.mia_entropy_lr(member, nonmember, member) == 100.0  # forget looks like members
    assert M.mia_entropy_lr(member, nonmember, nonmember[:50]) == 0.0  # forget looks unseen
    half = torch.cat([member[:40], nonmember[:40]])
    assert M.mia_entropy_lr(member, nonmember, half) == 50.0


def test_mia_entropy_lr_is_balanced():
    # Overlapping confidences, 2000 members (p_y in [0.5, 1]) vs 20 non-members (p_y in [0, 0.6]).
    # Equal class weights put the threshold in the overlap (about 0.55), so targets at p_y in
    # [0.25, 0.35] are non-members (0 %); an unweighted fit follows the 100:1 prior, moves the
    # threshold below 0 and calls every target a member (100 %).
    member, ym = _draw(2000, 0.5, 1.0, seed=1)
    nonmember, yn = _draw(20, 0.0, 0.6, seed=2)
    target, yt = _draw(100, 0.25, 0.35, seed=3)
    assert M.mia_entropy_lr(member, nonmember, target, member_labels=ym, nonmember_labels=yn,
                            target_labels=yt, feature="confidence") == 0.0


@pytest.mark.parametrize("feature", ["m_entropy", "confidence", "loss"])
def test_mia_entropy_lr_other_features(feature):
    member, ym = _draw(300, 0.98, 1.0, seed=4)
    nonmember, yn = _draw(300, 0.05, 0.3, seed=5)
    kw = dict(member_labels=ym, nonmember_labels=yn, feature=feature)
    assert M.mia_entropy_lr(member, nonmember, member[:60], target_labels=ym[:60], **kw) == 100.0
    assert M.mia_entropy_lr(member, nonmember, nonmember[:60], target_labels=yn[:60], **kw) == 0.0
    with pytest.raises(ValueError, match="target_labels is required"):
        M.mia_entropy_lr(member, nonmember, member, member_labels=ym, nonmember_labels=yn, feature=feature)


def test_mia_entropy_lr_bad_inputs():
    member, _ = _draw(30, 0.9, 1.0, seed=6)
    with pytest.raises(ValueError, match="target_probs must contain at least one sample"):
        M.mia_entropy_lr(member, member, member[:0])
    with pytest.raises(ValueError, match="feature="):
        M.mia_entropy_lr(member, member, member, feature="prob")


# ----------------------------------------------------------------------------- (b) loss LR, CV

def test_mia_loss_cv_separable_is_100():
    member, ym = _draw(400, 0.97, 1.0, seed=7)  # loss <= 0.03
    nonmember, yn = _draw(300, 0.01, 0.2, seed=8)  # loss >= 1.6
    assert M.mia_loss_cv(member, ym, nonmember, yn) == 100.0


def test_mia_loss_cv_identical_distributions_near_50():
    member, ym = _draw(1000, 0.0, 1.0, seed=9)
    # Tolerance: 2000 balanced points; a chance-level classifier's CV accuracy has a standard
    # deviation of at most 100 * sqrt(0.25 / 2000) = 1.1 points, so +-5 is more than 4 sigma.
    assert abs(M.mia_loss_cv(member, ym, member.clone(), ym.clone()) - 50.0) < 5.0
    other, yo = _draw(1000, 0.0, 1.0, seed=10)  # an independent draw from the same distribution
    assert abs(M.mia_loss_cv(member, ym, other, yo) - 50.0) < 5.0


def test_mia_loss_cv_balances_the_sides():
    # 900 vs 100 from the same distribution: without balancing, "always member" scores 90.
    # After balancing there are 200 points: chance-level std <= 3.5 points, tolerance 15 (> 4 sigma).
    member, ym = _draw(900, 0.0, 1.0, seed=11)
    nonmember, yn = _draw(100, 0.0, 1.0, seed=12)
    got = M.mia_loss_cv(member, ym, nonmember, yn)
    assert abs(got - 50.0) < 15.0
    assert M.mia_loss_cv(member, ym, nonmember, yn) == got  # seeded: reproducible
    assert M.mia_loss_cv(member, ym, nonmember, yn, seed=0) == got


def test_mia_loss_cv_bad_inputs():
    member, ym = _draw(30, 0.9, 1.0, seed=13)
    with pytest.raises(ValueError, match="at least n_splits=10 samples on each side"):
        M.mia_loss_cv(member, ym, member[:5], ym[:5])
    with pytest.raises(ValueError, match="nonmember_probs must contain at least one sample"):
        M.mia_loss_cv(member, ym, member[:0], ym[:0])
    with pytest.raises(ValueError, match="member_labels must be a 1-D array"):
        M.mia_loss_cv(member, ym[:10], member, ym)
    with pytest.raises(ValueError, match="n_splits must be >= 2"):
        M.mia_loss_cv(member, ym, member, ym, n_splits=1)


# ----------------------------------------------------------------------------- (c) confidence SVC

def test_mia_confidence_svc_known_answers():
    member, ym = _draw(400, 0.95, 1.0, seed=14)
    nonmember, yn = _draw(400, 0.0, 0.3, seed=15)
    # forget samples that look like non-members are all counted as "forgotten" (efficacy 100) ...
    assert M.mia_confidence_svc(member, ym, nonmember, yn, nonmember[:80], yn[:80]) == 100.0
    # ... and samples that look like members give efficacy 0
    assert M.mia_confidence_svc(member, ym, nonmember, yn, member[:80], ym[:80]) == 0.0
    # a confidently wrong prediction (p_y ~ 0) is far below every member: non-member
    target, yt = _draw(50, 0.0, 1e-6, seed=16)
    assert M.mia_confidence_svc(member, ym, nonmember, yn, target, yt) == 100.0


def test_balanced_subsample_sizes_and_seed():
    a, b = np.arange(3000.0), np.arange(500.0) + 0.5
    sa, sb = M._balanced_subsample(a, b, 200, torch.Generator().manual_seed(0))
    assert len(sa) == len(sb) == 200
    assert len(np.unique(sa)) == 200 and np.isin(sa, a).all() and np.isin(sb, b).all()
    sa2, _ = M._balanced_subsample(a, b, 200, torch.Generator().manual_seed(0))
    sa3, _ = M._balanced_subsample(a, b, 200, torch.Generator().manual_seed(1))
    assert np.array_equal(sa, sa2) and not np.array_equal(sa, sa3)
    sa4, sb4 = M._balanced_subsample(a, b, None, torch.Generator().manual_seed(0))
    assert len(sa4) == len(sb4) == 500 and np.array_equal(sb4, b)  # the smaller side is kept whole


def test_mia_confidence_svc_bad_inputs():
    member, ym = _draw(30, 0.9, 1.0, seed=17)
    with pytest.raises(ValueError, match="target_probs must contain at least one sample"):
        M.mia_confidence_svc(member, ym, member, ym, member[:0], ym[:0])
    with pytest.raises(ValueError, match="target_labels must be a 1-D array"):
        M.mia_confidence_svc(member, ym, member, ym, member, ym[:3])


# ----------------------------------------------------------------------------- evaluate

class Lookup(nn.Module):
    """Logits = the input row itself, so the test decides every prediction exactly."""

    def __init__(self, k: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.num_classes = k

    def forward(self, x):
        return self.scale * x


def _fake_splits(k: int, forget: int, memorised: bool):
    """Logit rows per group (c = scale * one-hot):
    retain train: 8 * onehot(y)          (confident, correct)
    retain test : 2 * onehot(y)          (less confident, correct)
    forget test : 2 * onehot(y + 1)      (wrong class)
    forget train: like retain train when `memorised` (original model), like forget test otherwise."""
    def rows(y, scale, shift):
        return scale * nn.functional.one_hot((y + shift) % k, k).float()

    y_tr = torch.arange(k).repeat_interleave(30)
    y_te = torch.arange(k).repeat_interleave(20)
    f_tr, f_te = y_tr == forget, y_te == forget
    x_tr = torch.where(f_tr[:, None], rows(y_tr, 8, 0) if memorised else rows(y_tr, 2, 1), rows(y_tr, 8, 0))
    x_te = torch.where(f_te[:, None], rows(y_te, 2, 1), rows(y_te, 2, 0))
    info = SimpleNamespace(num_classes=k, name="fake")
    return {"train": SimpleNamespace(x=x_tr, y=y_tr, info=info), "test": SimpleNamespace(x=x_te, y=y_te, info=info)}


def _patch_data(monkeypatch, splits):
    data = pytest.importorskip("dsda.data", reason="dsda/data.py (owned by the data task) is not in the tree yet")
    calls = []

    def fake_load(name, split):
        calls.append((name, split))
        return splits[split]
    monkeypatch.setattr(data, "load_dataset", fake_load)
    return calls


@pytest.mark.parametrize("memorised", [True, False])
def test_evaluate_exact_values(monkeypatch, memorised):
    k, forget = 4, 1
    calls = _patch_data(monkeypatch, _fake_splits(k, forget, memorised))
    model = Lookup(k).train()
    out = M.evaluate(model, "smoke", [forget], device="cpu", seed=0)
    assert sorted(calls) == [("digits", "test"), ("digits", "train")]
    assert model.training and model.scale.grad is None and model.scale.item() == 1.0
    assert set(out) == {"A_f", "A_r", "A_f_train", "A_r_train", "MIA", "MIA_loss_cv", "MIA_conf_svc",
                        "A_test", "per_class_test", "n_train_eval"}
    assert out["n_train_eval"] == k * 30   # the smoke profile evaluates on every train image
    assert out["A_f"] == 0.0 and out["A_r"] == 100.0 and out["A_r_train"] == 100.0
    assert out["A_test"] == 75.0 and out["per_class_test"] == [100.0, 0.0, 100.0, 100.0]
    if memorised:  # the original model: forget-train samples look exactly like members
        assert out["A_f_train"] == 100.0
        assert out["MIA"] == 100.0 and out["MIA_loss_cv"] == 100.0 and out["MIA_conf_svc"] == 0.0
    else:  # retrain-like: forget-train samples look exactly like the unseen forget-class test samples
        assert out["A_f_train"] == 0.0
        # identical loss values on both sides: constant prediction on balanced folds = exactly 50
        assert out["MIA"] == 0.0 and out["MIA_loss_cv"] == 50.0 and out["MIA_conf_svc"] == 100.0


def test_eval_train_subset_is_per_class_fixed_and_sorted():
    y = torch.tensor([0] * 50 + [1] * 7 + [2] * 30)[torch.randperm(87, generator=torch.Generator().manual_seed(1))]
    idx = M.eval_train_subset(y, 10)
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == len(idx)
    assert [int((y[idx] == c).sum()) for c in range(3)] == [10, 7, 10]     # a class with fewer keeps all of them
    assert torch.equal(idx, M.eval_train_subset(y, 10))                      # the same images every call
    assert not torch.equal(idx, M.eval_train_subset(y, 10, seed=1))
    assert torch.equal(M.eval_train_subset(y, None), torch.arange(87))
    with pytest.raises(ValueError, match="per_class"):
        M.eval_train_subset(y, 0)
    with pytest.raises(ValueError, match="eval_train_per_class"):
        get_profile("smoke").replace(eval_train_per_class=0)


def test_evaluate_uses_the_profiles_train_subset(monkeypatch):
    k, forget = 4, 1
    splits = _fake_splits(k, forget, False)
    _patch_data(monkeypatch, splits)
    prof = get_profile("smoke").replace(eval_train_per_class=20)
    out = M.evaluate(Lookup(k), prof, [forget], device="cpu")
    assert out["n_train_eval"] == k * 20
    full = M.evaluate(Lookup(k), "smoke", [forget], device="cpu")
    # every group is homogeneous in the fake splits, so the subset gives the same numbers on fewer images
    assert full["n_train_eval"] == k * 30
    assert {key: out[key] for key in out if key != "n_train_eval"} == \
           {key: full[key] for key in full if key != "n_train_eval"}


def test_evaluate_reuses_probabilities_only_for_the_same_weights_and_images(monkeypatch):
    k, forget = 4, 1
    splits = _fake_splits(k, forget, True)
    _patch_data(monkeypatch, splits)
    M._PROBA_CACHE.clear()
    calls = []
    real = M.predict_proba
    monkeypatch.setattr(M, "predict_proba", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model = Lookup(k)
    first = M.evaluate(model, "smoke", [forget], device="cpu")
    assert len(calls) == 2                                            # train and test splits
    other_task = M.evaluate(model, "smoke", [2], device="cpu")
    assert len(calls) == 2 and other_task["A_f"] == 100.0              # same weights: no new forward pass
    with torch.no_grad():
        model.scale.fill_(-1.0)                                       # new weights: recomputed, new numbers
    flipped = M.evaluate(model, "smoke", [forget], device="cpu")
    assert len(calls) == 4 and flipped["A_r"] == 0.0
    with torch.no_grad():
        model.scale.fill_(1.0)
    assert M.evaluate(model, "smoke", [forget], device="cpu") == first and len(calls) == 4
    splits["test"].x.mul_(-1.0)                                       # images changed in place: recomputed
    assert M.evaluate(model, "smoke", [forget], device="cpu")["A_r"] == 0.0 and len(calls) == 6
    _patch_data(monkeypatch, _fake_splits(k, forget, False))          # other image tensors: recomputed
    assert M.evaluate(model, "smoke", [forget], device="cpu")["A_f_train"] == 0.0 and len(calls) == 8


def test_evaluate_bad_inputs(monkeypatch):
    _patch_data(monkeypatch, _fake_splits(4, 1, True))
    with pytest.raises(ValueError, match="num_classes=3"):
        M.evaluate(Lookup(3), "smoke", [1], device="cpu")
    with pytest.raises(ValueError, match="profile="):
        M.evaluate(Lookup(4), "nope", [1], device="cpu")
    with pytest.raises(ValueError, match="forget_classes"):
        M.evaluate(Lookup(4), "smoke", [], device="cpu")  # empty forget set (data.validate_forget_classes)
    with pytest.raises(ValueError, match="forget_classes"):
        M.evaluate(Lookup(4), "smoke", [7], device="cpu")  # class out of range


def test_model_level_attacks_match_evaluate(monkeypatch):
    splits = _fake_splits(4, 1, True)
    _patch_data(monkeypatch, splits)
    model = Lookup(4)
    out = M.evaluate(model, "smoke", [1], device="cpu")
    tr, te = splits["train"], splits["test"]
    assert M.mia_entropy_lr_model(model, tr, te, [1], device="cpu") == out["MIA"]
    assert M.mia_loss_cv_model(model, (tr.x, tr.y), (te.x, te.y), [1], device="cpu") == out["MIA_loss_cv"]
    assert M.mia_confidence_svc_model(model, tr, te, [1], device="cpu") == out["MIA_conf_svc"]


def test_evaluate_on_digits_sanity_and_timing():
    """Real smoke-profile data and an untrained smoke-size CNN: consistency, plus a printed timing."""
    data = pytest.importorskip("dsda.data", reason="dsda/data.py (owned by the data task) is not in the tree yet")
    from dsda.models import build_model
    from dsda.profiles import get_profile
    prof = get_profile("smoke")
    info = data.load_dataset(prof.dataset, "test").info
    torch.manual_seed(0)
    model = build_model(prof.model, info.num_classes, info.image_shape, width=prof.width)
    t0 = time.perf_counter()
    out = M.evaluate(model, prof, prof.forget_classes, device="cpu")
    print(f"\n[timing] evaluate(smoke, digits, untrained cnn width {prof.width}): {time.perf_counter() - t0:.2f} s")
    for key in ("A_f", "A_r", "A_f_train", "A_r_train", "MIA", "MIA_loss_cv", "MIA_conf_svc", "A_test"):
        assert 0.0 <= out[key] <= 100.0, key
    y = data.load_dataset(prof.dataset, "test").y
    counts = torch.bincount(y, minlength=info.num_classes).double()
    pc = torch.tensor(out["per_class_test"], dtype=torch.float64)
    assert len(out["per_class_test"]) == info.num_classes
    # A_test is the count-weighted mean of the per-class accuracies, and of A_f and A_r
    assert out["A_test"] == pytest.approx(float((pc * counts).sum() / counts.sum()))
    f = list(prof.forget_classes)
    nf = counts[f].sum()
    assert out["A_test"] == pytest.approx(float((out["A_f"] * nf + out["A_r"] * (counts.sum() - nf)) / counts.sum()))
    assert out["A_f"] == pytest.approx(float((pc[f] * counts[f]).sum() / nf))


def _counted(monkeypatch, module, name: str) -> list:
    """Wrap module.name so that every call appends 1 to the returned list (and still runs the real function)."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: calls.append(1) or real(*a))
    return calls


def test_the_backbone_cache_gives_every_metric_of_the_plain_forward_pass(monkeypatch):
    """Issue 15: `evaluate` reuses a backbone's features (dsda/inference.py) for models that share it (head-only
    unlearning changes only fc). Every metric, for the original, a head-only and an all-parameter unlearned model
    and two tasks, must equal the plain forward pass's exactly, and the shared backbone must run once."""
    import dsda
    from dsda import inference as I
    original = dsda.original_model("smoke", progress=False)
    syn = dsda.synthetic_set(original, "smoke", seed=0, device="cpu", nfe=4)   # the two recipes share stage 1
    head_only, _ = dsda.unlearn(original, [3], "smoke", seed=0, recipe="smoke-kd-head", device="cpu", nfe=4,
                                synthetic=syn, max_steps=10)
    changed, _ = dsda.unlearn(original, [3], "smoke", seed=0, recipe="smoke", device="cpu", nfe=4, synthetic=syn,
                              max_steps=5)
    assert not torch.equal(head_only.fc.weight, original.fc.weight)
    calls = _counted(monkeypatch, I, "_features")

    def every_metric(cache: bool) -> list[dict]:
        monkeypatch.setattr(I, "BACKBONE_CACHE", cache)
        M._PROBA_CACHE.clear()
        I._FEATURES.clear()
        return [M.evaluate(m, "smoke", f, device="cpu") for m in (original, head_only, changed) for f in ([3], [1, 8])]

    plain = every_metric(False)
    assert calls == []
    assert every_metric(True) == plain
    assert len(calls) == 4       # train subset and test split, for the original's backbone and for `changed`'s


def test_the_reference_metrics_memo_gives_every_metric_of_a_fresh_evaluation(monkeypatch):
    """Issue 15: `evaluate(model, reference=oracle)` memoises the oracle's own metrics. Every metric (the distance
    keys included) must equal the memo-free evaluation's, for two models against one oracle and for a second task;
    the oracle's attacks run once per (task) key, and a caller changing its copy does not reach the memo."""
    import dsda
    original = dsda.original_model("smoke", progress=False)
    oracle = dsda.retrain_model("smoke", [3], progress=False)
    other, _ = dsda.unlearn(original, [3], "smoke", seed=0, recipe="smoke-kd-head", device="cpu", nfe=4,
                            max_steps=10)
    fits = _counted(monkeypatch, M, "mia_confidence_svc")

    def every_metric(memo: bool) -> list[dict]:
        monkeypatch.setattr(M, "REFERENCE_CACHE", memo)
        M._REFERENCE_METRICS.clear()
        fits.clear()
        return [M.evaluate(m, "smoke", f, device="cpu", reference=oracle) for f in ([3], [3, 1]) for m in (original, other)]

    plain = every_metric(False)
    assert len(fits) == 8                          # 4 evaluations, each fitting its model's and the oracle's SVC
    memo = every_metric(True)
    assert memo == plain and len(fits) == 6        # the oracle's SVC once per task
    from dsda.data import load_dataset
    prof = M.get_profile("smoke")
    train, test = load_dataset(prof.dataset, "train"), load_dataset(prof.dataset, "test")
    data = (train, test, M.eval_train_subset(train.y, prof.eval_train_per_class), 10)
    got = M.reference_evaluation(oracle, prof, [3], 0, torch.device("cpu"), data)[0]
    got["A_r"] = -1.0
    assert M.reference_evaluation(oracle, prof, [3], 0, torch.device("cpu"), data)[0]["A_r"] != -1.0


def test_probabilities_do_not_depend_on_the_layout_history_of_equal_weights():
    """Issue 15: the cpu model's first conv weight is (32, 1, 3, 3). Loaded from its checkpoint it has the default
    strides, which `is_contiguous(channels_last)` also accepts; an unlearned copy (`.to(channels_last)`) has the
    canonical ones. oneDNN ran other kernels for the two, so equal weights gave features 1 ulp apart, and the
    backbone cache handed one model's features to the other. Inference now runs every model in the canonical
    layout: the same weights give the same bits, through forward or through the cache."""
    import copy

    import dsda
    from dsda import inference as I
    from dsda.data import load_dataset
    loaded = dsda.original_model("cpu", progress=False)
    moved = copy.deepcopy(loaded).to(memory_format=torch.channels_last)
    w0, w1 = loaded.stages[0][0].weight, moved.stages[0][0].weight
    assert torch.equal(w0, w1) and w0.stride() != w1.stride()        # the two layouts this test is about
    x = load_dataset("fashion_mnist", "test").x[:2048]
    assert torch.equal(I.predict_proba(loaded, x, 1024, "cpu"), I.predict_proba(moved, x, 1024, "cpu"))
    net = I._net(moved, torch.device("cpu"), True)
    feats = I._features(I._net(loaded, torch.device("cpu"), True), x, 1024, torch.device("cpu"))
    assert torch.equal(I._head_proba(net, feats), I.predict_proba(moved, x, 1024, "cpu"))
