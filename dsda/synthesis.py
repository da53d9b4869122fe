"""Stage 1 of DSDA on a model: synthesise stand-in data for chosen classes (AEGDS by default, paper §3.2).

`synthesize(model, classes, n_per_class, seed=...)` runs the chain loop of `dsda.sampler` on a frozen copy
of the model's interface (it sees no data) and returns a `SyntheticSet`: images, labels, per-step
diagnostics and its wall time. The set depends on the model, the classes, the sampler settings and the
seed, not on which classes will be forgotten, so one set can serve many forget tasks and DAMO variants
(`dsda.unlearn(..., synthetic=S)`).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from .checks import check_classes, check_finite_model, validate_seed
from .energy import energy_from_logits, model_score_fn
from .modes import frozen
from .sampler import METRICS, SamplerConfig, _sync, init_samples, make_config, run_chains
from .utils import check_choice, check_positive, resolve_device, state_digest


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
    nfe_spent: np.ndarray       # mean score evaluations per sample actually spent up to x_i (= nfe without a
                                # target; less where chains stopped at their target_energy, dsda/chains.py)
    sample_nfe: np.ndarray      # (N,) score evaluations each returned sample cost, in the order of x
    config: SamplerConfig       # the resolved configuration that ran
    device: str = ""            # where the sampling ran
    final: dict[str, float] = field(default_factory=dict)  # the last entry of each array
    nfe_per_class: dict[int, float] = field(default_factory=dict)  # mean sample_nfe of each class

    METRICS = METRICS

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
        out = {name: getattr(self, name).tolist() for name in ("step", "nfe", "wall_time", *self.METRICS, "nfe_spent")}
        out.update(config=dataclasses.asdict(self.config), device=self.device, final=dict(self.final),
                   nfe_per_class={str(c): v for c, v in self.nfe_per_class.items()})
        return out


@dataclass(frozen=True)
class SyntheticSet:
    """What stage 1 produced: x (N, *input_shape), y (N,) ordered by class, and how it was made: the seconds
    it took (`wall_time`), the seed, the model's digest, the sampler settings and the NFE it spent per class
    (`diagnostics.nfe_per_class`). It depends on the model, the seed and the stage-1 settings, not on the forget
    task: `dsda.unlearn(model, forget, synthetic=S)` for any forget classes reuses it (and counts its seconds).

    Unpacks like the tuple older code expects: `x, y, diagnostics = synthesize(...)`."""
    x: torch.Tensor
    y: torch.Tensor
    diagnostics: Diagnostics
    wall_time: float            # seconds, the whole call (device synchronised)
    seed: int
    classes: tuple[int, ...]
    n_per_class: int
    model_digest: str = ""      # dsda.utils.state_digest of the model it was synthesised from

    def __iter__(self) -> Iterator[Any]:
        return iter((self.x, self.y, self.diagnostics))

    @property
    def config(self) -> SamplerConfig:
        return self.diagnostics.config

    def split(self, forget: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_r, y_r, x_f, y_f): the retain part D^_r and the forget part D^_f for a forget task."""
        missing = sorted(set(int(c) for c in forget) - set(self.classes))
        if missing:
            raise ValueError(f"synthetic: the set has no samples of forget class(es) {missing}; it holds classes "
                             f"{list(self.classes)}")
        is_f = torch.isin(self.y, torch.tensor(list(forget), device=self.y.device))
        return self.x[~is_f], self.y[~is_f], self.x[is_f], self.y[is_f]


def _model_meta(model: Any) -> tuple[int, tuple[int, ...], tuple[float, float]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a dsda.models.Classifier), got {type(model).__name__}")
    try:
        k, shape, rng = model.num_classes, tuple(model.input_shape), tuple(model.input_range)
    except AttributeError as err:
        raise TypeError("model must carry num_classes, input_shape and input_range "
                        "(see dsda.models.Classifier); the sampler sees no data") from err
    return int(k), tuple(int(s) for s in shape), (float(rng[0]), float(rng[1]))


def _same_device(a: torch.device, b: torch.device) -> bool:
    norm = lambda d: (d.type, d.index if d.index is not None else  # noqa: E731
                      (torch.cuda.current_device() if d.type == "cuda" else 0))
    return norm(a) == norm(b)


