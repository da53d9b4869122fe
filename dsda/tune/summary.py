"""The tuning round as a table the code writes: every cpu study and every learning curve, from their storage.

    python -m dsda tune --summary      writes results/tuning/SUMMARY.md (tests/test_tune_registry.py checks that
                                       the committed file is what the committed storage gives)

One row per study: the variant, its state and trial count, the best trial, its objective (mean absolute gap to
the retrained oracle on the validation split of the tuning tasks, in points), its values and the recipe or
setting it registers; then one row per GKT / ISPF curve: stop reason, time to target or "censored", the last
kept student's validation metrics next to the oracle's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..protocol import task_label, tuning_tasks
from .spaces import SAMPLER_SEED, STARTUP_TRIALS, STUDIES, TRIALS, TUNING_PROFILE


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trial_seconds(name: str, root: str | Path | None = None) -> float:
    """Wall time of the study's finished trials together (each trial's `wall_s`; 0 without storage)."""
    from .study import done_trials, open_study, storage_path
    if not storage_path(name, root).is_file():
        return 0.0
    return sum(t.user_attrs.get("wall_s", 0.0) for t in done_trials(open_study(STUDIES[name], root, create=False)))


def study_rows(root: str | Path | None = None) -> list[str]:
    from .registry import status
    rows = ["| study | variant | trials | best trial | objective (points) | tuned values | registers | trials' time (s) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, spec in STUDIES.items():
        if spec.family != "cpu":
            continue
        st = status(name, root)
        best = st["best"] or {"trial": "", "value": None, "params": {}}
        gap = "" if best["value"] is None else f"{best['value']:.3f}"
        values = ", ".join(f"{k}={_value(v)}" for k, v in best["params"].items())
        rows.append(f"| `{name}` | {spec.title} | {st['trials']}/{st['budget']} ({st['state']}) | {best['trial']} | "
                    f"{gap} | {values} | `{spec.registers}` | {trial_seconds(name, root):.0f} |")
    return rows


def curve_rows(root: str | Path | None = None) -> list[str]:
    from ..report import output_root
    rows = ["| curve | stop | run (s) | time to target | last kept: A_f / A_r / MIA | oracle: A_f / A_r / MIA |",
            "|---|---|---|---|---|---|"]
    for path in sorted((Path(root or output_root()) / "results" / "tuning" / "curves").glob("*.json")):
        r = json.loads(path.read_text())
        tt, last, o = r["time_to_target"], (r["points"] or [r["final"]])[-1], r["oracle"]
        when = f"censored at {r['cap_s']:.0f} s" if tt["censored"] else f"{tt['ET_s']:.0f} s (step {tt['step']})"
        rows.append(f"| {r['method']} forget {r['task']} seed {r['seed']} | {r['stop_reason']} | {r['run_s']:.0f} | "
                    f"{when} | {last['A_f']:.1f} / {last['A_r']:.1f} / {last['MIA']:.1f} | "
                    f"{o['A_f']:.1f} / {o['A_r']:.1f} / {o['MIA']:.1f} |")
    return rows


def summary(root: str | Path | None = None) -> str:
    tasks = ", ".join(task_label(t) for t in tuning_tasks(TUNING_PROFILE["cpu"]))
    head = [
        "# The tuning round (written by `python -m dsda tune --summary`; do not edit)", "",
        f"Every cpu study: Optuna, TPESampler(seed={SAMPLER_SEED}, n_startup_trials={STARTUP_TRIALS}; a resumed "
        f"study's seed is offset by its stored trials), {TRIALS['cpu']} distinct points (trials), profile "
        f"`{TUNING_PROFILE['cpu']}`, validation split, tuning tasks {tasks}; "
        "objective = mean absolute gap to the retrained oracle over A_f, A_r, A_all and MIA (docs/PROTOCOL.md, 3). "
        "Storage: `results/tuning/<study>.sqlite3`. Trials' time: the sum of the trials' wall times (one thread "
        "each, two studies side by side on 2 cores; without each study's one-off loading and synthesis; it includes "
        "repeated points, which do not count as trials).", ""]
    curves = ["", "GKT and ISPF with their published settings, capped at 30 minutes; time to target = first kept "
              "student with A_f <= 1 % and A_r >= the oracle's minus 3 points, validation split "
              "(docs/PROTOCOL.md, 3b). Storage: `results/tuning/curves/`.", ""]
    return "\n".join(head + study_rows(root) + curves + curve_rows(root)) + "\n"


def write_summary(root: str | Path | None = None) -> Path:
    from ..report import output_root
    from .curves import write_text
    path = Path(root or output_root()) / "results" / "tuning" / "SUMMARY.md"
    write_text(path, summary(root))
    return path
