"""The baselines with data access (SSD, UNSIR, Boundary Shrink, ADV+IMP, SCAR, LAU).

Unit checks against hand-computed answers (SSD's Fisher diagonal and dampening, the OOD resize, the
attacks, SCAR's covariance shrinkage and teacher mask, MAS importance, LAU's unlearned target), then
each method end to end on the smoke profile (digits): it runs in seconds under the data-access guard,
with only the data it declares, and lowers the forget-class test accuracy of the original model.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dsda
from dsda.baselines import _common as C
from dsda.baselines import adv_imp, boundary_shrink, lau, scar, ssd, unsir
from dsda.data import DatasetError, DatasetInfo, TensorDataset, forbid_data_access, load_dataset, split_dataset

MODULES = {"ssd": ssd, "unsir": unsir, "boundary_shrink": boundary_shrink, "adv_imp": adv_imp,
           "scar": scar, "lau": lau}
ACCESS = {"ssd": ("full", ()), "unsir": ("retain_subset", ()), "boundary_shrink": ("forget", ()),
          "adv_imp": ("forget", ()), "scar": ("forget", ("ood",)), "lau": ("forget", ())}
FORGET = (3,)


def info(c=1, h=2, w=2, mean=(0.0,), std=(1.0,), k=2, name="toy"):
    return DatasetInfo(name=name, num_classes=k, class_names=tuple(str(i) for i in range(k)), image_shape=(c, h, w),
                       mean=tuple(mean), std=tuple(std), input_range=(0.0, 1.0))


# ----------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", sorted(MODULES))
def test_registered_with_declared_access_and_profile_configs(name):
    from dsda.baselines.runner import check_signature
    m = dsda.METHODS[name]
    assert (m.data_access, m.extras) == ACCESS[name]
    assert m.run is MODULES[name].run and not m.source_free
    for profile in ("smoke", "cpu", "paper"):
        assert profile in m.profile_overrides
        assert isinstance(m.config(profile), m.config_cls)
    check_signature(m)   # run() takes exactly the data keywords the declaration grants


def test_paper_profiles_are_the_published_settings():
    assert dsda.METHODS["ssd"].config("paper") == ssd.SSDConfig(alpha=10.0, lam=1.0, batch_size=64, full_fraction=1.0)
    u = dsda.METHODS["unsir"].config("paper")
    assert (u.noise_batch, u.noise_steps, u.noise_lr, u.noise_l2, u.impair_lr, u.repair_lr) == (32, 25, 0.1, 0.1,
                                                                                                  1e-4, 1e-4)
    b = dsda.METHODS["boundary_shrink"].config("paper")
    assert (b.attack, b.bound, b.lr, b.momentum, b.epochs, b.batch_size) == ("fgsm", 0.1, 1e-5, 0.9, 10, 64)
    a = dsda.METHODS["adv_imp"].config("paper")
    assert (a.lr, a.reg_lambda, a.pgd_eps, a.pgd_step, a.pgd_iters, a.adv_per_sample) == (1e-3, 1.0, 4.0, 0.1, 100, 20)
    s = dsda.METHODS["scar"].config("paper")
    assert (s.lr, s.lambda_fgt, s.lambda_ret, s.temperature, s.tukey_delta, s.gamma1, s.gamma2) == (
        5e-4, 1.0, 5.0, 2.0, 0.5, 3.0, 3.0)


@pytest.mark.parametrize("cls,field,value", [
    (ssd.SSDConfig, "alpha", 0.0), (ssd.SSDConfig, "full_fraction", 1.5), (ssd.SSDConfig, "batch_size", 0),
    (unsir.UNSIRConfig, "noise_steps", -1), (unsir.UNSIRConfig, "impair_lr", 0.0),
    (boundary_shrink.BoundaryShrinkConfig, "attack", "cw"), (boundary_shrink.BoundaryShrinkConfig, "bound", -0.1),
    (adv_imp.AdvImpConfig, "stop_acc", 2.0), (adv_imp.AdvImpConfig, "adv_sources", 1.5),
    (scar.SCARConfig, "temperature", 0.0), (scar.SCARConfig, "lambda_ret", -1.0),
    (lau.LAUConfig, "eps", 0.0), (lau.LAUConfig, "epochs", True),
])
def test_bad_config_values_name_the_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


# ----------------------------------------------------------------------------- SSD

class OneParam(nn.Module):
    """logits = (w x, -w x): a single scalar parameter."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        z = self.w * x.flatten(1).sum(1)
        return torch.stack([z, -z], 1)


