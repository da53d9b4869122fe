"""Run one unlearning method the way every experiment does: same model, same data rules, same clock.

    record = run_method("dsda", profile="cpu", forget_classes=[3], seed=0)

1. Check every argument (unknown method, profile or option: ValueError naming the allowed values).
2. Load the original model (dsda.train.original_model, cached) and give the method a deep copy.
3. Build the grant from the TRAIN split, exactly as the method declares (base.py):
   "none" -> no data keyword at all; "forget" -> forget=; "retain_subset" -> retain= (a seeded,
   class-balanced subset, `retain_per_class` per class); "full" -> forget= and retain=; extra "ood"
   -> ood= (another shipped data set, resized to the model's input; see `ood_dataset`).
   Everything is loaded BEFORE the method starts.
4. Call `method.run` inside `dsda.data.forbid_data_access(...)`: a method that tries to load data on
   its own gets DataAccessError. Only this call is timed (`ET_s`, CUDA synchronised).
5. After the guard: evaluate with dsda.metrics.evaluate and return a JSON-ready record. By default the
   evaluation is against the retrained oracle of the same task and seed (`reference=True`:
   dsda.retrain_model(profile, forget_classes, seed=seed), the model the Retrain method returns for that
   seed, loaded from the cache or trained once), so the metrics carry the distance keys of dsda.distance;
   `reference=False` gives the plain metrics only.

Methods whose result is cached elsewhere (Retrain: the oracle in the checkpoint cache) may define two
module-level hooks, used here and nowhere else:
  `load_cached(profile, forget_classes, *, seed, device, config) -> (model, report, seconds) | None`
  `store_cached(profile, forget_classes, *, seed, model, report, et_s, config) -> path | None`
A hit skips the run and reports the stored time with `ET_source: "cache"`; after a measured run,
`store_cached` is called outside the guard.

Runner-owned config fields: if a method's config has a field `profile` or `progress`, the runner fills
it with the run's profile name / progress flag (so the method knows its recipe without seeing data).

Shared synthesis (DSDA methods: a module hook `shared_synthetic_set(config, model, seed, device)` and a `synthetic`
keyword of `run`): `S = synthetic_set_for(name, profile, seed=...)`, then `run_method(name, ..., synthetic=S)` for
any forget classes. The record says `synthesis_shared: true`; `ET_s` includes the set's whole synthesis time
(`ET_shared_synthesis_s`), so ET stays what one run costs on its own.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..checks import validate_seed
from ..data import (TensorDataset, dataset_info, forbid_data_access, load_dataset,
                    split_dataset, validate_forget_classes)
from ..profiles import Profile, get_profile
from ..recipes import profile_family
from ..utils import check_positive, provenance, resolve_device, timer
from .base import DATA_ACCESS, Method
from .ood import OOD_SOURCE, convert_images, ood_dataset  # noqa: F401  (the ood= grant; tests import them here)

GRANT_KEYS = {"none": (), "forget": ("forget",), "retain_subset": ("retain",), "full": ("forget", "retain")}
DATA_KEYWORDS = ("forget", "retain", "ood")
RUNNER_FIELDS = ("profile", "progress")     # config fields the runner fills in (see module docstring)
# OOD source for each profile data set: a *different* shipped data set (SCAR needs one).
MAX_REPORT_ELEMENTS = 4096                  # larger tensors/arrays in a report are not written to JSON

assert set(GRANT_KEYS) == set(DATA_ACCESS)


# ----------------------------------------------------------------------------- validation

def _resolve_method(name: str | Method) -> Method:
    from . import get_method   # reads the registry at call time (tests may add probe methods)
    if isinstance(name, Method):
        return name
    if not isinstance(name, str):
        raise TypeError(f"method must be a method name (str) or a Method, got {type(name).__name__}")
    return get_method(name)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def settings_key(method: Method, profile: Profile) -> str:
    """Which entry of `method.profile_overrides` a profile uses: its own, else 'paper' for 'paper-*'."""
    if profile.name in method.profile_overrides:
        return profile.name
    family = profile_family(profile)
    return family if family in method.profile_overrides else profile.name   # no entry: the config's defaults


def build_config(method: Method, profile: Profile, progress: bool, overrides: Mapping[str, Any]) -> Any:
    """The method's config for the profile, with runner-owned fields filled in and `overrides` applied."""
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    owned = sorted(set(overrides) & set(RUNNER_FIELDS))
    if owned:
        raise ValueError(f"option(s) {owned} are set by the runner (use run_method's own arguments), "
                         f"not through overrides")
    auto = {k: v for k, v in (("profile", profile.name), ("progress", progress)) if k in fields}
    # Method.config's first parameter is itself called `profile`, so the field cannot be passed through it
    config = method.config(settings_key(method, profile), **dict(overrides))
    return dataclasses.replace(config, **auto) if auto else config


