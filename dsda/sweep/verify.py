"""`python -m dsda sweep verify PLAN --sample K`: rerun K random finished results and compare their metrics.

The reruns happen in this process, one after the other, each with the threads, seed and device its record
says (tasks.job_environment), with what it needs recomputed on the way (the shared synthetic set; models come
from the checkpoint directory). A stored metric must come back exactly, bit for bit: float equality, NaN equal
to NaN. The draw of the K records is seeded (`seed`), so an audit can be repeated. Nothing is written to the
store.
"""
from __future__ import annotations

import json
import math
import random
from typing import Any

from .engine import checkpoint_present, prepare, run_serial
from .jobs import closure


def same(a: Any, b: Any) -> bool:
    """Exact equality of metric values as the store keeps them (lists elementwise; NaN equals NaN)."""
    from .store import _number
    a, b = _number(a), _number(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def as_stored(obj: Any) -> Any:
    """What a value becomes in a record (JSON through dsda.utils.to_jsonable), so both sides compare alike."""
    from ..utils import to_jsonable
    return json.loads(json.dumps(to_jsonable(obj)))


def differences(stored: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(fresh))
    return [f"{k}: stored {stored.get(k)!r}, rerun {fresh.get(k)!r}" for k in keys
            if k not in stored or k not in fresh or not same(stored[k], fresh[k])]


def _rerun(graph: list, key: str) -> dict[str, Any]:
    """The result `key` recomputed in this process (with the jobs it needs), not stored."""
    got: dict[str, dict] = {}
    run_serial(closure(graph, [key], skip=checkpoint_present), lambda rec: got.__setitem__(rec["key"], rec))
    return got[key]


def machine_of(record: dict[str, Any]) -> str | None:
    """The machine kind a record was computed on, as its provenance names it: CPU model or GPU with torch
    threads, then torch's CPU capability (AVX2, AVX512, ...). Two CPUs of one name can differ in it: an AVX2 and
    an AVX-512 AMD EPYC run other vector kernels and give other last bits. Records written before provenance
    carried the capability give the name alone."""
    prov = record.get("provenance") or {}
    name, capability = prov.get("device_name"), prov.get("cpu_capability")
    return f"{name} {capability}" if name and capability else name


def same_kind(stored_on: str | None, rerun_on: str | None) -> bool | None:
    """True or False when the two kinds can be compared; None when the stored record names no CPU capability
    and its device name matches (the kind is then not known well enough to promise exactness, nor to excuse
    a mismatch)."""
    if stored_on == rerun_on:
        return True
    if stored_on and rerun_on and rerun_on.startswith(stored_on + " "):
        return None
    return False


def check_one(graph: list, stored: dict[str, Any]) -> dict[str, Any]:
    """One stored result rerun and compared: key, label, task, seed, ok, differences, and the machines of the
    stored run and of the rerun (`stored_on`, `rerun_on`; `same_machine`), since the bits of a CPU run depend
    on the kind of CPU (its vector kernels): exactness is promised on the machine kind that wrote the store."""
    row = {k: stored.get(k) for k in ("key", "label", "task", "seed")}
    row["stored_on"] = machine_of(stored)
    if stored["key"] not in {j.key for j in graph if j.kind == "result"}:
        return {**row, "rerun_on": None, "same_machine": None, "ok": False,
                "differences": ["not a job of the plan as it reads now (plan, recipe, config or version changed)"]}
    fresh = _rerun(graph, stored["key"])
    row["rerun_on"] = machine_of(fresh)
    row["same_machine"] = same_kind(row["stored_on"], row["rerun_on"])
    diff = [f"the rerun failed: {fresh.get('error')}"] if fresh["status"] != "ok" else \
        differences(stored.get("metrics") or {}, as_stored(fresh.get("metrics") or {}))
    return {**row, "ok": not diff, "differences": diff}


def machine_note(rows: list[dict]) -> str | None:
    """A line for the audit when some reruns ran on another kind of machine than their stored run, else None."""
    other = sorted({(r["stored_on"], r["rerun_on"]) for r in rows if r.get("same_machine") is False}, key=str)
    vague = sorted({(r["stored_on"], r["rerun_on"]) for r in rows
                    if r.get("same_machine") is None and r.get("rerun_on")}, key=str)
    lines = []
    if other:
        pairs = "; ".join(f"stored on {a}, rerun on {b}" for a, b in other)
        lines.append(f"{sum(r.get('same_machine') is False for r in rows)} rerun(s) ran on another machine than the "
                     f"stored run ({pairs}): CPU floats depend on the CPU's kernels, so exact equality is promised "
                     f"only on the machine kind that wrote the store; a mismatch there is not evidence of a wrong "
                     f"result")
    if vague:
        pairs = "; ".join(f"stored on {a}, rerun on {b}" for a, b in vague)
        lines.append(f"{len([r for r in rows if r.get('same_machine') is None and r.get('rerun_on')])} stored "
                     f"run(s) name no CPU capability ({pairs}): the same CPU name can hide other vector kernels, so "
                     f"whether exact equality is promised here is not known")
    return "\n".join(lines) or None


def verify(plan: Any, sample: int, seed: int = 0, store: str | None = None, progress: bool = True) -> list[dict]:
    """Rerun `sample` random ok results of the plan's store; one row per result (see `check_one`)."""
    from ..checks import check_positive
    check_positive("sample", sample)
    p, st, graph = prepare(plan, store)
    finished = sorted(r["key"] for r in st.records() if r["kind"] == "result" and r["status"] == "ok")
    if not finished:
        raise ValueError(f"plan {p.name!r}: the store {st.root} holds no finished result to verify")
    graphs = {p.threads: graph}          # a store made with --threads T: its jobs are the plan's at T threads
    rows = []
    for key in random.Random(seed).sample(finished, min(sample, len(finished))):
        stored = st.read(key)
        t = int(stored.get("threads") or p.threads)
        if t not in graphs:
            graphs[t] = prepare(p, store, threads=t)[2]
        rows.append(r := check_one(graphs[t], stored))
        if progress:
            where = "" if r["same_machine"] or r["rerun_on"] is None else \
                f" (stored on {r['stored_on']}, rerun on {r['rerun_on']})"
            print(f"[dsda] verify {key} {r['label']} forget {r['task']} seed {r['seed']}{where}: "
                  + ("metrics reproduced exactly" if r["ok"] else "MISMATCH\n    " + "\n    ".join(r["differences"])),
                  flush=True)
    return rows
