"""DSDA itself behind the common interface: `dsda.unlearn.unlearn` (AEGDS synthesis, then DAMO).

Config design. `unlearn` already owns DSDA's settings: the per-profile values in
`dsda.unlearn.PROFILE_DEFAULTS` and the documented defaults of `SamplerConfig` / `DamoConfig`
(dsda/sampler.py, dsda/damo.py). Copying them into a second dataclass would let the two drift apart,
and a generic `overrides: tuple` field would hide the option names from `Method.config`'s check and
from `--set name=value`. So `DsdaConfig` is generated from `unlearn`'s own list of options
(`ALLOWED_OVERRIDES`): one field per option, default None = "unlearn's value for this profile". Only
the fields a caller sets are passed on; an unknown name is rejected by `Method.config`, and a bad
value is rejected when the config is built (before any model is loaded). The values actually used
are in the run's report (`report["config"]`). `device` is not a field: the runner passes it.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn as nn

from ..damo import DamoConfig
from ..profiles import get_profile
from ..sampler import SamplerConfig
from ..unlearn import ALLOWED_OVERRIDES, profile_defaults, route_overrides, unlearn
from .base import Method

_RUNNER_OWNED = ("device", "progress")   # set by the runner, not through overrides
OPTION_FIELDS = tuple(n for n in ALLOWED_OVERRIDES if n not in _RUNNER_OWNED)


def _post_init(self) -> None:
    get_profile(self.profile)   # ValueError naming the allowed profiles
    if not isinstance(self.progress, bool):
        raise TypeError(f"progress must be True or False, got {self.progress!r}")
    # build the two configs now, so a bad value fails here and not after minutes of loading
    s_kw, d_kw, extra = route_overrides({**profile_defaults(self.profile), **self.options()})
    SamplerConfig(**s_kw)
    DamoConfig(**d_kw)
    n = extra.get("n_per_class", 2)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n_per_class must be an integer >= 2, got {n!r}")


def _options(self) -> dict[str, Any]:
    """The options the caller set (fields that are not None), as keyword arguments for `unlearn`."""
    return {n: getattr(self, n) for n in OPTION_FIELDS if getattr(self, n) is not None}


DsdaConfig = dataclasses.make_dataclass(
    "DsdaConfig",
    [("profile", str, dataclasses.field(default="cpu")),     # selects dsda.unlearn.PROFILE_DEFAULTS; set by the runner
     ("progress", bool, dataclasses.field(default=False))]   # tqdm bars (the runner sets it)
    + [(n, Any, dataclasses.field(default=None)) for n in OPTION_FIELDS],  # None = unlearn's profile default
    frozen=True,
    namespace={"__post_init__": _post_init, "options": _options, "__module__": __name__,
               "__doc__": "Options of dsda.unlearn (see dsda/sampler.py, dsda/damo.py); None = the profile's default."},
)


def run(model: nn.Module, forget_classes: tuple[int, ...], *, config: Any, seed: int,
        device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    # source-free: no data parameter at all; unlearn reads class count, shape and range from the model
    return unlearn(model, forget_classes, profile=config.profile, seed=seed, device=str(device),
                   progress=config.progress, **config.options())


METHOD = Method(
    name="dsda", title="DSDA", data_access="none", config_cls=DsdaConfig, run=run,
    reference="Wang et al., 'Efficient Source-Free Unlearning via Energy-Guided Data Synthesis and "
              "Discrimination-Aware Multitask Optimization', ICML 2025",
    defaults_source="dsda.unlearn.PROFILE_DEFAULTS per profile (stopping rule on synthetic data; cpu recipe chosen "
                    "on a validation subset of the train split, never the test split) and the "
                    "documented defaults of SamplerConfig / DamoConfig (paper values where the paper gives them)",
    profile_overrides={"smoke": {}, "cpu": {}, "paper": {}},  # the per-profile values live in dsda.unlearn
    in_paper_table=True,
)
