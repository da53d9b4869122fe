"""Shared pieces of the data-free distillation baselines (GKT, ISPF).

- `Distiller`: their common start, after the shared prologue (_common.setup): the model frozen as
  the teacher, a fresh student and the generator, both initialised from the run's generator; and their
  common end (the frozen student and the report). `progress_bar`: their tqdm bar.
- `Generator`: z -> image network of the GKT / ISPF (DFQ) family, sized to any `model.input_shape`.
- `seeded_init_` / `fresh_student`: PyTorch's default initialisation drawn from an explicit
  torch.Generator, so a "fresh student" is reproducible and leaves the global RNG alone.
- `logits_and_maps`, `attention_map`, `attention_loss`, `kd_kl`: the distillation losses.
- `Snapshots`: the `snapshot_every` recorder for the efficiency curves of notebook 04.

Nothing here imports dsda.data, dsda.train or dsda.metrics: the baselines are source-free.
"""
from __future__ import annotations

import abc
import contextlib
import math
import time
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import check_choice
from . import _common as C

GENERATOR_OUTPUTS = ("bn", "sigmoid")


# ----------------------------------------------------------------------------- seeded initialisation

def seeded_init_(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Re-initialise every parameter with PyTorch's default scheme, drawing from `gen` (a CPU generator).

    Conv / Linear: kaiming_uniform(a=sqrt(5)) weights and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases, as
    their own `reset_parameters` does, but from `gen` instead of the global RNG. BatchNorm: weight 1,
    bias 0, running statistics reset (no randomness). The module must be on the CPU.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            m.reset_parameters()
        elif any(True for _ in m.parameters(recurse=False)):
            # a layer type we do not know: its own initialiser, on a global RNG forked and seeded from `gen`
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
                m.reset_parameters()
    return module


def fresh_student(model: nn.Module, gen: torch.Generator, device: torch.device) -> nn.Module:
    """Same architecture as `model`, freshly initialised from `gen` (the teacher is not touched)."""
    import copy
    student = copy.deepcopy(model).cpu()
    for p in student.parameters():
        p.requires_grad_(True)
    seeded_init_(student, gen)
    return student.to(device)


# ----------------------------------------------------------------------------- the generator

class Generator(nn.Module):
    """z -> image, the DCGAN-style generator of GKT (ZSKT's) and ISPF (CMI's DFQ `LargeGenerator`).

    Linear(z_dim -> c0 * h0 * w0), BN, [Upsample x2, Conv3x3 c0->c1, BN, LeakyReLU(0.2)],
    [Upsample x2, Conv3x3 c1->c2, BN, LeakyReLU(0.2)], Conv3x3 c2->C, output head;
    h0 = ceil(H / 4), w0 = ceil(W / 4), and the 4 h0 x 4 w0 output is centre-cropped to H x W.
    GKT uses (c0, c1, c2) = (128, 128, 64), z_dim 128; ISPF (256, 128, 64), z_dim 256.

    Output heads:
    - "bn": a final affine BatchNorm2d (GKT's official code): roughly standardised pixels, like
      normalised data, but not confined to `input_range`.
    - "sigmoid": sigmoid mapped onto `input_range` = (lo, hi), i.e. lo + (hi - lo) * sigmoid(a). ISPF's
      generator ends in a sigmoid that gives [0, 1] pixels followed by the data normaliser; the model's
      `input_range` is the image of [0, 1] under that normaliser, so this is the same map for one channel
      (for several channels with different statistics it uses the union range; documented deviation).

    Deviation: GKT's official MNIST generator starts at 8 x 8 and gets 28 x 28 from a 7 x 7 convolution
    with padding 1; we start at ceil(H/4) and crop, which gives every input size one code path.
    """

    def __init__(self, out_shape: Sequence[int], z_dim: int = 128, channels: Sequence[int] = (128, 128, 64),
                 output: str = "bn", input_range: Sequence[float] = (-math.inf, math.inf)):
        super().__init__()
        check_choice("output", output, GENERATOR_OUTPUTS)
        c, h, w = (int(s) for s in out_shape)
        c0, c1, c2 = (int(s) for s in channels)
        lo, hi = float(input_range[0]), float(input_range[1])
        if output == "sigmoid" and not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"generator output='sigmoid' needs a finite model.input_range (lo < hi), got "
                             f"{(lo, hi)}; use output='bn' for models without a known pixel range")
        self.out_shape, self.z_dim, self.output = (c, h, w), int(z_dim), output
        self.h0, self.w0 = -(-h // 4), -(-w // 4)
        self.register_buffer("lo", torch.tensor(lo if math.isfinite(lo) else 0.0))
        self.register_buffer("span", torch.tensor(hi - lo if output == "sigmoid" else 1.0))
        self.project = nn.Linear(self.z_dim, c0 * self.h0 * self.w0)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c0),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c0, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2),
            nn.Conv2d(c2, c, 3, padding=1),
        )
        self.head = nn.BatchNorm2d(c) if output == "bn" else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = self.project(z).view(z.shape[0], -1, self.h0, self.w0)
        a = self.body(a)
        c, h, w = self.out_shape
        top, left = (a.shape[2] - h) // 2, (a.shape[3] - w) // 2
        a = self.head(a[:, :, top:top + h, left:left + w])
        if self.output == "sigmoid":
            return self.lo + self.span * torch.sigmoid(a)
        return a


