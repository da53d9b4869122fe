"""Every unlearning method behind one interface (see base.py), with the data each one may touch.

`METHODS` maps a name to its `Method`; each module of this package that defines a module-level
`METHOD` (or a tuple `REGISTER` of Methods) registers it. `run_method` (runner.py) loads the original model, hands the method
exactly the data it declares, times it and evaluates the result.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import DATA_ACCESS, Method

# Display order: references first, then source-free methods (the paper's competitors), then the rest.
ORDER = ("original", "retrain", "dsda", "dsda_kd_head", "dsda_retrain_like", "gkt", "ispf", "synth_embed", "finetune",
         "neggrad", "random_labels", "ssd", "unsir", "boundary_shrink", "adv_imp", "scar", "lau")


def _discover() -> dict[str, Method]:
    found: dict[str, Method] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "runner") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for method in getattr(module, "REGISTER", (getattr(module, "METHOD", None),)):
            if isinstance(method, Method):
                if method.name in found:
                    raise RuntimeError(f"two modules register the method name {method.name!r}")
                found[method.name] = method
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


METHODS: dict[str, Method] = _discover()


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not valid; allowed values: {', '.join(METHODS)}")
    return METHODS[name]


def __getattr__(name: str):
    if name in ("run_method", "synthetic_set_for"):  # lazy: the runner imports data/metrics, the registry does not
        from . import runner
        return getattr(runner, name)
    raise AttributeError(name)


__all__ = ["METHODS", "DATA_ACCESS", "Method", "get_method", "run_method", "synthetic_set_for"]
