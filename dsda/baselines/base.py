"""One interface for every unlearning method, DSDA included.

A method declares what it may touch (`data_access`) and the runner hands it exactly that:

| data_access      | what `run` receives (keyword arguments)                                   |
|------------------|---------------------------------------------------------------------------|
| "none"           | nothing: no dataset object at all (source-free: DSDA, GKT, ISPF, ...)     |
| "forget"         | `forget`: the forget-class training samples                              |
| "retain_subset"  | `retain`: a class-balanced subset of the retain-class training samples   |
| "full"           | `forget` and `retain`: the whole training split, split by class           |

A method may also ask for `extras` that are not training data (e.g. SCAR's out-of-distribution
set: `extras=("ood",)` gives an `ood` keyword with a *different* dataset).

While a method runs, the runner holds `dsda.data.forbid_data_access`, so a method that tries to load
data on its own fails with DataAccessError instead of quietly reading the training set.

`run(model, forget_classes, *, config, seed, device, **granted) -> (model, report)`: `model` is a
private copy of the original model (the method may modify it in place or return a new one);
`report` is a dict of method-specific diagnostics (losses, step counts, ...).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

DATA_ACCESS = ("none", "forget", "retain_subset", "full")
EXTRAS = ("ood",)


@dataclass(frozen=True)
class Method:
    name: str                               # registry key, e.g. "gkt"
    title: str                              # display name, e.g. "GKT"
    data_access: str                        # one of DATA_ACCESS
    config_cls: type                        # frozen dataclass with documented defaults
    run: Callable[..., tuple[Any, dict]]    # see module docstring
    reference: str                          # paper the method comes from
    defaults_source: str                    # where the default hyperparameters come from
    profile_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per-profile config
    extras: tuple[str, ...] = ()            # non-training data the method needs (EXTRAS)
    in_paper_table: bool = True             # appears in DSDA's Table 1

    def __post_init__(self):
        if self.data_access not in DATA_ACCESS:
            raise ValueError(f"Method {self.name!r}: data_access={self.data_access!r}; allowed: {DATA_ACCESS}")
        if any(e not in EXTRAS for e in self.extras):
            raise ValueError(f"Method {self.name!r}: extras={self.extras!r}; allowed: {EXTRAS}")
        if not (dataclasses.is_dataclass(self.config_cls) and self.config_cls.__dataclass_params__.frozen):
            raise TypeError(f"Method {self.name!r}: config_cls must be a frozen dataclass")

    @property
    def source_free(self) -> bool:
        return self.data_access == "none"

    def config(self, profile: str = "cpu", **overrides) -> Any:
        """The method's config for a profile, with keyword overrides (unknown names are an error)."""
        values = dict(self.profile_overrides.get(profile, {}))
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for method {self.name!r}; "
                             f"allowed: {sorted(fields)}")
        values.update(overrides)
        return self.config_cls(**values)
