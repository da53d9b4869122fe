"""The sweep engine: plans of thousands of jobs on Dask, one results store (issue 16).

    python -m dsda sweep smoke                        # resume by default; a LocalCluster, one worker per core
    python -m dsda sweep cpu-quick --dry-run          # the jobs and their cost from the store's own timings
    python -m dsda sweep cpu-full --scheduler tcp://host:8786   # any existing Dask cluster
    python -m dsda sweep verify cpu-quick --sample 5  # rerun 5 finished results, compare the metrics exactly

One file per concept: `plan.py` (the YAML grid, checked before anything runs), `jobs.py` (the dependency
graph and the keys), `tasks.py` (what a job does on a worker), `store.py` (records and table.parquet),
`engine.py` (what to run, serially or on Dask), `cluster.py` (LocalCluster or an existing scheduler),
`estimate.py` (--dry-run), `verify.py` (the audit), `command.py` (the command line). `dsda.results.load(plan)`
reads the table.
"""
from __future__ import annotations

from .engine import Summary, run_jobs, run_plan
from .plan import Plan, PlanError, load_plan

__all__ = ["Plan", "PlanError", "Summary", "load_plan", "run_jobs", "run_plan"]
