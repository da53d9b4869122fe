"""What one tuning trial costs on the cpu profile, measured, before any cpu-val model exists.

    OMP_NUM_THREADS=1 python benchmarks/tune_cost.py kd_head paper_full neggrad
    # adds (or replaces) their entries in results/benchmarks/tune_cost.json

A trial of a cpu study runs its variant on the four dev tasks against cpu-val models. Those are not trained yet
(issue 17's next step), so this script times the same computation on stand-ins: the shipped cpu original and
oracles (same architecture and recipe, trained on the whole train split, 11 % more images than cpu-val's), and
baselines run on the cpu profile itself (their original and grant; see _stand_in_baseline). The
objective values it prints are therefore meaningless (the stand-ins saw the validation images); the seconds are
what a cpu-val trial costs, up to the stopping rule, which stops at a different step for other settings. Each
study runs once at its base settings (the variant's switches, no tuned value), with the threads of torch
(OMP_NUM_THREADS), after one synthetic set per stage-1 setting, whose time is reported apart (a study pays it
once per seed, not per trial). Nothing reads the test split: the trial runs inside forbid_split("test").
"""
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda.data import forbid_split  # noqa: E402
from dsda.tune import context  # noqa: E402
from dsda.report import output_root  # noqa: E402
from dsda.tune.context import Context, trial_value  # noqa: E402
from dsda.tune.objective import load_validation, validation_metrics  # noqa: E402
from dsda.tune.spaces import get_study  # noqa: E402
from dsda.tune.study import GUARD  # noqa: E402
from dsda.utils import atomic_write_json, provenance  # noqa: E402


def stand_in_context(spec):
    """A Context whose models are the shipped cpu ones (timing only; see the module docstring)."""
    ctx = Context(spec, threads=torch.get_num_threads())
    ctx.data = load_validation(spec.profile)
    ctx.originals = {0: dsda.original_model("cpu", progress=False).eval()}
    for task in ctx.tasks:
        ctx.reference[(task, 0)] = validation_metrics(dsda.retrain_model("cpu", list(task), progress=False),
                                                      ctx.data, task)
    return ctx


def _stand_in_baseline(ctx, task, seed, options):
    """context._run_baseline on the cpu profile: its original is the shipped one and its grant the whole train
    split (11 % more images than cpu-val's, so baseline seconds are slight over-estimates)."""
    from dsda.baselines.runner import run_method
    record, model, _ = run_method(ctx.spec.base, "cpu", list(task), seed=seed, model_seed=seed, evaluate=False,
                                  progress=False, return_model=True, **options)
    return model, {"ET_s": record["ET_s"]}


def time_study(name):
    spec = get_study(name)
    ctx = stand_in_context(spec)
    t0 = time.perf_counter()
    with forbid_split("test", GUARD):
        if spec.kind == "dsda":    # the set a study makes once per seed, timed on its own
            from dsda.unlearn import resolve_recipe
            from dsda.tune.spaces import overrides
            ctx.synthetic_for(0, resolve_recipe(spec.profile, spec.base, **overrides(spec, {})))
        t_syn = time.perf_counter() - t0
        t1 = time.perf_counter()
        value, rows = trial_value(ctx, {})
    out = {"study": name, "synthesis_s": round(t_syn, 1), "trial_s": round(time.perf_counter() - t1, 1),
           "per_task": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}
    print(json.dumps(out), flush=True)
    return out


def main(names):
    context._run_baseline = _stand_in_baseline      # never trains a cpu-val model (see _stand_in_baseline)
    path = output_root() / "results" / "benchmarks" / "tune_cost.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() else {}   # earlier studies are kept
    for name in names:
        runs[name] = {**time_study(name), "command": f"python benchmarks/tune_cost.py {name}",
                      "threads": torch.get_num_threads(), "provenance": provenance("cpu")}
    atomic_write_json(path, {"note": "stand-in models (the shipped cpu ones): objective values meaningless, "
                                     "seconds real; one trial per study at its base settings", "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
