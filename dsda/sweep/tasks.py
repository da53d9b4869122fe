"""What a job does where it lands (a Dask worker or the client process): plain Python functions, no notebooks.

`execute(job, **inputs)` wraps every job the same way:
- a dependency that failed makes this job fail at once, naming it (nothing runs on a broken input);
- threads and seeds are set for the job alone (`job_environment`): torch threads = the plan's `threads`, the
  global torch / NumPy / Python RNGs seeded with the job's seed and restored afterwards, so a result depends
  neither on the worker nor on which jobs ran before it in the same process;
- an exception becomes a failed record with its error and traceback, and the other jobs go on;
- it returns (record, value): the record for the store, the value for the jobs that depend on this one.

The job functions (`Job.fn`) take (job, **values of their dependencies) and return (record fields, value).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import socket
import time
import traceback
from typing import Any, Iterator

import numpy as np
import torch

from .jobs import Job


@contextlib.contextmanager
def job_environment(threads: int, seed: int) -> Iterator[None]:
    """torch threads, the BLAS pools NumPy, SciPy and scikit-learn use (the attacks' fits), every global RNG and
    evaluate's backbone cache (off) set for one job; the caller's are restored afterwards. The BLAS pools matter
    for a job run in the client process (serial), whose pools `cluster.thread_env` did not size as a worker's."""
    from threadpoolctl import threadpool_limits   # a dependency of scikit-learn

    from .. import inference
    before, cache = torch.get_num_threads(), inference.BACKBONE_CACHE
    # evaluate's backbone cache off: with it, probabilities depended in the last bit on which jobs the process
    # ran before (serial vs two workers differed in JS by ~1e-9, tests/test_sweep.py); a result must not depend
    # on that
    inference.BACKBONE_CACHE = False
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        # torch's own pool is set last and restored after the BLAS pools: leaving threadpool_limits can
        # reset the OpenMP pool torch shares with them
        with torch.random.fork_rng(devices=[]), threadpool_limits(limits=threads, user_api="blas"):
            torch.set_num_threads(threads)
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            yield
    finally:
        torch.set_num_threads(before)
        inference.BACKBONE_CACHE = cache
        np.random.set_state(np_state)
        random.setstate(py_state)


@functools.lru_cache(maxsize=1)
def _process_facts() -> dict[str, Any]:
    """Versions and commit, once per process (git is a subprocess)."""
    from ..utils import git_commit, library_versions
    return {"versions": library_versions(), "commit": git_commit()}


def where() -> dict[str, Any]:
    """Which worker ran the job: the Dask worker's address, else 'local'; host and process id."""
    try:
        from distributed import get_worker
        address = get_worker().address
    except (ImportError, ValueError):
        address = "local"
    return {"worker": address, "host": socket.gethostname(), "pid": os.getpid()}


def base_record(job: Job, status: str, started: float, wall_s: float) -> dict[str, Any]:
    return {"key": job.key, "kind": job.kind, "plan": job.plan, "status": status, **job.row,
            "threads": job.threads, "device": job.args.get("device"), "spec": job.spec,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s": wall_s, **where(), **_process_facts()}


def failure(job: Job, error: str, trace: str = "", started: float | None = None) -> dict[str, Any]:
    started = time.time() if started is None else started
    return {**base_record(job, "failed", started, time.time() - started), "error": error, "traceback": trace}


def execute(job: Job, **inputs: tuple[dict, Any]) -> tuple[dict[str, Any], Any]:
    """Run one job (see the module docstring); never raises for the job's own errors."""
    started = time.time()
    for name, (rec, _) in inputs.items():
        if rec["status"] != "ok":
            return failure(job, f"dependency {name} ({rec['kind']} {rec['key']}) failed: {rec.get('error')}",
                           rec.get("traceback", ""), started), None
    values = {name: value for name, (_, value) in inputs.items()}
    t0 = time.perf_counter()
    try:
        with job_environment(job.threads, job.seed):
            fields, value = job.fn(job, **values)
    except Exception as e:   # recorded, the plan goes on; KeyboardInterrupt / SystemExit still stop it
        return failure(job, f"{type(e).__name__}: {e}", traceback.format_exc(), started), None
    return {**base_record(job, "ok", started, time.perf_counter() - t0), **fields}, value


# ----------------------------------------------------------------------------- the job functions

def _profile_device(job: Job) -> tuple[Any, torch.device]:
    from ..profiles import get_profile
    from ..utils import resolve_device
    return get_profile(job.args["profile"]), resolve_device(job.args["device"])


def train_model(job: Job) -> tuple[dict[str, Any], None]:
    """The original model or an oracle into the checkpoint directory (trained when missing)."""
    from ..train import checkpoint_record, find_checkpoint, model_config, original_model, retrain_model
    prof, dev = _profile_device(job)
    exclude, seed = tuple(job.args["exclude"]), job.seed
    found = find_checkpoint(prof, model_config(prof, seed, exclude))
    if exclude:
        retrain_model(prof, exclude, seed=seed, device=dev, progress=False)
    else:
        original_model(prof, seed=seed, device=dev, progress=False)
    info = checkpoint_record(prof, seed, exclude) or {}
    return {"source": "loaded" if found else "trained", "checkpoint": info.get("path"),
            "train_time_s": info.get("train_time_s"), "test_accuracy": info.get("test_accuracy")}, None


def make_synthetic(job: Job, original: Any = None) -> tuple[dict[str, Any], Any]:
    """dsda.synthetic_set on the original model: one set of every class for every DSDA run that shares it."""
    from ..train import original_model
    from ..unlearn import synthetic_set
    prof, dev = _profile_device(job)
    model = original_model(prof, seed=job.seed, device=dev, progress=False)
    syn = synthetic_set(model, prof, job.seed, recipe=job.args["recipe"], device=str(dev), progress=False)
    return {"synthesis_s": float(syn.wall_time), "n_images": int(len(syn.y)), "classes": list(syn.classes)}, syn


def run_dsda_shared(method: Any, prof: Any, task: tuple[int, ...], seed: int, dev: torch.device, config: Any,
                    synthetic: Any) -> tuple[torch.nn.Module, dict[str, Any], float]:
    """The one adapter between the engine and DSDA: `dsda.unlearn(..., synthetic=)` on a copy of the original,
    inside the data guard (the method is source-free). ET = the report's total, which counts the shared set's
    synthesis time. Returns (model, report, ET seconds)."""
    from ..data import forbid_data_access
    from ..train import original_model
    from ..unlearn import unlearn
    model = original_model(prof, seed=seed, device=dev, progress=False)
    with forbid_data_access(f"method {method.name} is source-free (data_access='none')"):
        out, report = unlearn(model, task, profile=prof.name, seed=seed, recipe=config.recipe, synthetic=synthetic,
                              device=str(dev), progress=False, **config.options())
    return out, report, float(report["time_s"]["total"])


def _dsda_record(job: Job, synthetic: Any) -> tuple[dict[str, Any], torch.nn.Module]:
    """A DSDA run on the shared set, recorded with the fields the runner's records carry."""
    from ..baselines import get_method
    from ..baselines.runner import _json_report, build_config, settings_key
    from ..utils import provenance
    prof, dev = _profile_device(job)
    method = get_method(job.args["method"])
    config = build_config(method, prof, False, job.args["overrides"])
    model, report, et_s = run_dsda_shared(method, prof, tuple(job.args["task"]), job.seed, dev, config, synthetic)
    record = {"method": method.name, "title": method.title, "data_access": method.data_access,
              "source_free": method.source_free, "settings": settings_key(method, prof), "ET_s": et_s,
              "ET_source": "measured", "granted": {}, "config": dataclasses.asdict(config),
              "report": _json_report(report), "reference": method.reference, "provenance": provenance(dev)}
    return record, model


def run_method_job(job: Job, original: Any = None, oracle: Any = None,
                   synthetic: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The method's run (not evaluated yet); the unlearned model goes to the result job (on the CPU, so any
    worker can take it)."""
    from ..baselines.runner import run_method
    t0 = time.perf_counter()
    if synthetic is not None:
        record, model = _dsda_record(job, synthetic)
        record.update(synthetic_set=dict(job.deps)["synthetic"], synthesis_s=float(synthetic.wall_time))
    else:
        a = job.args
        record, model, _ = run_method(a["method"], profile=a["profile"], forget_classes=list(a["task"]),
                                      seed=job.seed, model_seed=job.seed, device=a["device"], evaluate=False,
                                      retain_per_class=a["retain_per_class"], progress=False, return_model=True,
                                      **a["overrides"])
        record = {k: v for k, v in record.items() if k not in ("metrics", "profile", "forget_classes", "seed")}
    model = model.cpu().eval()
    return {}, {"record": record, "model": model, "run_wall_s": time.perf_counter() - t0}


def evaluate_against_oracle(model: torch.nn.Module, prof: Any, task: tuple[int, ...], seed: int,
                            dev: torch.device) -> dict[str, Any]:
    """dsda.metrics.evaluate; with the oracle of the same task and seed as `reference` where evaluate takes one."""
    from ..metrics import evaluate
    from ..train import retrain_model
    from .jobs import uses_reference
    extra = {"reference": retrain_model(prof, task, seed=seed, device=dev, progress=False)} if uses_reference() else {}
    return evaluate(model.to(dev), prof, list(task), device=dev, seed=seed, **extra)


def evaluate_job(job: Job, run: dict[str, Any], oracle: Any = None) -> tuple[dict[str, Any], None]:
    prof, dev = _profile_device(job)
    t0 = time.perf_counter()
    metrics = evaluate_against_oracle(run["model"], prof, tuple(job.args["task"]), job.seed, dev)
    eval_s = time.perf_counter() - t0
    # wall_s: the run and its evaluation (the two tasks of one store record)
    return {**run["record"], "metrics": metrics, "run_wall_s": run["run_wall_s"], "eval_wall_s": eval_s,
            "wall_s": run["run_wall_s"] + eval_s}, None
