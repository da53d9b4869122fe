"""LAU: Layer Attack Unlearning (Kim, Lee, Woo, "Layer Attack Unlearning: Fast and Accurate Machine
Unlearning via Layer Level Attack and Knowledge Distillation", AAAI 2024, 38(19):21241-21248;
arXiv 2312.16823).

Data access: "forget" (forget samples only; the paper also distils on retain data -- we grant none).

No public code was found. What the paper states (abstract, Fig. 2 caption; Kim, Lee, Woo, AAAI 2024, arXiv 2312.16823):
(a) Partial-PGD: the adversarial attack touches only the classification layer, i.e. PGD on the layer's
    input (the penultimate features) instead of on the image -- a cheap way to find where each forget
    sample would land in another class;
(b) only the last layer is edited (inspired by Forward-Forward); teacher and student are both copies of
    the classification layer;
(c) knowledge distillation combines the teacher logits of the adversarial examples with the student
    logits through an "unlearned mask".

How we fill the gaps (all INFERRED, and the knobs are in the config):
1. features h = M_f(x) of the forget samples from the frozen feature extractor (eval mode), computed once;
2. Partial-PGD: untargeted L-inf PGD on h against the frozen teacher layer, maximising CE(fc(h + d), y)
   with |d|_inf <= eps * std(h) (eps relative to the feature scale, which differs between models),
   clamped to the feature range [min h, max h]; `pgd_steps` steps of `pgd_step` * eps * std(h);
3. unlearned mask u (u_c = 0 for forget classes, 1 otherwise): the KD target of a forget sample is the
   teacher's logits of its adversarial feature with the forget entries replaced by that row's minimum,
       z* = u * fc_T(h_adv) + (1 - u) * min_k fc_T(h_adv)_k;
   so the target keeps the teacher's ranking of the retain classes near the sample and gives the
   forget class no mass;
4. student = the model's own fc (the only parameters that move), trained with Adam on
       L = T^2 KL(softmax(z*/T) || softmax(fc_S(h)/T))          (forget: clean features -> masked target)
         + T^2 KL(softmax(z*/T) || softmax(fc_S(h_adv)/T))      (adversarial features keep their targets)
   the second term stands in for the paper's retain-data distillation, which this data access excludes;
5. stop when the forget accuracy of the edited model (features are fixed, so this is exact on the
   forget set and costs one matrix product) is <= `stop_acc`, or after `epochs`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import TensorDataset
from . import _common as C
from .base import Method

# the paper this method comes from (the methods table)
REFERENCE = ("Kim, Lee, Woo. Layer Attack Unlearning: Fast and Accurate Machine Unlearning via Layer Level "
             "Attack and Knowledge Distillation. AAAI 2024 (arXiv 2312.16823)")


@dataclass(frozen=True)
class LAUConfig:
    eps: float = 1.0             # inferred: L-inf radius of Partial-PGD in units of the feature std
    pgd_steps: int = 10          # inferred: PGD iterations (a common PGD-10 choice)
    pgd_step: float = 0.25       # inferred: step size as a fraction of the radius (2.5 * eps / steps)
    temperature: float = 4.0     # inferred: KD temperature (Hinton et al.'s usual value)
    lr: float = 1e-2             # inferred; ours: chosen on smoke/cpu (1e-3 needs hundreds of epochs)
    batch_size: int = 256        # inferred
    epochs: int = 100            # inferred: upper bound on passes (each pass costs one small matmul)
    adv_weight: float = 1.0      # inferred: weight of the adversarial-feature distillation term
    stop_acc: float = 0.0        # stop when the forget accuracy is <= this

    def __post_init__(self):
        C.check_fields(self, positive_int=("pgd_steps", "batch_size", "epochs"),
                       positive=("eps", "pgd_step", "temperature", "lr"), non_negative=("adv_weight",),
                       fraction=("stop_acc",))


# where the defaults come from, and each profile's changes to them (Method.config)
DEFAULTS_SOURCE = "no public code; all settings inferred from the paper's description (see module docstring)"
PROFILES = {"smoke": {}, "cpu": {}, "paper": {}}


def partial_pgd(fc: torch.nn.Module, h: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int,
                lo: float, hi: float) -> torch.Tensor:
    """(a) Untargeted L-inf PGD on the classification layer's input: maximise CE(fc(h + d), y)."""
    h0 = h.detach()
    d = torch.zeros_like(h0)
    for _ in range(steps):
        d.requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(fc(h0 + d), y, reduction="sum"), d)
        with torch.no_grad():
            d = (d + step * g.sign()).clamp(-eps, eps)
            d = (h0 + d).clamp(lo, hi) - h0
    return (h0 + d).detach()


