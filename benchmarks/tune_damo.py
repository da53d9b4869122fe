"""How the cpu settings of DAMO were chosen: a study of DAMO variants on one synthetic set, scored on validation.

    python benchmarks/tune_damo.py --study benchmarks/studies/cpu_default.json    # writes results/tuning/cpu_default.json
    python benchmarks/tune_damo.py '[3]' '[{}, {"disc": false}, {"disc": false, "lr": 5e-5, "patience": 1}]'
    python benchmarks/tune_damo.py '[3, 5]' '[{"disc": false, "lr": 5e-5, "patience": 1, "forget_bound": 2.0}]' 64
    python benchmarks/tune_damo.py '[7]' '[{"disc": false, "lr": 5e-5}]' 64 --trace
    python benchmarks/tune_damo.py '[7]' '[{"disc": false, "lr": 1e-3}]' --name my_try   # also writes my_try.json
    python benchmarks/tune_damo.py '[3]' '[{"forget_loss": "kd_retain"}]' --reference      # also vs the retrained model
    python benchmarks/tune_damo.py --choose benchmarks/studies/cpu_retrain_like.json     # the spec's choice -> record

One AEGDS set (n_per_class images of every class, nfe 40, seed 0) from the cpu original model, then DAMO with
each variant (DamoConfig fields, over DamoConfig's defaults) on a copy, for every task (list of forget classes)
the variant names. A variant may name `n_per_class` (a separate AEGDS set, seed 0; its synthesis time is
`s_extra_synth`). The held-out synthetic check set (`n_check_per_class`) was removed from DAMO when the core
was restructured (issue 12: no recipe used it); the study `cpu_heldout` that measured it is kept as a record
(results/tuning/cpu_heldout.json, written at the commit it names) and can no longer be re-run. Scored on
dsda.tuning.VALIDATION: a seeded 6,000-image subset of the TRAIN split, never the test split. A spec with
`"reference": "retrain"` (or `--reference` on the positional form) also scores every variant against the shipped
retrained model of its task on the same images (dsda.tuning.distance_scores: entropy, KS, JS on the forget-class
images); the retrained models' own scores go to the record's `reference_scores`.

A study spec (see dsda/tuning.py) names the tasks, the variants and the chosen one; the positional form is one
task and unnamed variants, and writes a file only with `--name`. Prints one JSON line per variant and task;
`<name>.json.partial` holds the progress after every variant. TUNE_DAMO_CACHE=DIR caches the synthetic sets there (their recorded
synthesis time is reused). `--trace` adds the validation (A_f, A_r) at every check (time excluded).
Run with OMP_NUM_THREADS=1 on the shared 2-core machine.
"""
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda import tuning  # noqa: E402
from dsda.damo import DamoConfig, damo  # noqa: E402
from dsda.sampler import make_config  # noqa: E402

NFE, SEED = 40, 0
SET_FIELDS = ("n_per_class",)   # variant keys that are not DamoConfig fields
UNUSED_CONFIG = ("device", "progress")              # DamoConfig fields that do not change what DAMO computes


def parse(argv):
    """(spec, n_per_class, trace, save) from the command line; errors before any work."""
    trace, reference = "--trace" in argv, "--reference" in argv
    spec, name, args = tuning.parse_cli([a for a in argv if a not in ("--trace", "--reference")])
    if spec is not None:
        return spec, 64, trace, True
    if len(args) not in (2, 3):
        raise SystemExit(__doc__)
    variants = [{"name": tuning.settings_label(v), "settings": v} for v in json.loads(args[1])]
    spec = tuning.check_spec({"name": name or "adhoc", "tasks": [json.loads(args[0])], "variants": variants,
                              **({"reference": "retrain"} if reference else {})})
    return spec, int(args[2]) if len(args) > 2 else 64, trace, name is not None


def damo_config(settings):
    """The full DamoConfig a variant runs with (JSON-ready, minus fields that change nothing computed)."""
    if "n_check_per_class" in settings:
        raise ValueError("variant setting n_check_per_class: the held-out check set was removed from DAMO (issue 12); "
                         "its study is kept as a record, results/tuning/cpu_heldout.json")
    n = settings.get("n_per_class", 2)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"variant setting n_per_class must be an integer >= 2, got {n!r}")
    cfg = dataclasses.asdict(DamoConfig(**{k: v for k, v in settings.items() if k not in SET_FIELDS}))
    return {k: v for k, v in cfg.items() if k not in UNUSED_CONFIG}


def synthesiser(orig, record):
    """synth(classes, n, seed) -> (x, y, seconds), each set made once (or read from TUNE_DAMO_CACHE)."""
    sets = {}
    root = Path(os.environ["TUNE_DAMO_CACHE"]) if os.environ.get("TUNE_DAMO_CACHE") else None

    def synth(classes, n, seed):
        key = (tuple(classes), n, seed)
        if key in sets:
            return sets[key]
        cache = root / f"{'-'.join(map(str, key[0]))}_{n}_{seed}.pt" if root is not None else None
        cached = cache is not None and cache.exists()
        if cached:
            sets[key] = tuple(torch.load(cache, weights_only=True))   # tensors and a float: no pickle needed
        else:
            t = time.perf_counter()
            x, y, _ = dsda.synthesize(orig, list(classes), n, sampler="aegds", nfe=NFE, seed=seed)
            sets[key] = (x, y, time.perf_counter() - t)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(sets[key], cache)
        record["synthesis"].append({"classes": list(classes), "n_per_class": n, "seed": seed,
                                    "s": round(sets[key][2], 1), "cached": cached})
        print("synthesis", key, round(sets[key][2], 1), flush=True)
        return sets[key]
    return synth


