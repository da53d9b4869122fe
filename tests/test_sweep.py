"""The sweep engine (dsda/sweep, issue 16), on the smoke profile.

One LocalCluster with two worker processes serves the module. Real smoke jobs go through it end to end; the
same plan run serially in this process must give bitwise-identical metrics; an interrupted client resumes
without rerunning a finished job; a worker killed mid-job (a probe job of the same engine) does not stop the
plan and leaves nothing half-written; a bad plan fails before any job starts, naming the entry.
"""
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import dsda.results
from dsda.sweep import PlanError, load_plan, run_jobs, run_plan
from dsda.sweep.cluster import thread_env
from dsda.sweep.engine import plan_jobs
from dsda.sweep.estimate import report
from dsda.sweep.jobs import build_graph, make_job
from dsda.sweep.plan import available_plans
from dsda.sweep.store import Store
from dsda.sweep.verify import machine_note, verify

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RESULTS = load_plan("smoke").count()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                     silence_logs=logging.ERROR, env=thread_env(1))
    yield c
    c.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return tmp_path_factory.mktemp("stores")


@pytest.fixture(scope="module")
def smoke_dask(cluster, stores):
    """The smoke plan, uninterrupted, on the two workers."""
    summary = run_plan("smoke", store=str(stores / "dask"), scheduler=cluster.scheduler_address, progress=False)
    return Store(stores / "dask"), summary


def metrics_by_key(store: Store) -> dict:
    return {r["key"]: json.dumps(r["metrics"]) for r in store.records() if r["kind"] == "result"}


def metric_differences(a: str, b: str) -> dict:
    """The metrics whose values differ between two records' metric JSON, with both values (key order too)."""
    a, b = json.loads(a), json.loads(b)
    out = {m: (a.get(m), b.get(m)) for m in a.keys() | b.keys() if a.get(m) != b.get(m)}
    return out or {"key order": (list(a), list(b))}


def no_partial_files(store: Store) -> bool:
    return not list(store.root.rglob(".*.tmp"))


# ----------------------------------------------------------------------------- real smoke jobs

def test_smoke_plan_end_to_end_on_two_workers(smoke_dask, cluster):
    store, summary = smoke_dask
    assert summary.failed == []
    records = [r for r in store.records() if r["kind"] == "result"]
    assert len(records) == SMOKE_RESULTS == 24 and all(r["status"] == "ok" for r in records)
    workers = {r["worker"] for r in records}
    assert workers == set(cluster.scheduler_info["workers"]) and len(workers) == 2   # both processes worked
    r = next(r for r in records if r["method"] == "dsda")
    for field in ("metrics", "ET_s", "config", "recipe", "versions", "commit", "worker", "wall_s", "spec"):
        assert r.get(field) is not None, field
    assert r["report"]["synthesis_shared"] is True and r["recipe"] == "smoke"
    sets = {(x["seed"], x["synthetic_set"]) for x in records if x["method"] in ("dsda", "dsda_kd_head")}
    assert len(sets) == 2 and {s for s, _ in sets} == {0, 1}    # one set per seed, shared by both DSDA methods
    df = dsda.results.load("smoke", store=store.root)
    assert store.table_path.is_file() and len(df) == 24
    assert set(df.label) == {"original", "retrain", "dsda", "dsda_kd_head", "neggrad", "lau"}
    assert df[df.label == "retrain"].A_f.eq(0).all() and df.A_r.between(0, 100).all()
    again = run_plan("smoke", store=str(store.root), scheduler=cluster.scheduler_address, progress=False)
    assert again.ran == [] and again.finished_before == 24        # resume: nothing runs twice


def test_serial_and_two_workers_give_bitwise_identical_metrics(smoke_dask, stores):
    summary = run_plan("smoke", store=str(stores / "serial"), serial=True, progress=False)
    assert summary.failed == []
    serial, parallel = metrics_by_key(Store(stores / "serial")), metrics_by_key(smoke_dask[0])
    assert serial.keys() == parallel.keys() and len(serial) == 24
    differ = {k: metric_differences(serial[k], parallel[k]) for k in serial if serial[k] != parallel[k]}
    assert differ == {}, f"(serial, two workers) per result key and metric: {differ}"


