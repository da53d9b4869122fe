"""Original: the model before unlearning (identity). The reference point every table starts from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .base import Method


@dataclass(frozen=True)
class OriginalConfig:
    """No options: the original model is returned unchanged."""


def run(model: nn.Module, forget_classes: tuple[int, ...], *, config: OriginalConfig, seed: int,
        device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    return model.eval(), {"steps": 0}


METHOD = Method(
    name="original", title="Original", data_access="none", config_cls=OriginalConfig, run=run,
    reference="the model trained on the full training split (no unlearning)",
    defaults_source="no options",
    profile_overrides={"smoke": {}, "cpu": {}, "paper": {}},
    in_paper_table=False,  # whether DSDA's Table 1 lists it is unknown (digest §7: tables not retrieved)
)
