"""A plan: one named grid of experiments (profile, methods with their recipes, forget tasks, seeds) in one file.

Plans live in `plans/<name>.yaml` at the repository root (any path to a YAML file works too):

    description: what the plan is for
    profile: smoke            # dsda.profiles.PROFILES
    device: cpu               # cpu | cuda | mps: part of every job's key (results differ across devices)
    threads: 1                # torch threads per job: part of the key (CPU results depend on it)
    seeds: [0, 1]             # a seed picks the original model, its oracles and the method's seed
    tasks: [3, [3, 8]]        # forget tasks: a class or a list of classes
    retain_per_class: 500     # optional: the "retain_subset" grant (dsda.baselines.runner)
    methods:
      - method: retrain
      - method: dsda          # recipe: a name in dsda.recipes.RECIPES (DSDA methods only; default: the profile's)
        recipe: smoke
      - method: neggrad
        options: {lr: 0.01}   # the method's config fields (as `--set` in `python -m dsda run`)
        tasks: [3]            # per entry: tasks / seeds replace the plan's
        label: neggrad-lr0.01 # default: the method name (with @recipe when one is given)

Everything is checked when the plan is read, before any job starts: an unknown key, method, recipe, option,
class or seed is a `PlanError` naming the entry (`methods[2] ('neggrad')`, `tasks[1]`) and the allowed values.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLAN_KEYS = ("description", "profile", "device", "threads", "seeds", "tasks", "retain_per_class", "methods")
ENTRY_KEYS = ("method", "recipe", "options", "tasks", "seeds", "label")
DEVICES = ("cpu", "cuda", "mps")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED = ("verify",)   # `python -m dsda sweep verify PLAN` would be ambiguous


class PlanError(ValueError):
    """A plan that cannot run; the message names the plan, the entry and the allowed values."""


@dataclass(frozen=True)
class Entry:
    label: str                          # how the tables name this row (unique in the plan)
    method: str                         # a name in dsda.METHODS
    recipe: str | None                  # DSDA methods: a name in dsda.recipes.RECIPES (None: the profile's)
    options: tuple[tuple[str, Any], ...]  # config overrides, sorted by name
    tasks: tuple[tuple[int, ...], ...]
    seeds: tuple[int, ...]

    def overrides(self) -> dict[str, Any]:
        """What `Method.config` takes: the options plus the recipe (DsdaConfig.recipe) when one is named."""
        return {**dict(self.options), **({"recipe": self.recipe} if self.recipe else {})}


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    profile: str
    device: str
    threads: int
    retain_per_class: int
    entries: tuple[Entry, ...]
    path: str = ""

    def count(self) -> int:
        """Number of method runs (one per entry, task and seed)."""
        return sum(len(e.tasks) * len(e.seeds) for e in self.entries)

    def replace(self, **changes) -> "Plan":
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- finding a plan

def plans_dir() -> Path:
    from ..report import project_root
    return project_root() / "plans"


def available_plans() -> list[str]:
    return sorted(p.stem for p in plans_dir().glob("*.yaml"))


def plan_path(plan: str | Path) -> Path:
    """A plan name (plans/<name>.yaml) or a path to a YAML file."""
    text = str(plan)
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise PlanError(f"plan file {text!r} does not exist")
        return path
    found = plans_dir() / f"{text}.yaml"
    if not found.is_file():
        raise PlanError(f"plan={text!r} is not a plan; allowed: {', '.join(available_plans()) or '(none)'} "
                        f"(files in {plans_dir()}), or a path to a .yaml file")
    return found


def load_plan(plan: "str | Path | Plan") -> Plan:
    """Read and check a plan (a Plan passes through): every entry is validated before anything runs."""
    if isinstance(plan, Plan):
        return plan
    import yaml
    path = plan_path(plan)
    name = path.stem
    if not NAME.match(name) or name in RESERVED:
        raise PlanError(f"plan file {path}: the name {name!r} must be letters, digits, '_', '.', '-' and not "
                        f"one of {RESERVED}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PlanError(f"plan {name!r} ({path}) is not valid YAML: {e}") from None
    return parse_plan(data, name, str(path))


def grid_plan(name: str, profile: str, pairs: "list[tuple[str, list[int]]]", seeds: "list[int]",
              device: str = "cpu", threads: int = 1) -> Plan:
    """A plan built in code, checked exactly as a YAML one: `pairs` = (method, forget task) in table order.
    A notebook that has no plan file for its profile uses this for its own grid."""
    tasks: dict[str, list] = {}
    for method, task in pairs:
        tasks.setdefault(method, []).append(list(task))
    data = {"description": f"{name}: built in code", "profile": profile, "device": device, "threads": threads,
            "seeds": list(seeds), "tasks": [list(pairs[0][1])] if pairs else [],
            "methods": [{"method": m, "tasks": t} for m, t in tasks.items()]}
    return parse_plan(data, name)


# ----------------------------------------------------------------------------- checking

def _fail(plan: str, where: str, message: str) -> PlanError:
    return PlanError(f"plan {plan!r}, {where}: {message}")


def _check_keys(plan: str, where: str, data: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise _fail(plan, where, f"must be a mapping with keys {list(allowed)}, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise _fail(plan, where, f"unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise _fail(plan, where, f"missing key(s) {missing}")


def _seeds(plan: str, where: str, value: Any) -> tuple[int, ...]:
    from ..checks import validate_seed
    if not isinstance(value, list) or not value:
        raise _fail(plan, where, f"must be a non-empty list of seeds (non-negative integers), got {value!r}")
    seeds = []
    for i, s in enumerate(value):
        try:
            seeds.append(validate_seed(s, "seed"))
        except ValueError as e:
            raise _fail(plan, f"{where}[{i}]", str(e)) from None
    if len(set(seeds)) != len(seeds):
        raise _fail(plan, where, f"repeats a seed: {value}")
    return tuple(seeds)


def _tasks(plan: str, where: str, value: Any, num_classes: int) -> tuple[tuple[int, ...], ...]:
    from ..checks import validate_forget_classes
    if not isinstance(value, list) or not value:
        raise _fail(plan, where, f"must be a non-empty list of tasks (a class or a list of classes), got {value!r}")
    tasks = []
    for i, t in enumerate(value):
        try:
            tasks.append(validate_forget_classes(t, num_classes, "forget classes"))
        except ValueError as e:
            raise _fail(plan, f"{where}[{i}]", str(e)) from None
    if len(set(tasks)) != len(tasks):
        raise _fail(plan, where, f"repeats a task: {value}")
    return tuple(tasks)


def _positive(plan: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(plan, where, f"must be a positive integer, got {value!r}")
    return value


def _recipe(plan: str, where: str, method: Any, recipe: Any) -> str | None:
    from ..recipes import RECIPES
    if recipe is None:
        return None
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    if "recipe" not in fields:
        raise _fail(plan, where, f"method {method.name!r} has no recipes (only the DSDA methods do); "
                                 f"set its config through `options`")
    if recipe not in RECIPES:
        raise _fail(plan, where, f"recipe={recipe!r} is not a registered recipe; allowed: {', '.join(sorted(RECIPES))}")
    return recipe


def _entry(plan: str, i: int, data: Any, profile: Any, defaults: dict[str, Any], num_classes: int) -> Entry:
    """One `methods` item, checked as far as building the method's config (a bad option fails here)."""
    from ..baselines import get_method
    from ..baselines.runner import build_config
    name = data.get("method") if isinstance(data, dict) else None
    where = f"methods[{i}]" + (f" ({name!r})" if name is not None else "")
    _check_keys(plan, where, data, ENTRY_KEYS, ("method",))
    try:
        method = get_method(name)
    except ValueError as e:
        raise _fail(plan, where, str(e)) from None
    recipe = _recipe(plan, where, method, data.get("recipe"))
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise _fail(plan, where, f"options must be a mapping of config fields, got {options!r}")
    tasks = _tasks(plan, f"{where}.tasks", data["tasks"], num_classes) if "tasks" in data else defaults["tasks"]
    seeds = _seeds(plan, f"{where}.seeds", data["seeds"]) if "seeds" in data else defaults["seeds"]
    entry = Entry(label=str(data.get("label") or (f"{name}@{recipe}" if recipe else name)), method=name,
                  recipe=recipe, options=tuple(sorted(options.items())), tasks=tasks, seeds=seeds)
    try:
        build_config(method, profile, False, entry.overrides())
    except (ValueError, TypeError) as e:
        raise _fail(plan, where, str(e)) from None
    return entry