def test_interrupted_client_resumes_without_rerunning(smoke_dask, cluster, stores):
    store = Store(stores / "interrupted")
    seen = []

    def stop_after_six(rec):
        seen.append(rec["key"])
        if len(seen) == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_plan("smoke", store=str(store.root), scheduler=cluster.scheduler_address, progress=False,
                 on_record=stop_after_six)
    assert sorted(store.keys()) == sorted(seen) and no_partial_files(store)
    stamps = {k: store.path(k).stat().st_mtime_ns for k in store.keys()}
    resumed = run_plan("smoke", store=str(store.root), scheduler=cluster.scheduler_address, progress=False)
    assert not set(resumed.ran) & set(seen) and resumed.failed == []
    assert {k: store.path(k).stat().st_mtime_ns for k in stamps} == stamps          # never rewritten
    assert metrics_by_key(store) == metrics_by_key(smoke_dask[0])                   # = the uninterrupted table
    cols = ["key", "label", "task", "seed", "A_f", "A_r", "MIA"]
    a = dsda.results.load("smoke", store=store.root)[cols].sort_values("key").reset_index(drop=True)
    b = dsda.results.load("smoke", store=smoke_dask[0].root)[cols].sort_values("key").reset_index(drop=True)
    assert a.equals(b)


def test_failed_job_is_recorded_and_only_it_retried(tmp_path, monkeypatch):
    from dsda.sweep import tasks
    plan = tmp_path / "tiny.yaml"
    plan.write_text("profile: smoke\nseeds: [0]\ntasks: [3]\nmethods:\n  - method: original\n  - method: lau\n")
    real = tasks.run_method_job

    def broken(job, **kw):
        if job.args["method"] == "lau":
            raise RuntimeError("injected failure")
        return real(job, **kw)

    monkeypatch.setattr(tasks, "run_method_job", broken)
    first = run_plan(str(plan), store=str(tmp_path / "st"), serial=True, progress=False)
    store = Store(tmp_path / "st")
    failed = [r for r in store.records() if r["status"] == "failed"]
    assert len(first.failed) == 1 and [r["label"] for r in failed] == ["lau"]
    assert "injected failure" in failed[0]["error"] and "RuntimeError" in failed[0]["traceback"]
    assert run_plan(str(plan), store=str(tmp_path / "st"), serial=True, progress=False).ran == []   # resume
    monkeypatch.setattr(tasks, "run_method_job", real)
    retry = run_plan(str(plan), store=str(tmp_path / "st"), serial=True, progress=False, retry_failed=True)
    assert retry.ran == [failed[0]["key"]] and retry.failed == []
    assert all(r["status"] == "ok" for r in store.records())


def test_a_sweep_removes_partial_writes_and_load_names_a_missing_store(tmp_path):
    store = Store(tmp_path / "st")
    store.records_dir.mkdir(parents=True)
    partial = store.records_dir / ".0123abcd.json.x1y2z3.tmp"   # what an interrupted atomic write leaves
    partial.write_text('{"key": "0123')
    run_jobs([], store, progress=False)
    assert not partial.exists() and store.keys() == []
    with pytest.raises(ValueError, match="no results store"):
        dsda.results.load("smoke", store=tmp_path / "none")


def test_dry_run_estimates_from_the_stores_timings(smoke_dask, stores, capsys):
    plan, store, jobs = plan_jobs("smoke", store=str(stores / "fresh"))
    out = report(jobs, store, workers=2)
    assert out["results"] == 24 and out["jobs"] == 26                # the results and the two synthetic sets
    assert out["unknown"] == 0 and out["total_s"] > 0                # all from the sibling stores' timings
    assert "dsda_kd_head" in capsys.readouterr().out


def test_verify_reproduces_and_catches_a_tampered_metric(smoke_dask, stores):
    assert all(r["ok"] for r in verify("smoke", 2, store=str(smoke_dask[0].root), progress=False))
    tampered = Store(shutil.copytree(smoke_dask[0].root, stores / "tampered"))
    for r in tampered.records():
        if r["kind"] == "result":
            r["metrics"]["A_r"] += 1e-9
            tampered.write(r)
    rows = verify("smoke", 1, store=str(tampered.root), progress=False)
    assert not rows[0]["ok"] and rows[0]["differences"][0].startswith("A_r:")
    assert rows[0]["same_machine"] is True and machine_note(rows) is None


def test_verify_names_the_machines_when_the_store_was_written_on_another_kind(smoke_dask, stores):
    moved = Store(shutil.copytree(smoke_dask[0].root, stores / "moved"))
    for r in moved.records():
        if r["kind"] == "result":
            r["provenance"].update(device_name="Some Other CPU (1 threads)", cpu_capability="AVX2")
            moved.write(r)
    rows = verify("smoke", 1, store=str(moved.root), progress=False)
    assert rows[0]["ok"] and rows[0]["same_machine"] is False            # the metrics still come back here
    assert rows[0]["stored_on"] == "Some Other CPU (1 threads) AVX2"
    assert "(1 threads) " in rows[0]["rerun_on"]                         # the rerun names its capability too
    assert "stored on Some Other CPU (1 threads) AVX2, rerun on" in machine_note(rows)


def _retag(store: Store, **provenance) -> None:
    for r in store.records():
        if r["kind"] == "result":
            r["provenance"].update(provenance)
            for k in [k for k, v in provenance.items() if v is None]:
                r["provenance"].pop(k)
            store.write(r)


