"""Benchmark of the sweep engine (issue 16): one plan run serially (one process, two torch threads) and on a
LocalCluster of two workers (one thread each), side by side in one session; prints the ratio and jobs per hour.

    python benchmarks/sweep_speed.py                      # cpu-quick: both runs, about an hour on 2 quiet cores
    python benchmarks/sweep_speed.py --plan smoke         # a minute
    python benchmarks/sweep_speed.py --order dask-first   # run the cluster first (check the order does not matter)
    python benchmarks/sweep_speed.py --order dask-first --keep-store   # the cluster run becomes results/store/<plan>

Both runs write to fresh temporary stores (nothing is resumed; the committed store is untouched), except that
with --keep-store the cluster run writes the plan's own store, which must not exist yet (so nothing is resumed
there either): the committed store is then the timed run itself. Models come
from the checkpoint cache or pretrained/: any missing one is trained first, untimed, so neither run pays for
it. Jobs per hour counts results (method run + evaluation). The two runs use different thread counts, so
their keys differ and their metrics may differ in the last bits: this measures speed only (tests/test_sweep.py
checks bitwise identity at equal threads). The load average before and after is recorded: a busy machine
makes both numbers meaningless. Writes results/benchmarks/sweep_speed.json (atomically, with provenance).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsda.report import output_root  # noqa: E402
from dsda.sweep.engine import checkpoint_present, run_jobs, run_plan  # noqa: E402
from dsda.sweep.jobs import build_graph  # noqa: E402
from dsda.sweep.plan import load_plan  # noqa: E402
from dsda.sweep.store import Store  # noqa: E402
from dsda.utils import atomic_write_json, provenance  # noqa: E402


def train_missing_models(plan) -> int:
    """Every checkpoint the plan needs, trained now (untimed) when missing; how many were."""
    missing = [j for j in build_graph(plan) if j.kind in ("original", "oracle") and not checkpoint_present(j)]
    if missing:
        with tempfile.TemporaryDirectory() as tmp:
            run_jobs(missing, Store(tmp), plan=plan.name, serial=True, progress=False)
    return len(missing)


def timed(plan, mode: str, store: Path) -> dict:
    t0 = time.perf_counter()
    if mode == "serial":
        summary = run_plan(plan, store=str(store), serial=True, threads=2, progress=False)
    else:
        summary = run_plan(plan, store=str(store), workers=2, threads=1, progress=False)
    wall = time.perf_counter() - t0
    results = sum(1 for r in Store(store).records() if r["kind"] == "result" and r["status"] == "ok")
    return {"mode": mode, "wall_s": round(wall, 1), "results": results, "failed": len(summary.failed),
            "jobs_per_hour": round(results / wall * 3600, 1),
            "threads_per_job": 2 if mode == "serial" else 1, "processes": 1 if mode == "serial" else 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default="cpu-quick")
    ap.add_argument("--order", choices=("serial-first", "dask-first"), default="serial-first")
    ap.add_argument("--keep-store", action="store_true", help="the cluster run writes results/store/<plan>")
    args = ap.parse_args()
    plan = load_plan(args.plan)
    kept = Store.for_plan(plan.name)
    if args.keep_store and kept.root.exists():
        raise SystemExit(f"--keep-store: {kept.root} exists; move it away first (the timed run must start empty)")
    trained = train_missing_models(plan)
    load_before = os.getloadavg()
    modes = ["serial", "dask"] if args.order == "serial-first" else ["dask", "serial"]
    with tempfile.TemporaryDirectory(prefix="dsda-sweep-speed-") as tmp:
        runs = {m: timed(plan, m, kept.root if args.keep_store and m == "dask" else Path(tmp) / m) for m in modes}
    ratio = runs["serial"]["wall_s"] / runs["dask"]["wall_s"]
    for m in modes:
        r = runs[m]
        print(f"{m:6s}: {r['wall_s']:8.1f} s for {r['results']} results ({r['failed']} failed), "
              f"{r['jobs_per_hour']:.0f} results/hour "
              f"({r['processes']} process(es) x {r['threads_per_job']} thread(s))")
    print(f"serial / LocalCluster(2 workers) wall time: {ratio:.2f}x  (load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f}; models trained first, untimed: {trained})")
    out = output_root() / "results" / "benchmarks" / "sweep_speed.json"
    atomic_write_json(out, {"provenance": provenance("cpu"), "plan": plan.name, "order": args.order,
                            "kept_store": str(kept.root.relative_to(output_root())) if args.keep_store else None,
                            "runs": runs, "ratio_serial_over_dask": round(ratio, 3),
                            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                            "models_trained_untimed": trained, "cores": os.cpu_count()})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
