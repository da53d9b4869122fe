"""DSDA behind the common interface: `dsda.unlearn` (stage 1 synthesis, then DAMO), two registered recipes.

- `dsda`         "DSDA": the paper's objective (L_R + L_F + L_Disc on all parameters, Thm 3.3) at the profile's
                 budget (recipes `smoke`, `cpu-paper`, `paper`).
- `dsda_kd_head` "KD head-only DAMO": our cpu default (no L_Disc, L_R distilled from the original model, only
                 the classifier head trained; recipes `smoke-kd-head`, `cpu-kd-head`, `paper-kd-head`).
- `dsda_retrain_like` "Retrain-like KD head-only DAMO": ours, KD head-only DAMO whose L_F distils the original
                 model's retain-class distribution at an entropy-matched temperature, so the forget-class outputs
                 resemble a retrained model's (recipes `smoke-retrain-like`, `cpu-retrain-like`, `paper-retrain-like`).

Config design. The recipes (dsda/recipes.py) own the settings. `DsdaConfig` has one field per option of
`unlearn` (`dsda.recipes.ALLOWED_OVERRIDES`, typed as in SamplerConfig / DamoConfig), default None = "the
recipe's value", so `--set name=value` and `Method.config` name-check them; only the fields a caller sets
are passed on, and a bad value is rejected when the config is built (before any model is loaded). The
values actually used are in the run's report (`report["config"]`). `device` is set by the runner.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
import torch.nn as nn

from ..damo import DamoConfig
from ..profiles import get_profile
from ..recipes import ALLOWED_OVERRIDES, get_recipe, profile_family
from ..sampler import SamplerConfig
from ..synthesis import SyntheticSet
from ..unlearn import synthetic_set, unlearn
from .base import Method

_RUNNER_OWNED = ("device", "progress")   # set by the runner, not through overrides
OPTION_FIELDS = tuple(n for n in ALLOWED_OVERRIDES if n not in _RUNNER_OWNED)
_TYPES = {f.name: f.type for cls in (SamplerConfig, DamoConfig) for f in dataclasses.fields(cls)}
_TYPES["n_per_class"] = "int"
PAPER_RECIPES = {"smoke": "smoke", "cpu": "cpu-paper", "paper": "paper"}
KD_HEAD_RECIPES = {"smoke": "smoke-kd-head", "cpu": "cpu-kd-head", "paper": "paper-kd-head"}
RETRAIN_LIKE_RECIPES = {"smoke": "smoke-retrain-like", "cpu": "cpu-retrain-like", "paper": "paper-retrain-like"}


def _post_init(self) -> None:
    get_profile(self.profile)   # ValueError naming the allowed profiles
    if not isinstance(self.progress, bool):
        raise TypeError(f"progress must be True or False, got {self.progress!r}")
    get_recipe(self.recipe).replace(**self.options())   # a bad name or value fails here, before any loading


def _options(self) -> dict[str, Any]:
    """The options the caller set (fields that are not None), as keyword arguments for `unlearn`."""
    return {n: getattr(self, n) for n in OPTION_FIELDS if getattr(self, n) is not None}


DsdaConfig = dataclasses.make_dataclass(
    "DsdaConfig",
    [("profile", str, dataclasses.field(default="cpu")),     # set by the runner
     ("recipe", str, dataclasses.field(default="cpu-kd-head")),  # a name in dsda.recipes.RECIPES
     ("progress", bool, dataclasses.field(default=False))]   # tqdm bars (the runner sets it)
    + [(n, Optional[_TYPES[n]], dataclasses.field(default=None)) for n in OPTION_FIELDS],  # None = the recipe's
    frozen=True,
    namespace={"__post_init__": _post_init, "options": _options, "__module__": __name__,
               "__doc__": "A DSDA recipe and options of dsda.unlearn (dsda/recipes.py); None = the recipe's value."},
)


def run(model: nn.Module, forget_classes: tuple[int, ...], *, config: Any, seed: int,
        device: torch.device, synthetic: SyntheticSet | None = None) -> tuple[nn.Module, dict[str, Any]]:
    # source-free: no data parameter at all; unlearn reads class count, shape and range from the model.
    # `synthetic`: a stage-1 set shared across runs (`shared_synthetic_set`), made from this model, not data.
    return unlearn(model, forget_classes, profile=config.profile, seed=seed, recipe=config.recipe,
                   synthetic=synthetic, device=str(device), progress=config.progress, **config.options())


def shared_synthetic_set(config: Any, model: nn.Module, seed: int, device: torch.device) -> SyntheticSet:
    """Stage 1 exactly as `run` with this config would make it (dsda.synthetic_set), to share across forget tasks."""
    return synthetic_set(model, config.profile, seed=seed, recipe=config.recipe, device=str(device),
                         **config.options())


def _per_profile(recipes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {p: {"recipe": r} for p, r in recipes.items()}


_REFERENCE = ("Wang et al., 'Efficient Source-Free Unlearning via Energy-Guided Data Synthesis and "
              "Discrimination-Aware Multitask Optimization', ICML 2025")
METHOD = Method(
    name="dsda", title="DSDA", data_access="none", config_cls=DsdaConfig, run=run, reference=_REFERENCE,
    defaults_source="the paper's objective; sizes, optimiser and stopping rule (not in the paper) per profile in "
                    "dsda/recipes.py",
    profile_overrides=_per_profile(PAPER_RECIPES), in_paper_table=True,
)
KD_HEAD = Method(
    name="dsda_kd_head", title="KD head-only DAMO", data_access="none", config_cls=DsdaConfig, run=run,
    reference="ours, a variant of DSDA's stage 2: " + _REFERENCE,
    defaults_source="dsda/recipes.py (cpu-kd-head chosen on a validation subset of the train split, never the "
                    "test split; evidence in results/tuning/)",
    profile_overrides=_per_profile(KD_HEAD_RECIPES), in_paper_table=True,
)

RETRAIN_LIKE = Method(
    name="dsda_retrain_like", title="Retrain-like KD head-only DAMO", data_access="none", config_cls=DsdaConfig,
    run=run, reference="ours, a variant of DSDA's stage 2 (L_F distils a retrained-like target): " + _REFERENCE,
    defaults_source="dsda/recipes.py (cpu-retrain-like chosen on training-split images of the dev tasks against "
                    "their retrained models, never the test split; evidence in results/tuning/cpu_retrain_like.json)",
    profile_overrides=_per_profile(RETRAIN_LIKE_RECIPES), in_paper_table=False,
)

REGISTER = (METHOD, KD_HEAD, RETRAIN_LIKE)


def recipe_for(method: Method, profile: str) -> str:
    """The recipe a DSDA method runs on a profile (the `paper-*` profiles share `paper`'s)."""
    return method.profile_overrides[profile_family(profile)]["recipe"]
