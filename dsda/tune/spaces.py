"""Every tuning study, declared once: which variant, its fixed switches, its search space, what it registers.

A study tunes one variant (a DSDA recipe with its ablation switches, or a baseline whose settings we choose)
with the same procedure and the same number of trials as every other study of its profile family (`TRIALS`):
Optuna's TPE sampler seeded with `SAMPLER_SEED`, objective = the mean absolute gap to the retrained oracle on
the dev tasks, validation split (dsda/tune/objective.py). The space of a variant sits next to it below.

Spaces are built from a few shared blocks, so that every variant with the same component searches it the same
way:

- `OPTIM` (all-parameter DAMO): learning rate, forget bound, patience of the stopping rule;
- `HEAD` (head-only KD DAMO): the same plus the distillation temperature;
- `CAGRAD`: the CAGrad radius c, for every variant that keeps the multitask step;
- `CIRCLE`, for every variant that keeps L_Disc (a fair chance for the Circle loss, whose gradient is ~750 times
  the retain loss's at the cpu recipe's start): its weight l3 in g_T (`circle_weight`, log-uniform down to
  1e-4), its scale delta, where cosines are measured from (`origin`: zero as printed, or the mean of the
  centres, where post-ReLU features can reach negative cosines), and its optima (fixed 1.25 / -0.25, or the
  original model's own similarities), and which features it reads (`circle_features`: post-ReLU as the
  paper's extractor, where every cosine is >= 0, or pre-ReLU, `Classifier.pre_relu_features`, where the
  negative optimum is reachable).

Stage 1 (the synthetic set) is not tuned, except by `kd_head_goal`, whose purpose is choosing its sizes (`GOAL`):
each other study makes one set per seed and reuses it in every trial.
A parameter named `circle_weight` becomes `lambdas=(1, 1, w)`; every other name is a field of the variant's
config (DamoConfig for DSDA recipes, the method's config for baselines).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("dsda", "baseline")
TUNING_PROFILE = {"cpu": "cpu-val", "smoke": "smoke-val"}   # where each family's studies run
# the one budget of every study of a family. cpu: 12 trials on the 2 tuning tasks (dsda/protocol.py) keep all 17
# cpu studies within the protocol's 3 hours of our 2 cores (measured per trial and task: ~56 s for the paper
# family, ~15 s head-only, 15-44 s baselines: about 12,000-17,000 core-seconds; docs/PROTOCOL.md, 3)
TRIALS = {"cpu": 12, "smoke": 3}
SEEDS = {"cpu": (0,), "smoke": (0,)}                         # model and method seeds the objective averages over
SAMPLER_SEED = 17                                            # optuna.samplers.TPESampler(seed=...)
STARTUP_TRIALS = 6     # TPE's random start: the first 6 trials sample uniformly, TPE chooses the other half


@dataclass(frozen=True)
class Param:
    """One dimension: "float" (low, high, log), "int" (low, high) or "cat" (choices)."""
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def __post_init__(self):
        if self.kind not in ("float", "int", "cat"):
            raise ValueError(f"Param.kind must be 'float', 'int' or 'cat', got {self.kind!r}")
        if self.kind == "cat" and len(self.choices) < 2:
            raise ValueError(f"a categorical Param needs at least two choices, got {self.choices!r}")
        if self.kind != "cat" and not (self.low is not None and self.high is not None and self.low < self.high):
            raise ValueError(f"Param needs low < high, got {self.low!r}, {self.high!r}")
        if self.log and not (self.kind == "float" and self.low > 0):
            raise ValueError(f"a log-scaled Param must be a float with low > 0, got {self}")

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high)
        return trial.suggest_categorical(name, list(self.choices))


def real(low: float, high: float, log: bool = False) -> Param:
    return Param("float", low, high, log)


def integer(low: int, high: int) -> Param:
    return Param("int", low, high)


def choice(*choices: Any) -> Param:
    return Param("cat", choices=tuple(choices))


@dataclass(frozen=True)
class StudySpec:
    name: str                      # results/tuning/<name>.sqlite3 and Optuna's study name
    title: str                     # the variant, as tables call it
    family: str                    # "cpu" | "smoke": TRIALS, SEEDS and TUNING_PROFILE of this family
    kind: str                      # "dsda" (a recipe) | "baseline" (a method of dsda.baselines)
    base: str                      # the recipe (dsda) or method (baseline) the variant starts from
    space: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)   # the variant's switches, applied before the tuned values
    registers: str = ""            # dsda: the recipe name the best trial becomes; baseline: the method's settings
    requires: str = ""             # what must be merged before the study can run ("" = nothing)

    @property
    def profile(self) -> str:
        return TUNING_PROFILE[self.family]

    @property
    def n_trials(self) -> int:
        return TRIALS[self.family]

    @property
    def seeds(self) -> tuple[int, ...]:
        return SEEDS[self.family]


# ----------------------------------------------------------------------------- shared blocks

OPTIM = {"lr": real(1e-5, 1e-2, log=True), "forget_bound": real(0.5, 10.0, log=True), "patience": integer(1, 5)}
HEAD = {"lr": real(1e-4, 3e-2, log=True), "forget_bound": real(0.5, 10.0, log=True), "patience": integer(1, 5),
        "kd_temperature": real(1.0, 8.0)}
CAGRAD = {"c": real(0.0, 0.9)}
CIRCLE = {"circle_weight": real(1e-4, 1.0, log=True), "delta": real(4.0, 64.0, log=True),
          "origin": choice("zero", "centre_mean"), "optima": choice("fixed", "original"),
          "circle_features": choice("post_relu", "pre_relu")}
RETRAIN_LIKE = {"lr": real(1e-4, 3e-2, log=True), "forget_entropy": real(0.1, 2.0, log=True),
                "kd_temperature": real(1.0, 8.0)}
SGLD = {"sampler": "sgld"}          # the w-EGDS switch: SGLD instead of AEGDS at the same NFE
# goal-sized stage 1 (issue 15): energy target, NFE cap (even: 2 score evaluations per AEGDS step) and images per
# class. The bounds are the speed requirement: at most 32 x 24 = 768 image-NFE per class, under a third of the
# 64 x 40 = 2,560 of cpu-kd-head, whatever the target; the target decides how much of the cap is spent.
GOAL = {"target_energy": real(0.01, 0.3, log=True), "nfe": choice(8, 12, 16, 20, 24),
        "n_per_class": integer(16, 32)}


def _dsda(name, title, base, space, fixed=None, registers="", family="cpu", requires=""):
    return StudySpec(name, title, family, "dsda", base, dict(space), dict(fixed or {}), registers, requires)


def _baseline(name, method, space, family="cpu"):
    return StudySpec(name, method, family, "baseline", method, dict(space), {}, f"{method} {TUNING_PROFILE[family]}")


STUDIES: dict[str, StudySpec] = {s.name: s for s in (
    # the paper's family (recipe cpu-paper: L_R + L_F + L_Disc on every parameter, the multitask step)
    _dsda("paper_full", "DSDA", "cpu-paper", {**OPTIM, **CAGRAD, **CIRCLE}, registers="val-paper"),
    _dsda("paper_w_egds", "DSDA-w-EGDS", "cpu-paper", {**OPTIM, **CAGRAD, **CIRCLE}, SGLD, "val-paper-w-egds"),
    _dsda("paper_wo_disc", "DSDA-wo-disc", "cpu-paper", {**OPTIM, **CAGRAD}, {"disc": False}, "val-paper-wo-disc"),
    _dsda("paper_wo_mt", "DSDA-wo-mt", "cpu-paper", {**OPTIM, **CIRCLE}, {"multitask": False}, "val-paper-wo-mt"),
    _dsda("paper_standard", "standard losses", "cpu-paper", OPTIM, {"disc": False, "multitask": False},
          "val-paper-standard"),
    # the cpu recipe (KD head-only DAMO: no L_Disc, distilled retain loss, head only) and its ablations
    _dsda("kd_head", "KD head-only DAMO", "cpu-kd-head", {**HEAD, **CAGRAD}, registers="val-kd-head"),
    _dsda("kd_head_w_egds", "KD head-only DAMO w-EGDS", "cpu-kd-head", {**HEAD, **CAGRAD}, SGLD,
          "val-kd-head-w-egds"),
    _dsda("kd_head_wo_mt", "KD head-only DAMO wo-mt", "cpu-kd-head", HEAD, {"multitask": False},
          "val-kd-head-wo-mt"),
    # the cpu recipe on goal-sized synthesis (issue 15's faster default): the only study that tunes stage 1, whose
    # sizes are what it is for; one synthetic set per distinct stage-1 point (seconds each)
    _dsda("kd_head_goal", "KD head-only DAMO, goal-sized synthesis", "cpu-kd-head-goal", {**HEAD, **CAGRAD, **GOAL},
          registers="val-kd-head-goal"),
    # the forget-like-retrain recipe (branch issue14: forget loss distilled towards a retrained-like target)
    _dsda("retrain_like", "Retrain-like KD head-only DAMO", "cpu-retrain-like", {**RETRAIN_LIKE, **CAGRAD},
          registers="val-retrain-like", requires="issue 14 (recipe cpu-retrain-like, DamoConfig.forget_entropy)"),
    # baselines whose cpu settings we chose ourselves (GKT and ISPF keep their published settings: issue 17's
    # training curves, not a search)
    _baseline("finetune", "finetune", {"lr": real(1e-3, 0.1, log=True), "epochs": integer(1, 3)}),
    _baseline("neggrad", "neggrad", {"lr": real(1e-5, 1e-2, log=True), "epochs": integer(1, 3)}),
    _baseline("random_labels", "random_labels", {"lr": real(1e-5, 1e-2, log=True), "epochs": integer(1, 3)}),
    _baseline("ssd", "ssd", {"alpha": real(0.5, 50.0, log=True), "lam": real(0.1, 2.0, log=True)}),
    _baseline("unsir", "unsir", {"impair_lr": real(1e-5, 1e-2, log=True), "repair_lr": real(1e-5, 1e-2, log=True)}),
    _baseline("boundary_shrink", "boundary_shrink", {"lr": real(1e-6, 1e-2, log=True),
                                                     "bound": real(0.02, 0.5, log=True)}),
    _baseline("adv_imp", "adv_imp", {"lr": real(1e-4, 1e-2, log=True), "reg_lambda": real(0.1, 10.0, log=True)}),
    _baseline("scar", "scar", {"lr": real(1e-5, 1e-3, log=True), "lambda_ret": real(1.0, 10.0, log=True)}),
    # smoke: the tests' studies (seconds per trial); the same machinery at the smoke sizes
    _dsda("smoke_kd_head", "KD head-only DAMO (smoke)", "smoke-kd-head", {"lr": real(1e-3, 3e-2, log=True),
          "patience": integer(1, 3)}, registers="smoke-val-kd-head", family="smoke"),
    _baseline("smoke_neggrad", "neggrad", {"lr": real(1e-4, 1e-2, log=True)}, family="smoke"),
)}


def get_study(name: str) -> StudySpec:
    if not isinstance(name, str) or name not in STUDIES:
        raise ValueError(f"study={name!r} is not a declared study; allowed: {', '.join(sorted(STUDIES))}")
    return STUDIES[name]


def overrides(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """The variant's switches plus a trial's values, as config fields (`circle_weight` -> `lambdas`)."""
    unknown = sorted(set(params) - set(spec.space))
    if unknown:
        raise ValueError(f"study {spec.name!r}: parameter(s) {unknown} are not in its space {sorted(spec.space)}")
    out = {**spec.fixed, **{k: v for k, v in params.items() if k != "circle_weight"}}
    if "circle_weight" in params:
        out["lambdas"] = (1.0, 1.0, float(params["circle_weight"]))
    return out