def unlearned_target(teacher_logits: torch.Tensor, forget_classes) -> torch.Tensor:
    """(c) z* = u * t + (1 - u) * min_k t_k  with u_c = 0 on the forget classes."""
    u = torch.ones(teacher_logits.shape[1], dtype=teacher_logits.dtype, device=teacher_logits.device)
    u[list(forget_classes)] = 0
    row_min = teacher_logits.min(1, keepdim=True).values
    return u * teacher_logits + (1 - u) * row_min


def attack_features(model, teacher: torch.nn.Module, forget: TensorDataset, forget_classes, cfg: LAUConfig,
                    dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Steps 1-3: (features h, labels, Partial-PGD features h_adv, masked KD targets z*, diagnostics)."""
    with torch.no_grad():   # step 1: the feature extractor is frozen, so features are computed once
        h = torch.cat([model.features(forget.x[i:i + 1024].to(dev)) for i in range(0, len(forget), 1024)])
    y = forget.y.to(dev)
    scale = float(h.std())
    lo, hi = float(h.min()), float(h.max())
    h_adv = torch.cat([partial_pgd(teacher, h[i:i + 1024], y[i:i + 1024], eps=cfg.eps * scale,
                                   step=cfg.pgd_step * cfg.eps * scale, steps=cfg.pgd_steps, lo=lo, hi=hi)
                       for i in range(0, len(y), 1024)])                                   # step 2
    with torch.no_grad():
        t_adv = teacher(h_adv)
        target = unlearned_target(t_adv, forget_classes)                                    # step 3
        attack_success = float((t_adv.argmax(1) != y).float().mean())
    return h, y, h_adv, target, {"attack_success": attack_success, "feature_scale": scale}


@torch.no_grad()
def fc_accuracy(model: torch.nn.Module, h: torch.Tensor, y: torch.Tensor) -> float:
    """Forget accuracy of the edited model: exact, since the features are fixed (one matrix product)."""
    return float((model.fc(h).argmax(1) == y).float().mean())


def train_fc(model, h: torch.Tensor, y: torch.Tensor, h_adv: torch.Tensor, target: torch.Tensor, cfg: LAUConfig,
             gen: torch.Generator, dev: torch.device) -> tuple[int, str, dict, list]:
    """Steps 4-5: Adam on fc until the forget accuracy is <= stop_acc, or `epochs`; (steps, stop, losses, checks)."""
    opt = torch.optim.Adam(model.fc.parameters(), lr=cfg.lr)
    losses = C.lists("forget", "adversarial", "total")
    check = C.ForgetCheck(lambda: fc_accuracy(model, h, y), cfg.stop_acc)
    steps = 0
    for _ in range(cfg.epochs):
        if check.forgotten:
            break
        for idx in C.batch_indices(len(y), cfg.batch_size, gen):
            idx = idx.to(dev)
            l_f = C.kl_to_target(model.fc(h[idx]), target[idx], cfg.temperature)
            l_a = C.kl_to_target(model.fc(h_adv[idx]), target[idx], cfg.temperature)
            loss = l_f + cfg.adv_weight * l_a
            C.optimizer_step(opt, loss)
            steps += 1
            C.log_losses(losses, forget=l_f, adversarial=l_a, total=loss)
        check.check(steps)                                                                # step 5
    return steps, "forgotten" if check.forgotten else "epochs", losses, check.history


def run(model, forget_classes, *, config: LAUConfig | None = None, seed: int = 0, device="auto",
        forget: TensorDataset):
    s = C.setup(model, forget_classes, config, LAUConfig, seed, device, forget=forget)
    model = s.model.eval()
    teacher = C.frozen_copy(model.fc)
    h, y, h_adv, target, attack = attack_features(model, teacher, forget, s.forget, s.cfg, s.device)
    t1 = time.perf_counter()
    with C.trainable_only(model, model.fc):   # step 4: only the classification layer learns
        steps, stop, losses, checks = train_fc(model, h, y, h_adv, target, s.cfg, s.gen, s.device)
    report = {
        "config": C.config_dict(s.cfg), "steps": steps, "stop_reason": stop, "losses": losses,
        "forget_acc_checks": checks, **attack, "n_forget": len(y),
        "time_s": {"features_and_attack": t1 - s.t0, "train": time.perf_counter() - t1},
    }
    return model.eval(), report


METHOD = Method(name="lau", title="LAU", data_access="forget", config_cls=LAUConfig, run=run, reference=REFERENCE,
                defaults_source=DEFAULTS_SOURCE, profile_overrides=PROFILES)
