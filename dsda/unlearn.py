"""DSDA end to end: `unlearn(model, forget_classes)` = stage 1 (synthesis) then stage 2 (DAMO).

Source-free by construction: this module imports only method modules (`synthesis`, `damo`, `recipes`,
`checks`, `profiles`, `utils`), and `unlearn` receives no dataset. It reads what it needs from the model's
interface (`num_classes`, `input_shape`, `input_range`, `features`, `fc`; see dsda/models.py).

The settings of both stages come from a named recipe (`dsda.recipes.RECIPES`; default: the profile's);
keyword overrides name fields of SamplerConfig, DamoConfig or `n_per_class`. The three ablations of the
paper's Fig. 4 are overrides: `sampler="sgld"` (DSDA-w-EGDS), `disc=False` (DSDA-wo-disc) and
`multitask=False` (DSDA-wo-mt). A `SyntheticSet` (from `synthetic_set`, which runs stage 1 exactly as
`unlearn` does, or from `dsda.synthesize`) can be passed as `synthetic`, so one set serves many forget tasks
and DAMO variants; its synthesis time is then counted in the run's ET:

    syn = dsda.synthetic_set(model, "cpu", seed=0)                    # stage 1 once, every class
    for forget in ([1], [5], [8]):                                     # rep["synthesis_shared"] is True
        unlearned, rep = dsda.unlearn(model, forget, "cpu", seed=0, synthetic=syn)
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from .checks import validate_forget_classes, validate_seed
from .damo import damo
from .profiles import Profile, get_profile
from .recipes import Recipe, get_recipe
from .synthesis import SyntheticSet, synthesize
from .utils import resolve_device, state_digest


def _check_model(model: Any) -> int:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a dsda.models.Classifier), got {type(model).__name__}")
    missing = [a for a in ("num_classes", "input_shape", "input_range", "features", "fc") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model lacks {missing}; unlearn needs a dsda.models.Classifier-like interface "
                        "(num_classes, input_shape, input_range, features(x), fc)")
    return int(model.num_classes)


def resolve_recipe(profile: str | Profile = "cpu", recipe: str | Recipe | None = None, **overrides) -> Recipe:
    """The recipe `unlearn` runs: the named (or the profile's) recipe, on the profile's device, with overrides."""
    prof = get_profile(profile)
    return get_recipe(recipe, prof).replace(**{"device": prof.device, **overrides})


def _check_synthetic(synthetic: Any, model: nn.Module, num_classes: int, recipe: Recipe) -> SyntheticSet:
    """A SyntheticSet of every class, made from this model; the recipe's stage-1 settings, where they differ from
    the set's, are an error."""
    if not isinstance(synthetic, SyntheticSet):
        raise TypeError(f"synthetic must be a dsda SyntheticSet (from dsda.synthetic_set or dsda.synthesize) or "
                        f"None, got {type(synthetic).__name__}")
    if synthetic.model_digest != state_digest(model.state_dict()):
        raise ValueError("synthetic was made from another model than the one to unlearn (its model_digest differs); "
                         "make it with dsda.synthetic_set(model, ...) from this model")
    if sorted(synthetic.classes) != list(range(num_classes)):
        raise ValueError(f"synthetic must hold every class 0..{num_classes - 1} of the model, "
                         f"got classes {list(synthetic.classes)}")
    want = {**dataclasses.asdict(recipe.sampler.resolved()), "n_per_class": recipe.n_per_class}
    have = {**dataclasses.asdict(synthetic.config), "n_per_class": synthetic.n_per_class}
    differ = sorted(k for k in want if k not in ("device", "progress", "batch_size", "diag_every") and want[k] != have[k])
    if differ:
        raise ValueError("synthetic was made with other stage-1 settings than the recipe's: "
                         + ", ".join(f"{k} {have[k]!r} (recipe: {want[k]!r})" for k in differ)
                         + "; pass the same recipe and options to dsda.synthetic_set, or drop them")
    return synthetic


def _work_copy(model: nn.Module, device: torch.device) -> nn.Module:
    work = copy.deepcopy(model).to(device)  # the caller's model stays bit-identical
    if len(tuple(model.input_shape)) == 3:  # images: channels_last weights (faster convs on CPU)
        work = work.to(memory_format=torch.channels_last)
    return work


def synthetic_set(model: nn.Module, profile: str | Profile = "cpu", seed: int = 0,
                  recipe: str | Recipe | None = None, **overrides) -> SyntheticSet:
    """Stage 1 exactly as `unlearn` runs it (same recipe, same seed, same model layout): every class of the
    model, so the set serves every forget task; `unlearn(model, forget, synthetic=S)` then gives the same
    unlearned weights as `unlearn(model, forget)`, bit for bit."""
    num_classes = _check_model(model)
    seed = validate_seed(seed)
    r = resolve_recipe(profile, recipe, **overrides)
    work = _work_copy(model, resolve_device(r.damo.device))
    return synthesize(work, list(range(num_classes)), r.n_per_class, seed=seed, config=r.sampler.resolved())


def unlearn(model: nn.Module, forget_classes: int | Sequence[int], profile: str | Profile = "cpu",
            seed: int = 0, recipe: str | Recipe | None = None, synthetic: SyntheticSet | None = None,
            callback: Callable[[int, nn.Module], Any] | None = None, **overrides) -> tuple[nn.Module, dict[str, Any]]:
    """Source-free class unlearning by DSDA. Returns (unlearned copy of `model`, report).

    1. Stage 1: `recipe.n_per_class` synthetic samples for every class from the frozen model copy
       (skipped when `synthetic` is given: a SyntheticSet of every class, e.g. shared across tasks).
    2. Stage 2: DAMO on the copy with the synthetic retain / forget sets (class centres from the
       original model's features); `callback(step, model)` is passed to `dsda.damo.damo`.

    The caller's model is never modified (not even its train/eval mode). `recipe` is a name in
    dsda.recipes.RECIPES or a Recipe (None: the profile's). `overrides` name fields of SamplerConfig,
    DamoConfig or `n_per_class` (an unknown name is a ValueError listing the allowed ones).

    ET in the report (`time_s["total"]`) includes the synthesis time the run used: its own, or the shared
    set's whole `wall_time` (not a share of it), so ET is what the run would cost on its own whether or not
    the set was shared; `synthesis_shared` says which, `time_s["synthesis"]` how much of ET it is. A shared
    set must come from this model (its digest is checked) with the recipe's stage-1 settings.
    """
    num_classes = _check_model(model)
    forget = list(validate_forget_classes(forget_classes, num_classes))
    seed = validate_seed(seed)
    r = resolve_recipe(profile, recipe, **overrides)
    if synthetic is not None:
        _check_synthetic(synthetic, model, num_classes, r)
    device = resolve_device(r.damo.device)
    t_total = time.perf_counter()
    work = _work_copy(model, device)
    shared = synthetic is not None
    if not shared:  # synthesise on the working copy itself (it is left unchanged)
        synthetic = synthesize(work, list(range(num_classes)), r.n_per_class, seed=seed, config=r.sampler.resolved())
    x_r, y_r, x_f, y_f = synthetic.split(forget)
    t0 = time.perf_counter()
    rep = damo(work, x_r, y_r, x_f, y_f, r.damo, seed=seed, callback=callback)
    t_cb = max(time.perf_counter() - t0 - rep["time_s"], 0.0)        # the callback's time is not the method's
    t_opt = time.perf_counter() - t0 - t_cb
    t_run = time.perf_counter() - t_total - t_cb + (synthetic.wall_time if shared else 0.0)  # ET: synthesis used too
    report = _report(r, get_profile(profile), seed, forget, num_classes, synthetic, rep, t_opt, device, t_run)
    report["synthesis_shared"] = shared
    return work, report


def _report(r: Recipe, prof: Profile, seed: int, forget: list[int], num_classes: int, syn: SyntheticSet,
            rep: dict[str, Any], t_opt: float, device, t_run: float) -> dict[str, Any]:
    n_f = int(torch.isin(syn.y, torch.tensor(forget, device=syn.y.device)).sum())
    return {
        "method": "DSDA", "recipe": r.name, "title": r.title, "profile": prof.name, "seed": seed,
        "forget_classes": forget, "retain_classes": [c for c in range(num_classes) if c not in forget],
        "config": {"sampler": dataclasses.asdict(syn.config), "damo": dataclasses.asdict(r.damo),
                   "n_per_class": syn.n_per_class},
        "time_s": {"synthesis": syn.wall_time, "optimisation": t_opt, "total": t_run},
        "losses": {"retain": rep["loss_retain"], "forget": rep["loss_forget"], "disc": rep["loss_disc"]},
        "w": rep["w"], "conflict": rep["conflict"], "conflict_rate": rep["conflict_rate"], "cos": rep["cos"],
        "gT_norm": rep["gT_norm"], "d_norm": rep["d_norm"], "checks": rep["checks"], "steps": rep["steps"],
        "forget_temperature": rep["forget_temperature"],
        "stop_reason": rep["stop_reason"], "final_check": rep["checks"][-1] if rep["checks"] else None,
        "sampler_diagnostics": dict(syn.diagnostics.final), "device": str(device), "synthesis_seed": syn.seed,
        "nfe_per_class": dict(syn.diagnostics.nfe_per_class),
        "n_synthetic": {"retain": len(syn.y) - n_f, "forget": n_f},
    }
