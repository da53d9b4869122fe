"""What every trial of a study shares, and one trial's evaluation (in-process, no sweep engine).

`Context(spec).prepare()` runs OUTSIDE the test-split guard: it trains or loads the original model of every seed
and the oracle of every (dev task, seed), and computes the oracles' validation metrics once (training a model
reports its test accuracy, which is reporting, not choosing). `trial_value(ctx, params)` then runs the variant
with a trial's values on every dev task and seed and returns the mean gap (dsda/tune/objective.py):

- a DSDA recipe: `dsda.unlearn(original, task, recipe=..., synthetic=S)` with one synthetic set per (seed,
  stage-1 settings), made on first use and reused by every later trial (only kd_head_goal tunes stage 1);
- a baseline: `dsda.baselines.run_method(..., evaluate=False)`, which grants it the training images it
  declares (the train split minus the validation split, on a -val profile).

Each run sets torch's threads and seeds every global RNG (dsda.sweep.tasks.job_environment), so a trial's value
depends only on its parameters: `python -m dsda tune --reproduce` recomputes it exactly.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import torch.nn as nn

from ..protocol import check_tuning_tasks, task_label, tuning_tasks
from .objective import average_gap, load_validation, validation_metrics
from .spaces import StudySpec, overrides


class Context:
    """The validation data, the originals, the synthetic sets and the oracles' metrics of one study."""

    def __init__(self, spec: StudySpec, threads: int = 1):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.spec, self.threads = spec, threads
        self.tasks = check_tuning_tasks(spec.profile, tuning_tasks(spec.profile))
        self.data = None
        self.originals: dict[int, nn.Module] = {}
        self.reference: dict[tuple, dict[str, float]] = {}
        self.synthetic: dict[tuple, Any] = {}

    def prepare(self, progress: bool = False) -> "Context":
        """Load (or train) every model the objective compares against; call before the test-split guard."""
        from ..train import original_model, retrain_model
        self.data = load_validation(self.spec.profile)
        for seed in self.spec.seeds:
            self.originals[seed] = original_model(self.spec.profile, seed=seed, progress=progress).eval()
            for task in self.tasks:
                oracle = retrain_model(self.spec.profile, list(task), seed=seed, progress=progress)
                self.reference[(task, seed)] = validation_metrics(oracle, self.data, task)
        return self

    def synthetic_for(self, seed: int, recipe: Any) -> tuple[Any, bool]:
        """(the synthetic set of this seed and stage-1 settings, whether it was made just now)."""
        from ..unlearn import synthetic_set
        stage1 = json.dumps({"sampler": dataclasses.asdict(recipe.sampler.resolved()), "n": recipe.n_per_class},
                            sort_keys=True, default=str)
        key = (seed, stage1)
        made = key not in self.synthetic
        if made:
            self.synthetic[key] = synthetic_set(self.originals[seed], self.spec.profile, seed=seed, recipe=recipe)
        return self.synthetic[key], made


def _run_dsda(ctx: Context, task: tuple, seed: int, options: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    from ..unlearn import resolve_recipe, unlearn
    recipe = resolve_recipe(ctx.spec.profile, ctx.spec.base, **options)
    synthetic, made = ctx.synthetic_for(seed, recipe)
    model, rep = unlearn(ctx.originals[seed], list(task), ctx.spec.profile, seed=seed, recipe=recipe,
                         synthetic=synthetic)
    return model, {"ET_s": rep["time_s"]["total"], "steps": rep["steps"], "stop": rep["stop_reason"],
                   "synthesised_now": made}


def _run_baseline(ctx: Context, task: tuple, seed: int, options: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    from ..baselines.runner import run_method
    record, model, _ = run_method(ctx.spec.base, ctx.spec.profile, list(task), seed=seed, model_seed=seed,
                                  evaluate=False, progress=False, return_model=True, **options)
    return model, {"ET_s": record["ET_s"]}


def check_options(spec: StudySpec, options: dict[str, Any]) -> None:
    """Build the variant's config with `options` (a bad value raises here, before any model runs)."""
    if spec.kind == "dsda":
        from ..unlearn import resolve_recipe
        resolve_recipe(spec.profile, spec.base, **options)
        return
    from ..baselines import get_method
    from ..baselines.runner import build_config
    from ..profiles import get_profile
    build_config(get_method(spec.base), get_profile(spec.profile), False, options)


def trial_value(ctx: Context, params: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """(mean gap over dev tasks and seeds, one row per (task, seed)) for one point of the space."""
    from ..sweep.tasks import job_environment
    options = overrides(ctx.spec, params)
    check_options(ctx.spec, options)
    run = _run_dsda if ctx.spec.kind == "dsda" else _run_baseline
    rows = []
    for seed in ctx.spec.seeds:
        for task in ctx.tasks:
            t0 = time.perf_counter()
            with job_environment(ctx.threads, seed):
                model, info = run(ctx, task, seed, options)
                metrics = validation_metrics(model, ctx.data, task)
            gap = average_gap(metrics, ctx.reference[(task, seed)])
            rows.append({"task": task_label(task), "seed": seed, "gap": gap, **metrics, **info,
                         "wall_s": time.perf_counter() - t0})
    return sum(r["gap"] for r in rows) / len(rows), rows
