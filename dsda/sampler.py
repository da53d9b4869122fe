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

Where the paper contradicts itself, each reading is a named option (digest §3.4):

- ``predictor``: ``"rk2"`` uses c = a dt, the consistent Heun predictor (second order, see
  tests/test_sampler.py); ``"literal"`` uses c = dt exactly as printed in Alg. 1 line 9, which is
  consistent only when a = 1 and otherwise falls back to first order.
- ``noise``: ``"alg1"`` sigma = sqrt(2 a dt) (Alg. 1, the Euler-Maruyama scale); ``"eq5"``
  sigma = sqrt(2 a) (Eq. 3 and Eq. 5); ``"temperature"`` sigma = sqrt(2 a dt T), a temperature T
  decoupled from the step as in JEM (digest §9.1, §10.1). SGLD has no Delta t (Eq. 3), so for SGLD
  ``alg1`` and ``eq5`` coincide and ``temperature`` is sqrt(2 a T).
- The same eps is added in the predictor and in the update (Alg. 1 lines 9 and 13, digest note 3).
- The "Nesterov" momentum of Eq. 6 is heavy-ball momentum on the Heun direction (digest note 4),
  implemented literally. A consequence, derived for a Gaussian energy and checked in
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
  Heun 20 (8/8/34), AEGDS 20 with gamma 0.5 (8/10/16). gamma 0.9 (the digest's guess) is slower (or equal) at
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

Speed: the loop never synchronises with the host except once every ``diag_every`` steps, where it
reads the diagnostics and a device-side record of which score evaluations were finite; a non-finite
energy or score stops the run with a `NonFiniteError` naming the exact step and the settings.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import NonFiniteError, check_finite_model, validate_seed
from .utils import check_choice, check_positive, resolve_device

SAMPLERS = ("sgld", "heun", "aegds")
PREDICTORS = ("rk2", "literal")
NOISES = ("alg1", "eq5", "temperature")
INITS = ("gaussian", "uniform")
SCHEDULES = ("poly", "constant", "linear", "cosine")
AUTOCASTS = ("none", "bf16")
CONFIDENT_PROB = 0.9  # "confident" = p(y | x) >= 0.9, the benchmark's target (b)

# The measured best initial step size of each sampler (used when SamplerConfig.alpha is None).
DEFAULT_ALPHA = {"sgld": 10.0, "heun": 20.0, "aegds": 20.0}

ScoreFn = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]"]


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class SamplerConfig:
    sampler: str = "aegds"          # one of SAMPLERS
    nfe: int = 40                   # score evaluations per sample (SGLD: 1 per step, Heun/AEGDS: 2)
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
    channels_last: bool = False     # run the model on channels_last inputs (4-D inputs only)
    autocast: str = "none"          # "bf16": model forward under bfloat16 autocast; energy in float32
    device: str = "auto"            # where to sample; "auto" = CUDA, then MPS, then CPU
    progress: bool = False          # tqdm progress bar over steps

    def __post_init__(self):
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("predictor", self.predictor, PREDICTORS)
        check_choice("noise", self.noise, NOISES)
        check_choice("init", self.init, INITS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("autocast", self.autocast, AUTOCASTS)
        for name in ("nfe", "batch_size", "diag_every"):
            check_positive(name, getattr(self, name))
        if self.sampler != "sgld" and self.nfe % 2:
            raise ValueError(f"nfe must be even for sampler={self.sampler!r} (2 score evaluations per step), "
                             f"got {self.nfe!r}")
        if self.alpha is not None:
            _check_real("alpha", self.alpha, low=0.0, low_open=True)
        _check_real("tau", self.tau, low=0.0, low_open=True)
        _check_real("power", self.power, low=0.0)
        _check_real("dt", self.dt, low=0.0, low_open=True)
        _check_real("gamma", self.gamma, low=0.0, high=1.0)
        _check_real("temperature", self.temperature, low=0.0)
        _check_real("init_scale", self.init_scale, low=0.0, low_open=True)
        for name in ("clamp", "channels_last", "progress"):
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
        """sigma for step size a (digest §3.4 note 2)."""
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
        parts += [f"clamp={c.clamp!r}", f"autocast={c.autocast!r}"]
        return ", ".join(parts)


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


# ----------------------------------------------------------------------------- energy and score

@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; each module's mode and each
    parameter's requires_grad are restored afterwards, even on error."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()                       # BatchNorm uses its running statistics, nothing is updated
    for p, _ in flags:
        p.requires_grad_(False)        # autograd then builds no graph through the weights
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def energy_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -log softmax(f(x))[y] from the logits f(x), in float32.   # Eq. 1"""
    return -F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)


