"""AEGDS sampler (dsda/sampler.py): analytic references, the frozen-model contract, NFE accounting,
reproducibility, bad input and the non-finite stop. Fast: a few seconds in all.

Analytic references used here:
- Gaussian energy E(x) = (x - mu)^T A (x - mu) / 2, A = Sigma^-1: the Langevin diffusion samples
  N(mu, T Sigma). For a linear score every sampler is a linear recursion w' = M w + B eps, whose
  exact stationary covariance solves the discrete Lyapunov equation C = M C M^T + B B^T.
- The ODE dx/dt = 1 - x^2 (E = x^3/3 - x), x(0) = 0, has the solution x(t) = tanh(t).
- Linear logits f(x) = W x + b: E = logsumexp(f) - f_y and s = W_y - p^T W.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.linalg import solve_discrete_lyapunov

from dsda import sampler as S
from dsda.models import build_model
from dsda.sampler import NonFiniteError, SamplerConfig, run_chains
from dsda.synthesis import synthesize

# ----------------------------------------------------------------------------- Gaussian energy

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
SIGMA = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
A = torch.linalg.inv(SIGMA)
N_CHAINS = 8000
# Stated tolerances (entries of Sigma are <= 2; with 8000 independent chains the standard error of the
# largest covariance entry is 2 * sqrt(2 / 8000) = 0.032 and of the mean sqrt(2 / 8000) = 0.016):
MEAN_TOL = 0.06      # max |mean - mu|
COV_TOL = 0.12       # max |cov - reference| over entries


def gaussian_score(x):
    z = x - MU
    return -(z @ A), 0.5 * ((z @ A) * z).sum(1), None


def run_gaussian(seed=0, **kw):
    cfg = SamplerConfig(schedule="constant", device="cpu", diag_every=50, **kw)
    x0 = torch.randn(N_CHAINS, 2, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    x, rec = run_chains(gaussian_score, x0, cfg, torch.Generator().manual_seed(seed))
    return x, rec


def moments(x):
    return x.mean(0), torch.cov(x.T)


def lyapunov_cov(cfg: SamplerConfig) -> np.ndarray:
    """Exact stationary covariance of the sampler's recursion for the score s = -A (x - mu)."""
    a, A_, I = cfg.alpha, A.numpy(), np.eye(2)
    sigma = cfg.noise_std(a)
    if cfg.sampler == "sgld":                                     # z' = (I - a A) z + sigma eps
        return solve_discrete_lyapunov(I - a * A_, sigma ** 2 * I)
    dt, gamma = cfg.dt, (cfg.gamma if cfg.sampler == "aegds" else 0.0)
    c = a * dt if cfg.predictor == "rk2" else dt
    K = -A_ + c / 2 * A_ @ A_                                    # v' = gamma v + a K z - (a sigma / 2) A eps
    M = np.block([[I + a * dt * K, dt * gamma * I], [a * K, gamma * I]])
    B = np.vstack([sigma * (I - a * dt / 2 * A_), -(a * sigma / 2) * A_])
    return solve_discrete_lyapunov(M, B @ B.T)[:2, :2]


@pytest.mark.parametrize("kw", [
    dict(sampler="sgld", alpha=0.02, nfe=600, noise="alg1"),                   # Eq. 3, T = 1
    dict(sampler="heun", alpha=0.05, nfe=600, noise="alg1"),                   # Eq. 5, eta = 1
    dict(sampler="aegds", alpha=0.02, nfe=600, gamma=0.5, noise="temperature", temperature=2.0),  # T = 1/(1-gamma)
], ids=["sgld", "heun", "aegds-T=1/(1-gamma)"])
def test_gaussian_energy_recovers_mean_and_covariance(kw):
    x, _ = run_gaussian(**kw)
    mean, cov = moments(x)
    assert (mean - MU).abs().max() < MEAN_TOL
    assert (cov - SIGMA).abs().max() < COV_TOL
    exact = torch.from_numpy(lyapunov_cov(SamplerConfig(**kw)))
    assert (cov - exact).abs().max() < COV_TOL  # and the discretisation bias is the predicted one


