"""DAMO's configuration: every setting of stage 2 besides the model and the synthetic data, validated.

Paper values where the paper gives them; the rest is marked "not in the paper". The named recipes
(`dsda.recipes`) are instances of this class with commented values.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from .losses import FORGET_LOSSES, RETAIN_LOSSES
from .utils import check_choice, resolve_device

TRAIN_SCOPES = ("all", "last", "fc")
ORIGINS = ("zero", "centre_mean")
OPTIMA = ("fixed", "original")
CIRCLE_FEATURES = ("post_relu", "pre_relu")


# ----------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class DamoConfig:
    """Everything DAMO needs besides the model and the synthetic data (paper values where known)."""
    # losses
    forget_loss: str = "neg_ce_bounded"     # L_F candidate (the paper's definition did not survive), dsda.losses
    forget_bound: float = 10.0              # per-sample cap on CE for "neg_ce_bounded" (not in the paper)
    retain_loss: str = "ce"                 # L_R: "ce" (the paper) | "kd" (ours: distil the original model's
                                            # retain-class distribution, dsda.losses.retain_loss)
    kd_temperature: float = 4.0             # temperature T of retain_loss="kd" (not in the paper)
    forget_temperature: float = 1.0         # temperature of forget_loss="kd_retain"'s target (ours)
    forget_entropy: float | None = None     # kd_retain: choose that temperature so the target's mean entropy on
                                            # D^_f is this many nats (ours, dsda.losses.forget_teacher); None: fixed
    train_scope: str = "all"                # parameters DAMO updates: "all" | "last" (last stage + fc) | "fc" (ours)
    lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (l1, l2, l3) of g_T; not in the paper
    c: float = 0.5                          # CAGrad radius, must lie in [0, 1); not in the paper (CAGrad default)
    multitask: bool = True                  # False = DSDA-wo-mt: update with g_T (Fig. 4)
    disc: bool = True                       # False = DSDA-wo-disc: drop L_Disc, 2-task problem (Fig. 4)
    # Circle loss, Eq. 7 (Circle-loss defaults m = 0.25: O_p = 1 + m, O_n = -m; not in the paper)
    delta: float = 64.0                     # scale factor delta
    o_p: float = 1.25                       # optimum O_p of the positive similarity
    o_n: float = -0.25                      # optimum O_n of the negative similarities
    optima: str = "fixed"                   # "fixed": o_p, o_n as given; "original": the original model's mean
                                            # s_p, s_n on D^_r (ours, dsda.losses.original_similarities)
    origin: str = "zero"                    # where cosines are measured from: "zero" (Eq. 7 as printed) or
                                            # "centre_mean" (the mean of the retain centres; ours)
    circle_features: str = "post_relu"      # what L_Disc, its centres and optima read: "post_relu" =
                                            # model.features (every cosine >= 0, so O_n < 0 is unreachable) or
                                            # "pre_relu" = Classifier.pre_relu_features (both signs; ours)
    # optimisation: Adam on d (not in the paper)
    lr: float = 1e-4                        # learning rate
    max_steps: int = 300                    # hard cap on optimiser steps
    batch_retain: int = 128                 # synthetic retain samples per step
    batch_forget: int = 32                  # synthetic forget samples per step
    # stopping rule, on synthetic data only (not in the paper)
    check_every: int = 10                   # steps between checks
    patience: int = 3                       # consecutive passing checks needed to stop
    stop_rate: float = 0.0                  # threshold in [0, 1] on forget_rate(D^_f)
    holdout: float = 0.0                    # fraction of D^_r per class held out to monitor retain accuracy
    eval_batch_size: int = 512              # batch size of no-grad passes (centres, checks)
    device: str = "auto"                    # 'auto' = CUDA, then MPS, then CPU
    progress: bool = False                  # tqdm bar over steps

    def __post_init__(self):
        for name, allowed in (("forget_loss", FORGET_LOSSES), ("retain_loss", RETAIN_LOSSES),
                              ("train_scope", TRAIN_SCOPES), ("origin", ORIGINS), ("optima", OPTIMA),
                              ("circle_features", CIRCLE_FEATURES)):
            check_choice(name, getattr(self, name), allowed)
        if self.disc and self.train_scope == "fc":
            raise ValueError("train_scope='fc' with disc=True: L_Disc acts on model.features, which the head does "
                             "not change, so its gradient would be zero; use disc=False or train_scope 'last'/'all'")
        for name in ("multitask", "disc", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self._check_numbers()
        if not isinstance(self.device, (str, torch.device)):
            raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")
        resolve_device(self.device)  # raises a ValueError naming the device if it is unusable

    def _check_numbers(self) -> None:
        for name in ("max_steps", "batch_retain", "batch_forget", "check_every", "patience", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.forget_entropy is not None and not (_is_number(self.forget_entropy) and self.forget_entropy > 0):
            raise ValueError(f"forget_entropy must be None or a positive finite number (nats), got {self.forget_entropy!r}")
        for name in ("forget_bound", "delta", "lr", "kd_temperature", "forget_temperature"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive finite number, got {getattr(self, name)!r}")
        for name, lo, hi, hi_open in (("c", 0, 1, True), ("stop_rate", 0, 1, False), ("holdout", 0, 1, True)):
            v = getattr(self, name)
            if not _is_number(v) or v < lo or (v >= hi if hi_open else v > hi):
                raise ValueError(f"{name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")
        if not (_is_number(self.o_p) and _is_number(self.o_n)) or not self.o_p > self.o_n:
            raise ValueError(f"o_p and o_n must be numbers with o_p > o_n, got o_p={self.o_p!r}, o_n={self.o_n!r}")
        lam = self.lambdas
        if (not isinstance(lam, (tuple, list)) or len(lam) != 3 or not all(_is_number(v) and v >= 0 for v in lam)):
            raise ValueError(f"lambdas must be three non-negative numbers (l1, l2, l3), got {lam!r}")
        if sum(lam[: self.n_tasks]) <= 0:
            raise ValueError(f"lambdas must not all be zero for the active tasks, got {lam!r}")
        object.__setattr__(self, "lambdas", tuple(float(v) for v in lam))  # lists from YAML/JSON become tuples

    @property
    def n_tasks(self) -> int:
        return 3 if self.disc else 2

    def replace(self, **changes) -> "DamoConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown DamoConfig field(s) {sorted(unknown)}; allowed: {sorted(DAMO_FIELDS)}")
        return dataclasses.replace(self, **changes)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


DAMO_FIELDS = tuple(f.name for f in dataclasses.fields(DamoConfig))
