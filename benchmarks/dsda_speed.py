"""DSDA in seconds (issue 15): the cpu default before and after, and goal-sized synthesis, side by side in one run.

    python benchmarks/dsda_speed.py                   # cpu profile, REPORT tasks 1, 5, 8; ~10 min on 2 busy cores
    python benchmarks/dsda_speed.py --repeats 5 --tasks '[[1], [5]]'
    python benchmarks/dsda_speed.py --after val-kd-head-goal   # the recipe study kd_head_goal chose

On the cpu profile, in one process, interleaved (before, after, before, after, ...) so that the load of a shared
machine falls on both alike, each measured `--repeats` times, medians reported:

- "before": recipe cpu-kd-head (the cpu default: every chain 40 NFE, 64 images per class) with DAMO's per-step
  backbone forward (dsda.damo.FIXED_FEATURES = False), i.e. the code path and values before issue 15;
- "default now": cpu-kd-head with head-only DAMO on fixed features (the same weights, bit for bit);
- "after": the `--after` recipe (default cpu-kd-head-goal; goal-sized synthesis, dsda/chains.py; head-only DAMO on
  fixed features);
- "after, shared set": cpu-kd-head-goal with one SyntheticSet made once and passed to every task; its ET includes the
  set's whole synthesis time (`synthesis_shared: true`), as dsda.unlearn reports it;
- the synthetic-embeddings baseline (`synth_embed`, its cpu settings);
- a fixed reference workload: 20 input-gradient passes (forward + backward to the input) of the frozen cpu model
  over one batch of 256, so the ratios DSDA ET / reference can be compared across machines.

ET is `dsda.run_method`'s `ET_s` (the method's call, timed by the runner; the shared set's synthesis added). The
unlearned weights are the same on every repeat (checked by digest); A_f / A_r / MIA are the test-split metrics of
`dsda.evaluate` (the REPORT tasks were never used to choose anything). The machine (CPU model, threads) and the
load average before and after are printed and written with the results to results/benchmarks/dsda_speed.json;
the figure goes to results/benchmarks/dsda_speed.png. The last line says whether issue 15's bar is met on every
task: before/after >= 3x, after's A_f <= 1 % and its A_r within 0.3 points of before's.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dsda  # noqa: E402
from dsda import damo as damo_module  # noqa: E402
from dsda.energy import model_score_fn  # noqa: E402
from dsda.modes import frozen  # noqa: E402
from dsda.utils import atomic_write_bytes, atomic_write_json, provenance, state_digest  # noqa: E402

METRICS = ("A_f", "A_r", "MIA", "MIA_loss_cv", "MIA_conf_svc")
BEFORE, AFTER = "cpu-kd-head", "cpu-kd-head-goal"


def machine() -> dict:
    """CPU model, logical CPUs, torch threads, load average."""
    model = platform.processor() or "unknown"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg": [round(v, 2) for v in os.getloadavg()]}


def reference_workload(model: torch.nn.Module) -> float:
    """Seconds of 20 input-gradient passes of the frozen model over one batch of 256 (channels_last, as DSDA runs)."""
    net = copy.deepcopy(model).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, *net.input_shape, generator=g)
    y = torch.arange(256) % net.num_classes
    with frozen(net):
        score = model_score_fn(net, y)
        score(x)                                             # warm-up, not timed
        t = time.perf_counter()
        for _ in range(20):
            score(x)
        return time.perf_counter() - t


def dsda_run(recipe: str, task: list[int], fixed_features: bool, synthetic=None):
    """(record, model) of one DSDA run through the runner, no evaluation."""
    damo_module.FIXED_FEATURES = fixed_features
    try:
        rec, model, _ = dsda.run_method("dsda_kd_head", "cpu", forget_classes=task, seed=0, evaluate=False,
                                        progress=False, return_model=True, recipe=recipe, synthetic=synthetic)
    finally:
        damo_module.FIXED_FEATURES = True
    return rec, model


def one_round(task, shared, timings, models, after) -> None:
    """Every measured variant once on `task`, in a fixed order; ET and the weights' digest recorded."""
    runs = {"before": lambda: dsda_run(BEFORE, task, False), "default_now": lambda: dsda_run(BEFORE, task, True),
            "after": lambda: dsda_run(after, task, True),
            "after_shared": lambda: dsda_run(after, task, True, shared)}
    for name, call in runs.items():
        rec, model = call()
        rep = rec["report"]
        timings.setdefault(name, []).append({"ET_s": rec["ET_s"], "synthesis_s": rep["time_s"]["synthesis"],
                                             "damo_s": rep["time_s"]["optimisation"],
                                             "nfe_spent": rep["sampler_diagnostics"]["nfe_spent"],
                                             "digest": state_digest(model.state_dict())})
        models[name] = model
    rec = dsda.run_method("synth_embed", "cpu", forget_classes=task, seed=0, evaluate=False, progress=False)
    timings.setdefault("synth_embed", []).append({"ET_s": rec["ET_s"]})