def _grad_by_hand(w, x, y):
    # CE of logits (w x, -w x): label 0 -> -log sigmoid(2wx), d/dw = -2x (1 - sigmoid(2wx)); label 1 mirrors it
    s = 1 / (1 + math.exp(-2 * w * x))
    return -2 * x * (1 - s) if y == 0 else 2 * x * s


def test_fisher_diagonal_of_one_parameter_model_matches_hand_calculation():
    w, xs, ys = 0.7, (1.5, -2.0), (0, 1)
    model = OneParam(w)
    x = torch.tensor(xs).view(2, 1, 1, 1)
    y = torch.tensor(ys)
    g1, g2 = (_grad_by_hand(w, xi, yi) for xi, yi in zip(xs, ys))
    per_sample = ssd.fisher_diagonal(model, x, y, batch_size=1, device=torch.device("cpu"))["w"]
    assert per_sample.item() == pytest.approx((g1 ** 2 + g2 ** 2) / 2, rel=1e-5)   # (1/N) sum g_i^2
    one_batch = ssd.fisher_diagonal(model, x, y, batch_size=2, device=torch.device("cpu"))["w"]
    assert one_batch.item() == pytest.approx(((g1 + g2) / 2) ** 2, rel=1e-5)       # SSD: squared batch-mean grad
    assert model.w.grad is None and model.w.item() == pytest.approx(w)            # nothing left behind


def test_dampening_gives_exactly_the_formula_beta():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -3.0, 5.0, 7.0]]))
    i_d = {"weight": torch.tensor([[1.0, 1.0, 0.0, 2.0]])}
    i_f = {"weight": torch.tensor([[20.0, 5.0, 3.0, 100.0]])}
    counts = ssd.dampen(lin, i_d, i_f, alpha=10.0, lam=1.0)
    # selected: 20 > 10, 5 !> 10, 3 > 0, 100 > 20; beta = min(I_D / I_f, 1) = 1/20, -, 0/3, 2/100
    expected = torch.tensor([[2.0 * (1 / 20), -3.0, 0.0, 7.0 * (2 / 100)]])
    assert torch.allclose(lin.weight, expected) and counts == {"weight": 3}
    # lambda large enough that beta would exceed 1: bounded, the parameter is left as is
    lin2 = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin2.weight.fill_(4.0)
    ssd.dampen(lin2, {"weight": torch.tensor([[1.0]])}, {"weight": torch.tensor([[20.0]])}, alpha=10.0, lam=50.0)
    assert lin2.weight.item() == 4.0


# ----------------------------------------------------------------------------- attacks and pixel space

class Linear2(nn.Module):
    """logits = (v . x, 0) on a (1, 2, 2) image."""

    def __init__(self, v):
        super().__init__()
        self.v = torch.tensor(v).view(1, 1, 2, 2)

    def forward(self, x):
        z = (x * self.v).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], 1)


def test_fgsm_moves_each_pixel_by_the_bound_against_the_label():
    model = Linear2([1.0, -2.0, 0.5, -0.1])
    pm = C.PixelMap((0.5,), (0.25,))
    pixels = torch.tensor([0.5, 0.5, 0.95, 0.02]).view(1, 1, 2, 2)
    x = pm.to_inputs(pixels)
    adv = C.linf_pgd(model, x, torch.tensor([0]), pm, eps=0.1, step=0.1, iters=1)
    # d CE(label 0)/d pixel has the sign of -v / std: pixels step by -0.1 * sign(v), then clip to [0, 1]
    expected = torch.tensor([0.4, 0.6, 0.85, 0.12]).view(1, 1, 2, 2)
    assert torch.allclose(pm.to_pixels(adv), expected, atol=1e-6)
    disc = C.linf_pgd(model, x, torch.tensor([0]), pm, eps=0.1, step=0.1, iters=1, discretize=True)
    assert torch.allclose(pm.to_pixels(disc) * 255, torch.round(expected * 255), atol=1e-4)


