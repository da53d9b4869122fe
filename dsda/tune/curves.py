"""Learning curves of the baselines that learn slowly (GKT, ISPF), and their censored time to target (issue 17).

GKT and ISPF are not tuned: they run with their PUBLISHED settings (`get_method(name).config("paper")`, the
official code's values) on the tuning profile's original model, for at most `CAP_S` seconds of wall time
(`max_seconds`), storing the student every `SNAPSHOT_EVERY` student steps with the wall time it had then. Each
snapshot is evaluated afterwards (that time is not counted) on the VALIDATION split (dsda/tune/objective.py).

Time to target: the wall time of the first snapshot with A_f <= A_F_TARGET and A_r >= the oracle's A_r minus
A_R_MARGIN (validation split, same task and seed); a run that never gets there is CENSORED at the cap (its ET is
the cap and `censored` is true): the run says "not within 30 minutes", not "at 30 minutes".

Which runs: the first tuning task (one forget class: the paper's main setting) for each of the family's seeds,
`curve_tasks(family)`: at 30 minutes a run, the pair would double the time for a question (how fast do they
learn?) the single class answers; the full study runs these curves on its report classes.

    python -m dsda tune --curves gkt     one curve per (curve task, seed) not yet stored
    results/tuning/curves/<method>_<task>_seed<seed>.json

Runs set their threads and seeds like every trial (dsda.sweep.tasks.job_environment); the machine's load average
at the start and the end is stored with the curve, since wall time is what a curve measures.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any

from ..protocol import task_label, tuning_tasks
from .spaces import SEEDS, TUNING_PROFILE

CURVE_METHODS = ("gkt", "ispf")
CAP_S = {"cpu": 1800.0, "smoke": 4.0}            # the 30 minutes per run; seconds in the tests
SNAPSHOT_EVERY = {"cpu": {"gkt": 100, "ispf": 50}, "smoke": {"gkt": 5, "ispf": 5}}   # student steps
A_F_TARGET = 1.0       # percent: "forgotten" as in the protocol's target
A_R_MARGIN = 3.0       # points below the oracle's retain accuracy


def curve_tasks(family: str) -> tuple[tuple[int, ...], ...]:
    """The tasks a family's curves run on: its first tuning task (a single class)."""
    return tuning_tasks(TUNING_PROFILE[family])[:1]


def curve_path(method: str, task: tuple[int, ...], seed: int, root: str | Path | None = None) -> Path:
    from ..report import output_root
    return Path(root or output_root()) / "results" / "tuning" / "curves" / f"{method}_{task_label(task)}_seed{seed}.json"


def published_config(method: str, family: str) -> Any:
    """The method's published settings with the family's cap and snapshot interval (ValueError: not GKT/ISPF)."""
    from ..baselines import get_method
    if method not in CURVE_METHODS:
        raise ValueError(f"method={method!r} has no learning-curve run; allowed: {', '.join(CURVE_METHODS)}")
    cfg = get_method(method).config("paper")
    return dataclasses.replace(cfg, max_seconds=CAP_S[family], snapshot_every=SNAPSHOT_EVERY[family][method])


def time_to_target(points: list[dict[str, float]], oracle_a_r: float, cap_s: float) -> dict[str, Any]:
    """{'ET_s', 'censored', 'step'}: the first point meeting the target, or the cap (censored)."""
    for p in points:
        if p["wall_s"] <= cap_s and p["A_f"] <= A_F_TARGET and p["A_r"] >= oracle_a_r - A_R_MARGIN:
            return {"ET_s": p["wall_s"], "censored": False, "step": p["step"]}
    return {"ET_s": cap_s, "censored": True, "step": None}


def _points(original, report: dict, data, task) -> list[dict[str, float]]:
    """Validation metrics of every snapshot (a copy of the original's architecture with the student's weights)."""
    from .objective import validation_metrics
    student, out = copy.deepcopy(original), []
    for snap in report["snapshots"]:
        student.load_state_dict(snap["state_dict"])
        student.eval()
        out.append({"step": snap["step"], "wall_s": snap["wall_s"], **validation_metrics(student, data, task)})
    return out


def run_curve(method: str, task: tuple[int, ...], seed: int, family: str = "cpu", threads: int = 1) -> dict[str, Any]:
    """One capped run with snapshots, evaluated; the JSON-ready record (see the module docstring)."""
    from ..baselines import get_method
    from ..data import forbid_split
    from ..sweep.tasks import job_environment
    from ..train import original_model, retrain_model
    from .study import GUARD
    from ..utils import provenance, to_jsonable
    from .objective import load_validation, validation_metrics
    profile, cfg = TUNING_PROFILE[family], published_config(method, family)
    data = load_validation(profile)
    original = original_model(profile, seed=seed, progress=False).eval()
    oracle = validation_metrics(retrain_model(profile, list(task), seed=seed, progress=False), data, task)
    load_start = os.getloadavg()
    with forbid_split("test", GUARD), job_environment(threads, seed):
        student, report = get_method(method).run(copy.deepcopy(original), list(task), config=cfg, seed=seed)
        final = validation_metrics(student, data, task)
        points = _points(original, report, data, task)
    return to_jsonable({
        "method": method, "profile": profile, "task": task_label(task), "forget_classes": list(task), "seed": seed,
        "settings": "published (get_method(name).config('paper'))", "config": dataclasses.asdict(cfg),
        "cap_s": cfg.max_seconds, "threads": threads, "stop_reason": report["stop_reason"],
        "run_s": report["time_s"], "steps": report["steps"], "oracle": oracle, "final": final, "points": points,
        "target": {"A_f_max": A_F_TARGET, "A_r_min": oracle["A_r"] - A_R_MARGIN},
        "time_to_target": time_to_target(points, oracle["A_r"], cfg.max_seconds),
        "loadavg": {"start": list(load_start), "end": list(os.getloadavg())}, "provenance": provenance("cpu")})


def write_text(path: Path, text: str) -> None:
    """Atomically: a temporary file beside `path`, then rename (a killed run leaves no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, record: dict[str, Any]) -> None:
    import json
    write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def run_curves(method: str, family: str = "cpu", threads: int = 1, root: str | Path | None = None) -> list[Path]:
    """Every (curve task, seed) curve of `method` not stored yet; returns the paths of all of them."""
    published_config(method, family)          # a bad method fails before any work
    paths = []
    for seed in SEEDS[family]:
        for task in curve_tasks(family):
            path = curve_path(method, task, seed, root)
            if not path.is_file():
                record = run_curve(method, task, seed, family, threads)
                write_json(path, record)
                tt = record["time_to_target"]
                print(f"[dsda] {method} forget {record['task']} seed {seed}: "
                      + (f"target reached at {tt['ET_s']:.0f} s" if not tt["censored"] else
                         f"target not reached within {record['cap_s']:.0f} s (censored)"), flush=True)
            paths.append(path)
    return paths