def test_verify_tells_one_cpu_name_with_another_capability_apart(smoke_dask, stores):
    """An AVX2 and an AVX-512 AMD EPYC share their name and differ in their last bits: the kind is both."""
    here = verify("smoke", 1, store=str(smoke_dask[0].root), progress=False)[0]["rerun_on"]
    name, capability = here.rsplit(" ", 1)
    other = "AVX2" if capability != "AVX2" else "AVX512"
    moved = Store(shutil.copytree(smoke_dask[0].root, stores / "other-capability"))
    _retag(moved, cpu_capability=other)
    rows = verify("smoke", 1, store=str(moved.root), progress=False)
    assert rows[0]["same_machine"] is False and rows[0]["stored_on"] == f"{name} {other}"
    assert f"stored on {name} {other}, rerun on {here}" in machine_note(rows)


def test_verify_says_when_the_stored_run_names_no_capability(smoke_dask, stores):
    """Records written before provenance carried the CPU capability: same name, kind not known."""
    old = Store(shutil.copytree(smoke_dask[0].root, stores / "no-capability"))
    _retag(old, cpu_capability=None)
    rows = verify("smoke", 1, store=str(old.root), progress=False)
    assert rows[0]["ok"] and rows[0]["same_machine"] is None
    assert "name no CPU capability" in machine_note(rows) and "another machine" not in machine_note(rows)


# ----------------------------------------------------------------------------- plans

