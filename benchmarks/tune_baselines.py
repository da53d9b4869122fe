"""How some cpu settings of the data-access baselines were checked (never on the test split).

    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py --study benchmarks/studies/baseline_ssd.json
    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py ssd '[3]' '[{}, {"alpha": 3}, {"alpha": 1}]' [--name NAME]

Runs one method (dsda.baselines.run_method, cpu profile, seed 0, no test evaluation) once per variant of its
config (a variant's settings replace fields of the method's cpu config) and scores the unlearned model on
dsda.tuning.VALIDATION, a seeded 6,000-image subset of the TRAIN split (the same subset as
benchmarks/tune_damo.py): accuracy on its forget-class and retain-class images. The original model saw
these images in training, so the numbers are "train" accuracies: they rank variants (does the class get
forgotten? does the rest survive?), they are not test estimates. A study spec (see dsda/tuning.py) also
names its `method`; the positional form writes a file only with `--name`. Prints one JSON line per
variant and task.
"""
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda import tuning  # noqa: E402
from dsda.baselines import get_method  # noqa: E402
from dsda.baselines.runner import run_method  # noqa: E402
from dsda.metrics import predict_logits  # noqa: E402

UNUSED_CONFIG = ("progress", "profile")   # config fields the runner fills in; they change nothing computed


def parse(argv):
    """(spec, save) from the command line; errors before any work."""
    spec, name, args = tuning.parse_cli(argv)
    if spec is not None:
        return spec, True
    if len(args) != 3:
        raise SystemExit(__doc__)
    variants = [{"name": tuning.settings_label(v), "settings": v} for v in json.loads(args[2])]
    spec = {"name": name or "adhoc", "method": args[0], "tasks": [json.loads(args[1])], "variants": variants}
    return tuning.check_spec(spec), name is not None


def method_config(method, settings):
    """The method's full cpu config with a variant's settings (JSON-ready; bad settings raise here)."""
    cfg = dataclasses.asdict(method.config("cpu", **settings))
    return {k: v for k, v in cfg.items() if k not in UNUSED_CONFIG}


def run_one(method, settings, forget, acc):
    rec, model, _ = run_method(method, "cpu", forget, seed=0, evaluate=False, progress=False,
                               return_model=True, **settings)
    return {"task": forget, **acc(model, forget), "ET_s": round(rec["ET_s"], 1)}


def main(spec, save=True):
    method = get_method(spec.get("method"))
    configs = [method_config(method, v["settings"]) for v in spec["variants"]]   # fail before any work
    path = tuning.record_path(spec["name"]) if save else None
    fixed = {"model": "dsda.original_model('cpu') (seed 0)", "profile": "cpu", "seed": 0,
             "base": f"{method.name}'s cpu config {dict(method.profile_overrides.get('cpu', {}))} (at this commit); "
                     "a variant's settings replace fields"}
    record = tuning.new_record(spec, "benchmarks/tune_baselines.py", fixed)
    vx, vy = tuning.validation_split()

    def acc(m, forget):
        return tuning.scores(predict_logits(m, vx, 256, "cpu").argmax(1), vy, forget)

    record["original"] = [{"task": t, **acc(dsda.original_model("cpu", progress=False), t)} for t in spec["tasks"]]
    print("original val", json.dumps(record["original"]), flush=True)
    for v, cfg in zip(spec["variants"], configs):
        results = [run_one(method, v["settings"], task, acc) for task in v["tasks"]]
        for r in results:
            print(json.dumps({"method": method.name, "variant": v["name"], "v": v["settings"], **r}), flush=True)
        if save:
            tuning.add_variant(record, v, cfg, results, path)
    if save:
        tuning.finish(record, path)


if __name__ == "__main__":
    main(*parse(sys.argv[1:]))
