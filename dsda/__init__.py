"""dsda: source-free class unlearning (Wang et al., ICML 2025), tested and reproducible.

Public surface (imported lazily, except `unlearn`, so importing the method never pulls in the data
module):

    dsda.load_dataset(name, split)                      -> TensorDataset
    dsda.get_profile(name)                              -> Profile
    dsda.original_model(profile, seed=0)                -> Classifier (trained or loaded from cache)
    dsda.retrain_model(profile, forget_classes, seed=0) -> Classifier (retrain-from-scratch oracle)
    dsda.evaluate(model, profile, forget_classes)       -> {A_f, A_r, A_f_train, A_r_train, MIA, ...}
    dsda.evaluate(model, profile, forget_classes, reference=oracle)  -> also gap_*, ToW, JS_*, ... (dsda.distance)
    dsda.synthesize(model, classes, n_per_class, ...)   -> SyntheticSet (x, y, diagnostics)   [AEGDS, stage 1]
    dsda.synthetic_set(model, profile, seed=0)          -> SyntheticSet exactly as unlearn makes it (share it)
    dsda.unlearn(model, forget_classes, profile=..., synthetic=None) -> (unlearned_model, report)  [DSDA]
    dsda.METHODS                                        -> every method with its data access
    dsda.run_method(name, profile, forget_classes, synthetic=None) -> record (the runner; dsda/baselines/runner.py)
    dsda.synthetic_set_for(name, profile, seed=0)       -> the DSDA method's stage-1 set, for run_method(synthetic=)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "data",
    "class_split": "data",
    "split_dataset": "data",
    "dataset_info": "data",
    "forbid_data_access": "data",
    "get_profile": "profiles",
    "PROFILES": "profiles",
    "build_model": "models",
    "original_model": "train",
    "retrain_model": "train",
    "evaluate": "metrics",
    "synthesize": "synthesis",
    "SyntheticSet": "synthesis",
    "RECIPES": "recipes",
    "synthetic_set": "unlearn",
    "get_recipe": "recipes",
    "SamplerConfig": "sampler",
    "DamoConfig": "damo",
    "METHODS": "baselines",
    "run_method": "baselines",
    "synthetic_set_for": "baselines",
}

__all__ = sorted(_LAZY) + ["unlearn", "__version__"]

# `unlearn` is both a submodule and its main function. Importing the submodule makes Python bind
# `dsda.unlearn` to the module, so a lazy attribute would turn into the module after first use. Importing
# it here, once, and binding the function afterwards keeps `dsda.unlearn(...)` callable for good (the
# module stays reachable as `sys.modules["dsda.unlearn"]` and `from dsda.unlearn import ...`).
from .unlearn import unlearn  # noqa: E402  (sampler, damo, profiles, utils: no data module)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'dsda' has no attribute {name!r}")


def __dir__():
    return __all__