def measure_task(task, shared, original, repeats, after) -> dict:
    timings, models, reference = {}, {}, []
    for _ in range(repeats):
        reference.append(reference_workload(original))
        one_round(task, shared, timings, models, after)
    for name in ("before", "default_now", "after", "after_shared"):
        digests = {t["digest"] for t in timings[name]}
        assert len(digests) == 1, f"{name} on {task}: the weights differ between repeats"
    metrics = {name: {k: dsda.evaluate(models[name], "cpu", task)[k] for k in METRICS}
               for name in ("before", "after")}
    med = {name: statistics.median(t["ET_s"] for t in rows) for name, rows in timings.items()}
    med["reference"] = statistics.median(reference)
    return {"task": task, "timings": timings, "reference_s": reference, "median_s": med, "metrics": metrics,
            "nfe_per_class_after": models_nfe(shared), "same_weights_shared": timings["after"][0]["digest"]
            == timings["after_shared"][0]["digest"],
            "same_weights_fixed_features": timings["before"][0]["digest"] == timings["default_now"][0]["digest"]}


def models_nfe(shared) -> dict:
    return {str(c): round(v, 2) for c, v in shared.diagnostics.nfe_per_class.items()}


def ratios(row: dict) -> dict:
    m = row["median_s"]
    return {"before/after": m["before"] / m["after"], "before/after_shared": m["before"] / m["after_shared"],
            "before/default_now": m["before"] / m["default_now"], "default_now/reference": m["default_now"] / m["reference"],
            "default_now/synth_embed": m["default_now"] / m["synth_embed"],
            "before/reference": m["before"] / m["reference"], "after/reference": m["after"] / m["reference"],
            "before/synth_embed": m["before"] / m["synth_embed"], "after/synth_embed": m["after"] / m["synth_embed"]}


def print_row(row: dict) -> None:
    m, r, met = row["median_s"], row["ratios"], row["metrics"]
    print(f"task {row['task']}: ET median before {m['before']:.2f} s, default now {m['default_now']:.2f} s "
          f"({r['before/default_now']:.2f}x), after {m['after']:.2f} s, after with a shared "
          f"set {m['after_shared']:.2f} s, synthetic embeddings {m['synth_embed']:.2f} s, reference workload "
          f"{m['reference']:.2f} s", flush=True)
    print(f"  before/after {r['before/after']:.2f}x; DSDA ET / reference: before {r['before/reference']:.2f}, default "
          f"now {r['default_now/reference']:.2f}, after {r['after/reference']:.2f}; DSDA ET / synthetic-embeddings ET: "
          f"before {r['before/synth_embed']:.2f}, default now {r['default_now/synth_embed']:.2f}, after "
          f"{r['after/synth_embed']:.2f}", flush=True)
    for name in ("before", "after"):
        print(f"  {name}: " + ", ".join(f"{k} {met[name][k]:.2f}" for k in METRICS), flush=True)