def test_aegds_as_printed_samples_at_temperature_one_minus_gamma():
    """Alg. 1's momentum amplifies the drift by ~1/(1-gamma) but not the noise: the covariance is the
    Lyapunov solution of lines 7-13, close to (1 - gamma) Sigma, not Sigma."""
    kw = dict(sampler="aegds", alpha=0.02, nfe=600, gamma=0.5, noise="alg1")
    x, _ = run_gaussian(**kw)
    mean, cov = moments(x)
    exact = torch.from_numpy(lyapunov_cov(SamplerConfig(**kw)))
    assert (mean - MU).abs().max() < MEAN_TOL
    assert (cov - exact).abs().max() < COV_TOL / 2
    assert np.abs(exact.numpy() - 0.5 * SIGMA.numpy()).max() < 0.03
    assert (cov - SIGMA).abs().max() > 0.4  # far from the untempered target


def test_heun_covariance_bias_is_second_order_sgld_first_order():
    """At the same large step, the exact stationary covariance of Heun is much closer to Sigma."""
    err = {}
    for name in ("sgld", "heun"):
        for a in (0.1, 0.05):
            cov = lyapunov_cov(SamplerConfig(sampler=name, alpha=a, nfe=2, noise="alg1"))
            err[name, a] = np.abs(cov - SIGMA.numpy()).max()
    assert err["sgld", 0.1] / err["sgld", 0.05] == pytest.approx(2.0, rel=0.15)
    assert err["heun", 0.1] / err["heun", 0.05] == pytest.approx(4.0, rel=0.15)


# ----------------------------------------------------------------------------- convergence order

def tanh_ode_error(h: float, t_end: float = 2.0, **kw) -> float:
    """Global error at t_end of dx/dt = a * (1 - x^2), x(0) = 0, with noise off (T = 0)."""
    def score(x):
        return 1 - x * x, x ** 3 / 3 - x, None
    cfg = SamplerConfig(schedule="constant", noise="temperature", temperature=0.0, device="cpu", diag_every=10_000,
                        **kw)
    x, _ = run_chains(score, torch.zeros(1, 1, dtype=torch.float64), cfg, torch.Generator().manual_seed(0))
    return abs(float(x) - math.tanh(t_end))


def loglog_slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


HS = (0.1, 0.05, 0.025, 0.0125)


def test_euler_is_first_order_and_heun_second_order():
    euler = [tanh_ode_error(h, sampler="sgld", alpha=h, nfe=round(2 / h)) for h in HS]
    heun = [tanh_ode_error(h, sampler="heun", alpha=h, dt=1.0, nfe=2 * round(2 / h)) for h in HS]
    # alpha and dt only enter as their product with the consistent predictor
    heun_dt = [tanh_ode_error(h, sampler="heun", alpha=1.0, dt=h, nfe=2 * round(2 / h)) for h in HS]
    assert loglog_slope(HS, euler) == pytest.approx(1.0, abs=0.1)
    assert loglog_slope(HS, heun) == pytest.approx(2.0, abs=0.1)
    assert np.allclose(heun, heun_dt, rtol=1e-9, atol=1e-14)
    assert heun[-1] < euler[-1] / 50


def test_literal_predictor_is_second_order_only_when_alpha_is_one():
    lit1 = [tanh_ode_error(h, sampler="heun", alpha=1.0, dt=h, predictor="literal", nfe=2 * round(2 / h))
            for h in HS]
    # alpha != 1: the predictor lands at the wrong point, an O(h) error in d'; finer steps, since the
    # first-order term has a small constant and the curve is pre-asymptotic at h = 0.1
    fine = tuple(h / 4 for h in HS)
    lit_half = [tanh_ode_error(h, sampler="heun", alpha=0.5, dt=2 * h, predictor="literal", nfe=2 * round(2 / h))
                for h in fine]
    assert loglog_slope(HS, lit1) == pytest.approx(2.0, abs=0.1)
    assert loglog_slope(fine, lit_half) == pytest.approx(1.0, abs=0.1)


