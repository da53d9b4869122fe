"""Does the code run what the studies chose? Each study's best trial against the registered settings.

A DSDA study names the recipe its best trial becomes (`StudySpec.registers`, e.g. "val-kd-head"): that recipe
must exist in dsda.recipes.RECIPES and equal the study's base recipe with the variant's switches and the best
trial's values (stage 1, DAMO config, images per class). A baseline study's best trial must equal the method's
settings on the tuning profile (`profile_overrides["cpu-val"]`, else its family's). `mismatches` lists every
difference (empty = registered); tests/test_tune_registry.py runs it on each committed study.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .spaces import StudySpec, get_study, overrides

UNUSED = ("device", "progress", "profile")       # fields that change nothing computed


def status(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """{'state': 'missing' | 'partial' | 'complete', 'trials': finished, 'budget': n, 'best': value or None}."""
    from .study import done_trials, open_study, storage_path
    spec = get_study(name)
    if not storage_path(name, root).is_file():
        return {"state": "missing", "trials": 0, "budget": spec.n_trials, "best": None}
    study = open_study(spec, root, create=False)
    n = len(done_trials(study))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = {"value": study.best_value, "params": study.best_params, "trial": study.best_trial.number} \
        if complete else None
    return {"state": "complete" if n >= spec.n_trials else "partial", "trials": n, "budget": spec.n_trials,
            "best": best}


def _plain(config: Any) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if k not in UNUSED}


def tuned_settings(spec: StudySpec, params: dict[str, Any]) -> dict[str, Any]:
    """What the variant runs with at `params`: {'sampler', 'damo', 'n_per_class'} or {'config'}."""
    options = overrides(spec, params)
    if spec.kind == "dsda":
        from ..recipes import get_recipe
        r = get_recipe(spec.base).replace(**options)
        return {"sampler": _plain(r.sampler.resolved()), "damo": _plain(r.damo), "n_per_class": r.n_per_class}
    from ..baselines import get_method
    from ..recipes import profile_family
    return {"config": _plain(get_method(spec.base).config(profile_family(spec.profile), **options))}


def registered_settings(spec: StudySpec) -> dict[str, Any] | None:
    """What the code runs for the variant now (None: its recipe is not registered yet)."""
    if spec.kind == "dsda":
        from ..recipes import RECIPES
        r = RECIPES.get(spec.registers)
        return None if r is None else {"sampler": _plain(r.sampler.resolved()), "damo": _plain(r.damo),
                                       "n_per_class": r.n_per_class}
    from ..baselines import get_method
    from ..baselines.runner import settings_key
    from ..profiles import get_profile
    method = get_method(spec.base)
    return {"config": _plain(method.config(settings_key(method, get_profile(spec.profile))))}


def mismatches(name: str, root: str | Path | None = None) -> list[str]:
    """Every way the registered settings differ from the study's best trial ([] = they are the same)."""
    spec = get_study(name)
    st = status(name, root)
    if st["best"] is None:
        return [f"study {name!r} has no finished trial ({st['state']})"]
    if st["state"] != "complete":
        return [f"study {name!r} is not complete ({st['trials']} of {st['budget']} trials)"]
    want, have = tuned_settings(spec, st["best"]["params"]), registered_settings(spec)
    if have is None:
        return [f"study {name!r}: recipe {spec.registers!r} is not registered (dsda/recipes.py); its best trial "
                f"{st['best']['trial']} is {st['best']['params']}"]
    out = []
    for part, fields in want.items():
        if not isinstance(fields, dict):
            out += [] if have[part] == fields else [f"{part}: registered {have[part]!r}, best trial {fields!r}"]
            continue
        out += [f"{part}.{k}: registered {have[part].get(k)!r}, best trial {v!r}" for k, v in fields.items()
                if have[part].get(k) != v]
    return out