# ----------------------------------------------------------------------------- losses

def logits_and_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One pass: the output of every stage and the logits fc(mean_HW(last stage)) = model(x)."""
    maps = model.feature_maps(x)
    return model.fc(maps[-1].mean(dim=(2, 3))), maps


def attention_map(fmap: torch.Tensor) -> torch.Tensor:
    """Spatial attention of Zagoruyko & Komodakis (2017) as GKT uses it: normalize(mean_c a^2), (N, H*W)."""
    if fmap.dim() != 4:
        raise ValueError(f"attention_map needs an (N, C, H, W) feature map, got shape {tuple(fmap.shape)}")
    return F.normalize(fmap.pow(2).mean(dim=1).flatten(1), dim=1)


def attention_loss(student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor],
                   beta: float) -> torch.Tensor:
    """GKT's AT term: sum over layers of beta * mean((att(s) - att(t))^2) (mean over N and H*W)."""
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"attention_loss: {len(student_maps)} student maps vs {len(teacher_maps)} teacher maps")
    total = student_maps[0].new_zeros(())
    for s, t in zip(student_maps, teacher_maps):
        total = total + beta * (attention_map(s) - attention_map(t)).pow(2).mean()
    return total


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
          reduction: str = "batchmean") -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)).

    reduction="mean" divides the sum by N*K (GKT's `F.kl_div` default, no T^2 factor);
    reduction="batchmean" divides by N and multiplies by T^2 (the CMI/ISPF `KLDiv` criterion).

    Both sides enter as log-probabilities (`log_target=True`): the same value as the codes' `kl_div(log_softmax(s),
    softmax(t))`, but with a finite gradient w.r.t. the teacher's logits. With a probability target, a teacher
    probability that underflows to 0 (a confident teacher: GKT's first generator batch on the cpu model) gives
    the gradient log(0) = -inf, and the generator's weights turned NaN after its first step.
    """
    check_choice("reduction", reduction, ("mean", "batchmean"))
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    if reduction == "mean":  # F.kl_div(..., reduction="mean") itself, without its deprecation warning
        return F.kl_div(log_q, log_p, reduction="sum", log_target=True) / log_p.numel()
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature ** 2


# ----------------------------------------------------------------------------- bookkeeping

class Snapshots:
    """`snapshot_every` > 0: keep {"step", "wall_s", "state_dict"} every that many optimisation steps."""

    def __init__(self, every: int, t0: float):
        self.every, self.t0, self.items = int(every), t0, []

    def maybe(self, step: int, model: nn.Module) -> None:
        if self.every > 0 and step > 0 and step % self.every == 0:
            self.items.append({"step": int(step), "wall_s": time.perf_counter() - self.t0,
                               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}})


def draw_normal(shape: Sequence[int], gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """N(0, I) drawn on the CPU from `gen` and moved to `device` (the same draws on every device)."""
    return torch.randn(*shape, generator=gen).to(device)


# ----------------------------------------------------------------------------- the common start and end

class Distiller(abc.ABC):
    """What GKT and ISPF share: the shared prologue (_common.setup), then the teacher (the model itself,
    frozen), a fresh student of its architecture and the generator, the student and then the generator
    initialised from the run's generator; at the end, the frozen student and the report.

    A subclass sets `title` (the report's "method"), `config_cls` and `need_maps`, and `entries()`, its
    report between the header and the time."""
    title: str
    config_cls: type
    need_maps: bool = False

    def __init__(self, model: Any, forget_classes: Any, config: Any, seed: Any, device: Any):
        s = C.setup(model, forget_classes, config, self.config_cls, seed, device, need_maps=self.need_maps)
        cfg = s.cfg
        self.s, self.cfg, self.teacher = s, cfg, C.freeze(s.model)
        self.student = fresh_student(self.teacher, s.gen, s.device)
        G = Generator(self.teacher.input_shape, cfg.z_dim, cfg.gen_channels, cfg.generator_output,
                      self.teacher.input_range)
        self.G = seeded_init_(G, s.gen).to(s.device)
        self.snaps = Snapshots(cfg.snapshot_every, s.t0)

    def out_of_time(self) -> bool:
        """Whether the run has used its `max_seconds` (0 = no cap): the learning-curve runs' cap (issue 17)."""
        return 0 < self.cfg.max_seconds <= self.s.elapsed()

    @abc.abstractmethod
    def entries(self) -> dict[str, Any]:
        """The method's own report entries (steps, stop reason, curves, ...)."""

    def finish(self) -> tuple[nn.Module, dict[str, Any]]:
        """(the student, frozen; the report: header, the method's entries, wall time, snapshots)."""
        C.freeze(self.student)
        return self.student, {**self.s.header(self.title), **self.entries(), "time_s": self.s.elapsed(),
                              "snapshots": self.snaps.items}


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)
    try:
        yield bar
    finally:
        bar.close()