def test_heun_is_aegds_without_momentum():
    a = tanh_ode_error(0.05, sampler="heun", alpha=0.05, nfe=80, gamma=0.9)
    b = tanh_ode_error(0.05, sampler="aegds", alpha=0.05, nfe=80, gamma=0.0)
    c = tanh_ode_error(0.05, sampler="aegds", alpha=0.05, nfe=80, gamma=0.5)
    assert a == b and c != a


# ----------------------------------------------------------------------------- schedules and noise scales

def test_step_size_schedules_and_noise_scales_by_hand():
    c = SamplerConfig(alpha=2.0, schedule="poly", tau=10.0, power=0.5, nfe=40)
    assert c.step_size(0) == 2.0 and c.step_size(30) == pytest.approx(2.0 / 2.0)   # (1 + 30/10)^-0.5 = 1/2
    assert SamplerConfig(alpha=2.0, schedule="linear", nfe=40).step_size(10) == pytest.approx(1.5)
    assert SamplerConfig(alpha=2.0, schedule="cosine", nfe=40).step_size(20) == pytest.approx(1.0)
    assert SamplerConfig(alpha=2.0, schedule="constant", nfe=40).step_size(39) == 2.0
    assert SamplerConfig(dt=0.5, noise="alg1").noise_std(2.0) == pytest.approx(math.sqrt(2.0))
    assert SamplerConfig(dt=0.5, noise="eq5").noise_std(2.0) == pytest.approx(2.0)
    assert SamplerConfig(dt=0.5, noise="temperature", temperature=0.25).noise_std(2.0) == pytest.approx(math.sqrt(0.5))
    assert SamplerConfig(sampler="sgld", dt=0.5, noise="alg1").noise_std(2.0) == pytest.approx(2.0)  # Eq. 3: no dt
    assert SamplerConfig(sampler="sgld").resolved().alpha == S.DEFAULT_ALPHA["sgld"]


# ----------------------------------------------------------------------------- energy and score

class LinearClassifier(nn.Module):
    """f(x) = W x + b on flattened inputs, with the metadata the sampler reads."""
    def __init__(self, k=3, shape=(1, 2, 2), input_range=(-1.0, 1.0), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = int(np.prod(shape))
        self.W = nn.Parameter(torch.randn(k, d, generator=g))
        self.b = nn.Parameter(torch.randn(k, generator=g))
        self.num_classes, self.input_shape, self.input_range = k, shape, input_range

    def forward(self, x):
        return x.flatten(1) @ self.W.T + self.b


def test_energy_and_score_match_the_linear_logit_formulas():
    m = LinearClassifier()
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 1, 0])
    W, b = m.W.detach(), m.b.detach()
    f = x.flatten(1) @ W.T + b
    e_ref = torch.logsumexp(f, 1) - f[torch.arange(5), y]                   # Eq. 1
    s_ref = W[y] - torch.softmax(f, 1) @ W                                  # -grad_x E
    s, e, logits = S.score(m, x, y)
    assert torch.allclose(e, e_ref, atol=1e-5) and torch.allclose(S.energy(m, x, y), e_ref, atol=1e-5)
    assert torch.allclose(s.flatten(1), s_ref, atol=1e-5) and torch.allclose(logits, f, atol=1e-5)
    assert all(p.grad is None and p.requires_grad for p in m.parameters())


def cnn(k=4, seed=0):
    torch.manual_seed(seed)  # weights only
    m = build_model("cnn", k, (1, 8, 8), width=4, input_range=(-1.0, 2.0))
    with torch.no_grad():  # non-trivial BN running statistics, so that a stray update would show
        m.train()
        m(torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2)
    return m