def check_signature(method: Method) -> None:
    """`run` must accept exactly the data keywords its declaration grants (and a source-free one none)."""
    params = inspect.signature(method.run).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    granted = set(GRANT_KEYS[method.data_access]) | set(method.extras)
    if method.source_free and (var_kw or set(params) & set(DATA_KEYWORDS)):
        raise TypeError(f"method {method.name!r} declares data_access='none' but its run function can accept "
                        f"data (parameters {sorted(set(params) & set(DATA_KEYWORDS))}, **kwargs={var_kw})")
    missing = [k for k in ("config", "seed", "device", *sorted(granted)) if k not in params and not var_kw]
    if missing:
        raise TypeError(f"method {method.name!r}: run() lacks the keyword(s) {missing} its declaration "
                        f"(data_access={method.data_access!r}, extras={method.extras}) requires")
    extra_data = sorted((set(params) & set(DATA_KEYWORDS)) - granted)
    if extra_data:
        raise TypeError(f"method {method.name!r}: run() takes {extra_data}, which its declaration "
                        f"(data_access={method.data_access!r}, extras={method.extras}) does not grant")


# ----------------------------------------------------------------------------- the grant

def balanced_subset(ds: TensorDataset, per_class: int, seed: int) -> TensorDataset:
    """Up to `per_class` samples of every class present in `ds`, drawn without replacement by a seeded
    generator (a class with fewer samples gives all of them); rows sorted by their index in `ds`."""
    check_positive("retain_per_class", per_class)
    gen = torch.Generator().manual_seed(validate_seed(seed))
    picks = []
    for c in torch.unique(ds.y).tolist():
        idx = (ds.y == c).nonzero().flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    index = torch.sort(torch.cat(picks)).values if picks else torch.zeros(0, dtype=torch.int64)
    return ds.subset(index)


def build_grant(method: Method, profile: Profile, forget_classes: Sequence[int], seed: int,
                retain_per_class: int) -> dict[str, TensorDataset]:
    """Exactly the keyword arguments `method.run` is entitled to (see the module docstring)."""
    keys = GRANT_KEYS[method.data_access]
    grant: dict[str, TensorDataset] = {}
    if keys:
        forget, retain = split_dataset(load_dataset(profile.dataset, "train"), forget_classes)
        if "forget" in keys:
            grant["forget"] = forget
        if "retain" in keys:
            grant["retain"] = (balanced_subset(retain, retain_per_class, seed)
                               if method.data_access == "retain_subset" else retain)
    if "ood" in method.extras:
        grant["ood"] = ood_dataset(profile)
    return grant


# ----------------------------------------------------------------------------- the record

