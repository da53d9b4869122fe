"""Tuning evidence as data: the studies that chose the registered cpu settings, and their rendering.

A study (a JSON spec in benchmarks/studies/) names its tasks (lists of forget classes), its variants (each
a name and the settings it changes) and which variant was chosen and the recipe it became.
benchmarks/tune_damo.py and benchmarks/tune_baselines.py run it and write results/tuning/<name>.json
(atomically, at the end; `<name>.json.partial` holds the progress after every variant, so a complete
earlier record survives a re-run that stops) with every variant's scores per task on the validation split
below, the fixed settings, the command line, versions and commit. `render` turns those files into
docs/TUNING.md (`python benchmarks/render_tuning.py`; a test checks the committed page is the rendering).
A variant may carry `old`: the numbers a comment table in the code once quoted for it, so the page shows
re-run and old side by side, and `differences` lists where they disagree beyond the precision quoted.

A spec (checked by `check_spec` before any work):

    {"name": "cpu_default", "title": ..., "purpose": ..., "method": "ssd" (tune_baselines.py only),
     "tasks": [[7], [3, 5]],
     "variants": [{"name": "C", "settings": {"lr": 1e-3, ...}, "tasks": [[7]] (default: all),
                   "old": {"7": {"val_A_f": 0.0, "val_A_r": 93.1, "steps": 70}}}, ...],
     "chosen": {"variant": "C", "recipe": "CPU_CANDIDATE ...", "why": ...},
     "note": ..., "old_source": ..., "original_old": {"7": {...}},
     "reference": "retrain" (tune_damo.py only: also score each variant against the shipped retrained model
                  of each task on the same validation images, `distance_scores`)}
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .report import markdown_table, output_root, project_root
from .utils import atomic_write_json, provenance

# The only data any tuning study reads: images the original model was trained on, never the test split.
VALIDATION = {"dataset": "fashion_mnist", "split": "train", "size": 6000, "seed": 123,
              "description": "a seeded 6,000-image subset of the TRAIN split (the original model's training "
                             "images), seed 123 (torch.randperm with a Generator seeded 123, first 6,000); "
                             "never the test split"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
SPEC_KEYS = {"name", "title", "purpose", "method", "tasks", "variants", "chosen", "note", "old_source", "reference",
             "original_old"}
VARIANT_KEYS = {"name", "settings", "tasks", "old"}


def validation_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of VALIDATION (loads the train split; call it from a tuning script, never from a method)."""
    from .data import load_dataset
    train = load_dataset(VALIDATION["dataset"], VALIDATION["split"])
    gen = torch.Generator().manual_seed(VALIDATION["seed"])
    idx = torch.randperm(len(train.y), generator=gen)[:VALIDATION["size"]]
    return train.x[idx], train.y[idx]


def scores(pred: torch.Tensor, y: torch.Tensor, forget: list[int]) -> dict[str, float]:
    """Validation accuracy (%) on the forget-class images (A_f) and on the retain-class ones (A_r)."""
    is_f = torch.isin(y, torch.tensor(forget))
    acc = lambda m: round((pred[m] == y[m]).float().mean().item() * 100, 2)  # noqa: E731
    return {"val_A_f": acc(is_f), "val_A_r": acc(~is_f)}


def ks_statistic(a: Any, b: Any) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_t |F_a(t) - F_b(t)| of two 1-D samples (empirical CDFs)."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("ks_statistic needs two non-empty samples")
    grid = np.concatenate([a, b])
    fa, fb = np.searchsorted(a, grid, side="right") / a.size, np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def distance_scores(p: torch.Tensor, p_ref: torch.Tensor, y: torch.Tensor, forget: list[int]) -> dict[str, float]:
    """How close a variant's outputs `p` come to the retrained model's `p_ref` on the validation images (rows
    of both = the same images, labels `y`): on the forget-class images the median entropy (nats), the KS
    statistic between the two entropy distributions (it bounds the gap of any entropy-threshold attack run
    at one threshold, e.g. the MIA's), the mean JS divergence of the outputs and of the predicted-class
    distributions (dsda.distance); on the retain-class images the mean JS divergence."""
    from .attacks import entropy
    from .distance import mean_js, prediction_distribution
    is_f = torch.isin(y, torch.tensor(forget))
    pf, pf_ref = p[is_f].double(), p_ref[is_f].double()
    h, h_ref = entropy(pf), entropy(pf_ref)
    r = lambda v: round(float(v), 4)  # noqa: E731
    return {"val_H_forget": r(np.median(h)), "val_KS_H": r(ks_statistic(h, h_ref)),
            "val_JS_forget": r(mean_js(pf, pf_ref)),
            "val_JS_pred": r(mean_js([prediction_distribution(pf)], [prediction_distribution(pf_ref)])),
            "val_JS_retain": r(mean_js(p[~is_f].double(), p_ref[~is_f].double()))}