def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()], [(p.requires_grad, p.grad) for p in model.parameters()])


def assert_same(model, snap):
    state, modes, flags = snapshot(model)
    assert all(torch.equal(state[k], snap[0][k]) for k in state)
    assert modes == snap[1]
    assert flags == snap[2] and all(g is None for _, g in flags)


FAST = dict(device="cpu", diag_every=2)


def test_model_is_untouched_and_modes_flags_restored():
    m = cnn()
    m.train()
    m.stages[1].eval()                    # mixed modes must come back exactly
    m.fc.weight.requires_grad_(False)     # mixed flags too
    snap = snapshot(m)
    x, y, diag = synthesize(m, [0, 1, 2, 3], 3, nfe=6, **FAST)
    assert_same(m, snap)
    with pytest.raises(NonFiniteError):   # ... also when sampling fails half way
        synthesize(m, [0, 1], 2, sampler="sgld", nfe=20, **BLOW_UP, **FAST)
    assert_same(m, snap)


def test_shapes_labels_balance_and_diagnostics():
    m = cnn(k=5)
    x, y, d = synthesize(m, [3, 0, 4], 4, sampler="aegds", nfe=10, seed=1, **FAST)
    assert x.shape == (12, 1, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.dtype == torch.long and y.tolist() == [3] * 4 + [0] * 4 + [4] * 4
    assert torch.bincount(y, minlength=5).tolist() == [4, 0, 0, 4, 4]
    assert x.min() >= -1.0 and x.max() <= 2.0                      # clamp=True: model.input_range
    assert d.step.tolist() == [0, 2, 4, 5] and d.nfe.tolist() == [0, 4, 8, 10]   # 5 Heun steps, k = 2
    for name in ("wall_time", *d.METRICS):
        assert len(getattr(d, name)) == 4
    assert np.all(np.diff(d.wall_time) >= 0)
    e = S.energy(m, x, y)
    assert d.final["energy"] == pytest.approx(float(e.mean()), rel=1e-5)
    assert d.final["target_prob"] == pytest.approx(float(torch.exp(-e).mean()), rel=1e-5)
    hit = (S.score(m, x, y)[2].argmax(1) == y).float().mean()
    assert d.final["target_frac"] == pytest.approx(float(hit))
    assert d.energy[-1] < d.energy[0]                              # the energy goes down
    assert d.config.sampler == "aegds" and d.config.alpha == S.DEFAULT_ALPHA["aegds"]
    import json
    json.dumps(d.to_dict())                                        # JSON-ready
    r = d.first_reaching("energy", float(d.energy[-1]), below=True)
    assert r is not None and r["nfe"] <= 10
    assert d.first_reaching("target_prob", 2.0) is None


def test_chunked_sampling_shapes_and_merged_diagnostics():
    m = cnn()
    x, y, d = synthesize(m, [0, 1, 2], 3, sampler="sgld", nfe=4, batch_size=4, **FAST)
    assert x.shape == (9, 1, 8, 8) and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert d.final["energy"] == pytest.approx(float(S.energy(m, x, y).mean()), rel=1e-5)


@pytest.mark.parametrize("sampler,nfe", [("sgld", 6), ("heun", 6), ("aegds", 6)])
def test_nfe_counts_forward_passes(sampler, nfe):
    """nfe score evaluations (one forward + one backward each) plus one forward for the final diagnostics."""
    m = cnn()
    calls = []
    h = m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    synthesize(m, [0, 1], 2, sampler=sampler, nfe=nfe, **FAST)
    h.remove()
    assert calls == [4] * (nfe + 1)


def test_same_seed_identical_different_seed_different():
    m = cnn()
    runs = [synthesize(m, [0, 2], 3, nfe=8, seed=s, **FAST).x for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    for name in ("sgld", "heun"):
        a = synthesize(m, [1], 2, sampler=name, nfe=4, seed=3, init="uniform", **FAST).x
        b = synthesize(m, [1], 2, sampler=name, nfe=4, seed=3, init="uniform", **FAST).x
        assert torch.equal(a, b)


def test_global_rng_is_not_used():
    m = cnn()
    torch.manual_seed(0)
    a = synthesize(m, [0], 2, nfe=4, seed=1, **FAST).x
    torch.manual_seed(123)
    b = synthesize(m, [0], 2, nfe=4, seed=1, **FAST).x
    assert torch.equal(a, b)


def test_synthetic_set_unpacks_and_splits_by_forget_task():
    m = cnn()
    syn = synthesize(m, [0, 1, 2], 3, nfe=4, seed=0, **FAST)
    x, y, d = syn
    assert x is syn.x and y is syn.y and d is syn.diagnostics and syn.classes == (0, 1, 2) and syn.wall_time > 0
    x_r, y_r, x_f, y_f = syn.split([1])
    assert y_f.tolist() == [1, 1, 1] and sorted(set(y_r.tolist())) == [0, 2]
    assert torch.equal(torch.cat([x_r[:3], x_f, x_r[3:]]), x)
    with pytest.raises(ValueError, match="forget class"):
        syn.split([3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_for_a_cpu_model_returns_to_cpu():
    m = cnn()
    snap = snapshot(m)
    x, y, d = synthesize(m, [0, 1], 4, nfe=8, device="cuda", diag_every=2)
    assert x.device.type == "cpu" and d.device.startswith("cuda")
    assert next(m.parameters()).device.type == "cpu"
    assert_same(m, snap)


# ----------------------------------------------------------------------------- non-finite stop

# Noise of std sqrt(2 * 1e38 * 1e38) overflows float32 inside the first convolution after one step.
# (A huge alpha alone does not: the score of -log softmax vanishes once p(y|x) saturates at 1.)
BLOW_UP = dict(alpha=1e38, temperature=1e38, clamp=False, schedule="constant")


def test_nonfinite_score_stops_with_step_and_setting():
    with pytest.raises(NonFiniteError, match=r"at step 1 \(score evaluation 2 of 20, at x\).*alpha=1e\+38.*"
                                             r"temperature=1e\+38.*clamp=False"):
        synthesize(cnn(), [0, 1], 2, sampler="sgld", nfe=20, **BLOW_UP, **FAST)
    with pytest.raises(NonFiniteError, match=r"at step 0 \(score evaluation 2 of 20, at the predictor x'\)"
                                             r".*sampler='aegds'.*alpha=1e\+38.*gamma=0.5"):
        synthesize(cnn(), [0, 1], 2, sampler="aegds", nfe=20, **BLOW_UP, **FAST)


def test_nonfinite_step_is_exact_whatever_diag_every():
    """An unstable step (alpha * lambda_max > 2) on the Gaussian energy overflows float32; the step
    reported is the first evaluation whose energy is inf, also when no diagnostic is read before the end."""
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)

    def score32(x):
        s, e, _ = gaussian_score(x.double())
        return s.float(), e.float(), None

    msgs = []
    for k in (1, 7, 10_000):
        cfg = SamplerConfig(sampler="sgld", alpha=3.0, nfe=400, schedule="constant", diag_every=k, device="cpu")
        with pytest.raises(NonFiniteError) as err:
            run_chains(score32, x0, cfg, torch.Generator().manual_seed(0))
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1] == msgs[2] and "alpha=3.0" in msgs[0]
    # by hand: the energy first overflows at the first step where the float32 recursion does
    x, step = x0.double(), 0
    g = torch.Generator().manual_seed(0)
    eps = torch.empty_like(x0)
    while True:
        e = (0.5 * (((x - MU) @ A) * (x - MU)).sum(1)).float()  # the energy as score32 returns it
        if not torch.isfinite(e).all() or not torch.isfinite(x.float()).all():
            break
        eps.normal_(generator=g)
        x = (x.float() + 3.0 * (-((x - MU) @ A)).float() + math.sqrt(6e-4) * eps).double()
        step += 1
    assert f"step {step} " in msgs[0]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(sampler="langevin"), ValueError, "sampler"),
    (dict(predictor="euler"), ValueError, "predictor"),
    (dict(noise="big"), ValueError, "noise"),
    (dict(init="zeros"), ValueError, "init"),
    (dict(schedule="exp"), ValueError, "schedule"),
    (dict(nfe=0), ValueError, "nfe"),
    (dict(nfe=-2), ValueError, "nfe"),
    (dict(nfe=4.0), ValueError, "nfe"),
    (dict(sampler="aegds", nfe=5), ValueError, "even"),
    (dict(sampler="heun", nfe=1), ValueError, "even"),
    (dict(alpha=0.0), ValueError, "alpha"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(alpha=float("nan")), ValueError, "alpha"),
    (dict(alpha="1"), TypeError, "alpha"),
    (dict(dt=0.0), ValueError, "dt"),
    (dict(gamma=1.0), ValueError, "gamma"),
    (dict(gamma=-0.1), ValueError, "gamma"),
    (dict(temperature=-1e-4), ValueError, "temperature"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(init_scale=0.0), ValueError, "init_scale"),
    (dict(tau=0.0), ValueError, "tau"),
    (dict(power=-0.5), ValueError, "power"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(diag_every=0), ValueError, "diag_every"),
    (dict(clamp="yes"), TypeError, "clamp"),
    (dict(device=3), TypeError, "device"),
])
def test_bad_config_raises_naming_the_field(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SamplerConfig(**kw)
    with pytest.raises(exc, match=pattern):      # the same through synthesize's overrides
        synthesize(cnn(), [0], 1, **{"device": "cpu", **kw})


def test_error_messages_list_the_allowed_values():
    with pytest.raises(ValueError, match="'sgld', 'heun', 'aegds'"):
        SamplerConfig(sampler="x")
    with pytest.raises(ValueError, match="'rk2', 'literal'"):
        SamplerConfig(predictor="x")
    with pytest.raises(ValueError, match="'alg1', 'eq5', 'temperature'"):
        SamplerConfig(noise="x")


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda m: synthesize(m, [], 2), ValueError, "empty"),
    (lambda m: synthesize(m, [4], 2), ValueError, r"out of range.*0\.\.3"),
    (lambda m: synthesize(m, [-1], 2), ValueError, "out of range"),
    (lambda m: synthesize(m, [0, 0], 2), ValueError, "repeat"),
    (lambda m: synthesize(m, ["a"], 2), TypeError, "classes"),
    (lambda m: synthesize(m, "0", 2), TypeError, "classes"),
    (lambda m: synthesize(m, [0], 0), ValueError, "n_per_class"),
    (lambda m: synthesize(m, [0], 2.5), ValueError, "n_per_class"),
    (lambda m: synthesize(m, [0], 2, seed=-1), ValueError, "seed"),
    (lambda m: synthesize(m, [0], 2, stepsize=1.0), TypeError, "stepsize"),
    (lambda m: synthesize(m, [0], 2, config={"nfe": 2}), TypeError, "config"),
    (lambda m: synthesize(m, [0], 2, device="nonsense"), ValueError, "device"),
    (lambda m: synthesize(nn.Linear(2, 2), [0], 2), TypeError, "num_classes"),
    (lambda m: synthesize("model", [0], 2), TypeError, "model"),
    (lambda m: S.score(m, torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long)), TypeError, "y"),
    (lambda m: S.energy(m, torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.zeros(2, dtype=torch.long)),
     TypeError, "x"),
])
def test_bad_synthesize_input_raises(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(cnn())


# ----------------------------------------------------------------------------- source-free

def test_sampler_imports_no_data_train_or_metrics():
    code = ("import sys, dsda.sampler; bad = [m for m in ('dsda.data', 'dsda.train', 'dsda.metrics') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