def _json_report(obj: Any, limit: int = MAX_REPORT_ELEMENTS) -> Any:
    """A report without big tensors: small tensors/arrays become lists, big ones a short description.
    `snapshots` (model states kept for efficiency curves) become their step / wall-time index."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if k == "snapshots" and isinstance(v, (list, tuple)):
                out[k] = [{kk: vv for kk, vv in s.items() if kk != "state_dict"} if isinstance(s, Mapping)
                          else repr(type(s)) for s in v]
            else:
                out[str(k)] = _json_report(v, limit)
        return out
    if isinstance(obj, (list, tuple)):
        return [_json_report(v, limit) for v in obj]
    if isinstance(obj, torch.Tensor):
        if obj.numel() > limit:
            return f"<tensor {tuple(obj.shape)} {obj.dtype} omitted>"
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        if obj.size > limit:
            return f"<array {obj.shape} {obj.dtype} omitted>"
        return obj.tolist()
    if isinstance(obj, nn.Module):
        return f"<{type(obj).__name__} omitted>"
    return obj


def _check_result(method: Method, out: Any) -> tuple[nn.Module, dict]:
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"method {method.name!r}: run() must return (model, report), got {type(out).__name__}")
    model, report = out
    if not isinstance(model, nn.Module) or not hasattr(model, "num_classes"):
        raise TypeError(f"method {method.name!r}: run() returned a {type(model).__name__}, not a Classifier")
    if not isinstance(report, dict):
        raise TypeError(f"method {method.name!r}: run() returned a report of type {type(report).__name__}, not dict")
    return model, report


def _cache_hooks(method: Method) -> tuple[Any, Any] | None:
    module = sys.modules.get(getattr(method.run, "__module__", ""), None)
    load, store = getattr(module, "load_cached", None), getattr(module, "store_cached", None)
    return (load, store) if callable(load) and callable(store) else None


def run_method(name: str | Method, profile: str | Profile = "cpu", forget_classes: int | Sequence[int] | None = None,
               seed: int = 0, device: str | torch.device = "auto", evaluate: bool = True,
               retain_per_class: int = 500, progress: bool = True, return_model: bool = False,
               model_seed: int = 0, reference: bool | nn.Module = True, synthetic: Any = None,
               **overrides) -> dict[str, Any] | tuple[dict[str, Any], nn.Module, dict]:
    """Unlearn `forget_classes` from the profile's original model with one method; see the module docstring.

    name: a registered method name (dsda.METHODS) or a Method. forget_classes: None = the profile's
    default task. seed: the method's seed (batch order, noise, subsets; for Retrain also the oracle's
    initialisation). model_seed: which original model (dsda.original_model(profile, seed=model_seed)).
    retain_per_class: size of the "retain_subset" grant. overrides: the method's config options.
    reference: True = evaluate against the retrained oracle of the same task and seed (module docstring),
    a model = against that model, False = no reference (the record's `reference_model` says which).
    synthetic: a DSDA method's shared stage-1 set (`synthetic_set_for`), or None: the method makes its own.

    Returns the JSON-ready record; with `return_model=True`, `(record, model, report)` where `report` is
    the method's untouched report (e.g. with the `snapshots` state dicts the record leaves out).
    """
    from ..metrics import evaluate as evaluate_model
    from ..train import original_model

    if not isinstance(reference, (bool, nn.Module)):
        raise TypeError(f"reference must be True, False or a model, got {type(reference).__name__}")
    flags = {"evaluate": evaluate, "progress": progress, "return_model": return_model}
    method, prof, fc, seed, model_seed, dev, config = _checked_arguments(
        name, profile, forget_classes, seed, model_seed, flags, retain_per_class, device, overrides)
    _check_shared(method, synthetic)
    model = copy.deepcopy(original_model(prof, seed=model_seed, device=dev, progress=progress))
    model, report, et_s, et_source, granted_sizes = _unlearn(method, model, prof, fc, seed, dev, config,
                                                             retain_per_class, synthetic)
    shared_s = 0.0 if synthetic is None else float(synthetic.wall_time)
    model.eval()

    ref_model, ref_info = _reference_model(reference, prof, fc, seed, dev, progress) if evaluate else (None, None)
    metrics = evaluate_model(model, prof, fc, device=dev, seed=seed, reference=ref_model) if evaluate else None
    record = {
        "method": method.name, "title": method.title, "data_access": method.data_access,
        "extras": list(method.extras), "source_free": method.source_free, "profile": prof.name,
        "settings": settings_key(method, prof), "forget_classes": list(fc), "seed": seed, "model_seed": model_seed,
        "ET_s": float(et_s) + shared_s, "ET_source": et_source, "synthesis_shared": synthetic is not None,
        "ET_shared_synthesis_s": shared_s, "granted": granted_sizes, "metrics": metrics,
        "config": dataclasses.asdict(config), "report": _json_report(report),
        "reference": method.reference, "reference_model": ref_info, "provenance": provenance(dev),
    }
    return (record, model, report) if return_model else record


def _reference_model(reference: bool | nn.Module, prof: Profile, fc: tuple[int, ...], seed: int, dev: torch.device,
                     progress: bool) -> tuple[nn.Module | None, dict[str, Any] | None]:
    """(the model to evaluate against, what the record says about it): the retrained oracle of the task and
    seed (reference=True), the caller's model, or none."""
    from ..train import retrain_model, state_digest
    if reference is False:
        return None, None
    if reference is True:
        ref = retrain_model(prof, fc, seed=seed, device=dev, progress=progress)
        return ref, {"model": "retrain", "forget_classes": list(fc), "seed": seed,
                     "sha256": state_digest(ref.state_dict())}
    return reference, {"model": "given", "sha256": state_digest(reference.state_dict())}


def _checked_arguments(name, profile, forget_classes, seed, model_seed, flags: Mapping[str, Any], retain_per_class,
                       device, overrides: Mapping[str, Any]) -> tuple:
    """Every argument of run_method checked, in this order, before anything is loaded:
    (method, profile, forget classes, seed, model seed, device, config)."""
    method = _resolve_method(name)
    prof = get_profile(profile)
    num_classes = dataset_info(prof.dataset).num_classes
    fc = validate_forget_classes(prof.forget_classes if forget_classes is None else forget_classes, num_classes)
    seed = validate_seed(seed)
    model_seed = validate_seed(model_seed, "model_seed")
    for key, flag in flags.items():
        _check_bool(key, flag)
    check_positive("retain_per_class", retain_per_class)
    dev = resolve_device(device)
    config = build_config(method, prof, flags["progress"], overrides)
    check_signature(method)
    return method, prof, fc, seed, model_seed, dev, config


def _unlearn(method: Method, model: nn.Module, prof: Profile, fc: tuple[int, ...], seed: int, dev: torch.device,
             config: Any, retain_per_class: int, synthetic: Any = None) -> tuple[nn.Module, dict, float, str, dict]:
    """(model, report, seconds, "cache" or "measured", granted sizes): the method's cached result if its
    hooks have one, else one run of `method.run` on its grant, timed, inside the data guard."""
    hooks = _cache_hooks(method)
    cached = hooks[0](prof, fc, seed=seed, device=dev, config=config) if hooks else None
    if cached is not None:
        model, report, et_s = cached
        return model, report, et_s, "cache", {}
    grant = build_grant(method, prof, fc, seed, retain_per_class)      # everything loaded before the guard
    granted_sizes = {k: len(v) for k, v in grant.items()}
    reason = (f"method {method.name} declared data_access={method.data_access!r}"
              + (f", extras={list(method.extras)}" if method.extras else "")
              + "; it may use only the data the runner handed it")
    with forbid_data_access(reason):
        with timer() as t:   # synchronises CUDA before and after
            out = method.run(model, fc, config=config, seed=seed, device=dev, **grant,
                             **({} if synthetic is None else {"synthetic": synthetic}))
    del grant
    model, report = _check_result(method, out)
    if hooks:
        hooks[1](prof, fc, seed=seed, model=model, report=report, et_s=t["s"], config=config)
    return model, report, t["s"], "measured", granted_sizes


# ----------------------------------------------------------------------------- shared synthesis (DSDA methods)

def _shares_synthesis(method: Method) -> bool:
    module = sys.modules.get(getattr(method.run, "__module__", ""), None)
    return callable(getattr(module, "shared_synthetic_set", None)) and \
        "synthetic" in inspect.signature(method.run).parameters


def _check_shared(method: Method, synthetic: Any) -> None:
    if synthetic is not None and not _shares_synthesis(method):
        raise ValueError(f"synthetic= is only for methods that synthesise their data (the DSDA methods dsda, "
                         f"dsda_kd_head); method {method.name!r} does not take a shared set")


def synthetic_set_for(name: str | Method, profile: str | Profile = "cpu", seed: int = 0, model_seed: int = 0,
                      device: str | torch.device = "auto", **overrides) -> Any:
    """The stage-1 SyntheticSet that `run_method(name, profile, seed=seed, model_seed=model_seed, **overrides)` of a
    DSDA method would make, to pass as `run_method(..., synthetic=S)` for any forget classes (a set depends on
    the original model, the recipe's stage-1 settings and the seed, not on the task)."""
    from ..train import original_model
    method, prof = _resolve_method(name), get_profile(profile)
    seed, model_seed = validate_seed(seed), validate_seed(model_seed, "model_seed")
    _check_shared(method, True)
    dev = resolve_device(device)
    config = build_config(method, prof, False, overrides)
    model = original_model(prof, seed=model_seed, device=dev, progress=False)
    return sys.modules[method.run.__module__].shared_synthetic_set(config, model, seed, dev)


# ----------------------------------------------------------------------------- the methods table

def methods_table(methods: Mapping[str, Method] | None = None) -> list[dict[str, Any]]:
    """One row per registered method: name, title, data access, extras, source-free, in Table 1, reference."""
    if methods is None:
        from . import METHODS as methods
    return [{"name": m.name, "title": m.title, "data_access": m.data_access, "extras": ", ".join(m.extras),
             "source_free": m.source_free, "in_paper_table": m.in_paper_table, "reference": m.reference}
            for m in methods.values()]


def methods_table_markdown(methods: Mapping[str, Method] | None = None) -> str:
    """The methods table as GitHub Markdown (for the README)."""
    head = "| name | method | data access | source-free | in DSDA Table 1 | reference |\n|---|---|---|---|---|---|"
    lines = [head]
    for r in methods_table(methods):
        access = r["data_access"] + (f" + {r['extras']}" if r["extras"] else "")
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines.append(f"| `{r['name']}` | {cell(r['title'])} | {access} | {'yes' if r['source_free'] else 'no'} | "
                     f"{'yes' if r['in_paper_table'] else 'no'} | {cell(r['reference'])} |")
    return "\n".join(lines) + "\n"


def methods_table_text(methods: Mapping[str, Method] | None = None) -> str:
    """The methods table as aligned plain text (for `python -m dsda methods`)."""
    rows = [("name", "method", "data access", "source-free", "Table 1", "reference")]
    for r in methods_table(methods):
        access = r["data_access"] + (f"+{r['extras']}" if r["extras"] else "")
        rows.append((r["name"], r["title"], access, "yes" if r["source_free"] else "no",
                     "yes" if r["in_paper_table"] else "no", r["reference"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5] for row in rows) + "\n"