def test_l2_pgd_step_and_projection():
    v = [3.0, 0.0, -4.0, 0.0]
    model = Linear2(v)
    pm = C.PixelMap((0.0,), (1.0,))
    x = torch.full((1, 1, 2, 2), 0.5)
    # targeted towards class 1: descend CE(1) = ascend -z -> move along -v / ||v|| by the step
    one = C.l2_pgd(model, x, torch.tensor([1]), pm, eps=1.0, step=0.2, iters=1, random_start=False)
    assert torch.allclose(one - x, -0.2 * torch.tensor(v).view(1, 1, 2, 2) / 5, atol=1e-6)
    # 0.2 u, then 0.4 u projected back to the ball: 0.3 u, where it stays
    many = C.l2_pgd(model, x, torch.tensor([1]), pm, eps=0.3, step=0.2, iters=5, random_start=False)
    assert torch.allclose(many - x, -0.3 * torch.tensor(v).view(1, 1, 2, 2) / 5, atol=1e-6)
    rand = [C.l2_pgd(model, x, torch.tensor([1]), pm, eps=0.3, step=0.05, iters=2, random_start=True,
                     gen=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert all((r - x).flatten().norm() <= 0.3 + 1e-5 for r in rand)    # inside the eps-ball
    assert torch.equal(rand[0], rand[1]) and not torch.equal(rand[0], rand[2])  # the start is drawn from gen


def test_ood_adaptation_resizes_and_renormalises():
    src = info(1, 1, 2, mean=(0.2,), std=(0.5,))
    pix = torch.tensor([[[[0.0, 1.0]]]])
    ood = TensorDataset((pix - 0.2) / 0.5, torch.zeros(1, dtype=torch.long), src)
    out = scar.adapt_ood(ood, (1, 1, 4), mean=(0.3,), std=(0.4,))
    # bilinear, half-pixel centres: source positions -0.25, 0.25, 0.75, 1.25 -> clamp -> 0, .25, .75, 1
    assert torch.allclose(out * 0.4 + 0.3, torch.tensor([0.0, 0.25, 0.75, 1.0]).view(1, 1, 1, 4), atol=1e-6)
    rgb = scar.adapt_ood(ood, (3, 1, 2), mean=(0.0, 0.5, 0.5), std=(1.0, 0.5, 0.25))
    assert torch.allclose(rgb[0, :, 0, 1], torch.tensor([1.0, 1.0, 2.0]))         # channel repeated, renormalised
    same = TensorDataset(torch.randn(3, 1, 4, 4), torch.zeros(3, dtype=torch.long), info(1, 4, 4, (0.3,), (0.4,)))
    clipped = same.x.clamp((0 - 0.3) / 0.4, (1 - 0.3) / 0.4)
    assert torch.allclose(scar.adapt_ood(same, (1, 4, 4), (0.3,), (0.4,)), clipped, atol=1e-6)  # identity in range


# ----------------------------------------------------------------------------- SCAR pieces

def test_scar_shrinkage_correlation_and_teacher_mask():
    cov = torch.tensor([[2.0, 1.0], [1.0, 4.0]])
    sh = scar.shrink(cov, 3.0, 3.0)          # + 3 * mean(diag)=3 on the diagonal, + 3 * mean(off)=1 off it
    assert torch.allclose(sh, torch.tensor([[11.0, 4.0], [4.0, 13.0]]))
    corr = scar.to_correlation(sh)
    assert torch.allclose(corr, torch.tensor([[1.0, 4 / math.sqrt(143)], [4 / math.sqrt(143), 1.0]]))
    # with identity precision the distance is the squared distance of the unit-normalised vectors
    h, mu = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    d = scar.mahalanobis(h, mu, torch.eye(2)[None], delta=1.0)
    assert d.item() == pytest.approx(2.0, rel=1e-5)
    logits = torch.tensor([[1.0, 5.0, 2.0], [3.0, -1.0, 0.0], [0.0, 0.5, 4.0]])
    t, keep = scar.masked_teacher(logits, (1,))
    assert keep.tolist() == [False, True, True]                       # row 0 is predicted as forget class 1
    assert torch.equal(t, torch.tensor([[3.0, -1.0, 0.0], [0.0, -1.0, 4.0]]))  # its logit = batch minimum


# ----------------------------------------------------------------------------- ADV+IMP, LAU, UNSIR pieces

def test_mas_importance_normalised_and_inverted():
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0], [4.0]]))
    # ||Wx|| with x = 2: grad_W = (Wx / ||Wx||) x^T = (0.6, 0.8) * 2 -> |.| = (1.2, 1.6) -> minmax (0, 1) -> 1 - .
    imp = adv_imp.mas_importance(lin, torch.tensor([[2.0]]), batch_size=4, device=torch.device("cpu"))
    assert torch.allclose(imp["weight"], torch.tensor([[1.0], [0.0]]))
    assert lin.weight.grad is None


