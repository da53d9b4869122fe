"""`--dry-run`: the jobs a sweep would start and what they should cost, from the store's own timings.

A job's estimate is the median wall time of the finished jobs of its class (kind, profile, entry label,
threads; a model job counts only models that were trained, not loaded; a synthetic set, which has no record
of its own, the synthesis time the DSDA results of that profile and threads carry), looked up first in the
plan's own store, then in every other store under the same root (results/store/*). A class nobody has run yet has no
estimate, and the total says how many jobs that leaves out. The wall time on N workers is total / N: ideal
packing, ignoring that a result waits for its prerequisites.
"""
from __future__ import annotations

import statistics
from typing import Any

from .jobs import Job
from .store import Store


ESTIMATED = ("original", "oracle", "synthetic", "result")   # a run's cost is in its result's wall time


def cost_class(kind: str, profile: Any, label: Any, threads: Any) -> tuple:
    shared = kind in ("original", "oracle", "synthetic")
    return (kind, profile, "" if shared else label, int(threads))


def _store_timings(df: Any) -> dict[tuple, list[float]]:
    local: dict[tuple, list[float]] = {}
    for r in df[df.status == "ok"].itertuples(index=False):
        if r.kind in ("original", "oracle") and getattr(r, "source", None) != "trained":
            continue
        local.setdefault(cost_class(r.kind, r.profile, r.label, r.threads), []).append(float(r.wall_s))
        syn = getattr(r, "synthesis_s", None)
        if r.kind == "result" and syn is not None and syn == syn:
            local.setdefault(cost_class("synthetic", r.profile, "", r.threads), []).append(float(syn))
    return local


def timings(store: Store) -> dict[tuple, list[float]]:
    """Wall times of finished jobs by class: the plan's store first, the others under its root after."""
    others = sorted(p for p in store.root.parent.glob("*") if p.is_dir() and p != store.root)
    found: dict[tuple, list[float]] = {}
    for st in [store, *(Store(p) for p in others)]:
        df = st.frame() if st.keys() else None
        if df is None or df.empty:
            continue
        for k, v in _store_timings(df).items():
            found.setdefault(k, v)        # an earlier (more specific) store wins
    return found


def estimate(jobs: list[Job], history: dict[tuple, list[float]]) -> list[tuple[Job, float | None]]:
    """(job, seconds or None) for every job but the runs: the median of its class."""
    out = []
    for job in jobs:
        if job.kind not in ESTIMATED:
            continue
        times = history.get(cost_class(job.kind, job.row.get("profile"), job.row.get("label"), job.threads))
        out.append((job, statistics.median(times) if times else None))
    return out


def report(jobs: list[Job], store: Store, workers: int) -> dict[str, Any]:
    """Print every job with its estimate and the totals; returns them."""
    rows = estimate(jobs, timings(store))
    print(f"{'kind':10s} {'label':28s} {'forget':8s} {'seed':>4s} {'est. s':>8s}")
    for job, s in rows:
        r = job.row
        print(f"{job.kind:10s} {str(r.get('label', ''))[:28]:28s} {str(r.get('task', '')):8s} "
              f"{str(r.get('seed', '')):>4s} {'?' if s is None else f'{s:.1f}':>8s}")
    known = [s for _, s in rows if s is not None]
    total, unknown = sum(known), len(rows) - len(known)
    results = sum(j.kind == "result" for j, _ in rows)
    print(f"[dsda] {len(rows)} job(s) ({results} result(s)): about {total:.0f} s of work"
          + (f", {unknown} job(s) without an estimate (no finished job of their class yet)" if unknown else "")
          + f"; about {total / max(workers, 1):.0f} s on {workers} worker(s)")
    return {"jobs": len(rows), "results": results, "total_s": total, "unknown": unknown,
            "wall_s": total / max(workers, 1), "workers": workers}
