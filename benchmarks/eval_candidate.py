"""Test-split check of the recipe `cpu-kd-head` (dsda/recipes.py, the cpu profile's default since 2026-11-26) next
to the oracle and the original (notebook 06 reproduces them). Chosen on a validation subset by tune_damo.py
(results/tuning/); this only reports.

    OMP_NUM_THREADS=2 python benchmarks/eval_candidate.py
"""
import json

import dsda


def row(metrics):
    return {k: round(float(metrics[k]), 2) for k in ("A_f", "A_r", "MIA")}


original = dsda.original_model("cpu", progress=False)
for forget in ([3], [0], [7], [3, 5]):
    model, rep = dsda.unlearn(original, forget, profile="cpu", seed=0, recipe="cpu-kd-head")
    print(json.dumps({"forget": forget, "candidate": row(dsda.evaluate(model, "cpu", forget)),
                      "steps": rep["steps"], "time_s": {k: round(v, 1) for k, v in rep["time_s"].items()},
                      "retrain": row(dsda.evaluate(dsda.retrain_model("cpu", forget, progress=False), "cpu", forget)),
                      "original": row(dsda.evaluate(original, "cpu", forget))}), flush=True)
