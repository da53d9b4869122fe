"""DAMO: the Theorem 3.3 solver against brute force and the primal problem, the losses against hand
computations, the gradient buffers, the config checks, and the loop on a tiny model (no data)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.optimize import minimize

from dsda import damo as D
from dsda import losses as L
from dsda import multitask as M
from dsda.models import Classifier


# ----------------------------------------------------------------------------- helpers

def simplex_grid(k, n):
    """Every point of the k-simplex with coordinates in multiples of 1/n."""
    if k == 2:
        t = np.arange(n + 1) / n
        return np.stack([1 - t, t], 1)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    m = i + j <= n
    return np.stack([i[m], j[m], n - i[m] - j[m]], 1) / n


def f_values(G, lam, c, W):
    """f(w) = w.b + c ||g_T|| sqrt(w^T G w) for every row of W, straight from the definition."""
    b = G @ lam
    phi = c * math.sqrt(max(lam @ G @ lam, 0.0))
    return W @ b + phi * np.sqrt(np.clip(np.einsum("ni,ij,nj->n", W, G, W), 0, None))


def random_grads(rng, kind, k=3):
    p = int(rng.integers(2, 8))
    g = rng.normal(size=(k, p))
    if kind == "colinear":
        g[k - 1] = 2.0 * g[0]
    elif kind == "zero":
        g[1] = 0.0
    elif kind == "opposite":       # g_0 + g_1 = 0: the edge passes through g_w = 0 (the kink)
        g[1] = -g[0]
    elif kind == "rank1":
        g[:] = g[0] * rng.normal(size=(k, 1))
    elif kind == "all_zero":
        g[:] = 0.0
    elif kind == "scaled":         # tiny gradients, as late in training
        g *= 1e-4
    return g


KINDS = ["generic", "colinear", "zero", "opposite", "rank1", "all_zero", "scaled"]


def tiny_model(num_classes=4, seed=0):
    torch.manual_seed(seed)  # weights only; the code under test draws from explicit generators
    stage = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
    return Classifier([stage], 6, num_classes, (1, 5, 5), input_range=(-1.0, 1.0))


def tiny_data(num_classes=4, forget=(3,), n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_classes * n, 1, 5, 5, generator=g)
    y = torch.arange(num_classes).repeat_interleave(n)
    f = torch.isin(y, torch.tensor(forget))
    return x[~f], y[~f], x[f], y[f]


# ----------------------------------------------------------------------------- the w-problem

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [2, 3])
def test_simplex_weights_match_brute_force_grid(kind, k):
    rng = np.random.default_rng(hash((kind, k)) % 2**32)
    W = simplex_grid(k, 600 if k == 3 else 20000)
    for trial in range(12):
        g = random_grads(rng, kind, k)
        G = g @ g.T
        lam = rng.uniform(0, 1, k) + (0.1 if trial % 2 else 0.0)
        c = 0.0 if trial % 4 == 0 else float(rng.uniform(0, 0.99))
        w, val = M.simplex_weights(G, lam, c)
        assert w.shape == (k,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-12)
        f_w = f_values(G, lam, c, w[None])[0]
        assert val == pytest.approx(f_w, rel=1e-9, abs=1e-12)
        f_grid = f_values(G, lam, c, W).min()
        # w is feasible, so f(w) >= the true minimum; it must also be no worse than any grid point
        assert f_w <= f_grid + 1e-10 * max(1.0, np.abs(G).max()), (kind, trial, w, W[f_values(G, lam, c, W).argmin()])


def test_solver_exercises_interior_edge_and_vertex_solutions():
    """The grid test above is only meaningful if the optimum lands in every kind of face."""
    rng = np.random.default_rng(1)
    support = set()
    for _ in range(300):
        g = rng.normal(size=(3, 6))
        w, _ = M.simplex_weights(g @ g.T, rng.uniform(0, 1, 3), float(rng.uniform(0, 0.99)))
        support.add(int((w > 1e-9).sum()))
    assert support == {1, 2, 3}


def test_simplex_weights_hand_cases():
    # orthogonal unit gradients, lambda = 1: by symmetry the interior point w = 1/3 is optimal
    w, val = M.simplex_weights(np.eye(3), [1, 1, 1], 0.5)
    np.testing.assert_allclose(w, [1 / 3] * 3, atol=1e-12)
    # f(1/3) = 1/3 * 3 * 1/3 ... : b = (1,1,1), w.b = 1, ||g_w|| = 1/sqrt(3), phi = 0.5 sqrt(3)
    assert val == pytest.approx(1 + 0.5 * math.sqrt(3) / math.sqrt(3))
    # c = 0: f is linear, the minimum is the vertex with the smallest <g_i, g_T>
    G = np.array([[4.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    w, _ = M.simplex_weights(G, [1, 1, 1], 0.0)  # b = (3, 0, 2)
    np.testing.assert_array_equal(w, [0, 1, 0])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_simplex_weights_rejects_c_outside_unit_interval(bad):
    with pytest.raises(ValueError, match="c must be in"):
        M.simplex_weights(np.eye(3), [1, 1, 1], bad)


def test_simplex_weights_rejects_non_finite_gram():
    with pytest.raises(ValueError, match="non-finite"):
        M.simplex_weights(np.array([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]]), [1, 1, 1], 0.5)


# ----------------------------------------------------------------------------- the direction vs the primal

def primal_slsqp(g, lam, c):
    """max_d min_i <g_i, d> s.t. ||d - g_T|| <= c ||g_T||, as max t s.t. <g_i, d> >= t (Thm 3.2)."""
    p = g.shape[1]
    gT = lam @ g
    r2 = (c * np.linalg.norm(gT)) ** 2
    e = np.r_[np.zeros(p), 1.0]
    cons = [{"type": "ineq", "fun": (lambda z, i=i: g[i] @ z[:p] - z[p]), "jac": (lambda z, i=i: np.r_[g[i], -1.0])}
            for i in range(len(g))]
    cons.append({"type": "ineq", "fun": lambda z: r2 - np.sum((z[:p] - gT) ** 2),
                 "jac": lambda z: np.r_[-2 * (z[:p] - gT), 0.0]})
    res = minimize(lambda z: -z[p], np.r_[gT, (g @ gT).min()], jac=lambda z: -e, constraints=cons,
                   method="SLSQP", options={"ftol": 1e-12, "maxiter": 1000})
    # SLSQP often ends with status 8 ("positive directional derivative") once it is at machine precision, so
    # judge its answer by feasibility instead of its status flag
    d = res.x[:p]
    assert np.sum((d - gT) ** 2) <= r2 * (1 + 1e-7) + 1e-12, res.message
    return d, float((g @ d).min())


@pytest.mark.parametrize("k", [2, 3])
def test_direction_matches_numerical_primal_solution(k):
    rng = np.random.default_rng(7 + k)
    for _ in range(15):
        g = rng.normal(size=(k, 6))
        if rng.uniform() < 0.5:   # make conflicts likely
            g[1] = -0.7 * g[0] + 0.5 * rng.normal(size=6)
        lam = rng.uniform(0.2, 1.0, k)
        c = float(rng.uniform(0.05, 0.95))
        d, w, info = M.multitask_direction(torch.tensor(g), lam, c)
        d = d.numpy()
        d_ref, v_ref = primal_slsqp(g, lam, c)
        gT = lam @ g
        assert np.linalg.norm(d - gT) <= c * np.linalg.norm(gT) * (1 + 1e-9)   # feasible
        assert (g @ d).min() == pytest.approx(v_ref, rel=1e-6, abs=1e-8)       # optimal value
        assert info["objective"] == pytest.approx(v_ref, rel=1e-6, abs=1e-8)   # strong duality (Eq. 10)
        np.testing.assert_allclose(d, d_ref, atol=2e-5 * np.linalg.norm(gT))


def test_direction_accepts_list_of_flat_grads_and_reduces_to_gT():
    g = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0])]
    d, w, info = M.multitask_direction(g, (1.0, 0.5, 2.0), 0.0)  # c = 0: d = g_T exactly
    torch.testing.assert_close(d, torch.tensor([-1.0, 3.0]))
    assert info["gT_norm"] == pytest.approx(math.sqrt(10))
    d0, _, _ = M.multitask_direction(torch.zeros(3, 4), (1.0, 1.0, 1.0), 0.5)   # zero gradients
    assert torch.equal(d0, torch.zeros(4))


def test_gradient_stats_conflict_and_cosines():
    g = np.array([[1.0, 0.0], [-1.0, 0.1], [0.0, 1.0]])
    s = M.gradient_stats(g @ g.T, (1.0, 1.0, 1.0))   # g_T = (0, 1.1)
    np.testing.assert_allclose(s["gi_dot_gT"], [0.0, 0.11, 1.1])
    assert not s["conflict"]
    s = M.gradient_stats(g @ g.T, (2.0, 1.0, 0.0))   # g_T = (1, 0.1): <g_2, g_T> = -1 + 0.01 < 0
    assert s["conflict"]
    assert s["cos"][0] == pytest.approx(-1 / math.sqrt(1.01))


# ----------------------------------------------------------------------------- losses

def test_circle_center_loss_hand_computation():
    h = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    centres = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # unnormalised on purpose
    labels = torch.tensor([0, 1])
    delta, o_p, o_n = 2.0, 1.25, -0.25
    # sample 0: s_p = 1, s_n = (0, -1); a_p = 0.25, a_n = (0.25, 0)
    l0 = math.log(1 + (math.exp(2 * 0.25 * 0) + math.exp(0)) * math.exp(-2 * 0.25 * 1))
    # sample 1 (class 1): s_p = cos45 = r, s_n = (r, -r); a_p = 1.25 - r, a_n = (r + 0.25, 0)
    r = 1 / math.sqrt(2)
    l1 = math.log(1 + (math.exp(2 * (r + 0.25) * r) + math.exp(0)) * math.exp(-2 * (1.25 - r) * r))
    out = L.circle_center_loss(h, labels, centres, delta, o_p, o_n)
    assert out.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_circle_center_loss_with_origin_measures_cosines_from_it():
    # features on the unit circle's positive quadrant; from origin o = (0.5, 0.5) the centre directions
    # become opposite, so a negative cosine (unreachable from zero for non-negative features) appears
    h = torch.tensor([[1.0, 0.0]])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    o = torch.tensor([0.5, 0.5])
    delta, o_p, o_n = 2.0, 1.25, -0.25
    # from o: h - o = (0.5, -0.5) -> direction (r, -r); c0 - o = (0.5, -0.5): s_p = 1; c1 - o = (-0.5, 0.5): s_n = -1
    ref = math.log(1 + math.exp(2 * 0.0 * -1) * math.exp(-2 * 0.25 * 1))  # a_n = [-1 + 0.25]_+ = 0
    got = L.circle_center_loss(h, torch.tensor([0]), centres, delta, o_p, o_n, origin=o)
    assert got.item() == pytest.approx(ref, rel=1e-6)
    zero = L.circle_center_loss(h, torch.tensor([0]), centres, delta, o_p, o_n)   # from zero: s_n = 0
    assert zero.item() == pytest.approx(math.log(1 + math.exp(2 * 0.25 * 0) * math.exp(-2 * 0.25 * 1)), rel=1e-6)


def test_original_similarities_are_the_mean_cosines():
    class M(torch.nn.Module):
        training = False

        def features(self, x):
            return x

    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows = torch.tensor([0, 0, 1])
    r = 1 / math.sqrt(2)
    sp, sn = L.original_similarities(M(), x, rows, centres, batch_size=2)
    assert sp == pytest.approx((1 + r + 1) / 3) and sn == pytest.approx((0 + r + 0) / 3)


def test_circle_center_loss_weights_are_detached():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 4, generator=g, requires_grad=True)
    centres = torch.randn(3, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 1, 0])
    L.circle_center_loss(h, labels, centres, 8.0, 1.25, -0.25).backward()
    # reference: same formula with the alphas computed beforehand as constants
    hr = h.detach().clone().requires_grad_(True)
    s = F.normalize(hr, dim=1) @ F.normalize(centres, dim=1).T
    with torch.no_grad():
        a = torch.where(F.one_hot(labels, 3).bool(), (1.25 - s).clamp_min(0), (s + 0.25).clamp_min(0))
    pos = F.one_hot(labels, 3).bool()
    logit = torch.where(pos, -8.0 * a * s, 8.0 * a * s)
    loss = torch.stack([torch.log1p(torch.exp(logit[i][~pos[i]]).sum() * torch.exp(logit[i][pos[i]]).sum())
                        for i in range(5)]).mean()
    loss.backward()
    torch.testing.assert_close(h.grad, hr.grad)


def test_forget_losses_hand_values():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 30.0, -30.0]])
    y = torch.tensor([0, 2])
    mask = torch.tensor([True, False, False])  # class 0 forgotten (labels here only feed the CE forms)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
    ce1 = 60.0 + math.log1p(math.exp(-30) + math.exp(-60))  # -log softmax(...)[2]
    got = L.forget_loss(logits, y, "neg_ce_bounded", mask, bound=10.0)
    assert got.item() == pytest.approx(-(ce0 + 10.0) / 2, rel=1e-6)  # second sample capped at 10
    # relabel_nearest: best non-forget class is 2 for row 0, 1 for row 1
    got = L.forget_loss(logits, y, "relabel_nearest", mask)
    want = F.cross_entropy(logits, torch.tensor([2, 1]))
    assert got.item() == pytest.approx(want.item())
    # kl_uniform over retain classes {1, 2}: zero iff p puts mass 1/2 on each retain class
    flat = torch.tensor([[-100.0, 3.0, 3.0]])
    assert L.forget_loss(flat, torch.tensor([0]), "kl_uniform", mask).item() == pytest.approx(0.0, abs=1e-6)
    lp = F.log_softmax(logits, 1)[0]
    want = -(0.5 * (lp[1] + lp[2]) + math.log(2))
    assert L.forget_loss(logits[:1], y[:1], "kl_uniform", mask).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="kind"):
        L.forget_loss(logits, y, "gradient_ascent", mask)


def test_kd_retain_forget_loss_and_its_temperature_criterion():
    mask = torch.tensor([True, False, False])
    logits = torch.tensor([[5.0, 2.0, 0.0], [5.0, 0.0, 0.0]])
    # the teacher at T: the retain classes' softmax of logits / T, forget class 0 at exactly 0
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    q, t = L.forget_teacher(model, logits, mask, temperature=2.0)
    want = torch.tensor([[0.0, math.e / (math.e + 1), 1 / (math.e + 1)], [0.0, 0.5, 0.5]])
    torch.testing.assert_close(q, want)
    assert t == 2.0
    # KL(q || p) by hand: zero when the model outputs q itself, else sum q log(q / p)
    assert L.forget_loss(torch.log(want + 1e-30), None, "kd_retain", mask, teacher_p=want).item() == \
        pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(logits, 1)
    kl = sum(float(want[i, c] * math.log(want[i, c] / p[i, c])) for i in range(2) for c in (1, 2)) / 2
    assert L.forget_loss(logits, None, "kd_retain", mask, teacher_p=want).item() == pytest.approx(kl, rel=1e-5)
    with pytest.raises(ValueError, match="teacher_p"):
        L.forget_loss(logits, None, "kd_retain", mask)
    # entropy of row 1 (retain logits 2, 0) at T: binary entropy of sigmoid(2 / T); row 2 is always log 2
    h = lambda t: (lambda a: -(a * math.log(a) + (1 - a) * math.log(1 - a)))(1 / (1 + math.exp(-2 / t)))  # noqa
    assert L.retain_entropy(logits, mask, 1.0) == pytest.approx((h(1.0) + math.log(2)) / 2, rel=1e-6)
    target = (h(0.5) + math.log(2)) / 2
    assert L.entropy_matched_temperature(logits, mask, target) == pytest.approx(0.5, rel=1e-6)
    assert L.forget_teacher(model, logits, mask, 1.0, target_entropy=target)[1] == pytest.approx(0.5, rel=1e-6)
    assert L.entropy_matched_temperature(logits, mask, 5.0) == pytest.approx(20.0)    # above log 2: the bound


def test_class_centres():
    model = tiny_model()
    x = torch.randn(8, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    cen = L.class_centres(model, x, y, [1, 2], batch_size=3)
    model.eval()
    with torch.no_grad():
        f = F.normalize(model.features(x), dim=1)
    torch.testing.assert_close(cen, F.normalize(torch.stack([f[2:5].mean(0), f[5:].mean(0)]), dim=1))
    with pytest.raises(ValueError, match="class 5"):
        L.class_centres(model, x, y, [5])


def test_circle_features_pre_relu_take_both_signs_and_feed_centres_and_optima():
    model = tiny_model().eval()
    x = torch.randn(8, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    with torch.no_grad():
        post, pre = L.circle_features(model, x), L.circle_features(model, x, "pre_relu")
        z = model.stages[0][1](model.stages[0][0](x)).mean(dim=(2, 3))   # conv, BN: before the ReLU, pooled
    assert (post >= 0).all() and (pre < 0).any()
    torch.testing.assert_close(pre, z)
    torch.testing.assert_close(post, model.features(x))
    cen = L.class_centres(model, x, y, [1, 2], features="pre_relu")
    f = F.normalize(z, dim=1)
    torch.testing.assert_close(cen, F.normalize(torch.stack([f[2:5].mean(0), f[5:].mean(0)]), dim=1))
    sp, sn = L.original_similarities(model, x[2:], y[2:] - 1, cen, features="pre_relu")
    s = f[2:] @ cen.T
    assert math.isclose(sp, float(s[torch.arange(6), y[2:] - 1].mean()), rel_tol=1e-5)
    assert math.isclose(sn, float(s[torch.arange(6), 2 - y[2:]].mean()), rel_tol=1e-5)   # the other centre
    with pytest.raises(ValueError, match="circle_features='relu'.*allowed"):
        L.circle_features(model, x, "relu")


# ----------------------------------------------------------------------------- buffers

def test_grad_buffers_hold_autograd_gradients_and_write_update():
    model = tiny_model()
    x, y = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 2, 3])
    params = list(model.parameters())
    buf = M.GradBuffers(params, 2)
    loss_a = F.cross_entropy(model(x), y)
    loss_b = model.features(x).pow(2).mean()   # does not touch fc: its rows must be 0
    buf.fill(0, loss_a, retain_graph=True)
    buf.fill(1, loss_b)
    ref_a = torch.cat([g.reshape(-1) for g in torch.autograd.grad(F.cross_entropy(model(x), y), params)])
    torch.testing.assert_close(buf.rows[0], ref_a)
    n_fc = model.fc.weight.numel() + model.fc.bias.numel()
    assert torch.count_nonzero(buf.rows[1][-n_fc:]) == 0
    M.anchor_direction(buf.rows, (2.0, -1.0), out=buf.flat)   # d lands in every p.grad (views of flat)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in params]), 2 * buf.rows[0] - buf.rows[1])


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("field,value,exc", [
    ("c", 1.0, ValueError), ("c", -0.01, ValueError), ("forget_loss", "ascent", ValueError),
    ("origin", "mean", ValueError), ("optima", "best", ValueError), ("train_scope", "head", ValueError),
    ("lr", 0.0, ValueError), ("max_steps", 0, ValueError), ("batch_retain", 2.5, ValueError),
    ("lambdas", (1.0, 1.0), ValueError), ("lambdas", (1.0, -1.0, 1.0), ValueError),
    ("lambdas", (0.0, 0.0, 0.0), ValueError), ("o_p", -0.5, ValueError), ("stop_rate", 1.5, ValueError),
    ("holdout", 1.0, ValueError), ("multitask", 1, TypeError),
    ("delta", float("nan"), ValueError), ("device", "tpu", ValueError), ("kd_temperature", 0.0, ValueError),
    ("forget_temperature", 0.0, ValueError), ("forget_entropy", -1.0, ValueError),
    ("circle_features", "relu", ValueError),
])
def test_damo_config_rejects_bad_values_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=field.split("_")[0]):
        D.DamoConfig(**{field: value})


def test_damo_config_replace_rejects_unknown_field():
    with pytest.raises(ValueError, match="unknown DamoConfig field"):
        D.DamoConfig().replace(learning_rate=1e-3)
    assert D.DamoConfig(lambdas=[1, 2, 3]).lambdas == (1.0, 2.0, 3.0)
    D.DamoConfig(lambdas=(0.0, 0.0, 1.0))  # only L_Disc weighted: allowed with three tasks ...
    with pytest.raises(ValueError, match="lambdas"):
        D.DamoConfig(lambdas=(0.0, 0.0, 1.0), disc=False)  # ... but not once L_Disc is dropped


# ----------------------------------------------------------------------------- the loop

FAST = dict(device="cpu", lr=1e-2, max_steps=40, batch_retain=16, batch_forget=8, check_every=5, patience=2,
            delta=8.0)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_damo_first_step_applies_the_theorem_3_3_direction():
    """One step on full batches must hand exactly the Theorem 3.3 direction d to the optimiser (every p.grad)."""
    model = tiny_model()
    x_r, y_r, x_f, y_f = tiny_data()
    cfg = D.DamoConfig(device="cpu", lr=0.1, max_steps=1, batch_retain=len(x_r),
                       batch_forget=len(x_f), lambdas=(1.0, 0.7, 0.3), c=0.6, delta=8.0)
    centres = L.class_centres(model, x_r, y_r, [0, 1, 2])
    # the reference direction, computed independently (BN in eval mode, as DAMO runs it)
    model.eval()
    params = list(model.parameters())
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    h = model.features(x_r)
    losses = [F.cross_entropy(model.fc(h), y_r),
              -F.cross_entropy(model(x_f), y_f, reduction="none").clamp(max=10.0).mean(),
              L.circle_center_loss(h, y_r, centres, 8.0, 1.25, -0.25)]
    g = torch.stack([torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in
                                zip(torch.autograd.grad(l, params, retain_graph=True, allow_unused=True), params)])
                     for l in losses])
    d, w, _ = M.multitask_direction(g, cfg.lambdas, cfg.c)
    work = copy.deepcopy(model)
    state, _, _ = D._prepare(work, cfg, x_r, y_r, x_f, y_f, 0, centres)
    D._set_train_mode(work)
    rec = D._step(work, cfg, state, 0)
    torch.testing.assert_close(state.buf.flat, d, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in state.params]), d, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(rec["w"], w, atol=1e-6)
    report = D.damo(model, x_r, y_r, x_f, y_f, cfg, seed=0, centres=centres)
    np.testing.assert_allclose(report["w"][0], w, atol=1e-6)
    assert not torch.equal(torch.cat([p.detach().reshape(-1) for p in params]), theta0)
    assert report["steps"] == 1 and report["stop_reason"] == "max_steps"


def test_damo_runs_forgets_and_reports():
    model = tiny_model()
    x_r, y_r, x_f, y_f = tiny_data()
    report = D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**FAST, holdout=0.25), seed=0)
    for key in ("loss_retain", "loss_forget", "loss_disc", "w", "conflict", "cos", "gT_norm", "d_norm"):
        assert len(report[key]) == report["steps"], key
    assert all(len(w) == 3 and abs(sum(w) - 1) < 1e-9 for w in report["w"])
    assert 0.0 <= report["conflict_rate"] <= 1.0
    assert report["retain_classes"] == [0, 1, 2] and report["forget_classes"] == [3]
    assert report["stop_reason"] == "forgotten", report["checks"]
    assert all(c["forget_rate"] == 0.0 for c in report["checks"][-2:])
    assert "val_retain_acc" in report["checks"][0]
    assert not model.training and all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert (model(x_f).argmax(1) == y_f).float().mean().item() == 0.0


def test_damo_is_deterministic_per_seed():
    x_r, y_r, x_f, y_f = tiny_data()
    runs = []
    for seed in (0, 0, 1):
        model = tiny_model()
        D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**{**FAST, "max_steps": 6}), seed=seed)
        runs.append(_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("ablation", [dict(disc=False), dict(multitask=False), dict(origin="centre_mean"),
                                      dict(optima="original"), dict(forget_loss="relabel_nearest"),
                                      dict(forget_loss="kl_uniform"), dict(forget_loss="kd_retain", forget_entropy=0.3),
                                      dict(circle_features="pre_relu", optima="original")])
def test_damo_ablations_run(ablation):
    model = tiny_model()
    x_r, y_r, x_f, y_f = tiny_data(forget=(2, 3))
    report = D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**{**FAST, "max_steps": 6, **ablation}), seed=0)
    assert report["steps"] == 6 and report["forget_classes"] == [2, 3]
    if ablation.get("disc") is False:   # two tasks: w lives on the 2-simplex, no L_Disc recorded
        assert all(len(w) == 2 for w in report["w"]) and all(v is None for v in report["loss_disc"])
        assert all(len(c) == 1 for c in report["cos"])
    elif ablation.get("multitask") is False:
        assert all(w is None for w in report["w"])
    else:
        assert all(len(w) == 3 for w in report["w"])


def test_bn_running_stats_stay_frozen():
    x_r, y_r, x_f, y_f = tiny_data()
    model = tiny_model()
    before = model.stages[0][1].running_mean.clone()
    D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**{**FAST, "max_steps": 3}), seed=0)
    assert torch.equal(before, model.stages[0][1].running_mean)


def test_damo_rejects_bad_inputs():
    model = tiny_model()
    x_r, y_r, x_f, y_f = tiny_data()
    cfg = D.DamoConfig(**FAST)
    with pytest.raises(ValueError, match="overlap"):
        D.damo(model, x_r, y_r, x_f, torch.zeros_like(y_f), cfg)
    with pytest.raises(ValueError, match="x_f"):
        D.damo(model, x_r, y_r, x_f[:0], y_f[:0], cfg)
    with pytest.raises(ValueError, match="0..3"):
        D.damo(model, x_r, y_r, x_f, y_f + 5, cfg)
    with pytest.raises(ValueError, match="unknown DamoConfig field"):
        D.damo(model, x_r, y_r, x_f, y_f, cfg, step_size=1.0)
    with pytest.raises(ValueError, match="two retain classes"):
        D.damo(model, x_r[y_r == 0], y_r[y_r == 0], x_f, y_f, cfg)
    with pytest.raises(ValueError, match="c must be"):
        D.damo(model, x_r, y_r, x_f, y_f, cfg, c=1.2)


# ----------------------------------------------------------------------------- retain distillation and scope

def test_retain_loss_kd_hand_value_and_teacher_distribution():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = torch.tensor([0, 1])
    forget_mask = torch.tensor([False, False, True])
    T = 2.0
    teacher = torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, 1.0]])
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
        model.bias.zero_()
    q = L.teacher_distribution(model, teacher, forget_mask, T)
    # by hand: softmax over the retain classes only of teacher / T; zero on the forget class
    ref_q = torch.zeros(2, 3)
    for i in range(2):
        e = [math.exp(teacher[i, j].item() / T) for j in range(2)]
        ref_q[i, :2] = torch.tensor([v / sum(e) for v in e])
    torch.testing.assert_close(q, ref_q)
    # T^2 * KL(q || softmax(logits / T)), per row by hand, batch mean
    ref = 0.0
    for i in range(2):
        z = [math.exp(logits[i, j].item() / T) for j in range(3)]
        p = [v / sum(z) for v in z]
        ref += sum(ref_q[i, j].item() * math.log(ref_q[i, j].item() / p[j]) for j in range(2))
    ref = ref / 2 * T ** 2
    assert L.retain_loss(logits, y, q, T).item() == pytest.approx(ref, rel=1e-5)
    assert L.retain_loss(logits, y).item() == pytest.approx(F.cross_entropy(logits, y).item())
    # KL is zero where the student already matches the teacher on the retain classes and puts ~0 on the forget class
    match = torch.cat([teacher[:, :2], torch.full((2, 1), -1e4)], 1)
    assert abs(L.retain_loss(match, y, q, T).item()) < 1e-5


@pytest.mark.parametrize("scope,changed", [("fc", {"fc"}), ("last", {"fc", "stages.1"}), ("all", None)])
def test_train_scope_updates_only_its_parameters(scope, changed):
    torch.manual_seed(0)
    model = Classifier([nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU()),
                        nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())], 6, 4, (1, 5, 5), (-1.0, 1.0))
    x_r, y_r, x_f, y_f = tiny_data()
    before = _state(model)
    D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**{**FAST, "max_steps": 4, "disc": scope != "fc",
                                                        "train_scope": scope, "retain_loss": "kd"}), seed=0)
    after = _state(model)
    params = {n for n, _ in model.named_parameters()}
    moved = {n for n in params if not torch.equal(before[n], after[n])}
    if changed is None:
        assert moved == params
    else:
        assert moved and all(any(n.startswith(c + ".") for c in changed) for n in moved), moved
        assert any(n.startswith("fc.") for n in moved)


def test_kd_fc_scope_forgets_on_tiny_data():
    model = tiny_model()
    x_r, y_r, x_f, y_f = tiny_data()
    rep = D.damo(model, x_r, y_r, x_f, y_f, D.DamoConfig(**{**FAST, "disc": False, "train_scope": "fc",
                                                             "retain_loss": "kd", "lr": 5e-2}), seed=0)
    assert rep["stop_reason"] == "forgotten", rep["checks"]
    assert rep["n_params"] == sum(p.numel() for p in model.fc.parameters())


@pytest.mark.parametrize("field,value", [("retain_loss", "mse"), ("train_scope", "head"), ("kd_temperature", 0.0)])
def test_new_options_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        D.DamoConfig(**{field: value})


def test_fc_scope_with_disc_is_an_error():
    with pytest.raises(ValueError, match="train_scope"):
        D.DamoConfig(train_scope="fc", disc=True)
    D.DamoConfig(train_scope="fc", disc=False)


def test_no_grad_helpers_restore_every_modules_own_mode():
    """class_centres / original_similarities / teacher_distribution / forget_rate must leave a frozen BatchNorm
    inside a training model frozen (model.train(was) would have switched it back to training)."""
    model = tiny_model()
    x_r, y_r, x_f, _ = tiny_data()
    D._set_train_mode(model)
    modes = [m.training for m in model.modules()]
    assert True in modes and False in modes
    cen = L.class_centres(model, x_r, y_r, [0, 1, 2])
    L.original_similarities(model, x_r, y_r, cen)
    mask = torch.tensor([False, False, False, True])
    L.teacher_distribution(model, x_r, mask, 4.0)
    D.forget_rate(model, x_f, mask)
    assert [m.training for m in model.modules()] == modes


# ----------------------------------------------------------------------------- head-only DAMO on fixed features

def _kd_fc(**kw):
    return D.DamoConfig(**{**FAST, "disc": False, "train_scope": "fc", "retain_loss": "kd", "lr": 5e-2,
                           "max_steps": 20, **kw})


def test_head_only_damo_on_fixed_features_gives_the_same_weights_bit_for_bit(monkeypatch):
    """train_scope="fc" trains the head on features computed once (issue 15); the per-step backbone forward it
    replaces (FIXED_FEATURES = False) must give the same weights, checks and losses, bit for bit."""
    x_r, y_r, x_f, y_f = tiny_data()
    reports, states = [], []
    for fixed in (True, False):
        monkeypatch.setattr(D, "FIXED_FEATURES", fixed)
        model = tiny_model()
        reports.append(D.damo(model, x_r, y_r, x_f, y_f, _kd_fc(), seed=0))
        states.append(_state(model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert reports[0]["checks"] == reports[1]["checks"] and reports[0]["loss_retain"] == reports[1]["loss_retain"]
    assert reports[0]["loss_forget"] == reports[1]["loss_forget"] and reports[0]["steps"] == reports[1]["steps"]


def test_fixed_features_only_for_a_head_only_scope_without_dropout():
    x_r = tiny_data()[0]
    model = tiny_model()
    h = D.fixed_features(model, _kd_fc(), x_r)
    with torch.no_grad():
        model.eval()
        assert torch.equal(h, model.features(x_r))
    assert D.fixed_features(model, _kd_fc(train_scope="last"), x_r) is None
    model.stages[-1].append(nn.Dropout(0.5))        # dropout acts in training mode: features are not fixed
    assert D.fixed_features(model, _kd_fc(), x_r) is None