def test_lau_unlearned_target_and_partial_pgd():
    t = torch.tensor([[2.0, 7.0, -1.0, 3.0]])
    z = lau.unlearned_target(t, (1,))
    assert torch.equal(z, torch.tensor([[2.0, -1.0, -1.0, 3.0]]))
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        fc.bias.zero_()
    h = torch.tensor([[1.0, 0.8]])           # class 0 by a margin of 0.2
    adv = lau.partial_pgd(fc, h, torch.tensor([0]), eps=0.3, step=0.1, steps=5, lo=0.0, hi=10.0)
    assert torch.allclose(adv, torch.tensor([[0.7, 1.1]]), atol=1e-6)   # L-inf ball edge, now class 1
    assert fc(adv).argmax(1).item() == 1


def test_unsir_noise_raises_the_forget_class_loss():
    torch.manual_seed(0)
    model = dsda.build_model("cnn", 10, (1, 8, 8), width=4).eval()
    gen = torch.Generator().manual_seed(0)
    start = torch.randn((16, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    noise, losses = unsir.error_maximising_noise(model, 3, n=16, steps=15, lr=0.1, l2=0.1, gen=gen,
                                                 device=torch.device("cpu"))
    assert noise.shape == (16, 1, 8, 8)
    target = torch.full((16,), 3)
    assert F.cross_entropy(model(noise), target) > F.cross_entropy(model(start), target)
    assert losses[-1] < losses[0] and all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- end to end on smoke

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSDA_CACHE_DIR", str(cache))
        model = dsda.original_model("smoke", progress=False).cpu().eval()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    forget, retain = split_dataset(train, FORGET)
    test_f, test_r = split_dataset(test, FORGET)
    try:
        from dsda.baselines.runner import ood_dataset
        ood = ood_dataset("smoke", max_samples=3000, seed=0)
    except (DatasetError, OSError):
        ood = None
    return dict(model=model, forget=forget, retain=retain, test_f=test_f, test_r=test_r, ood=ood, cache=cache)


def grant(name, s):
    m = dsda.METHODS[name]
    keys = {"forget": ("forget",), "retain_subset": ("retain",), "full": ("forget", "retain")}[m.data_access]
    out = {k: s[k] for k in keys}
    if "ood" in m.extras:
        if s["ood"] is None:
            pytest.skip("SCAR needs Fashion-MNIST as the OOD set of the smoke profile (run `python -m dsda "
                        "prepare-data`)")
        out["ood"] = s["ood"]
    return out


def test_acc(model, ds):
    return C.accuracy(model, ds.x, ds.y, torch.device("cpu"))


test_acc.__test__ = False   # a helper, not a test


@pytest.mark.parametrize("name", sorted(MODULES))
def test_smoke_run_lowers_forget_accuracy_without_touching_data(name, smoke):
    import copy
    import time

    m = dsda.METHODS[name]
    model = copy.deepcopy(smoke["model"])
    before_f, before_r = test_acc(model, smoke["test_f"]), test_acc(model, smoke["test_r"])
    state0 = {k: v.clone() for k, v in smoke["model"].state_dict().items()}
    t0 = time.perf_counter()
    with forbid_data_access("test: the method may only use what it is handed"):
        out, report = m.run(model, FORGET, config=m.config("smoke"), seed=0, device="cpu", **grant(name, smoke))
    seconds = time.perf_counter() - t0
    after_f, after_r = test_acc(out, smoke["test_f"]), test_acc(out, smoke["test_r"])
    print(f"\n[smoke] {name}: A_f {100 * before_f:.1f} -> {100 * after_f:.1f}, "
          f"A_r {100 * before_r:.1f} -> {100 * after_r:.1f}, {seconds:.1f} s, steps {report['steps']}")
    assert before_f > 0.9
    assert after_f <= before_f - 0.2, f"{name} did not lower A_f enough: {before_f} -> {after_f}"
    assert after_r >= 0.3, f"{name} destroyed the retain classes: A_r {after_r}"
    assert isinstance(report, dict) and isinstance(report["steps"], int) and "config" in report
    assert not out.training
    assert all(torch.equal(v, smoke["model"].state_dict()[k]) for k, v in state0.items())  # the fixture untouched


def test_lau_edits_only_the_classification_layer(smoke):
    import copy
    model = copy.deepcopy(smoke["model"])
    ref = copy.deepcopy(model).state_dict()
    out, rep = lau.run(model, FORGET, config=dsda.METHODS["lau"].config("smoke"), seed=0, device="cpu",
                       forget=smoke["forget"])
    new = out.state_dict()
    changed = {k for k in ref if not torch.equal(ref[k], new[k])}
    assert changed and changed <= {"fc.weight", "fc.bias"}
    assert all(p.requires_grad for p in out.parameters())


def test_same_seed_same_model_and_seed_matters(smoke):
    import copy
    cfg = dsda.METHODS["boundary_shrink"].config("smoke")
    runs = [boundary_shrink.run(copy.deepcopy(smoke["model"]), FORGET, config=cfg, seed=s, device="cpu",
                                forget=smoke["forget"])[0].state_dict() for s in (1, 1, 2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_bad_input_is_refused_with_clear_errors(smoke):
    import copy
    model = copy.deepcopy(smoke["model"])
    with pytest.raises(TypeError, match="config must be a SSDConfig"):
        ssd.run(model, FORGET, config=unsir.UNSIRConfig(), forget=smoke["forget"], retain=smoke["retain"])
    with pytest.raises(ValueError, match="forget holds labels"):       # retain samples passed as forget data
        boundary_shrink.run(model, FORGET, forget=smoke["retain"])
    with pytest.raises(ValueError, match="retain holds labels"):       # forget class inside the retain grant
        unsir.run(model, FORGET, retain=smoke["forget"])
    with pytest.raises(ValueError, match="out of range"):
        lau.run(model, [12], forget=smoke["forget"])
    with pytest.raises(TypeError, match="TensorDataset"):
        adv_imp.run(model, FORGET, forget=(smoke["forget"].x, smoke["forget"].y))
    with pytest.raises(TypeError):                                     # data the declaration does not grant
        lau.run(model, FORGET, forget=smoke["forget"], retain=smoke["retain"])


def test_runner_grants_scar_its_ood_set(smoke, monkeypatch):
    if smoke["ood"] is None:
        pytest.skip("Fashion-MNIST not available for the smoke profile's OOD set")
    monkeypatch.setenv("DSDA_CACHE_DIR", str(smoke["cache"]))   # the fixture's original model, no retraining
    rec = dsda.run_method("scar", "smoke", list(FORGET), seed=0, device="cpu", progress=False, evaluate=False,
                          max_steps=20)
    assert rec["granted"]["forget"] == len(smoke["forget"]) and rec["granted"]["ood"] > 0
    assert "retain" not in rec["granted"] and rec["report"]["steps"] <= 20
