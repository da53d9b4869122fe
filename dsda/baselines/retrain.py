"""Retrain: the gold standard (the reference row of the paper's Table 1). Train a fresh model from scratch on the retain classes only,
with the profile's recipe (dsda.train.train_model: Adam, multi-step lr from 0.01, paper §5.1).

`run` reproduces `dsda.retrain_model` exactly: same initialisation (the profile's architecture built
under `torch.manual_seed(seed)`), same data (the retain part of the train split, in the same order),
same recipe and seed. So the oracle in the checkpoint cache IS this method's output, and the runner
uses it through two hooks instead of retraining for minutes:

- `load_cached(...)`: the cached oracle and its stored training time (the record says `ET_source: "cache"`);
- `store_cached(...)`: after a measured run (outside the data guard), write the model into the cache.

`use_cache=False` always trains (under the guard, with the granted data) and leaves the cache alone.
Data access: "full" -- it trains on the whole retain split; the forget samples are not read.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..models import Classifier, build_model
from ..profiles import Profile, get_profile
from .base import Method

# the paper this method comes from (the methods table)
REFERENCE = "retrain from scratch without the forget classes (the gold standard of DSDA's Table 1)"


@dataclass(frozen=True)
class RetrainConfig:
    profile: str = "cpu"          # whose recipe and architecture (dsda.profiles); the runner sets the run's profile
    use_cache: bool = True        # ours: reuse the cached oracle (ET = its stored training time) and store new ones
    progress: bool = False        # tqdm bar over steps (the runner sets it)

    def __post_init__(self):
        get_profile(self.profile)  # ValueError naming the allowed profiles
        for name in ("use_cache", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")


# where the defaults come from, and each profile's changes to them (Method.config)
DEFAULTS_SOURCE = "the profile's training recipe (dsda.profiles; paper §5.1: Adam, multi-step lr from 0.01)"
PROFILES = {"smoke": {}, "cpu": {}, "paper": {}}  # the recipe comes from the profile itself


def fresh_model(template: Classifier, profile: Profile, seed: int) -> Classifier:
    """A newly initialised model of the profile's architecture with the template's interface.

    Initialised under `torch.manual_seed(seed)` inside `fork_rng` (the caller's global RNG state is
    untouched) -- not with a torch.Generator -- because that is how dsda.train initialises the cached
    oracle, and the two must agree bit for bit.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(profile.model, template.num_classes, template.input_shape, width=profile.width,
                           input_range=template.input_range)


def run(model: nn.Module, forget_classes: tuple[int, ...], *, config: RetrainConfig, seed: int,
        device: torch.device, forget, retain) -> tuple[nn.Module, dict[str, Any]]:
    from ..train import train_model   # lazy: importing the registry must not import dsda.data

    del forget  # "full" access, but the oracle trains on the retain split only
    prof = get_profile(config.profile)
    student = fresh_model(model, prof, seed)
    history = train_model(student, retain, prof.recipe, seed=seed, device=device, progress=config.progress,
                          desc=f"retrain w/o {list(forget_classes)}")
    steps = max(1, len(retain) // prof.recipe.batch_size) * prof.recipe.epochs   # as train_model counts them
    return student, {"source": "trained", "steps": steps, "loss_curve": history["epoch_loss"],
                     "epoch_time_s": history["epoch_time_s"], "n_retain": len(retain),
                     "recipe": dataclasses.asdict(prof.recipe)}


# ----------------------------------------------------------------------------- cache hooks (used by the runner)

def checkpoint_path(profile: Profile, forget_classes: Sequence[int], seed: int) -> tuple[Path, dict[str, Any]]:
    """Where dsda.train caches this oracle (where new ones are stored), and the config it is keyed by."""
    from ..train import cache_dir, checkpoint_name, model_config
    config = model_config(profile, seed, forget_classes)
    return cache_dir() / profile.name / checkpoint_name(config), config


def load_cached(profile: Profile, forget_classes: Sequence[int], *, seed: int, device: torch.device,
                config: RetrainConfig) -> tuple[nn.Module, dict[str, Any], float] | None:
    """(oracle, report, stored training seconds) from the cache or `pretrained/`, or None (absent, unusable,
    or use_cache=False).

    Looks exactly where `dsda.retrain_model` looks (the local cache, then the shipped checkpoints), so the
    runner's Retrain row and the notebooks' oracle are the same model. (Looking in the cache only made a
    clean clone retrain every oracle here, 2-thread weights that then shadowed the shipped 1-thread ones.)
    """
    from ..train import CheckpointError, find_checkpoint, load_checkpoint
    if not config.use_cache:
        return None
    _, key = checkpoint_path(profile, forget_classes, seed)
    path = find_checkpoint(profile, key)
    if path is None:
        return None
    try:
        model, payload = load_checkpoint(path, expected_config=key, device=device)
    except CheckpointError as e:
        warnings.warn(f"{e}\n  -> retraining the oracle; the new one goes into the cache.", RuntimeWarning,
                      stacklevel=2)
        return None
    extra = payload.get("extra", {})
    if not isinstance(extra.get("train_time_s"), (int, float)):
        return None  # no stored training time: measure it
    history = extra.get("history", {})
    from ..data import load_dataset   # outside the guard: the runner calls this before the method would run
    y = load_dataset(profile.dataset, "train").y
    n_retain = int((~torch.isin(y, torch.tensor(list(forget_classes), dtype=y.dtype))).sum())
    report = {"source": "cache", "path": str(path), "n_retain": n_retain,
              "steps": max(1, n_retain // profile.recipe.batch_size) * profile.recipe.epochs,
              "loss_curve": history.get("epoch_loss", []),
              "epoch_time_s": history.get("epoch_time_s", []), "test_accuracy": extra.get("test_accuracy"),
              "trained_on": extra.get("device"), "trained_with": payload.get("versions", {}),
              "recipe": dataclasses.asdict(profile.recipe)}
    return model.eval(), report, float(extra["train_time_s"])


def store_cached(profile: Profile, forget_classes: Sequence[int], *, seed: int, model: nn.Module,
                 report: dict[str, Any], et_s: float, config: RetrainConfig) -> Path | None:
    """Write a freshly trained oracle into the cache (called by the runner OUTSIDE the data guard)."""
    from ..data import load_dataset
    from ..train import save_checkpoint, test_accuracy
    if not config.use_cache:
        return None
    path, key = checkpoint_path(profile, forget_classes, seed)
    dev = next(model.parameters()).device
    acc = test_accuracy(model, load_dataset(profile.dataset, "test"), profile.eval_batch_size, dev)
    history = {"epoch_loss": report.get("loss_curve", []), "epoch_time_s": report.get("epoch_time_s", [])}
    save_checkpoint(path, model, key, extra={"history": history, "train_time_s": float(et_s),
                                             "test_accuracy": acc, "device": str(dev),
                                             "trained_by": "dsda.baselines.retrain"})
    return path


METHOD = Method(name="retrain", title="Retrain", data_access="full", config_cls=RetrainConfig, run=run,
                reference=REFERENCE, defaults_source=DEFAULTS_SOURCE, profile_overrides=PROFILES, in_paper_table=True)