def task_label(task: list[int]) -> str:
    return "+".join(map(str, task))


def settings_label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)"


# ----------------------------------------------------------------------------- study specs

def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"study name must match {NAME_RE.pattern} (it names results/tuning/<name>.json), "
                         f"got {name!r}")
    return name


def check_tasks(tasks: Any, num_classes: int = 10) -> list[list[int]]:
    """A non-empty list of tasks, each a sorted list of distinct class ids in 0..num_classes-1."""
    ok = isinstance(tasks, list) and tasks and all(
        isinstance(t, list) and t and len(set(t)) == len(t) < num_classes
        and all(type(c) is int and 0 <= c < num_classes for c in t) for t in tasks)
    if not ok:
        raise ValueError(f"tasks must be a non-empty list of lists of distinct class ids in 0..{num_classes - 1} "
                         f"(e.g. [[7], [3, 5]]), got {tasks!r}")
    return [sorted(t) for t in tasks]


def _check_variant(v: Any, tasks: list[list[int]]) -> dict[str, Any]:
    if not isinstance(v, dict) or set(v) - VARIANT_KEYS or not isinstance(v.get("name"), str) \
            or not isinstance(v.get("settings"), dict):
        raise ValueError(f"each variant must be {{'name': str, 'settings': dict[, 'tasks', 'old']}}, got {v!r}")
    own = check_tasks(v["tasks"]) if "tasks" in v else tasks
    if any(t not in tasks for t in own):
        raise ValueError(f"variant {v['name']!r}: tasks {own} must be among the study's tasks {tasks}")
    labels = {task_label(t) for t in own}
    if set(v.get("old", {})) - labels:
        raise ValueError(f"variant {v['name']!r}: old numbers for {sorted(set(v['old']) - labels)}, "
                         f"which are not among its tasks {sorted(labels)}")
    return {**v, "tasks": own}


def check_spec(spec: Any) -> dict[str, Any]:
    """The study spec, checked before any work: name, tasks, uniquely named variants, `chosen` among them."""
    if not isinstance(spec, dict) or set(spec) - SPEC_KEYS or not {"name", "tasks", "variants"} <= set(spec):
        raise ValueError(f"a study spec is a dict with keys name, tasks, variants (optional: "
                         f"{', '.join(sorted(SPEC_KEYS - {'name', 'tasks', 'variants'}))}), got {spec!r:.200}")
    check_name(spec["name"])
    tasks = check_tasks(spec["tasks"])
    if not isinstance(spec["variants"], list):
        raise ValueError(f"variants must be a list, got {spec['variants']!r:.200}")
    variants = [_check_variant(v, tasks) for v in spec["variants"]]
    names = [v["name"] for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    chosen = spec.get("chosen")
    if chosen is not None and (not isinstance(chosen, dict) or chosen.get("variant") not in names
                               or not isinstance(chosen.get("recipe"), str)):
        raise ValueError(f"chosen must be {{'variant': one of {names}, 'recipe': str[, 'why': str]}}, got {chosen!r}")
    return {**spec, "tasks": tasks, "variants": variants}


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    return check_spec(json.loads(Path(path).read_text()))


def parse_cli(argv: list[str]) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """A tuning script's command line: (spec of `--study FILE` or None, `--name NAME` or None, other arguments).

    `--name` renames a study file's study, or names (and so saves) a positional one-off run.
    """
    args, name = list(argv), None
    if "--name" in args:
        i = args.index("--name")
        name, args = (args[i + 1] if i + 1 < len(args) else None), args[:i] + args[i + 2:]
        check_name(name)
    if args[:1] != ["--study"]:
        return None, name, args
    if len(args) != 2:
        raise ValueError(f"--study takes one study file and no other argument (but --name), got {args[1:]}")
    spec = load_spec(args[1])
    return check_spec({**spec, "name": name or spec["name"]}), name, []


# ----------------------------------------------------------------------------- records

def record_path(name: str) -> Path:
    return output_root() / "results" / "tuning" / f"{check_name(name)}.json"


def command_line() -> str:
    """How the running script was called, with its path relative to the project root where it lies inside."""
    script = Path(sys.argv[0]).resolve()
    with_root = script.is_relative_to(project_root())
    argv = [str(script.relative_to(project_root())) if with_root else sys.argv[0], *sys.argv[1:]]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def new_record(spec: dict[str, Any], script: str, fixed: dict[str, Any]) -> dict[str, Any]:
    """The record a study fills in: everything but the scores, which `add_variant` appends."""
    keep = ("title", "purpose", "method", "note", "old_source", "original_old", "reference")
    return {"study": spec["name"], "script": script, "command": command_line(),
            **{k: spec[k] for k in keep if k in spec}, "split": VALIDATION, "tasks": spec["tasks"],
            "fixed": fixed, "threads": torch.get_num_threads(),
            "environment": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)},
            "original": [], "synthesis": [], "variants": [], "chosen": spec.get("chosen"),
            "complete": False, "provenance": provenance("cpu"), "started": time.time()}