def parse_plan(data: Any, name: str, path: str = "") -> Plan:
    """A Plan from the YAML's mapping; every field and entry checked (PlanError naming it)."""
    from ..data import dataset_info
    from ..profiles import get_profile
    _check_keys(name, "top level", data, PLAN_KEYS, ("profile", "seeds", "tasks", "methods"))
    try:
        profile = get_profile(data["profile"])
    except ValueError as e:
        raise _fail(name, "profile", str(e)) from None
    device = data.get("device", "cpu")
    if device not in DEVICES:
        raise _fail(name, "device", f"device={device!r} is not valid; allowed: {', '.join(DEVICES)}")
    num_classes = dataset_info(profile.dataset).num_classes
    defaults = {"tasks": _tasks(name, "tasks", data["tasks"], num_classes),
                "seeds": _seeds(name, "seeds", data["seeds"])}
    methods = data["methods"]
    if not isinstance(methods, list) or not methods:
        raise _fail(name, "methods", f"must be a non-empty list of entries, got {methods!r}")
    entries = tuple(_entry(name, i, m, profile, defaults, num_classes) for i, m in enumerate(methods))
    labels = [e.label for e in entries]
    repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
    if repeated:
        raise _fail(name, "methods", f"label(s) {repeated} name more than one entry; give each a `label`")
    return Plan(name=name, description=str(data.get("description", "")), profile=profile.name, device=device,
                threads=_positive(name, "threads", data.get("threads", 1)),
                retain_per_class=_positive(name, "retain_per_class", data.get("retain_per_class", 500)),
                entries=entries, path=path)
