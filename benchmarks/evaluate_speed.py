"""Where `dsda.evaluate`'s seconds go on the cpu profile, and what its caches save (issue 15), in one run.

    python benchmarks/evaluate_speed.py              # ~5 min on 2 busy cores
    python benchmarks/evaluate_speed.py --repeats 5

1. A profile (cProfile) of one evaluate with the backbone cache off: the seconds in the forward passes (train
   subset and test split), in each attack (the SalUn SVC, the loss CV, the entropy LR) and the rest.
2. Side by side, interleaved, `--repeats` times, medians: evaluate with the backbone cache off ("old", the code
   path before issue 15) and on ("new"), the probability cache emptied before each call, for
   - a head-only unlearned model (the cpu default, recipe cpu-kd-head, forget class 1): it shares the original's
     backbone, whose features are in the cache as after evaluating the original once (what notebooks and the
     sweep do first);
   - a model with a backbone of its own (the retrained oracle without class 3, task [3]): the cache cannot help;
     its own features are dropped before every new-path call, so each call pays its forward passes.
   - a head-only unlearned model (cpu-kd-head, forget class 3) evaluated against its retrained oracle
     (`reference=`, as every sweep job and notebook 06 evaluate): "old" recomputes the oracle's metrics every time
     (metrics.REFERENCE_CACHE = False, backbone cache off); "new" has them memoised from an earlier evaluation
     against the same oracle (what a sweep worker has after its first job of a task) and the original's features
     cached; "new, backbone cache off" is how sweep jobs run (dsda.sweep.tasks.job_environment turns it off).
   Every metric of the two paths is compared for equality on every call.

Writes results/benchmarks/evaluate_speed.json with the machine (CPU model, threads, load average before and after).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dsda  # noqa: E402
from dsda import inference, metrics  # noqa: E402
from dsda.utils import atomic_write_json, provenance  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from dsda_speed import machine  # noqa: E402

PARTS = {"forward passes": ("inference.py", "predict_proba"), "forward passes (cached backbone)":
         ("inference.py", "split_probabilities"), "SVC attack (MIA_conf_svc)": ("attacks.py", "mia_confidence_svc"),
         "loss CV attack (MIA_loss_cv)": ("attacks.py", "mia_loss_cv"),
         "entropy LR attack (MIA)": ("attacks.py", "mia_entropy_lr")}


def profile_once(model, task) -> dict:
    """Seconds of one old-path evaluate, split by part (cumulative times of the named functions)."""
    inference.BACKBONE_CACHE = False
    metrics._PROBA_CACHE.clear()
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(metrics.evaluate, model, "cpu", task)
    total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    parts = {name: sum(v[3] for (path, _, fn), v in stats.items() if path.endswith(f) and fn == func)
             for name, (f, func) in PARTS.items()}
    parts = {k: round(v, 2) for k, v in parts.items() if v > 0}
    parts["rest"] = round(total - sum(parts.values()), 2)
    return {"total_s": round(total, 2), "parts_s": parts}


def timed(model, task, cache: bool, keep: dict | None, reference=None, memo: dict | None = None) -> tuple[float, dict]:
    """One evaluate; `memo` = the oracle metrics memo to start from (None: the memo off, recomputed every call)."""
    inference.BACKBONE_CACHE = cache
    metrics._PROBA_CACHE.clear()
    if keep is not None:                     # the new path with only the original's backbone features cached
        inference._FEATURES.clear()
        inference._FEATURES.update(keep)
    metrics.REFERENCE_CACHE = memo is not None
    metrics._REFERENCE_METRICS.clear()
    metrics._REFERENCE_METRICS.update(memo or {})
    t = time.perf_counter()
    out = metrics.evaluate(model, "cpu", task, reference=reference)
    return time.perf_counter() - t, out


def compare(name, model, task, keep, repeats, reference=None) -> dict:
    old, new, new_off, same = [], [], [], True
    memo = warm_memo(model, task, reference) if reference is not None else None
    for _ in range(repeats):
        t_old, m_old = timed(model, task, False, None, reference)
        t_new, m_new = timed(model, task, True, keep, reference, memo)
        old.append(t_old)
        new.append(t_new)
        same = same and m_old == m_new
        if reference is not None:            # the sweep's path: the memo on, the backbone cache off
            t_off, m_off = timed(model, task, False, None, reference, warm_memo(model, task, reference, False))
            new_off.append(t_off)
            same = same and m_off == m_old
    row = {"model": name, "task": task, "old_s": old, "new_s": new, "median_old_s": statistics.median(old),
           "median_new_s": statistics.median(new), "identical_metrics": same}
    row["ratio_old_new"] = row["median_old_s"] / row["median_new_s"]
    if new_off:
        row.update(new_backbone_off_s=new_off, median_new_backbone_off_s=statistics.median(new_off))
        row["ratio_old_new_backbone_off"] = row["median_old_s"] / row["median_new_backbone_off_s"]
        print(f"  new with the backbone cache off (as sweep jobs run): {row['median_new_backbone_off_s']:.2f} s, "
              f"old/new {row['ratio_old_new_backbone_off']:.2f}x", flush=True)
    print(f"{name}, task {task}: evaluate median old {row['median_old_s']:.2f} s, new {row['median_new_s']:.2f} s, "
          f"old/new {row['ratio_old_new']:.2f}x; every metric identical: {same}", flush=True)
    return row


def warm_memo(model, task, reference, cache: bool = True) -> dict:
    """The oracle metrics memo after one evaluate against `reference` (not timed), with the backbone cache `cache`."""
    inference.BACKBONE_CACHE = cache
    metrics.REFERENCE_CACHE = True
    metrics._REFERENCE_METRICS.clear()
    metrics.evaluate(model, "cpu", task, reference=reference)
    return dict(metrics._REFERENCE_METRICS)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "evaluate_speed.json")
    args = p.parse_args(argv)
    start = machine()
    print("machine:", json.dumps(start), flush=True)
    original = dsda.original_model("cpu", progress=False)
    head_only, _ = dsda.unlearn(original, [1], profile="cpu", seed=0, recipe="cpu-kd-head")
    oracle = dsda.retrain_model("cpu", [3], progress=False)
    head_only_3, _ = dsda.unlearn(original, [3], profile="cpu", seed=0, recipe="cpu-kd-head")
    inference.BACKBONE_CACHE = True
    metrics.evaluate(original, "cpu", [1])                                    # the original's features cached
    keep = dict(inference._FEATURES)
    prof = profile_once(head_only, [1])
    print("one evaluate, backbone cache off:", json.dumps(prof), flush=True)
    rows = [compare("head-only unlearned (cpu-kd-head)", head_only, [1], keep, args.repeats),
            compare("retrained oracle (own backbone)", oracle, [3], keep, args.repeats),
            compare("head-only unlearned (cpu-kd-head), against its oracle", head_only_3, [3], keep, args.repeats,
                    reference=oracle)]
    inference.BACKBONE_CACHE, metrics.REFERENCE_CACHE = True, True
    end = machine()
    print("load average before / after:", start["loadavg"], end["loadavg"], flush=True)
    atomic_write_json(args.out, {"command": "python " + " ".join(["benchmarks/evaluate_speed.py", *(argv or sys.argv[1:])]),
                                 "machine_start": start, "machine_end": end, "provenance": provenance("cpu"),
                                 "repeats": args.repeats, "profile_old_path": prof, "rows": rows})
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