def scorer(vx, vy, oracles=None):
    """acc(model, forget) -> validation scores; with `oracles` (task label -> retrained model) also the distance
    to the task's retrained model on the same images (tuning.distance_scores)."""
    def probs(m):
        with torch.no_grad():
            return torch.cat([torch.softmax(m(vx[i:i + 2000]), 1) for i in range(0, len(vx), 2000)])

    def acc(m, forget):
        p = probs(m)
        out = tuning.scores(p.argmax(1), vy, forget)
        if oracles:
            out.update(tuning.distance_scores(p, probs(oracles[tuning.task_label(forget)]), vy, forget))
        return out
    return acc


def load_oracles(spec):
    """Task label -> the shipped retrained model of that task (cpu, seed 0), for a spec with a reference."""
    if spec.get("reference") is None:
        return None
    if spec["reference"] != "retrain":
        raise ValueError(f"reference must be 'retrain' (or absent), got {spec['reference']!r}")
    return {tuning.task_label(t): dsda.retrain_model("cpu", t, progress=False).eval() for t in spec["tasks"]}


def run_one(orig, synth, acc, settings, forget, n_per_class, trace):
    """One variant on one task: DAMO on a copy of the original; its validation scores and DAMO's report."""
    v = dict(settings)
    npc = v.pop("n_per_class", n_per_class)
    x, y, t_syn = synth(range(orig.num_classes), npc, SEED)
    t_extra = 0.0 if npc == n_per_class else t_syn
    is_f = torch.isin(y, torch.tensor(forget))
    m = copy.deepcopy(orig)
    cb = (lambda step, model: [round(a, 2) for a in acc(model, forget).values()]) if trace else None
    rep = damo(m, x[~is_f], y[~is_f], x[is_f], y[is_f], seed=SEED, callback=cb, **v)
    last = rep["checks"][-1] if rep["checks"] else {}
    out = {"task": forget, **acc(m, forget), "steps": rep["steps"], "stop": rep["stop_reason"],
           "s_damo": round(rep["time_s"], 1), "s_extra_synth": round(t_extra, 1),
           "check": {k: round(val, 3) for k, val in last.items() if k in ("forget_rate", "check_forget_rate",
                                                                          "check_forget_prob", "forget_prob")},
           "conflict": round(rep["conflict_rate"], 2)}
    if rep.get("forget_temperature") is not None:   # forget_loss "kd_retain": the target's temperature
        out["forget_temperature"] = round(rep["forget_temperature"], 4)
    if trace:
        out["trace"] = [(c["step"], c["forget_rate"], c["callback"]) for c in rep["checks"]]
    return out


def fixed_settings(n_per_class):
    return {"model": "dsda.original_model('cpu') (seed 0), eval mode", "n_per_class": n_per_class,
            "nfe": NFE, "synthesis_seed": SEED, "damo_seed": SEED,
            "damo_base": "DamoConfig defaults; a variant's settings replace fields",
            "sampler_config": {k: v for k, v in dataclasses.asdict(make_config(None, sampler="aegds", nfe=NFE))
                               .items() if k not in UNUSED_CONFIG}}


def main(spec, n_per_class=64, trace=False, save=True):
    configs = [damo_config(v["settings"]) for v in spec["variants"]]   # bad settings fail before any work
    path = tuning.record_path(spec["name"]) if save else None
    orig = dsda.original_model("cpu", progress=False).eval()
    record = tuning.new_record(spec, "benchmarks/tune_damo.py", fixed_settings(n_per_class))
    synth = synthesiser(orig, record)
    synth(range(orig.num_classes), n_per_class, SEED)
    vx, vy = tuning.validation_split()
    oracles = load_oracles(spec)
    acc = scorer(vx, vy, oracles)
    record["original"] = [{"task": t, **acc(orig, t)} for t in spec["tasks"]]
    print("original val", json.dumps(record["original"]), flush=True)
    if oracles:
        record["reference_scores"] = [{"task": t, **acc(oracles[tuning.task_label(t)], t)} for t in spec["tasks"]]
        print("retrained val", json.dumps(record["reference_scores"]), flush=True)
    for v, cfg in zip(spec["variants"], configs):
        results = []
        for task in v["tasks"]:
            results.append(run_one(orig, synth, acc, v["settings"], task, n_per_class, trace))
            print(json.dumps({"variant": v["name"], "v": v["settings"], **results[-1]}), flush=True)
        if save:
            tuning.add_variant(record, v, cfg, results, path)
    if save:
        tuning.finish(record, path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--choose"]:   # a study whose rule picks from the scores: the spec's choice into its record
        print(f"wrote the choice into {tuning.record_choice(tuning.load_spec(sys.argv[2]))}")
    else:
        main(*parse(sys.argv[1:]))
