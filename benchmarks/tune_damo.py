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
the variant names. A variant may name `n_per_class` or SamplerConfig fields (`target_energy`, `nfe`, ...: a
separate AEGDS set, seed 0, of every class, shared by the variant's tasks; its synthesis time is
`s_extra_synth`). Every result row carries the seconds of the set it used (`s_synth`) and the mean NFE per
sample that set actually spent (`nfe_spent`; dsda/chains.py), and each variant its full `sampler_config`. The held-out synthetic check set (`n_check_per_class`) was removed from DAMO when the core
was restructured (issue 12: no recipe used it); the study `cpu_heldout` that measured it is kept as a record
(results/tuning/cpu_heldout.json, written at the commit it names) and can no longer be re-run. Scored on
dsda.tuning.VALIDATION: a seeded 6,000-image subset of the TRAIN split, never the test split. A spec with
`"reference": "retrain"` (or `--reference` on the positional form) also scores every variant against the shipped
retrained model of its task on the same images (dsda.tuning.distance_scores: entropy, KS, JS on the forget-class
images); the retrained models' own scores go to the record's `reference_scores`.

A study spec (see dsda/tuning.py) names the tasks, the variants and the chosen one; the positional form is one
task and unnamed variants, and writes a file only with `--name`. Prints one JSON line per variant and task;
`<name>.json.partial` holds the progress after every variant. A study chosen from its own numbers gets its spec's
`chosen` afterwards with `--choose` (the record must hold exactly the spec's variants; it is marked so).
TUNE_DAMO_CACHE=DIR caches the synthetic sets there (their recorded synthesis time is reused). `--trace` adds the validation (A_f, A_r) at every check (time excluded).
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
from dsda.sampler import SamplerConfig, make_config  # noqa: E402

NFE, SEED = 40, 0
UNUSED_CONFIG = ("device", "progress")              # DamoConfig fields that do not change what DAMO computes
SAMPLER_KEYS = tuple(f.name for f in dataclasses.fields(SamplerConfig) if f.name not in UNUSED_CONFIG)
SET_FIELDS = ("n_per_class", *SAMPLER_KEYS)         # variant keys that are not DamoConfig fields: they make a set


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
    sampler_config(settings)   # a bad sampler setting fails here too
    cfg = dataclasses.asdict(DamoConfig(**{k: v for k, v in settings.items() if k not in SET_FIELDS}))
    return {k: v for k, v in cfg.items() if k not in UNUSED_CONFIG}


def sampler_settings(settings):
    """The variant's SamplerConfig fields (over the study's AEGDS at nfe 40), in a fixed order."""
    return {k: settings[k] for k in SAMPLER_KEYS if k in settings}


def sampler_config(settings):
    """The full SamplerConfig a variant's set is made with (JSON-ready, minus fields that change nothing)."""
    cfg = make_config(None, **{"sampler": "aegds", "nfe": NFE, **sampler_settings(settings)})
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in UNUSED_CONFIG}


def _cache_file(root, classes, n, seed, sampler):
    """The cached set's file; the base set keeps the name earlier studies wrote."""
    label = "".join(f"_{k}-{v}" for k, v in sampler.items())
    return root / f"{'-'.join(map(str, classes))}_{n}_{seed}{label}.pt" if root is not None else None


def synthesiser(orig, record):
    """synth(classes, n, seed, sampler) -> (x, y, seconds, mean NFE spent), each set made once (or read from
    TUNE_DAMO_CACHE); `sampler` = SamplerConfig fields over AEGDS at nfe 40."""
    sets = {}
    root = Path(os.environ["TUNE_DAMO_CACHE"]) if os.environ.get("TUNE_DAMO_CACHE") else None

    def synth(classes, n, seed, sampler=None):
        sampler = dict(sampler or {})
        key = (tuple(classes), n, seed, tuple(sampler.items()))
        if key in sets:
            return sets[key]
        cache = _cache_file(root, key[0], n, seed, sampler)
        cached = cache is not None and cache.exists()
        if cached:
            got = tuple(torch.load(cache, weights_only=True))   # tensors and floats: no pickle needed
            sets[key] = got if len(got) == 4 else (*got, float(NFE))   # files of earlier studies: nfe 40 fixed
        else:
            t = time.perf_counter()
            syn = dsda.synthesize(orig, list(classes), n, seed=seed, **{"sampler": "aegds", "nfe": NFE, **sampler})
            sets[key] = (syn.x, syn.y, time.perf_counter() - t, syn.diagnostics.final["nfe_spent"])
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(sets[key], cache)
        record["synthesis"].append({"classes": list(classes), "n_per_class": n, "seed": seed, "sampler": sampler,
                                    "s": round(sets[key][2], 1), "nfe_spent": round(sets[key][3], 2),
                                    "cached": cached})
        print("synthesis", key, round(sets[key][2], 1), round(sets[key][3], 2), flush=True)
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
    v = {k: val for k, val in settings.items() if k not in SET_FIELDS}
    npc, sampler = settings.get("n_per_class", n_per_class), sampler_settings(settings)
    x, y, t_syn, nfe_spent = synth(range(orig.num_classes), npc, SEED, sampler)
    t_extra = 0.0 if npc == n_per_class and not sampler else t_syn
    is_f = torch.isin(y, torch.tensor(forget))
    m = copy.deepcopy(orig)
    cb = (lambda step, model: [round(a, 2) for a in acc(model, forget).values()]) if trace else None
    rep = damo(m, x[~is_f], y[~is_f], x[is_f], y[is_f], seed=SEED, callback=cb, **v)
    last = rep["checks"][-1] if rep["checks"] else {}
    out = {"task": forget, **acc(m, forget), "steps": rep["steps"], "stop": rep["stop_reason"],
           "s_damo": round(rep["time_s"], 1), "s_extra_synth": round(t_extra, 1), "s_synth": round(t_syn, 1),
           "nfe_spent": round(nfe_spent, 2),
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
            tuning.add_variant(record, v, cfg, results, path, sampler_config=sampler_config(v["settings"]))
    if save:
        tuning.finish(record, path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--choose"]:   # a study whose rule picks from the scores: the spec's choice into its record
        print(f"wrote the choice into {tuning.record_choice(tuning.load_spec(sys.argv[2]))}")
    else:
        main(*parse(sys.argv[1:]))
