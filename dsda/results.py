"""The results of a plan as a table: `dsda.results.load("cpu-quick") -> DataFrame`.

The store (`results/store/<plan>/`, dsda/sweep/store.py) is the single source of truth of every table: one
record per finished job, consolidated into `table.parquet`. `load` reads that table when it is current, else
builds it from the records. One row per method run (kind "result"): `label`, `method`, `recipe`, `task`
("3", "3+5"), `forget_classes`, `seed`, every metric of dsda.metrics.evaluate as its own column (A_f, A_r,
MIA, ...), `ET_s`, `wall_s`, `worker`, `commit`, and `config`, `spec`, `versions` as JSON text.
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