def _check_xy(model: nn.Module, x: Any, y: Any) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != x.shape[:1]:
        raise TypeError(f"y must be an int64 tensor of shape ({x.shape[0]},), got "
                        f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")


def energy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) energies E(x, y) of the frozen model in eval mode (no gradient)."""
    _check_xy(model, x, y)
    with frozen(model), torch.no_grad():
        return energy_from_logits(model(x), y)


def _model_score_fn(model: nn.Module, y: torch.Tensor, autocast: str = "none") -> ScoreFn:
    """s(x) for a model already frozen: one forward and ONE backward for the whole batch."""
    device_type = y.device.type
    use_bf16 = autocast == "bf16"

    def score_fn(x: torch.Tensor):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(x)
            e = energy_from_logits(logits, y)                      # Eq. 1, float32
            (g,) = torch.autograd.grad(e.sum(), x)                 # samples are independent: one pass
        return g.neg_(), e.detach(), logits.detach()               # s = -grad_x E

    return score_fn


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
          autocast: str = "none") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, E, logits) for the whole batch: s = -grad_x E(x, y) (one backward pass, gradient w.r.t.
    x only), E (N,) and the logits (N, K), all detached. The model is frozen for the call."""
    _check_xy(model, x, y)
    check_choice("autocast", autocast, AUTOCASTS)
    with frozen(model):
        return _model_score_fn(model, y, autocast)(x)


# ----------------------------------------------------------------------------- diagnostics

@dataclass
class Diagnostics:
    """Per recorded state x_i (every diag_every steps, plus the returned samples), means over samples."""
    step: np.ndarray            # step index i (0 = initialisation, n_steps = the returned samples)
    nfe: np.ndarray             # score evaluations per sample spent to produce x_i
    wall_time: np.ndarray       # seconds from the start of sampling to x_i (device synchronised)
    energy: np.ndarray          # mean E(x_i, y)
    target_prob: np.ndarray     # mean p(y | x_i) = exp(-E)
    target_frac: np.ndarray     # fraction with argmax f(x_i) = y
    confident_frac: np.ndarray  # fraction with p(y | x_i) >= CONFIDENT_PROB
    score_norm: np.ndarray      # mean ||s(x_i, y)||_2 (NaN for the returned samples: forward only)
    config: SamplerConfig       # the resolved configuration that ran
    device: str = ""            # where the sampling ran
    final: dict[str, float] = field(default_factory=dict)  # the last entry of each array

    METRICS = ("energy", "target_prob", "target_frac", "confident_frac", "score_norm")

    def first_reaching(self, metric: str, threshold: float, below: bool = False) -> dict[str, float] | None:
        """The first recorded state whose `metric` is >= threshold (<= with below=True), or None."""
        check_choice("metric", metric, self.METRICS)
        vals = getattr(self, metric)
        hit = vals <= threshold if below else vals >= threshold
        if not hit.any():
            return None
        j = int(np.argmax(hit))
        return {"step": int(self.step[j]), "nfe": int(self.nfe[j]), "wall_time": float(self.wall_time[j]),
                metric: float(vals[j])}

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name).tolist() for name in ("step", "nfe", "wall_time", *self.METRICS)}
        out.update(config=dataclasses.asdict(self.config), device=self.device, final=dict(self.final))
        return out


def _stats(e: torch.Tensor, logits: torch.Tensor | None, s: torch.Tensor | None,
           y: torch.Tensor | None) -> torch.Tensor:
    """The five diagnostics of one state as one device tensor (no sync)."""
    p = torch.exp(-e)                                              # p(y | x), since E = -log p(y | x)
    nan = torch.full((), float("nan"), device=e.device)
    hit = (logits.argmax(1) == y).float().mean() if logits is not None and y is not None else nan
    norm = s.flatten(1).norm(dim=1).mean() if s is not None else nan
    return torch.stack([e.mean(), p.mean(), hit, (p >= CONFIDENT_PROB).float().mean(), norm])


# ----------------------------------------------------------------------------- the samplers

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


