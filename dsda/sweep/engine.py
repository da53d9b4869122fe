"""Running a plan: pick the jobs still to do, run them serially or on Dask, record every result as it arrives.

    run_plan("smoke")                                  # a LocalCluster: processes, 1 thread each, one per core
    run_plan("smoke", scheduler="tcp://host:8786")     # any existing Dask cluster
    run_plan("smoke", serial=True)                     # one process, this one (no Dask)

Resume is the default: a result whose record is in the store is never run again (ok or failed);
`retry_failed=True` runs only the failed ones. A job that fails is recorded with its error and traceback and
the others go on (jobs that need its product fail at once, naming it). An interrupted client loses only the
jobs in flight: every record already written stays, and the next call picks up the rest.

A LocalCluster starts its workers with multiprocessing's "spawn": a script that calls `run_plan` must do so
under `if __name__ == "__main__":` (the command line and notebooks need nothing).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .jobs import Job, build_graph, closure
from .plan import Plan, load_plan
from .store import Store
from .tasks import execute, failure


@dataclass
class Summary:
    plan: str
    store: str
    scheduled: int = 0                        # stored jobs submitted in this call
    finished_before: int = 0                  # results already in the store
    ran: list[str] = field(default_factory=list)      # keys of the records written by this call
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def line(self) -> str:
        return (f"[dsda] sweep {self.plan}: {len(self.ran)} job(s) recorded ({len(self.failed)} failed), "
                f"{self.finished_before} result(s) finished before, {self.wall_s:.0f} s; store {self.store}")


def checkpoint_present(job: Job) -> bool:
    """A model job is needed only when its checkpoint (cache or shipped) is missing."""
    from ..profiles import get_profile
    from ..train import find_checkpoint
    return find_checkpoint(get_profile(job.spec["profile"]), job.spec["model_config"]) is not None


def select(graph: list[Job], done: dict[str, str], retry_failed: bool = False,
           present: Callable[[Job], bool] = checkpoint_present) -> list[Job]:
    """The jobs to run: results without a record (or, with retry_failed, only the failed ones) and what they need."""
    wanted = [j.key for j in graph if j.kind == "result" and
              (done.get(j.key) == "failed" if retry_failed else j.key not in done)]
    return closure(graph, wanted, skip=present)


# ----------------------------------------------------------------------------- executors

def run_serial(jobs: list[Job], on_record: Callable[[dict], None]) -> None:
    """Every job in order in this process; a value is dropped once no later job needs it."""
    values: dict[str, tuple[dict, Any]] = {}
    last_use = {k: i for i, j in enumerate(jobs) for _, k in j.deps}
    for i, job in enumerate(jobs):
        inputs = {name: values[k] for name, k in job.deps if k in values}
        values[job.key] = execute(job, **inputs)
        if job.stored:
            on_record(values[job.key][0])
        for k in [k for k in values if last_use.get(k, -1) <= i]:
            del values[k]


def _first(pair: tuple[dict, Any]) -> dict:
    return pair[0]


def _submit(client: Any, jobs: list[Job]) -> dict[Any, Job]:
    """Every job as a Dask task wired to its dependencies; returns the futures of the records to collect.
    Only record futures are kept: the scheduler holds a value while a dependent still needs it."""
    nonce = uuid.uuid4().hex[:8]      # keys of an earlier sweep on the same cluster are never reused
    values: dict[str, Any] = {}
    for job in jobs:
        inputs = {name: values[k] for name, k in job.deps if k in values}
        values[job.key] = client.submit(execute, job, key=f"{job.kind}-{job.key}-{nonce}", pure=False, **inputs)
    return {client.submit(_first, values[j.key], key=f"record-{j.key}-{nonce}", pure=False): j
            for j in jobs if j.stored}


def run_dask(client: Any, jobs: list[Job], on_record: Callable[[dict], None]) -> None:
    """Submit everything, write records in the order they finish. A job lost with its workers (Dask gives up
    after `distributed.scheduler.allowed-failures` deaths) is recorded as failed; on KeyboardInterrupt the
    outstanding futures are cancelled and the records written so far stay."""
    from distributed import as_completed
    pending = _submit(client, jobs)
    try:
        for fut in as_completed(list(pending)):
            job = pending.pop(fut)
            try:
                record = fut.result()
            except Exception as e:     # KilledWorker, a lost dependency: the job's own errors are records
                record = failure(job, f"{type(e).__name__}: {e}", "the job did not return (worker lost)")
            fut.release()
            on_record(record)
    finally:
        if pending:
            client.cancel(list(pending))


# ----------------------------------------------------------------------------- one call

def _recorder(store: Store, summary: Summary, bar: Any, on_record: Callable[[dict], None] | None):
    def record(rec: dict) -> None:
        store.write(rec)                      # first: a record reported is a record on disk
        summary.ran.append(rec["key"])
        if rec["status"] != "ok":
            summary.failed.append(rec["key"])
            bar.write(f"[dsda] failed: {rec.get('label', rec['kind'])} {rec.get('task', '')} seed "
                      f"{rec.get('seed', '')}: {rec.get('error')}")
        bar.set_postfix(failed=len(summary.failed), refresh=False)
        bar.update(1)
        if on_record is not None:
            on_record(rec)
    return record


def run_jobs(jobs: list[Job], store: Store, *, plan: str = "", scheduler: str | None = None,
             workers: int | None = None, threads: int = 1, serial: bool = False, progress: bool = True,
             on_record: Callable[[dict], None] | None = None) -> Summary:
    """Run `jobs` (a topological list) and write their records to `store`; the table is rebuilt at the end,
    also after an interruption."""
    from tqdm.auto import tqdm
    summary = Summary(plan=plan, store=str(store.root), scheduled=sum(j.stored for j in jobs))
    store.remove_partial()
    t0 = time.perf_counter()
    bar = tqdm(total=summary.scheduled, desc=f"sweep {plan}", unit="job", disable=not progress)
    record = _recorder(store, summary, bar, on_record)
    try:
        if serial:
            run_serial(jobs, record)
        elif jobs:
            from .cluster import connect
            with connect(scheduler, workers, threads) as client:
                run_dask(client, jobs, record)
    finally:
        bar.close()
        summary.wall_s = time.perf_counter() - t0
        store.write_table()
    return summary


def prepare(plan: "str | Plan", store: str | None = None, threads: int | None = None) -> tuple[Plan, Store, list[Job]]:
    """(the checked plan, its store, its whole graph); `threads` replaces the plan's (part of every key)."""
    p = load_plan(plan)
    if threads is not None:
        p = p.replace(threads=threads)
    return p, Store.for_plan(p.name, store), build_graph(p)


