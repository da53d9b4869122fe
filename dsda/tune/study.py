"""One tuning procedure for every variant: an Optuna study per variant, stored in SQLite under results/tuning/.

    run_study("kd_head")        # python -m dsda tune kd_head: runs (or resumes) until the family's budget
    reproduce("kd_head")        # python -m dsda tune --reproduce kd_head: re-runs the best trial, checks its value

A study is minimised with optuna.samplers.TPESampler(seed=SAMPLER_SEED, n_startup_trials=STARTUP_TRIALS)
(a resumed one with the seed offset by its stored trials, so it does not redraw earlier points) until it
has `spec.n_trials` distinct points (trials complete, or failed because the variant diverged at the values:
that counts, as it would for any variant; a trial that failed for another reason is run again). Its storage,
`results/tuning/<name>.sqlite3`, holds every trial (parameters, value, per-task rows in `per_task`, wall time)
and, as study attributes, the declaration it was run with (`declaration`: the space, the switches, the budget,
the dev tasks, the profile), the torch threads, the commit and the library versions. A resumed study must have
the same declaration (else ValueError: delete the file to start over); trials left RUNNING by a process that
died are marked FAIL and run again (so run one process per study; several studies may run side by side).
All trials run inside `forbid_split("test", ...)`: the test split cannot be read while anything is chosen.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..data import forbid_split
from ..protocol import task_label, tuning_tasks
from .context import Context, check_options, trial_value
from .objective import OBJECTIVE_KEYS
from .spaces import SAMPLER_SEED, STARTUP_TRIALS, StudySpec, get_study, overrides

GUARD = "tuning chooses settings on the validation split; the test split is for reporting only"


def storage_path(name: str, root: str | Path | None = None) -> Path:
    """results/tuning/<name>.sqlite3 under `root` (default: dsda.report.output_root())."""
    from ..report import output_root
    get_study(name)
    return Path(root or output_root()) / "results" / "tuning" / f"{name}.sqlite3"


def declaration(spec: StudySpec) -> dict[str, Any]:
    """Everything that defines the study (stored with it; a resume must match it exactly)."""
    return {"name": spec.name, "title": spec.title, "kind": spec.kind, "base": spec.base, "profile": spec.profile,
            "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in spec.fixed.items()},
            "space": {k: {**dataclasses.asdict(p), "choices": list(p.choices)} for k, p in spec.space.items()},
            "n_trials": spec.n_trials, "seeds": list(spec.seeds),
            "sampler": f"TPESampler(seed={SAMPLER_SEED}, n_startup_trials={STARTUP_TRIALS})",
            "tuning_tasks": [task_label(t) for t in tuning_tasks(spec.profile)], "objective": list(OBJECTIVE_KEYS),
            "registers": spec.registers}


def _optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def resumed_sampler(stored_trials: int) -> Any:
    """TPE seeded with SAMPLER_SEED plus the number of trials already stored. A fresh study gets SAMPLER_SEED
    itself; a resumed one gets a new stream. With one seed for every process, each resume drew the startup
    points again from the start: the resumed finetune and ssd studies repeated 3 and 1 of their points."""
    return _optuna().samplers.TPESampler(seed=SAMPLER_SEED + stored_trials, n_startup_trials=STARTUP_TRIALS)


def open_study(spec: StudySpec, root: str | Path | None = None, create: bool = True, threads: int = 1) -> Any:
    """The study in its storage (created with its declaration, or loaded and checked against it)."""
    optuna = _optuna()
    path = storage_path(spec.name, root)
    if not create and not path.is_file():
        raise ValueError(f"study {spec.name!r} has no storage at {path}; run `python -m dsda tune {spec.name}` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=spec.name, storage=f"sqlite:///{path}", direction="minimize",
                                sampler=resumed_sampler(0), load_if_exists=True)
    study.sampler = resumed_sampler(len(study.trials))
    stored = study.user_attrs.get("declaration")
    if stored is None:
        from ..utils import provenance
        study.set_user_attr("declaration", declaration(spec))
        study.set_user_attr("threads", threads)
        study.set_user_attr("provenance", provenance("cpu"))
    elif stored != declaration(spec):
        changed = sorted(k for k in declaration(spec) if stored.get(k) != declaration(spec)[k])
        raise ValueError(f"study {spec.name!r}: its declaration changed since {path} was written ({changed}); "
                         f"delete the file to start the study over, or restore the declaration")
    return study


def _fail_stale(study: Any) -> int:
    """Mark trials left RUNNING (their process died) as FAIL; they do not count, so they run again."""
    from optuna.trial import TrialState
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)


def done_trials(study: Any) -> list:
    """The trials that count towards the budget: complete ones, and failed ones whose variant diverged
    (`diverged` set by the objective), one per distinct point of the space: a repeated point adds no
    information, so every variant's budget is the same number of distinct points. A trial that failed
    otherwise (a bug, a guard, a killed process) runs again."""
    seen, out = set(), []
    for t in study.get_trials(deepcopy=False):
        finished = t.state.name == "COMPLETE" or (t.state.name == "FAIL" and t.user_attrs.get("diverged"))
        point = tuple(sorted(t.params.items()))
        if finished and point not in seen:
            seen.add(point)
            out.append(t)
    return out


def _objective(ctx: Context, spec: StudySpec):
    from ..checks import NonFiniteError

    def objective(trial):
        params = {k: p.suggest(trial, k) for k, p in spec.space.items()}
        t0 = time.perf_counter()
        try:
            value, rows = trial_value(ctx, params)
        except NonFiniteError as e:          # the variant diverged at these values: a finished, bad trial
            trial.set_user_attr("diverged", str(e))
            raise
        trial.set_user_attr("per_task", rows)
        trial.set_user_attr("wall_s", time.perf_counter() - t0)
        print(f"[dsda] {spec.name} trial {trial.number}: gap {value:.4f} ({time.perf_counter() - t0:.1f} s) "
              f"{params}", flush=True)
        return value
    return objective


def run_study(name: str, root: str | Path | None = None, threads: int = 1, progress: bool = False) -> Any:
    """Run (or resume) the study until it has its budget of finished trials; returns the optuna Study."""
    from ..checks import NonFiniteError
    spec = get_study(name)
    if spec.requires:
        from ..recipes import RECIPES
        if spec.kind == "dsda" and spec.base not in RECIPES:
            raise ValueError(f"study {name!r} needs {spec.requires}: recipe {spec.base!r} is not registered here")
    check_options(spec, overrides(spec, {}))          # the base and the switches are valid before any work
    study = open_study(spec, root, threads=threads)
    threads = study.user_attrs["threads"]
    _fail_stale(study)
    if len(done_trials(study)) >= spec.n_trials:
        print(f"[dsda] {name}: complete ({spec.n_trials} trials); best {study.best_value:.4f}", flush=True)
        return study
    ctx = Context(spec, threads).prepare(progress)
    for _ in range(3):     # a repeated point does not count (done_trials); TPE rarely repeats, a few passes suffice
        left = spec.n_trials - len(done_trials(study))
        if left <= 0:
            break
        with forbid_split("test", GUARD):
            study.optimize(_objective(ctx, spec), n_trials=left, catch=(NonFiniteError,))
    print(f"[dsda] {name}: best trial {study.best_trial.number}, gap {study.best_value:.4f}, "
          f"{study.best_params}", flush=True)
    return study


def reproduce(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Re-run the stored best trial with the threads the study recorded; compare the objective exactly."""
    spec = get_study(name)
    study = open_study(spec, root, create=False)
    best = study.best_trial
    ctx = Context(spec, study.user_attrs["threads"]).prepare()
    with forbid_split("test", GUARD):
        value, rows = trial_value(ctx, best.params)
    return {"study": name, "trial": best.number, "params": best.params, "stored": best.value,
            "reproduced": value, "match": value == best.value, "per_task": rows}