def run_chains(score_fn: ScoreFn, x0: torch.Tensor, config: SamplerConfig,
               generator: torch.Generator, y: torch.Tensor | None = None,
               input_range: Sequence[float] | None = None,
               eval_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None = None,
               ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Run `config.sampler` from x0 with any score function (the model path and the analytic tests
    share this loop). score_fn(x) -> (s, E, logits or None); eval_fn(x) -> (E, logits) scores the
    returned samples (default: score_fn). Returns the samples and the raw per-record arrays."""
    cfg = config.resolved()
    device = x0.device
    lo, hi = (input_range if cfg.clamp and input_range is not None else (-math.inf, math.inf))
    do_clamp = math.isfinite(lo) or math.isfinite(hi)
    gamma = cfg.gamma if cfg.sampler == "aegds" else 0.0           # Heun = AEGDS without momentum
    k = cfg.diag_every
    x = x0.clone()
    eps = torch.empty_like(x)                                      # reused noise buffer (keeps layout)
    v = torch.zeros_like(x) if cfg.sampler != "sgld" else None
    finite = torch.ones(cfg.nfe, dtype=torch.bool, device=device)  # one flag per score evaluation
    rows: list[tuple[int, int, float]] = []                        # (step, nfe, wall) on the host
    pending: list[torch.Tensor] = []                               # device stats, read at the end

    def clamp_(t: torch.Tensor) -> torch.Tensor:
        return t.clamp_(lo, hi) if do_clamp else t

    steps = range(cfg.n_steps)
    if cfg.progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=cfg.sampler, leave=False)
    _sync(device)
    t0 = time.perf_counter()
    for i in steps:
        n = i * cfg.evals_per_step                                 # NFE spent to produce x_i
        if i % k == 0:                                             # the only host sync of the loop
            _raise_if_nonfinite(finite, n, cfg)
            rows.append((i, n, time.perf_counter() - t0))
        a = cfg.step_size(n)
        sigma = cfg.noise_std(a)
        d, e, logits = score_fn(x)                                 # Alg. 1 line 8: d_i = s(x_i, y)
        finite[n] = _all_finite(e, d)                              # device-side, no sync
        if i % k == 0:
            pending.append(_stats(e, logits, d, y))
        eps.normal_(generator=generator)                           # Alg. 1 line 7: eps ~ N(0, I)
        if cfg.sampler == "sgld":
            x.add_(d, alpha=a).add_(eps, alpha=sigma)              # Eq. 3 / Alg. 1 line 5
        else:
            c = a * cfg.dt if cfg.predictor == "rk2" else cfg.dt   # see module docstring, "predictor"
            xp = clamp_(torch.add(x, d, alpha=c).add_(eps, alpha=sigma))  # Alg. 1 line 9 (eps of line 13)
            d2, e2, _ = score_fn(xp)                               # Alg. 1 line 10: d'_i = s(x', y)
            finite[n + 1] = _all_finite(e2, d2)
            # Alg. 1 lines 11-12 / Eq. 6: v <- gamma v + a (d/2 + d'/2), without a temporary for v-hat
            v.mul_(gamma).add_(d, alpha=a / 2).add_(d2, alpha=a / 2)
            x.add_(v, alpha=cfg.dt).add_(eps, alpha=sigma)         # Alg. 1 line 13
        clamp_(x)
    _raise_if_nonfinite(finite, cfg.nfe, cfg)
    _sync(device)
    rows.append((cfg.n_steps, cfg.nfe, time.perf_counter() - t0))
    if eval_fn is None:                                            # score the returned samples
        s_f, e_f, logits_f = score_fn(x)
    else:
        s_f = None
        e_f, logits_f = eval_fn(x)
    if not bool(torch.isfinite(e_f).all()):
        raise NonFiniteError(f"non-finite energy of the returned samples (after step {cfg.n_steps - 1}) "
                             f"with {cfg.settings()}; lower alpha")
    pending.append(_stats(e_f, logits_f, s_f, y))
    stats = torch.stack(pending).cpu().numpy().astype(np.float64)
    arr = np.asarray(rows, dtype=np.float64)
    out = {"step": arr[:, 0].astype(np.int64), "nfe": arr[:, 1].astype(np.int64), "wall_time": arr[:, 2]}
    out.update({name: stats[:, j] for j, name in enumerate(Diagnostics.METRICS)})
    return x, out


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


# ----------------------------------------------------------------------------- the public entry point

def _model_meta(model: Any) -> tuple[int, tuple[int, ...], tuple[float, float]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a dsda.models.Classifier), got {type(model).__name__}")
    try:
        k, shape, rng = model.num_classes, tuple(model.input_shape), tuple(model.input_range)
    except AttributeError as err:
        raise TypeError("model must carry num_classes, input_shape and input_range "
                        "(see dsda.models.Classifier); the sampler sees no data") from err
    return int(k), tuple(int(s) for s in shape), (float(rng[0]), float(rng[1]))


def _check_classes(classes: Any, num_classes: int) -> list[int]:
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist()
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        classes = [classes]
    if not isinstance(classes, (list, tuple, range)):
        raise TypeError(f"classes must be a sequence of class ids, got {type(classes).__name__}")
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"classes must hold integer class ids, got {c!r}")
        if not 0 <= int(c) < num_classes:
            raise ValueError(f"class id {int(c)} is out of range; allowed: 0..{num_classes - 1} "
                             f"(model.num_classes = {num_classes})")
        out.append(int(c))
    if not out:
        raise ValueError("classes must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"classes must not repeat, got {out}")
    return out


def _same_device(a: torch.device, b: torch.device) -> bool:
    norm = lambda d: (d.type, d.index if d.index is not None else
                      (torch.cuda.current_device() if d.type == "cuda" else 0))
    return norm(a) == norm(b)


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


def synthesize(model: nn.Module, classes: Sequence[int], n_per_class: int, sampler: str | None = None,
               nfe: int | None = None, seed: int = 0, config: SamplerConfig | None = None,
               **overrides) -> tuple[torch.Tensor, torch.Tensor, Diagnostics]:
    """Synthesise `n_per_class` samples for every class in `classes`, all classes in one batch.

    sampler / nfe / overrides replace the fields of `config` (default SamplerConfig(): AEGDS).
    Returns (x, y, diagnostics): x (N, *model.input_shape) float32 and y (N,) int64, N =
    len(classes) * n_per_class, ordered by class in the order given; both on the device of the
    model's parameters (the sampling itself runs on config.device, on a copy of the model if that
    differs). The caller's model is left exactly as it was: parameters, buffers, requires_grad
    flags, train/eval mode, no .grad. The same seed and batch_size give the same samples.
    """
    ov = dict(overrides)
    if sampler is not None:
        ov["sampler"] = sampler
    if nfe is not None:
        ov["nfe"] = nfe
    cfg = make_config(config, **ov)
    num_classes, shape, rng = _model_meta(model)
    labels = _check_classes(classes, num_classes)
    check_positive("n_per_class", n_per_class)
    seed = validate_seed(seed)
    check_finite_model(model)  # NaN weights would fail at step 0 as if the step size were too large
    device = resolve_device(cfg.device)
    home = next((t.device for t in (*model.parameters(), *model.buffers())), device)
    work = model if _same_device(home, device) else copy.deepcopy(model).to(device)

    gen = torch.Generator(device=device).manual_seed(int(seed))
    y = torch.tensor(labels, device=device).repeat_interleave(n_per_class)
    x0 = init_samples((len(y), *shape), cfg, gen, device, rng)
    if cfg.channels_last and x0.dim() == 4:
        x0 = x0.contiguous(memory_format=torch.channels_last)

    xs, parts = [], []
    with frozen(work):
        for lo in range(0, len(y), cfg.batch_size):
            yb = y[lo:lo + cfg.batch_size]
            score_fn = _model_score_fn(work, yb, cfg.autocast)

            def eval_fn(x, yb=yb):
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=cfg.autocast == "bf16"):
                    logits = work(x)
                return energy_from_logits(logits, yb), logits

            xb, rec = run_chains(score_fn, x0[lo:lo + cfg.batch_size], cfg, gen, yb, rng, eval_fn)
            xs.append(xb)
            parts.append((len(yb), rec))
    diag = _merge(parts, cfg, device)
    x = torch.cat(xs).contiguous().to(home)
    return x, y.to(home), diag


def _merge(parts: list[tuple[int, dict[str, np.ndarray]]], cfg: SamplerConfig,
           device: torch.device) -> Diagnostics:
    """Combine the chunks: metrics are sample-weighted means; wall times add up (chunks run in turn)."""
    total = sum(n for n, _ in parts)
    first = parts[0][1]
    merged = {"step": first["step"], "nfe": first["nfe"],
              "wall_time": np.sum([r["wall_time"] for _, r in parts], axis=0)}
    for name in Diagnostics.METRICS:
        merged[name] = np.sum([n * r[name] for n, r in parts], axis=0) / total
    final = {name: float(merged[name][-1]) for name in ("nfe", "wall_time", *Diagnostics.METRICS)}
    return Diagnostics(config=cfg, device=str(device), final=final, **merged)
