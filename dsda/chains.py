"""Which chains of the sampler still move: all of them for a fixed budget, or only those short of their target.

Goal-sized synthesis (ours, not in the paper): with `SamplerConfig.target_energy` set, a chain stops at the
first state x_i whose energy E(x_i, y) <= target_energy and leaves the batch; x_i is its sample, and the rest
of the loop runs on the smaller batch, so the cost follows what the model needs instead of a fixed budget.
`nfe` is then a cap. The rule reads only the model: E(x_i, y) comes with the score evaluation at x_i that
every step makes anyway (Alg. 1 line 8). A confidence target p(y | x) >= q is the energy target -log q
(E = -log p(y | x), Eq. 1).

NFE spent per sample: a chain retired at x_i spent the evaluations of its i steps plus the one at x_i that
showed it done (2 i + 1 for AEGDS / Heun, i + 1 for SGLD); a chain that never reaches the target spends the
cap. The diagnostics' means run over every chain, a retired one counted at its final state.

`AllChains` is the fixed budget: every method returns its input unchanged, so the sampler's loop does the
same operations, bit for bit, as before this option existed. `ChainPool` retires chains; it reads its mask
on the host once per step (a device sync on a GPU).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .checks import NonFiniteError

CONFIDENT_PROB = 0.9  # "confident" = p(y | x) >= 0.9, the benchmark's target (b)


def _stats(e: torch.Tensor, logits: torch.Tensor | None, s: torch.Tensor | None,
           y: torch.Tensor | None) -> torch.Tensor:
    """The five diagnostics (sampler.METRICS) of one state as one device tensor (no sync)."""
    p = torch.exp(-e)                                              # p(y | x), since E = -log p(y | x)
    nan = torch.full((), float("nan"), device=e.device)
    hit = (logits.argmax(1) == y).float().mean() if logits is not None and y is not None else nan
    norm = s.flatten(1).norm(dim=1).mean() if s is not None and len(s) else nan
    return torch.stack([e.mean(), p.mean(), hit, (p >= CONFIDENT_PROB).float().mean(), norm])


def _check_final(e: torch.Tensor, cfg) -> None:
    if not bool(torch.isfinite(e).all()):
        raise NonFiniteError(f"non-finite energy of the returned samples (after step {cfg.n_steps - 1}) "
                             f"with {cfg.settings()}; lower alpha")


class AllChains:
    """The fixed budget: every chain moves for all `nfe` evaluations (no method changes anything)."""
    idle = False

    def __init__(self, x0: torch.Tensor, y: torch.Tensor | None, cfg):
        self.n, self.y, self.cfg = x0.shape[0], y, cfg

    def score(self, score_fn: Callable, x: torch.Tensor):
        return score_fn(x)

    def stats(self, e, logits, d) -> torch.Tensor:
        return _stats(e, logits, d, self.y)

    def retire(self, x, v, d, eps, e, logits, n: int):
        return x, v, d, eps

    def mean_spent(self, n: int) -> float:
        return float(n)

    def final(self, x, score_fn, eval_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """(samples, their diagnostics): one more evaluation of the returned samples (not counted in NFE)."""
        if eval_fn is None:
            s_f, e_f, logits_f = score_fn(x)
        else:
            s_f = None
            e_f, logits_f = eval_fn(x)
        _check_final(e_f, self.cfg)
        return x, _stats(e_f, logits_f, s_f, self.y)

    def sample_nfe(self) -> np.ndarray:
        return np.full(self.n, self.cfg.nfe, dtype=np.int64)


class ChainPool(AllChains):
    """Chains that leave the batch once E(x_i, y) <= cfg.target_energy (see the module docstring).

    `score_fn(x, rows)` / `eval_fn(x, rows)` are called with `rows`, the indices (into x0) of the chains in `x`."""

    def __init__(self, x0: torch.Tensor, y: torch.Tensor | None, cfg):
        super().__init__(x0, y, cfg)
        dev = x0.device
        self.active = torch.arange(self.n, device=dev)              # rows of x0 that still move
        self.out = torch.empty_like(x0)                              # final states, by row of x0
        self.energy = torch.full((self.n,), float("nan"), device=dev)   # each chain's latest E
        self.hit = torch.zeros(self.n, device=dev)                   # each chain's latest argmax == y
        self.spent = torch.full((self.n,), cfg.nfe, dtype=torch.long)   # the cap until retired
        self._retired_nfe, self._retired = 0, 0

    @property
    def idle(self) -> bool:
        return self._retired == self.n

    def score(self, score_fn: Callable, x: torch.Tensor):
        return score_fn(x, self.active)

    def _note(self, e: torch.Tensor, logits: torch.Tensor | None) -> None:
        self.energy[self.active] = e.float()
        if logits is not None and self.y is not None:
            self.hit[self.active] = (logits.argmax(1) == self.y[self.active]).float()

    def stats(self, e, logits, d) -> torch.Tensor:
        """The diagnostics over every chain (retired ones at their final state); the score norm over the moving ones."""
        if e is not None:
            self._note(e, logits)
        nan = torch.full((), float("nan"), device=self.energy.device)
        hit = self.hit.mean() if self.y is not None else nan
        p = torch.exp(-self.energy)
        norm = d.flatten(1).norm(dim=1).mean() if d is not None and len(d) else nan
        return torch.stack([self.energy.mean(), p.mean(), hit, (p >= CONFIDENT_PROB).float().mean(), norm])

    def retire(self, x, v, d, eps, e, logits, n: int):
        """Chains whose energy at x_i is <= the target stop at x_i (`n` NFE spent before it); the rest move on."""
        self._note(e, logits)
        done = e <= self.cfg.target_energy
        if not bool(done.any()):                                     # the host reads the mask: one sync
            return x, v, d, eps
        rows = self.active[done]
        self.out[rows] = x[done]
        self.spent[rows.cpu()] = n + 1                               # the evaluation at x_i was spent
        self._retired_nfe += (n + 1) * len(rows)
        self._retired += len(rows)
        keep = ~done
        self.active = self.active[keep]
        return x[keep], None if v is None else v[keep], d[keep], eps[:len(self.active)]

    def mean_spent(self, n: int) -> float:
        """Mean NFE per chain spent to produce the current states (a moving chain has spent `n`)."""
        return (self._retired_nfe + n * (self.n - self._retired)) / self.n

    def final(self, x, score_fn, eval_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """Every chain's sample (retired ones at their stopping state) and the diagnostics over all of them."""
        if not self.idle:
            if eval_fn is None:
                _, e_f, logits_f = score_fn(x, self.active)
            else:
                e_f, logits_f = eval_fn(x, self.active)
            _check_final(e_f, self.cfg)
            self._note(e_f, logits_f)
            self.out[self.active] = x
        return self.out, self.stats(None, None, None)

    def sample_nfe(self) -> np.ndarray:
        return self.spent.numpy().copy()


def chain_pool(x0: torch.Tensor, y: torch.Tensor | None, cfg) -> AllChains:
    """`ChainPool` when the config sets a target energy, else the fixed budget `AllChains`."""
    return AllChains(x0, y, cfg) if cfg.target_energy is None else ChainPool(x0, y, cfg)