def run_plan(plan: "str | Plan", *, store: str | None = None, scheduler: str | None = None,
             workers: int | None = None, serial: bool = False, retry_failed: bool = False,
             threads: int | None = None, progress: bool = True,
             on_record: Callable[[dict], None] | None = None) -> Summary:
    """Run what a plan still lacks (see the module docstring)."""
    p, st, graph = prepare(plan, store, threads)
    done = st.status()
    jobs = select(graph, done, retry_failed)
    before = sum(1 for j in graph if j.kind == "result" and j.key in done)
    print(f"[dsda] sweep {p.name}: {sum(j.kind == 'result' for j in jobs)} result(s) to run "
          f"({sum(j.stored for j in jobs)} job(s) with their prerequisites), {before} finished before; "
          f"{'serial, ' if serial else ''}{p.threads} thread(s) per job; store {st.root}", flush=True)
    summary = run_jobs(jobs, st, plan=p.name, scheduler=scheduler, workers=workers, threads=p.threads,
                       serial=serial, progress=progress, on_record=on_record)
    summary.finished_before = before
    return summary


def plan_jobs(plan: "str | Plan", store: str | None = None, retry_failed: bool = False,
              threads: int | None = None) -> tuple[Plan, Store, list[Job]]:
    """(plan, store, the jobs a run would start): what --dry-run shows."""
    p, st, graph = prepare(plan, store, threads)
    return p, st, select(graph, st.status(), retry_failed)
