"""Where the jobs run: a LocalCluster we start, or any Dask cluster the user already has.

The default is one worker process per core, one thread each (`processes=True`): torch's intra-op threads are
per process, so two jobs in one process would share (and fight over) them; the job sets its own thread count
(tasks.job_environment). Workers of an existing cluster should be started the same way (`--nthreads 1`); a
worker with more threads still gives the same numbers (every job sets the threads it needs) but runs jobs side
by side in one process.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import warnings
from typing import Any, Iterator


def default_workers(threads: int = 1) -> int:
    """As many workers as the cores this process may use hold jobs of `threads` torch threads each."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, threads))


def thread_env(threads: int) -> dict[str, str]:
    """What a worker process starts with: BLAS / OpenMP pools sized like the jobs' torch threads."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _worker_facts() -> dict[str, Any]:
    import dsda
    return {"dsda": dsda.__version__, "python": sys.version.split()[0]}


def check_workers(client: Any) -> None:
    """Every connected worker runs this dsda version (results would not be comparable otherwise)."""
    import dsda
    facts = client.run(_worker_facts)
    wrong = {addr: f["dsda"] for addr, f in facts.items() if f["dsda"] != dsda.__version__}
    if wrong:
        raise RuntimeError(f"Dask workers run another dsda version than this client ({dsda.__version__}): {wrong}; "
                           f"install the same version on every worker")
    busy = {addr: w["nthreads"] for addr, w in client.scheduler_info()["workers"].items() if w.get("nthreads", 1) > 1}
    if busy:
        warnings.warn(f"Dask workers with more than one thread {busy}: jobs will share a process's torch threads; "
                      f"start workers with --nthreads 1 for clean timings", RuntimeWarning, stacklevel=3)


def print_dashboard(client: Any) -> None:
    if importlib.util.find_spec("bokeh") is None:
        print("[dsda] Dask dashboard: off (it needs bokeh: pip install 'bokeh>=3.1')", flush=True)
    else:
        print(f"[dsda] Dask dashboard: {client.dashboard_link}", flush=True)


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, threads: int = 1) -> Iterator[Any]:
    """A Dask client: to `scheduler` (an address such as tcp://host:8786), else to a new LocalCluster of
    `workers` processes (default: one per core, or per `threads` cores), closed again on exit."""
    from distributed import Client, LocalCluster
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or default_workers(threads), threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR, env=thread_env(threads))
        client = Client(cluster)
    try:
        check_workers(client)
        where = scheduler or f"LocalCluster, {len(client.scheduler_info()['workers'])} worker process(es)"
        print(f"[dsda] Dask: {where}", flush=True)
        print_dashboard(client)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
