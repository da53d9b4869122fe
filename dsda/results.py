"""The results of a plan as a table: `dsda.results.load("cpu-quick") -> DataFrame`.

The store (`results/store/<plan>/`, dsda/sweep/store.py) is the single source of truth of every table: one
record per finished job, consolidated into `table.parquet`. `load` reads that table when it is current, else
builds it from the records. One row per method run (kind "result"): `label`, `method`, `recipe`, `task`
("3", "3+5"), `forget_classes`, `seed`, every metric of dsda.metrics.evaluate as its own column (A_f, A_r,
MIA, ...), `ET_s`, `wall_s`, `worker`, `commit`, and `config`, `spec`, `versions` as JSON text.

`ensure(plan)` is how a notebook reads a plan: it first runs what the store still lacks (resume: a finished
key never runs again), then returns the plan's current results only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .sweep.store import Store

KINDS = ("result", "original", "oracle", "synthetic", "all")


def load(plan: str, *, kind: str = "result", include_failed: bool = False, store: str | Path | None = None) -> Any:
    """The plan's records as a pandas DataFrame (see the module docstring).

    plan: a plan name (its store is results/store/<plan>) or, with `store=`, any label. kind: "result" (the
    method runs), a prerequisite kind, or "all". include_failed: keep failed jobs (their `error` column says
    why); by default only finished ones.
    """
    from .checks import check_choice
    check_choice("kind", kind, KINDS)
    st = Store.for_plan(plan, store)
    if not st.keys() and not st.table_path.is_file():
        raise ValueError(f"plan {plan!r}: no results store at {st.root}; run `python -m dsda sweep {plan}` first")
    df = st.frame()
    if kind != "all":
        df = df[df.kind == kind]
    if not include_failed:
        df = df[df.status == "ok"]
    return df.reset_index(drop=True)


def committed_store(plan: str) -> Store:
    """The plan's store in the repository (results/store/<plan>), whatever DSDA_OUTPUT_DIR says."""
    from .report import project_root
    return Store(project_root() / "results" / "store" / plan)


def _missing(plan: Any, store: Store, graph: list | None = None) -> list[Any]:
    """The plan's result jobs without a record in `store` (`graph`: the plan's, when already built)."""
    from .sweep.engine import select
    from .sweep.jobs import build_graph
    return [j for j in select(graph or build_graph(plan), store.status()) if j.kind == "result"]


def _copy_records(source: Store, dest: Store) -> int:
    """The source store's finished records into dest (atomically, one by one; dest's own records win)."""
    have = set(dest.keys())
    records = [r for r in source.records() if r["status"] == "ok" and r["key"] not in have]
    for r in records:
        dest.write(r)
    return len(records)


def ensure(plan: Any, *, workers: int | None = None, serial: bool = False, progress: bool = True) -> Any:
    """The plan's results as `load` gives them, after running what its store lacks (the engine resumes).

    plan: a name in plans/, a YAML path or a `dsda.sweep.Plan`. The store is results/store/<plan> under the
    output root (DSDA_OUTPUT_DIR, else the repository). When that is not the repository's own store (the tests,
    papermill into another folder), the committed store serves: read where it is when it holds every result
    of the plan, else its records are copied into the output store first, so only what neither holds runs.
    Only the plan's current results are returned (a store can also hold records of an older version of the
    plan). serial=True runs in this process; else a LocalCluster of `workers` (None: one per core).
    """
    from .sweep.engine import run_plan
    from .sweep.jobs import build_graph
    from .sweep.plan import load_plan
    p = load_plan(plan)
    graph = build_graph(p)
    out, committed = Store.for_plan(p.name), committed_store(p.name)
    same = out.root.resolve() == committed.root.resolve()
    if not same and not _missing(p, committed, graph):
        out = committed                                   # complete: read the repository's store in place
    elif not same and committed.keys():
        _copy_records(committed, out)
    if _missing(p, out, graph):
        run_plan(p, store=str(out.root), workers=workers, serial=serial, progress=progress)
    keys = {j.key for j in graph if j.kind == "result"}
    df = load(p.name, store=out.root)
    return df[df.key.isin(keys)].reset_index(drop=True)