def _plan_file(tmp_path, body: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("profile: smoke\nseeds: [0]\ntasks: [3]\n" + body)
    return str(path)


@pytest.mark.parametrize("body, named", [
    ("methods:\n  - method: lau\n  - method: nope\n", "methods[1] ('nope')"),
    ("methods:\n  - method: dsda\n    recipe: fast\n", "recipe='fast'"),
    ("methods:\n  - method: lau\n    recipe: smoke\n", "has no recipes"),
    ("methods:\n  - method: lau\n    tasks: [3, 12]\n", "methods[0] ('lau').tasks[1]"),
    ("methods:\n  - method: lau\n    seeds: [0, -1]\n", "methods[0] ('lau').seeds[1]"),
    ("methods:\n  - method: neggrad\n    options: {speed: 3}\n", "unknown option(s) ['speed']"),
])
def test_bad_plan_fails_before_any_job_naming_the_entry(tmp_path, body, named):
    with pytest.raises(PlanError, match=None) as err:
        run_plan(_plan_file(tmp_path, body), store=str(tmp_path / "st"), serial=True, progress=False)
    assert named in str(err.value) and "plan 'bad'" in str(err.value)
    assert not (tmp_path / "st").exists()


def test_every_shipped_plan_reads_and_builds(capsys):
    assert {"smoke", "cpu-quick", "cpu-full"} <= set(available_plans())
    for name in available_plans():
        graph = build_graph(load_plan(name))
        assert sum(j.kind == "result" for j in graph) == load_plan(name).count()


def test_cli_names_an_unknown_plan():
    import subprocess
    out = subprocess.run([sys.executable, "-m", "dsda", "sweep", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "plan='nope'" in out.stderr and "smoke" in out.stderr


# ----------------------------------------------------------------------------- a worker dies mid-job

def probe(job):
    """A job of the same engine that announces itself (its process id) and takes a while."""
    Path(job.args["marker_dir"], f"{job.key}.{os.getpid()}").write_text("")
    time.sleep(job.args["sleep"])
    return {"value": job.args["i"]}, None


def test_killed_worker_does_not_stop_the_plan(cluster, tmp_path):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers need not import this file
    try:
        _kill_one_worker(cluster, tmp_path)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _kill_one_worker(cluster, tmp_path):
    (tmp_path / "markers").mkdir()
    jobs = [make_job("probe", {"i": i}, {"i": i, "sleep": 2.0, "marker_dir": str(tmp_path / "markers")}, probe)
            for i in range(4)]
    killed = {}

    def kill_first_started():
        while not killed:
            found = list((tmp_path / "markers").iterdir())
            if found:
                key, pid = found[0].name.split(".")
                killed.update(key=key, pid=int(pid))
                os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_started, daemon=True)
    killer.start()
    store = Store(tmp_path / "st")
    summary = run_jobs(jobs, store, scheduler=cluster.scheduler_address, progress=False)
    killer.join(timeout=30)
    records = {r["key"]: r for r in store.records()}
    assert summary.failed == [] and len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    assert records[killed["key"]]["pid"] != killed["pid"]          # rerun by another process
    assert no_partial_files(store) and all(json.loads(store.path(k).read_text()) for k in records)


def test_job_environment_sets_torch_and_blas_threads_and_restores_them():
    """A serial job in the client process runs with the plan's threads in torch and in the BLAS pools that the
    attacks' scikit-learn fits use, as a worker's job does; the caller's settings come back afterwards."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    from dsda.sweep.tasks import job_environment
    blas = lambda: {p["internal_api"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}  # noqa: E731
    np.dot(np.ones((2, 2)), np.ones((2, 2)))       # NumPy's BLAS is loaded
    torch.set_num_threads(2)
    outside = blas()
    with job_environment(1, seed=0):
        assert torch.get_num_threads() == 1 and blas() and set(blas().values()) == {1}
    assert torch.get_num_threads() == 2 and blas() == outside


# ----------------------------------------------------------------------------- how notebooks read a plan

def result_keys(plan) -> set:
    return {j.key for j in build_graph(load_plan(plan)) if j.kind == "result"}


def test_a_grid_built_in_code_has_the_keys_of_the_same_runs_in_a_plan_file():
    """A key depends on what determines the result, not on the plan holding the run: a notebook's own grid
    finds the runs a plan file already stored."""
    from dsda.sweep.plan import grid_plan
    pairs = [(m, [3]) for m in ("original", "retrain", "dsda", "neggrad")] + [("lau", [3, 8])]
    grid = grid_plan("a-notebook-grid", "smoke", pairs, seeds=[0, 1])
    assert grid.count() == 10 and result_keys(grid) < result_keys("smoke")
    with pytest.raises(PlanError, match="methods"):
        grid_plan("bad", "smoke", [("no_such_method", [3])], seeds=[0])


def test_ensure_reads_a_complete_committed_store_in_place(smoke_dask, tmp_path, monkeypatch):
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setattr(dsda.results, "committed_store", lambda plan: smoke_dask[0])
    df = dsda.results.ensure("smoke", serial=True, progress=False)
    assert len(df) == 24 and set(df.key) == result_keys("smoke")
    assert not (tmp_path / "results").exists()             # nothing ran, nothing was written


def test_ensure_copies_a_partial_committed_store_and_runs_only_the_rest(smoke_dask, tmp_path, monkeypatch, capsys):
    committed = Store(tmp_path / "committed")
    done = [r for r in smoke_dask[0].records() if r["kind"] == "result"][:20]
    for r in done:
        committed.write(r)
    monkeypatch.setenv("DSDA_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(dsda.results, "committed_store", lambda plan: committed)
    df = dsda.results.ensure("smoke", serial=True, progress=False)
    assert "4 result(s) to run" in capsys.readouterr().out
    assert len(df) == 24 and set(df.key) == result_keys("smoke") and len(committed.keys()) == 20  # source untouched
    fresh = {k: v for k, v in metrics_by_key(Store.for_plan("smoke")).items() if k not in {r["key"] for r in done}}
    assert fresh == {k: v for k, v in metrics_by_key(smoke_dask[0]).items() if k in fresh}   # the same numbers


def test_the_committed_cpu_quick_store_serves_notebook_06_on_cpu():
    """Notebook 06 on cpu reads plan cpu-quick: the plan holds every (method, task) of the notebook's grid, and the
    committed store holds every result of the plan, so nbval's run of the golden notebook starts no job."""
    from dsda.baselines import METHODS
    from dsda.profiles import get_profile
    from dsda.report import budget
    b, prof, plan = budget("06_main_results", "cpu"), get_profile("cpu"), load_plan("cpu-quick")
    assert b["plan"] == "cpu-quick"
    want = {(m, tuple(t)) for i, t in enumerate(b["single"]) for m in METHODS if i == 0 or m in b["all_tasks"]}
    want |= {(m, tuple(prof.multi_forget_classes)) for m in b["multi_methods"]}
    have = {(e.method, t) for e in plan.entries if e.label == e.method and set(prof.seeds) <= set(e.seeds)
            for t in e.tasks}
    assert want - have == set()
    store = dsda.results.committed_store("cpu-quick")
    assert dsda.results._missing(plan, store) == [], "run: python benchmarks/sweep_speed.py --keep-store"


def test_a_field_added_later_keeps_the_old_keys_at_its_old_value():
    """A config field added after stores were written leaves the keys of the runs it does not change as they were."""
    from dsda.sweep.jobs import job_key, without_added_later
    old = {"method": "dsda", "recipe": {"damo": {"lr": 1e-3}, "sampler": {"nfe": 40}}}
    same = {"method": "dsda", "recipe": {"damo": {"lr": 1e-3, "circle_features": "post_relu"},
                                         "sampler": {"nfe": 40, "target_energy": None}}}
    other = {"method": "dsda", "recipe": {"damo": {"lr": 1e-3, "circle_features": "pre_relu"}, "sampler": {"nfe": 40}}}
    assert job_key(without_added_later(same)) == job_key(old)
    assert job_key(without_added_later(other)) != job_key(old)
