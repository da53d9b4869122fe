"""Original: the model before unlearning (identity). The reference point every table starts from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .base import Method

# the paper this method comes from (the methods table)
REFERENCE = "the model trained on the full training split (no unlearning)"


@dataclass(frozen=True)
class OriginalConfig:
    """No options: the original model is returned unchanged."""


# where the defaults come from, and each profile's changes to them (Method.config)
DEFAULTS_SOURCE = "no options"
PROFILES = {"smoke": {}, "cpu": {}, "paper": {}}


def run(model: nn.Module, forget_classes: tuple[int, ...], *, config: OriginalConfig, seed: int,
        device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    return model.eval(), {"steps": 0}


# in_paper_table: whether DSDA's Table 1 lists it is unknown (the rows of its Table 1 were not available to us)
METHOD = Method(name="original", title="Original", data_access="none", config_cls=OriginalConfig, run=run,
                reference=REFERENCE, defaults_source=DEFAULTS_SOURCE, profile_overrides=PROFILES,
                in_paper_table=False)