def requirement(rows: list[dict]) -> dict:
    """Issue 15's bar on every task: before/after >= 3, after's A_f <= 1 % and A_r within 0.3 points of before's."""
    per = []
    for r in rows:
        b, a = r["metrics"]["before"], r["metrics"]["after"]
        per.append({"task": r["task"], "ratio": r["ratios"]["before/after"], "A_f_after": a["A_f"],
                    "A_r_after_minus_before": a["A_r"] - b["A_r"],
                    "met": r["ratios"]["before/after"] >= 3 and a["A_f"] <= 1 and abs(a["A_r"] - b["A_r"]) <= 0.3})
    met = all(p["met"] for p in per)
    line = ("requirement (>= 3x, A_f <= 1 %, |A_r - before| <= 0.3 on every task): " + ("MET" if met else "NOT MET")
            + "; " + "; ".join(f"{p['task']}: {p['ratio']:.1f}x, A_f {p['A_f_after']:.2f}, A_r "
                               f"{p['A_r_after_minus_before']:+.2f}" for p in per))
    return {"met": met, "tasks": per, "line": line}


def figure(rows: list[dict], path: Path, after: str) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [("before", "cpu-kd-head, before"), ("default_now", "cpu-kd-head, fixed features"),
             ("after", after), ("after_shared", f"{after}, shared set"),
             ("synth_embed", "synthetic embeddings")]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.16
    for j, (key, label) in enumerate(names):
        ax.bar([i + (j - 2) * width for i in range(len(rows))], [r["median_s"][key] for r in rows], width, label=label)
    ax.set_xticks(range(len(rows)), [f"forget {r['task']}" for r in rows])
    ax.set_ylabel("ET, median (s)")
    ax.set_title("KD head-only DAMO: fixed features and goal-sized synthesis (one run, interleaved)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=json.loads, default=[[1], [5], [8]], help="forget tasks (JSON list of lists)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--after", default=AFTER, choices=sorted(dsda.RECIPES), metavar="RECIPE",
                   help=f"the faster recipe measured against {BEFORE} (default {AFTER})")
    p.add_argument("--out", type=Path, default=None, help="the JSON to write (default results/benchmarks/"
                   "dsda_speed.json, or dsda_speed-RECIPE.json for another --after)")
    args = p.parse_args(argv)
    if args.out is None:
        stem = "dsda_speed" if args.after == AFTER else f"dsda_speed-{args.after}"
        args.out = ROOT / "results" / "benchmarks" / f"{stem}.json"
    start = machine()
    print("machine:", json.dumps(start), flush=True)
    original = dsda.original_model("cpu", progress=False)
    dsda_run(args.after, args.tasks[0], True)                # warm-up (first-use imports), not timed
    dsda_run(BEFORE, args.tasks[0], False)
    shared = dsda.synthetic_set_for("dsda_kd_head", "cpu", seed=0, recipe=args.after)
    rows = []
    for task in args.tasks:
        rows.append(measure_task(task, shared, original, args.repeats, args.after))
        rows[-1]["ratios"] = ratios(rows[-1])
        print_row(rows[-1])
    end = machine()
    print("load average before / after:", start["loadavg"], end["loadavg"], flush=True)
    out = {"command": "python " + " ".join(["benchmarks/dsda_speed.py", *(argv or sys.argv[1:])]),
           "machine_start": start, "machine_end": end, "provenance": provenance("cpu"), "repeats": args.repeats,
           "recipes": {"before": BEFORE, "after": args.after}, "shared_set_synthesis_s": shared.wall_time, "tasks": rows,
           "min_ratio_before_after": min(r["ratios"]["before/after"] for r in rows)}
    out["requirement"] = requirement(rows)
    print(out["requirement"]["line"], flush=True)
    atomic_write_json(args.out, out)
    figure(rows, args.out.with_suffix(".png"), args.after)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}; smallest before/after ratio "
          f"{out['min_ratio_before_after']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
