"""A plan as a dependency graph of jobs, each keyed by a hash of what determines its result.

    original (profile, seed)            train or load the original model -> the shared checkpoint directory
    oracle   (profile, task, seed)      train or load the retrain-from-scratch oracle -> the same directory
    synthetic (original, seed, stage 1) dsda.synthetic_set: one set of every class, shared by every DSDA
                                        variant with the same stage-1 settings (recipe sampler + images/class)
    run      (entry, task, seed)        the method on a copy of the original (DSDA methods: on the shared set)
    result   (entry, task, seed)        its evaluation against the oracle of the same task and seed: the record
                                        of the results store (the table rows)

Models between jobs. The original and the oracles go through the checkpoint directory that dsda.train already
keeps (`$DSDA_CACHE_DIR`, verified by SHA-256, shipped ones in `pretrained/`): they are the expensive products
(minutes each), reused by every later plan and session, and a resumed plan must find them without the cluster
that made them. A model job is therefore scheduled only when its checkpoint is missing. The synthetic set and
the unlearned model pass through Dask's memory: they are small, used by the next jobs only, and recomputed
bit for bit when a resumed plan needs them again. So every worker needs the same package version, the data
set, and the same checkpoint directory (a shared file system, or the same shipped checkpoints).

What the store records. A trained model (its job ran because the checkpoint was missing) and every result;
the synthetic set and the run are parts of the results that use them, not records of their own: a result
record names its set (`synthetic_set`, the set's key) and carries its synthesis time (`synthesis_s`), and
`run_wall_s` / `eval_wall_s` split its wall time. So a finished record is never produced twice: only a set
that an unfinished result needs is made again.

What a key hashes (`spec`): for a result, the profile, the method, its resolved config (and for DSDA methods
the resolved recipe), the task, the seed, the threads, the device, whether the oracle is the metrics'
reference, and the package version. The plan's name and the entry's label are not in it: the same run in two
plans has the same key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from .plan import Entry, Plan, PlanError

KINDS = ("original", "oracle", "synthetic", "run", "result")
STORED = ("original", "oracle", "result")    # kinds whose record goes to the store (see the docstring)
RUNNER_OWNED = ("progress",)                                # config fields that change no number
# Config fields added after stores were written, each with the values that do what the code did before the field
# existed: at such a value a field is left out of the key, so every run stored before it keeps its key (at any
# other value it is part of the key). None in a method's config = "the recipe's", whose value the key holds.
# circle_features (DamoConfig, issue 17): "post_relu" = L_Disc reads model.features; target_energy
# (SamplerConfig, issue 15): None = every chain runs the whole NFE budget; max_seconds (GKTConfig, ISPFConfig,
# issue 17): 0 = no wall-clock cap.
ADDED_LATER = {"circle_features": ("post_relu", None), "target_energy": (None,), "max_seconds": (0.0,)}


@dataclass(frozen=True)
class Job:
    key: str                                 # hash of `spec`
    kind: str                                # one of KINDS (tests may add their own with `fn`)
    spec: Mapping[str, Any]                  # what determines the product (hashed)
    args: Mapping[str, Any]                  # how to call `fn` (not hashed)
    fn: Callable                             # fn(job, **inputs) -> (record fields, value); see tasks.py
    deps: tuple[tuple[str, str], ...] = ()   # (argument name, key of the job whose value it takes)
    row: Mapping[str, Any] = field(default_factory=dict)   # descriptive fields every record carries
    plan: str = ""

    @property
    def stored(self) -> bool:
        return self.kind in STORED or self.kind not in KINDS

    @property
    def threads(self) -> int:
        return int(self.args.get("threads", 1))

    @property
    def seed(self) -> int:
        return int(self.args.get("seed", 0))

    def title(self) -> str:
        r = self.row
        parts = [self.kind, r.get("label", ""), f"forget {r['task']}" if "task" in r else "",
                 f"seed {r['seed']}" if "seed" in r else ""]
        return " ".join(p for p in parts if p)


def job_key(spec: Mapping[str, Any]) -> str:
    from ..utils import to_jsonable
    return hashlib.sha256(json.dumps(to_jsonable(spec), sort_keys=True).encode()).hexdigest()[:20]


def make_job(kind: str, spec: Mapping[str, Any], args: Mapping[str, Any], fn: Callable,
             deps: Iterable[tuple[str, str]] = (), row: Mapping[str, Any] | None = None, plan: str = "") -> Job:
    spec = {"kind": kind, **spec}
    return Job(key=job_key(spec), kind=kind, spec=spec, args=dict(args), fn=fn, deps=tuple(deps),
               row=dict(row or {}), plan=plan)


# ----------------------------------------------------------------------------- what decides a result

def uses_reference() -> bool:
    """Whether dsda.metrics.evaluate takes the oracle as `reference` (gap metrics); part of the key."""
    from ..metrics import evaluate
    return "reference" in inspect.signature(evaluate).parameters


def is_dsda(method: Any) -> bool:
    """The DSDA methods (dsda, dsda_kd_head) run through dsda.unlearn and can share a synthetic set."""
    from ..baselines import dsda_method
    return method.run is dsda_method.run


def needs_oracle(method: Any) -> bool:
    """Methods that reuse the cached oracle (Retrain's runner hooks) must wait for its job."""
    from ..baselines.runner import _cache_hooks
    return _cache_hooks(method) is not None


def resolved_recipe(plan: Plan, config: Any) -> Any:
    """The Recipe a DSDA run executes: its config's recipe with its options, on the plan's device."""
    from ..unlearn import resolve_recipe
    return resolve_recipe(plan.profile, config.recipe, **{**config.options(), "device": plan.device,
                                                          "progress": False})


def stage1_settings(recipe: Any) -> dict[str, Any]:
    """What a synthetic set depends on: the resolved sampler config and the images per class."""
    sampler = {k: v for k, v in dataclasses.asdict(recipe.sampler.resolved()).items() if k != "progress"}
    return {"sampler": sampler, "n_per_class": recipe.n_per_class}


def _common(plan: Plan) -> dict[str, Any]:
    from .. import __version__
    return {"profile": plan.profile, "device": plan.device, "threads": plan.threads, "dsda": __version__}


def _args(plan: Plan, seed: int) -> dict[str, Any]:
    return {"profile": plan.profile, "device": plan.device, "threads": plan.threads, "seed": seed}


# ----------------------------------------------------------------------------- the graph

def model_job(plan: Plan, seed: int, task: tuple[int, ...] = ()) -> Job:
    """The original model (task ()) or the oracle without `task`; keyed like dsda.train's checkpoint."""
    from ..profiles import get_profile
    from ..train import model_config
    from . import tasks
    kind = "oracle" if task else "original"
    config = model_config(get_profile(plan.profile), seed, task)
    row = {"label": kind, "profile": plan.profile, "seed": seed, **({"task": task_name(task)} if task else {})}
    return make_job(kind, {"model_config": config, "profile": plan.profile}, {**_args(plan, seed), "exclude": task},
                    tasks.train_model, row=row, plan=plan.name)


def synthetic_job(plan: Plan, seed: int, recipe: Any, original: Job) -> Job:
    from . import tasks
    spec = {**_common(plan), "seed": seed, "stage1": stage1_settings(recipe), "model": original.spec["model_config"]}
    row = {"label": f"synthetic {recipe.n_per_class}/class", "profile": plan.profile, "seed": seed}
    return make_job("synthetic", spec, {**_args(plan, seed), "recipe": recipe}, tasks.make_synthetic,
                    deps=[("original", original.key)], row=row, plan=plan.name)


def task_name(task: tuple[int, ...]) -> str:
    return "+".join(str(c) for c in task)


def without_added_later(d: Mapping[str, Any]) -> dict[str, Any]:
    """`d` (nested dicts) without the ADDED_LATER fields that hold their old-behaviour value."""
    return {k: without_added_later(v) if isinstance(v, Mapping) else v for k, v in d.items()
            if not (k in ADDED_LATER and v in ADDED_LATER[k])}


def _result_spec(plan: Plan, method: Any, config: Any, task: tuple[int, ...], seed: int) -> dict[str, Any]:
    cfg = without_added_later({k: v for k, v in dataclasses.asdict(config).items() if k not in RUNNER_OWNED})
    recipe = without_added_later(dataclasses.asdict(resolved_recipe(plan, config))) if is_dsda(method) else None
    return {**_common(plan), "method": method.name, "config": cfg, "recipe": recipe, "forget_classes": list(task),
            "seed": seed, "retain_per_class": plan.retain_per_class}


def run_jobs_of(plan: Plan, entry: Entry, task: tuple[int, ...], seed: int, prereq: dict[str, Job]) -> list[Job]:
    """The run and result jobs of one (entry, task, seed), adding the prerequisites they need to `prereq`."""
    from ..baselines import get_method
    from ..baselines.runner import build_config
    from ..profiles import get_profile
    from . import tasks
    method = get_method(entry.method)
    config = build_config(method, get_profile(plan.profile), False, entry.overrides())
    original, oracle = model_job(plan, seed), model_job(plan, seed, task)
    deps = [("original", original.key)] + ([("oracle", oracle.key)] if needs_oracle(method) else [])
    jobs = [original, oracle]
    if is_dsda(method):
        syn = synthetic_job(plan, seed, resolved_recipe(plan, config), original)
        jobs.append(syn)
        deps.append(("synthetic", syn.key))
    for job in jobs:
        prereq.setdefault(job.key, job)
    spec = _result_spec(plan, method, config, task, seed)
    row = {"label": entry.label, "method": method.name, "recipe": getattr(config, "recipe", None),
           "profile": plan.profile, "task": task_name(task), "forget_classes": list(task), "seed": seed}
    args = {**_args(plan, seed), "method": method.name, "overrides": entry.overrides(), "task": task,
            "retain_per_class": plan.retain_per_class}
    run = make_job("run", spec, args, tasks.run_method_job, deps=deps, row=row, plan=plan.name)
    result = make_job("result", {**spec, "reference": uses_reference()}, args, tasks.evaluate_job,
                      deps=[("run", run.key), ("oracle", oracle.key)], row=row, plan=plan.name)
    return [run, result]


def build_graph(plan: Plan) -> list[Job]:
    """Every job of the plan, prerequisites first (a topological order); a repeated run is a PlanError."""
    prereq: dict[str, Job] = {}
    runs: list[Job] = []
    seen: dict[str, str] = {}
    for entry in plan.entries:
        for task in entry.tasks:
            for seed in entry.seeds:
                pair = run_jobs_of(plan, entry, task, seed, prereq)
                other = seen.setdefault(pair[1].key, entry.label)
                if other != entry.label:
                    raise PlanError(f"plan {plan.name!r}: entries {other!r} and {entry.label!r} describe the same "
                                    f"run (forget {task_name(task)}, seed {seed}); drop one")
                runs += pair
    order = {k: i for i, k in enumerate(("original", "oracle", "synthetic"))}
    return sorted(prereq.values(), key=lambda j: order[j.kind]) + runs


def closure(graph: list[Job], targets: Iterable[str], skip: Callable[[Job], bool] = lambda j: False) -> list[Job]:
    """The jobs `targets` need (themselves and their dependencies, transitively), in graph order, without
    the prerequisites `skip` says are already available (a checkpoint on disk)."""
    by_key = {j.key: j for j in graph}
    want, stack = set(), list(targets)
    while stack:
        key = stack.pop()
        if key in want or key not in by_key:
            continue
        job = by_key[key]
        if job.kind in ("original", "oracle") and skip(job):
            continue
        want.add(key)
        stack += [k for _, k in job.deps]
    return [j for j in graph if j.key in want]