def _chunks(work: nn.Module, x0: torch.Tensor, y: torch.Tensor, cfg: SamplerConfig, gen: torch.Generator,
            rng: tuple[float, float]) -> tuple[list[torch.Tensor], list[tuple[int, dict[str, np.ndarray]]]]:
    """Run the chains chunk by chunk (memory); every chunk draws from the one generator, in turn."""
    xs, parts = [], []
    with frozen(work):
        for lo in range(0, len(y), cfg.batch_size):
            yb = y[lo:lo + cfg.batch_size]

            def eval_fn(x, rows=None, yb=yb):
                with torch.no_grad():
                    logits = work(x)
                return energy_from_logits(logits, yb if rows is None else yb[rows]), logits

            xb, rec = run_chains(model_score_fn(work, yb), x0[lo:lo + cfg.batch_size], cfg, gen, yb, rng, eval_fn)
            xs.append(xb)
            parts.append((len(yb), rec))
    return xs, parts


def synthesize(model: nn.Module, classes: Sequence[int], n_per_class: int, sampler: str | None = None,
               nfe: int | None = None, seed: int = 0, config: SamplerConfig | None = None,
               **overrides) -> SyntheticSet:
    """Synthesise `n_per_class` samples for every class in `classes`, all classes in one batch.

    sampler / nfe / overrides replace the fields of `config` (default SamplerConfig(): AEGDS).
    Returns a SyntheticSet: x (N, *model.input_shape) float32 and y (N,) int64, N = len(classes) *
    n_per_class, ordered by class in the order given; both on the device of the model's parameters (the
    sampling itself runs on config.device, on a copy of the model if that differs). The caller's model is
    left exactly as it was: parameters, buffers, requires_grad flags, train/eval mode, no .grad. The same
    seed and batch_size give the same samples.
    """
    t_start = time.perf_counter()
    ov = {**overrides, **({"sampler": sampler} if sampler is not None else {}), **({"nfe": nfe} if nfe is not None else {})}
    cfg = make_config(config, **ov)
    num_classes, shape, rng = _model_meta(model)
    labels = check_classes("classes", classes, num_classes)
    check_positive("n_per_class", n_per_class)
    seed = validate_seed(seed)
    check_finite_model(model)  # NaN weights would fail at step 0 as if the step size were too large
    digest = state_digest(model.state_dict())
    device = resolve_device(cfg.device)
    home = next((t.device for t in (*model.parameters(), *model.buffers())), device)
    work = model if _same_device(home, device) else copy.deepcopy(model).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    y = torch.tensor(labels, device=device).repeat_interleave(n_per_class)
    x0 = init_samples((len(y), *shape), cfg, gen, device, rng)
    xs, parts = _chunks(work, x0, y, cfg, gen, rng)
    diag = _merge(parts, cfg, device, labels, int(n_per_class))
    x = torch.cat(xs).contiguous().to(home)
    _sync(device)
    return SyntheticSet(x, y.to(home), diag, time.perf_counter() - t_start, seed, tuple(labels), int(n_per_class),
                        digest)


def _merge(parts: list[tuple[int, dict[str, np.ndarray]]], cfg: SamplerConfig, device: torch.device,
           labels: list[int], n_per_class: int) -> Diagnostics:
    """Combine the chunks: metrics are sample-weighted means; wall times add up (chunks run in turn)."""
    total = sum(n for n, _ in parts)
    first = parts[0][1]
    merged = {"step": first["step"], "nfe": first["nfe"],
              "wall_time": np.sum([r["wall_time"] for _, r in parts], axis=0),
              "sample_nfe": np.concatenate([r["sample_nfe"] for _, r in parts])}
    for name in (*METRICS, "nfe_spent"):
        merged[name] = np.sum([n * r[name] for n, r in parts], axis=0) / total
    final = {name: float(merged[name][-1]) for name in ("nfe", "wall_time", *METRICS, "nfe_spent")}
    per_class = merged["sample_nfe"].reshape(len(labels), n_per_class).mean(axis=1)   # x is ordered by class
    return Diagnostics(config=cfg, device=str(device), final=final,
                       nfe_per_class={int(c): float(v) for c, v in zip(labels, per_class)}, **merged)