def add_variant(record: dict[str, Any], variant: dict[str, Any], config: dict[str, Any],
                results: list[dict[str, Any]], path: Path, **extra: Any) -> None:
    """Append one variant's scores (with the old numbers beside them) and rewrite the file; `extra`: more
    keys of the variant's record (tune_damo.py: the `sampler_config` its set was made with)."""
    old = variant.get("old", {})
    rows = [{**r, **({"old": old[task_label(r["task"])]} if task_label(r["task"]) in old else {})} for r in results]
    record["variants"].append({"name": variant["name"], "settings": variant["settings"], "config": config,
                               **extra, "results": rows})
    atomic_write_json(partial_path(path), record)


def record_choice(spec: dict[str, Any]) -> Path:
    """Write the spec's `chosen` into its complete record, for a study whose rule picks the variant from the
    scores (the rule is in its purpose): the scores stay as the run wrote them, `chosen_after_run` says when
    and by which command the choice was added."""
    spec = check_spec(spec)
    path = record_path(spec["name"])
    record = json.loads(path.read_text())
    if not record.get("complete") or [v["name"] for v in record["variants"]] != [v["name"] for v in spec["variants"]]:
        raise ValueError(f"{path} is not a complete record of the study {spec['name']!r}: run the study first")
    if not spec.get("chosen"):
        raise ValueError(f"the spec of {spec['name']!r} names no chosen variant")
    record["chosen"] = spec["chosen"]
    record["chosen_after_run"] = {"command": command_line(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(path, record)
    return path


def partial_path(path: Path) -> Path:
    """Where a running study keeps its progress, so an earlier complete record at `path` survives until the end."""
    return path.with_name(path.name + ".partial")


def finish(record: dict[str, Any], path: Path) -> None:
    record["wall_s"] = round(time.time() - record.pop("started"), 1)
    record["complete"] = True
    atomic_write_json(path, record)
    partial_path(path).unlink(missing_ok=True)
    print(f"wrote {path}", flush=True)


def quoted_unit(x: float | int) -> float:
    """One unit of the last digit a number was quoted with: 88.8 -> 0.1, 0.08 -> 0.01, 50 -> 1."""
    text = repr(x)
    return 10.0 ** -len(text.split(".")[1]) if "." in text and "e" not in text else 1.0


def differences(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (variant, task, quantity) where the re-run and the old comment's number differ by more than one
    unit of the digit the comment quoted (it rounded or cut the script's two decimals to one)."""
    out = []
    for v in record["variants"]:
        for r in v["results"]:
            for key in ("val_A_f", "val_A_r", "steps"):
                old, new = r.get("old", {}).get(key), r.get(key)
                if old is not None and new is not None and abs(new - old) > quoted_unit(old) + 1e-9:
                    out.append({"variant": v["name"], "task": r["task"], "quantity": key, "old": old, "new": new})
    return out


def load_records(folder: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]


# ----------------------------------------------------------------------------- docs/TUNING.md

HEADER = """# Tuning evidence

Generated by `python benchmarks/render_tuning.py` from `results/tuning/*.json` (do not edit by hand; a test
checks that this page is the rendering of the committed files). Each study was run by the script and command
shown; every number below was written by that code. A cell reads `A_f / A_r` (validation accuracy in % on the
forget-class / retain-class images of the split), then in brackets the DAMO steps (with `max` where the
stopping rule never fired), the method's seconds, where a variant made its own synthetic set the seconds of
that set and the mean NFE per sample it spent, and, where the stopping rule read a held-out synthetic check
set, its mean forget-class probability p(C_f | x) at the last check. In a study scored against the retrained model
(`reference`), a cell adds the median entropy H (nats) of the outputs on the forget-class images, the KS statistic
between its entropies and the retrained model's there, and the mean JS divergence (nats) of the two models' outputs
there (dsda.tuning.distance_scores). `old:` is what the comment table in the code quoted
for that cell before these files existed (measured at an older commit); where the two differ by more than
one unit of the digit the comment quoted, the study's differences line says by how much.
"""


def _fmt(r: dict[str, Any]) -> str:
    extra = [str(r["steps"]) + ("" if r.get("stop") in (None, "forgotten") else " max")] if "steps" in r else []
    secs = r.get("s_damo", r.get("ET_s"))
    extra += [f"{secs:.0f} s"] if secs is not None else []
    extra += [f"H {r['val_H_forget']:.2f}"] if "val_H_forget" in r else []
    extra += [f"KS {r['val_KS_H']:.3f}", f"JS {r['val_JS_forget']:.3f}"] if "val_KS_H" in r else []
    extra += [f"synthesis {r['s_synth']:.0f} s, NFE {r['nfe_spent']:.1f}"] if "nfe_spent" in r else []
    held_out = r.get("check", {}).get("check_forget_prob")
    extra += [f"held-out p {held_out:.3f}"] if held_out is not None else []
    return f"{r['val_A_f']:.2f} / {r['val_A_r']:.2f}" + (f" ({'; '.join(extra)})" if extra else "")


def _fmt_old(old: dict[str, Any]) -> str:
    steps = f" ({old['steps']})" if old.get("steps") is not None else ""
    value = lambda key: "?" if old.get(key) is None else old[key]  # noqa: E731  (the comment did not say)
    return f"old: {value('val_A_f')} / {value('val_A_r')}{steps}"


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    return _fmt(r) + (f"<br>{_fmt_old(r['old'])}" if "old" in r else "")


def _rows(rec: dict[str, Any]) -> list[dict[str, str]]:
    labels = [task_label(t) for t in rec["tasks"]]
    olds = rec.get("original_old", {})
    orig = {task_label(r["task"]): {**r, **({"old": olds[task_label(r["task"])]} if task_label(r["task"]) in olds
                                            else {})} for r in rec["original"]}
    rows = [{"variant": "original model", "settings": "", **{f"task {t}": _cell(orig.get(t)) for t in labels}}]
    if rec.get("reference_scores"):
        ref = {task_label(r["task"]): r for r in rec["reference_scores"]}
        rows.append({"variant": "retrained model", "settings": "", **{f"task {t}": _cell(ref.get(t)) for t in labels}})
    chosen = (rec.get("chosen") or {}).get("variant")
    for v in rec["variants"]:
        by_task = {task_label(r["task"]): r for r in v["results"]}
        name = f"**{v['name']}** (chosen)" if v["name"] == chosen else v["name"]
        rows.append({"variant": name, "settings": f"`{settings_label(v['settings'])}`",
                     **{f"task {t}": _cell(by_task.get(t)) for t in labels}})
    return rows


def _facts(rec: dict[str, Any]) -> list[str]:
    prov = rec["provenance"]
    v = prov["versions"]
    return [f"- script: `{rec['command']}` ({rec['threads']} thread(s), {rec['wall_s']:.0f} s in all)",
            f"- split: {rec['split']['description']}",
            f"- tasks (forget classes): {', '.join(task_label(t) for t in rec['tasks'])}",
            f"- fixed: {', '.join(f'{k} `{json.dumps(v)}`' for k, v in sorted(rec['fixed'].items()))}",
            f"- commit `{prov['git_commit']}`, {prov['timestamp']}; torch {v['torch']}, python {v['python']}, "
            f"numpy {v['numpy']}; {prov['device_name']}"]


def _differences(rec: dict[str, Any]) -> str:
    if not any("old" in r for v in rec["variants"] for r in v["results"]):
        return ""
    found = differences(rec)
    if not found:
        return ("Re-run against the old comment: no differences beyond the precision it quoted "
                "(one unit of its last digit; the same steps).")
    items = [f"{d['variant']} on {task_label(d['task'])}: {d['quantity']} {d['old']} -> {d['new']}" for d in found]
    return "Re-run against the old comment, differences: " + "; ".join(items) + "."


def render_study(rec: dict[str, Any]) -> str:
    chosen = rec.get("chosen")
    parts = [f"## `{rec['study']}`: {rec.get('title', '')}".rstrip(": "), rec.get("purpose", ""),
             "\n".join(_facts(rec)), markdown_table(_rows(rec))]
    if chosen:
        why = chosen.get("why", "")
        parts.append(f"Chosen: **{chosen['variant']}**, registered as {chosen['recipe']}. {why[:1].upper()}{why[1:]}")
        after = rec.get("chosen_after_run")
        if after:   # early records say only True; later ones say by which command
            how = f" (`{after['command']}`)" if isinstance(after, dict) else ""
            parts.append(f"The choice was written into the record after the run, by the rule the purpose states"
                         f"{how}; the scores are the run's.")
    parts += [rec.get("note", ""), _differences(rec)]
    return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def render(records: list[dict[str, Any]]) -> str:
    incomplete = [r["study"] for r in records if not r.get("complete")]
    if incomplete:
        raise ValueError(f"tuning record(s) {incomplete} are incomplete (the study stopped early); re-run them")
    return "\n".join([HEADER, *[render_study(r) for r in records]])
