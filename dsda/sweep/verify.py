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


def verify(plan: Any, sample: int, seed: int = 0, store: str | None = None, progress: bool = True) -> list[dict]:
    """Rerun `sample` random ok results of the plan's store; one row per result: key, label, ok, differences."""
    from ..checks import check_positive
    check_positive("sample", sample)
    p, st, graph = prepare(plan, store)
    by_key = {j.key: j for j in graph if j.kind == "result"}
    finished = sorted(r["key"] for r in st.records() if r["kind"] == "result" and r["status"] == "ok")
    if not finished:
        raise ValueError(f"plan {p.name!r}: the store {st.root} holds no finished result to verify")
    picked = random.Random(seed).sample(finished, min(sample, len(finished)))
    rows = []
    for key in picked:
        stored = st.read(key)
        if key not in by_key:
            rows.append({"key": key, "label": stored.get("label"), "ok": False,
                         "differences": ["not a job of the plan as it reads now (plan, recipe or version changed)"]})
            continue
        fresh = _rerun(graph, key)
        diff = differences(stored.get("metrics") or {}, as_stored(fresh.get("metrics") or {})) if fresh["status"] == "ok" \
            else [f"the rerun failed: {fresh.get('error')}"]
        rows.append({"key": key, "label": stored.get("label"), "task": stored.get("task"),
                     "seed": stored.get("seed"), "ok": not diff, "differences": diff})
        if progress:
            r = rows[-1]
            print(f"[dsda] verify {key} {r['label']} forget {r['task']} seed {r['seed']}: "
                  + ("metrics reproduced exactly" if r["ok"] else "MISMATCH\n    " + "\n    ".join(diff)), flush=True)
    return rows
