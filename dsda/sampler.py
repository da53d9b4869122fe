"""AEGDS: energy-guided synthesis of stand-in data from a frozen classifier (paper §3, stage 1).

The method sees only the model. Every sample x is pushed down the energy of its target class

    E(x, y) = -log softmax(f(x))[y]                                   # Eq. 1

by following the score s(x, y) = -grad_x E(x, y). Three samplers are selected by name:

- ``sgld``  plain Langevin (the paper's EGDS, Eq. 3 / Alg. 1 line 5), one score per step:
            x <- x + a_t s(x) + sigma_t eps.
- ``heun``  the two-stage Runge-Kutta step of Eq. 5 with eta = 1 (Heun), two scores per step:
            x' = x + c d + sigma eps;  x <- x + a dt (d + d')/2 + sigma eps,   d = s(x), d' = s(x').
- ``aegds`` Alg. 1 lines 7-13: the Heun direction with the paper's momentum (Eq. 6):
            v <- gamma v + a (d + d')/2;  x <- x + dt v + sigma eps.
            ``heun`` is exactly ``aegds`` with gamma = 0.

The budget is counted in score evaluations per sample (NFE), so the samplers are compared at equal
compute: ``nfe`` SGLD steps, or ``nfe / 2`` Heun / AEGDS steps.

Where the paper contradicts itself, each reading is a named option (docs/EQUATIONS.md, "AEGDS"):

- ``predictor``: ``"rk2"`` uses c = a dt, the consistent Heun predictor (second order, see
  tests/test_sampler.py); ``"literal"`` uses c = dt exactly as printed in Alg. 1 line 9, which is
  consistent only when a = 1 and otherwise falls back to first order.
- ``noise``: ``"alg1"`` sigma = sqrt(2 a dt) (Alg. 1, the Euler-Maruyama scale); ``"eq5"``
  sigma = sqrt(2 a) (Eq. 3 and Eq. 5); ``"temperature"`` sigma = sqrt(2 a dt T), a temperature T
  decoupled from the step as in JEM (Grathwohl et al., 2020). SGLD has no Delta t (Eq. 3), so for SGLD
  ``alg1`` and ``eq5`` coincide and ``temperature`` is sqrt(2 a T).
- The same eps is added in the predictor and in the update (Alg. 1 lines 9 and 13 use one eps_i).
- The "Nesterov" momentum of Eq. 6 is heavy-ball momentum on the Heun direction (Alg. 1 lines
  11-12 compute no look-ahead gradient), implemented literally. A consequence, derived for a Gaussian energy and checked in
  tests/test_sampler.py: the momentum amplifies the drift by about 1 / (1 - gamma) but the noise enters
  the position unamplified, so AEGDS samples the target at temperature about (1 - gamma) T, not T;
  noise="temperature" with T = 1 / (1 - gamma) approximately undoes this.

Step-size schedule (all samplers; Eq. 3 asks for a decreasing sequence, Alg. 1 writes a_{t_i}): the
schedule is a function of the NFE already spent, n, so that it is the same at equal compute for all
samplers: ``"poly"`` a_n = alpha (1 + n / tau)^-power (Welling & Teh 2011), ``"linear"``
a_n = alpha (1 - n / nfe), ``"cosine"`` a_n = alpha (1 + cos(pi n / nfe)) / 2, ``"constant"``.

Defaults, chosen by measurement with ``benchmarks/sampler.py`` on a `cpu`-profile model (compact CNN,
width 32, Fashion-MNIST, 91.2 % test accuracy), 10 classes x 10 samples, seed 0, NFE counted until
(a) mean E <= 0.05, (b) >= 95 % of samples with p(y|x) >= 0.9, (c) mean E <= 0.01:

- alpha per sampler (DEFAULT_ALPHA), best of the grid 1, 3, 10, 20, 40: SGLD 10 (a/b/c in 5/7/35 NFE),
  Heun 20 (8/8/34), AEGDS 20 with gamma 0.5 (8/10/16). gamma 0.9 (a common momentum value) is slower (or equal) at
  alpha >= 3 (16/18-22/28-32 NFE at alpha 10-40): the momentum overshoots.
- noise="temperature", T = 1e-4: the paper's noise (alg1 = eq5 at dt = 1, i.e. T = 1) never reaches (a)
  within 24-40 NFE, for SGLD and AEGDS at alpha 10, 20, 300 and 3000 (final mean E 1.7-5);
  T = 1e-3 is slightly worse than 1e-4 (final E 0.013 vs 0.005 at 24 NFE) and T = 1e-2 misses (b) until 22 NFE.
- predictor="rk2": 8/10/16 NFE against 10/12/16 for "literal", and the consistent second-order step.
- init="gaussian", clamp=True: uniform init is the same to within one step; clamp=False reaches a lower
  energy (0.0007) but keeps samples outside the pixel range the model was trained on.
- schedule="poly" (tau = 50 NFE, power 0.55): within 40 NFE it differs from a constant step by at most
  one SGLD step; kept because Eq. 3 asks for a decreasing sequence.
The step size is in units of the model's score, so it does not transfer between models: on the `smoke`
model (digits 8x8, CNN width 8) the best alpha is about 1 (SGLD 0.5, Heun 1, AEGDS 0.5-1).

Clamping (option ``clamp``) projects the predictor x' and every new x onto ``model.input_range``;
the paper does not say whether it clamps. With momentum the velocity is not clamped (Alg. 1 has no
such step).

Structure: one function per update of Alg. 1 (`sgld_step`, `heun_step`, `aegds_step`) and one chain loop
(`run_chains`) that schedules the step size, draws the noise and records diagnostics;
`dsda.synthesis.synthesize` runs it on a model.

Goal-sized synthesis (``target_energy``, ours): a chain stops at the first state whose energy is at most
the target and leaves the batch, so ``nfe`` becomes a cap (`dsda.chains`, which also counts the NFE each
sample spent).

Speed: with a fixed budget the loop never synchronises with the host except once every ``diag_every``
steps, where it reads the diagnostics and a device-side record of which score evaluations were finite
(with a target it also reads which chains are done, once per step); a non-finite energy or score stops
the run with a `NonFiniteError` naming the exact step and the settings.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .chains import CONFIDENT_PROB, _stats, chain_pool  # noqa: F401  (CONFIDENT_PROB, _stats re-exported)
from .energy import ScoreFn, energy, energy_from_logits, model_score_fn, score  # noqa: F401  (re-exported)
from .modes import frozen  # noqa: F401  (re-exported)
from .checks import NonFiniteError  # noqa: F401  (re-exported: where sampling callers catch it)
from .utils import check_choice, check_positive

SAMPLERS = ("sgld", "heun", "aegds")
PREDICTORS = ("rk2", "literal")
NOISES = ("alg1", "eq5", "temperature")
INITS = ("gaussian", "uniform")
SCHEDULES = ("poly", "constant", "linear", "cosine")
METRICS = ("energy", "target_prob", "target_frac", "confident_frac", "score_norm")  # recorded per state

# The measured best initial step size of each sampler (used when SamplerConfig.alpha is None).
DEFAULT_ALPHA = {"sgld": 10.0, "heun": 20.0, "aegds": 20.0}


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class SamplerConfig:
    sampler: str = "aegds"          # one of SAMPLERS
    nfe: int = 40                   # score evaluations per sample (SGLD: 1 per step, Heun/AEGDS: 2); a cap
                                    # when target_energy is set
    target_energy: float | None = None  # a chain stops once E(x_i, y) <= this (dsda/chains.py; ours); None = all
                                    # chains run the whole budget
    alpha: float | None = None      # initial step size a_0; None = DEFAULT_ALPHA[sampler] (measured)
    schedule: str = "poly"          # step decay in the NFE spent, one of SCHEDULES
    tau: float = 50.0               # "poly": NFE after which the step is 2^-power of the initial one
    power: float = 0.55             # "poly": decay exponent (Welling & Teh: in (0.5, 1])
    dt: float = 1.0                 # Delta t_i of Alg. 1 (Heun/AEGDS; Eq. 3 (SGLD) has none)
    gamma: float = 0.5              # momentum decay of Eq. 6 (AEGDS only; Heun is gamma = 0)
    predictor: str = "rk2"          # "rk2": x + a dt d (consistent); "literal": x + dt d (Alg. 1 line 9)
    noise: str = "temperature"      # "alg1": sqrt(2 a dt); "eq5": sqrt(2 a); "temperature": sqrt(2 a dt T)
    temperature: float = 1e-4       # T of noise="temperature" (0 = deterministic gradient flow)
    init: str = "gaussian"          # "gaussian": init_scale * N(0, I); "uniform": over input_range
    init_scale: float = 1.0         # std of the Gaussian / fraction of the range covered by the uniform
    clamp: bool = True              # project x' and x onto model.input_range after each move
    batch_size: int = 1024          # samples per chunk (memory); chunks run one after the other
    diag_every: int = 5             # read diagnostics (one host sync) every k steps
    device: str = "auto"            # where to sample; "auto" = CUDA, then MPS, then CPU
    progress: bool = False          # tqdm progress bar over steps

    def __post_init__(self):
        for name, allowed in (("sampler", SAMPLERS), ("predictor", PREDICTORS), ("noise", NOISES),
                              ("init", INITS), ("schedule", SCHEDULES)):
            check_choice(name, getattr(self, name), allowed)
        for name in ("nfe", "batch_size", "diag_every"):
            check_positive(name, getattr(self, name))
        if self.sampler != "sgld" and self.nfe % 2:
            raise ValueError(f"nfe must be even for sampler={self.sampler!r} (2 score evaluations per step), "
                             f"got {self.nfe!r}")
        for name in ("alpha", "target_energy"):
            if getattr(self, name) is not None:
                _check_real(name, getattr(self, name), low=0.0, low_open=True)
        for name, low, high, low_open in (("tau", 0.0, None, True), ("power", 0.0, None, False),
                                          ("dt", 0.0, None, True), ("gamma", 0.0, 1.0, False),
                                          ("temperature", 0.0, None, False), ("init_scale", 0.0, None, True)):
            _check_real(name, getattr(self, name), low=low, high=high, low_open=low_open)
        for name in ("clamp", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.device, (str, torch.device)):
            raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @property
    def evals_per_step(self) -> int:
        return 1 if self.sampler == "sgld" else 2

    @property
    def n_steps(self) -> int:
        return self.nfe // self.evals_per_step

    def resolved(self) -> "SamplerConfig":
        """The same config with alpha filled in from DEFAULT_ALPHA when it is None."""
        if self.alpha is not None:
            return self
        return dataclasses.replace(self, alpha=DEFAULT_ALPHA[self.sampler])

    def step_size(self, n: int) -> float:
        """a_n: the step size after n score evaluations (a host float: no device work, no sync)."""
        a = self.resolved().alpha
        if self.schedule == "poly":
            return a * (1.0 + n / self.tau) ** -self.power
        if self.schedule == "linear":
            return a * (1.0 - n / self.nfe)
        if self.schedule == "cosine":
            return a * 0.5 * (1.0 + math.cos(math.pi * n / self.nfe))
        return a

    def noise_std(self, a: float) -> float:
        """sigma for step size a (the three readings of the paper, see the module docstring)."""
        dt = 1.0 if self.sampler == "sgld" else self.dt    # Eq. 3 has no Delta t
        if self.noise == "eq5":
            return math.sqrt(2.0 * a)                       # Eq. 3 / Eq. 5
        if self.noise == "alg1":
            return math.sqrt(2.0 * a * dt)                  # Alg. 1 lines 9, 13
        return math.sqrt(2.0 * a * dt * self.temperature)   # JEM-style decoupled temperature

    def settings(self) -> str:
        """The settings that control stability, for error messages."""
        c = self.resolved()
        parts = [f"sampler={c.sampler!r}", f"alpha={c.alpha!r}", f"schedule={c.schedule!r}"]
        if c.sampler != "sgld":
            parts += [f"dt={c.dt!r}", f"predictor={c.predictor!r}"]
        if c.sampler == "aegds":
            parts.append(f"gamma={c.gamma!r}")
        parts += [f"noise={c.noise!r}"]
        if c.noise == "temperature":
            parts.append(f"temperature={c.temperature!r}")
        return ", ".join(parts + [f"clamp={c.clamp!r}"])


def _check_real(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> None:
    """A finite real number in [low, high) (or (low, high) with low_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and value >= high:
        raise ValueError(f"{name} must be < {high}, got {value!r}")


def make_config(config: SamplerConfig | None = None, **overrides) -> SamplerConfig:
    """`config` (default SamplerConfig()) with `overrides` applied and validated."""
    if config is None:
        config = SamplerConfig()
    if not isinstance(config, SamplerConfig):
        raise TypeError(f"config must be a SamplerConfig or None, got {type(config).__name__}")
    names = {f.name for f in dataclasses.fields(SamplerConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown sampler option(s) {unknown}; allowed: {sorted(names)}")
    return dataclasses.replace(config, **overrides).resolved()


# ----------------------------------------------------------------------------- the three updates of Alg. 1

def sgld_step(x: torch.Tensor, d: torch.Tensor, eps: torch.Tensor, a: float, sigma: float) -> torch.Tensor:
    """EGDS / SGLD, in place: x <- x + a_t s(x) + sigma_t eps.                    # Eq. 3, Alg. 1 line 5"""
    return x.add_(d, alpha=a).add_(eps, alpha=sigma)


def aegds_step(score_fn: ScoreFn, x: torch.Tensor, v: torch.Tensor, d: torch.Tensor, eps: torch.Tensor,
               a: float, sigma: float, cfg: SamplerConfig, gamma: float,
               clamp_: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """AEGDS, in place on x and v, given d = s(x) and eps (Alg. 1 lines 7-8 run in the chain loop).
    Returns (E, s) at the predictor, whose finiteness the loop records."""
    c = a * cfg.dt if cfg.predictor == "rk2" else cfg.dt          # see the module docstring, "predictor"
    xp = clamp_(torch.add(x, d, alpha=c).add_(eps, alpha=sigma))  # Alg. 1 line 9 (with line 13's eps)
    d2, e2, _ = score_fn(xp)                                       # Alg. 1 line 10: d'_i = s(x', y)
    # Alg. 1 lines 11-12 / Eq. 6: v <- gamma v + a (d/2 + d'/2), without a temporary for v-hat
    v.mul_(gamma).add_(d, alpha=a / 2).add_(d2, alpha=a / 2)
    x.add_(v, alpha=cfg.dt).add_(eps, alpha=sigma)                 # Alg. 1 line 13
    return e2, d2


def heun_step(score_fn: ScoreFn, x: torch.Tensor, v: torch.Tensor, d: torch.Tensor, eps: torch.Tensor,
              a: float, sigma: float, cfg: SamplerConfig,
              clamp_: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-stage Runge-Kutta (Heun) step of Eq. 5 (eta = 1): AEGDS without momentum (v is reset to the
    Heun direction a (d + d')/2 at every step)."""
    return aegds_step(score_fn, x, v, d, eps, a, sigma, cfg, 0.0, clamp_)


# ----------------------------------------------------------------------------- the chain loop

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _all_finite(e: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """A 0-d bool on the device (element-wise: a sum of huge finite values must not count as inf)."""
    return torch.isfinite(e).all() & torch.isfinite(d).all()


def _raise_if_nonfinite(finite: torch.Tensor, upto: int, cfg: SamplerConfig) -> None:
    """Check the device-side finiteness flags of the first `upto` score evaluations (one sync)."""
    if upto == 0 or bool(finite[:upto].all()):
        return
    j = int((~finite[:upto]).nonzero()[0, 0])                      # first bad evaluation
    if j == 0:  # at x_0, before any step: no step size can be the cause
        raise NonFiniteError(
            f"non-finite energy or score at the initial samples x_0 (score evaluation 1 of {cfg.nfe}, before any "
            f"step) with {cfg.settings()}: the model's outputs are not finite there; check the model (its weights, "
            "buffers and forward pass) and init_scale, not the step size")
    step, which = divmod(j, cfg.evals_per_step)
    where = "at x" if which == 0 else "at the predictor x'"
    raise NonFiniteError(
        f"non-finite energy or score at step {step} (score evaluation {j + 1} of {cfg.nfe}, {where}) "
        f"with {cfg.settings()}; lower alpha"
        + ("/dt" if cfg.sampler != "sgld" else "")
        + (", the temperature" if cfg.noise == "temperature" else ", or use noise='temperature'")
        + (" or set clamp=True" if not cfg.clamp else ""))


def _clamper(cfg: SamplerConfig, input_range: Sequence[float] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    lo, hi = (input_range if cfg.clamp and input_range is not None else (-math.inf, math.inf))
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return lambda t: t
    return lambda t: t.clamp_(lo, hi)


def _finish(x, score_fn, eval_fn, pool, pending, rows) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Score the returned samples and turn the host rows and device stats into per-record arrays."""
    x, final_stats = pool.final(x, score_fn, eval_fn)
    pending.append(final_stats)
    stats = torch.stack(pending).cpu().numpy().astype(np.float64)
    arr = np.asarray(rows, dtype=np.float64)
    out = {"step": arr[:, 0].astype(np.int64), "nfe": arr[:, 1].astype(np.int64), "wall_time": arr[:, 2],
           "nfe_spent": arr[:, 3], "sample_nfe": pool.sample_nfe()}
    out.update({name: stats[:, j] for j, name in enumerate(METRICS)})
    return x, out


def run_chains(score_fn: ScoreFn, x0: torch.Tensor, config: SamplerConfig,
               generator: torch.Generator, y: torch.Tensor | None = None,
               input_range: Sequence[float] | None = None,
               eval_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
               ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Run `config.sampler` from x0 with any score function (the model path and the analytic tests
    share this loop). score_fn(x) -> (s, E, logits or None); eval_fn(x) -> (E, logits) scores the
    returned samples (default: score_fn). Returns the samples and the raw per-record arrays.
    With `config.target_energy` set, chains stop at their target (dsda/chains.py) and both functions
    are called as fn(x, rows), `rows` the indices into x0 of the chains in x."""
    cfg = config.resolved()
    device, k, clamp_ = x0.device, cfg.diag_every, _clamper(cfg, input_range)
    gamma = cfg.gamma if cfg.sampler == "aegds" else 0.0           # Heun = AEGDS without momentum
    pool = chain_pool(x0, y, cfg)                                  # which chains still move
    x = x0.clone()
    eps = torch.empty_like(x)                                      # reused noise buffer (keeps layout)
    v = torch.zeros_like(x) if cfg.sampler != "sgld" else None
    finite = torch.ones(cfg.nfe, dtype=torch.bool, device=device)  # one flag per score evaluation
    rows: list[tuple[int, int, float, float]] = []                 # (step, nfe, wall, mean NFE spent) on the host
    pending: list[torch.Tensor] = []                               # device stats, read at the end
    steps = range(cfg.n_steps)
    if cfg.progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=cfg.sampler, leave=False)
    _sync(device)
    t0 = time.perf_counter()
    for i in steps:
        n = i * cfg.evals_per_step                                 # NFE spent to produce x_i
        if i % k == 0:                                             # the only host sync of the fixed budget
            _raise_if_nonfinite(finite, n, cfg)
            rows.append((i, n, time.perf_counter() - t0, pool.mean_spent(n)))
        if pool.idle:                                              # every chain has reached its target
            if i % k == 0:
                pending.append(pool.stats(None, None, None))
            continue
        a = cfg.step_size(n)
        sigma = cfg.noise_std(a)
        d, e, logits = pool.score(score_fn, x)                     # Alg. 1 line 8: d_i = s(x_i, y)
        finite[n] = _all_finite(e, d)                              # device-side, no sync
        if i % k == 0:
            pending.append(pool.stats(e, logits, d))
        x, v, d, eps = pool.retire(x, v, d, eps, e, logits, n)     # chains at their target stop at x_i
        if pool.idle:
            continue
        eps.normal_(generator=generator)                           # Alg. 1 line 7: eps ~ N(0, I)
        if cfg.sampler == "sgld":
            sgld_step(x, d, eps, a, sigma)
        else:
            e2, d2 = aegds_step(lambda z: pool.score(score_fn, z), x, v, d, eps, a, sigma, cfg, gamma, clamp_)
            finite[n + 1] = _all_finite(e2, d2)
        clamp_(x)
    _raise_if_nonfinite(finite, cfg.nfe, cfg)
    _sync(device)
    rows.append((cfg.n_steps, cfg.nfe, time.perf_counter() - t0, pool.mean_spent(cfg.nfe)))
    return _finish(x, score_fn, eval_fn, pool, pending, rows)


def init_samples(shape: Sequence[int], config: SamplerConfig, generator: torch.Generator,
                 device: torch.device, input_range: Sequence[float] = (-math.inf, math.inf)) -> torch.Tensor:
    """x_0: "gaussian" init_scale * N(0, I) (the owner's normalisation makes the data roughly zero
    mean, unit variance); "uniform" covers init_scale of input_range around its centre, or
    U(-init_scale, init_scale) when the range is unbounded. The paper does not state its init."""
    lo, hi = float(input_range[0]), float(input_range[1])
    if config.init == "gaussian":
        x = torch.randn(tuple(shape), generator=generator, device=device).mul_(config.init_scale)
    else:
        u = torch.rand(tuple(shape), generator=generator, device=device).mul_(2).sub_(1)
        if math.isfinite(lo) and math.isfinite(hi):
            x = u.mul_(config.init_scale * (hi - lo) / 2).add_((hi + lo) / 2)
        else:
            x = u.mul_(config.init_scale)
    if config.clamp:
        x.clamp_(lo, hi)
    return x

