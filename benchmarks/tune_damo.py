"""How the cpu defaults of DAMO were chosen (the table next to dsda.unlearn.PROFILE_DEFAULTS).

    python benchmarks/tune_damo.py '[3]' '[{}, {"disc": false}, {"disc": false, "lr": 5e-5, "patience": 1}]'
    python benchmarks/tune_damo.py '[3, 5]' '[{"disc": false, "lr": 5e-5, "patience": 1, "forget_bound": 2.0}]' 64
    python benchmarks/tune_damo.py '[7]' '[{"disc": false, "lr": 5e-5, "n_check_per_class": 64}]' 64 --trace
    python benchmarks/tune_damo.py '[7]' '[{"disc": false, "retain_loss": "kd", "train_scope": "fc", "lr": 1e-3, "forget_bound": 10.0, "patience": 2}]'

One AEGDS set (n_per_class images of every class, nfe 40, seed 0) from the cpu original model, then DAMO with
each variant (DamoConfig fields) on a copy. A variant may also name `n_check_per_class`: that many held-out
synthetic images per forget class, synthesised as `dsda.unlearn` does (nfe 40, seed `check_seed(0)`), are
passed to DAMO as `x_check` (never trained on; the stopping rule reads them); their synthesis time is printed
as `s_extra_synth`. A variant may name `n_per_class` too (a separate AEGDS set, seed 0; its synthesis time is
added to `s_extra_synth`). Scored on a seeded VALIDATION subset of 6,000 images of the TRAIN split, never the test split.
TUNE_DAMO_CACHE=DIR caches the synthetic
sets there (their recorded synthesis time is reused). Prints one JSON line per variant; `--trace` adds the validation
(A_f, A_r) at every check (time excluded).
The session of 2026-11-26 ran it with OMP_NUM_THREADS=1 on a shared 2-core machine.
"""
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda.damo import damo  # noqa: E402
from dsda.data import load_dataset  # noqa: E402
from dsda.unlearn import check_seed  # noqa: E402


def main(forget, variants, n_per_class=64, trace=False):
    orig = dsda.original_model("cpu", progress=False).eval()
    sets = {}

    def synth(classes, n, seed):
        key = (tuple(classes), n, seed)
        cache = Path(os.environ["TUNE_DAMO_CACHE"]) / f"{'-'.join(map(str, key[0]))}_{n}_{seed}.pt" \
            if os.environ.get("TUNE_DAMO_CACHE") else None
        if key not in sets and cache is not None and cache.exists():
            sets[key] = tuple(torch.load(cache, weights_only=True))   # tensors and a float: no pickle needed
        if key not in sets:
            t = time.perf_counter()
            x, y, _ = dsda.synthesize(orig, list(classes), n, sampler="aegds", nfe=40, seed=seed)
            sets[key] = (x, y, time.perf_counter() - t)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save(sets[key], cache)
            print("synthesis", key, round(sets[key][2], 1), flush=True)
        return sets[key]

    synth(range(orig.num_classes), n_per_class, 0)
    train = load_dataset("fashion_mnist", "train")
    idx = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(123))[:6000]
    vx, vy = train.x[idx], train.y[idx]
    f_val = torch.isin(vy, torch.tensor(forget))

    def acc(m):
        with torch.no_grad():
            p = torch.cat([m(vx[i:i + 2000]).argmax(1) for i in range(0, len(vx), 2000)])
        return (p[f_val] == vy[f_val]).float().mean().item() * 100, (p[~f_val] == vy[~f_val]).float().mean().item() * 100

    print("original val (A_f, A_r)", acc(orig), flush=True)
    for v in variants:
        v = dict(v)
        n_chk = v.pop("n_check_per_class", 0)
        npc = v.pop("n_per_class", n_per_class)
        x, y, t_syn = synth(range(orig.num_classes), npc, 0)
        t_extra = 0.0 if npc == n_per_class else t_syn
        x_check = None
        if n_chk:
            x_check, _, t_chk = synth(forget, n_chk, check_seed(0))
            t_extra += t_chk
        is_f = torch.isin(y, torch.tensor(forget))
        m = copy.deepcopy(orig)
        t = time.perf_counter()
        cb = (lambda step, model: [round(a, 2) for a in acc(model)]) if trace else None
        rep = damo(m, x[~is_f], y[~is_f], x[is_f], y[is_f], seed=0, x_check=x_check, callback=cb, **v)
        secs = time.perf_counter() - t
        af, ar = acc(m)
        last = rep["checks"][-1] if rep["checks"] else {}
        out = {"v": {**v, **({"n_check_per_class": n_chk} if n_chk else {}),
                     **({"n_per_class": npc} if npc != n_per_class else {})},
               "val_A_f": round(af, 2), "val_A_r": round(ar, 2), "steps": rep["steps"], "stop": rep["stop_reason"],
               "s_damo": round(rep["time_s"], 1), "s_extra_synth": round(t_extra, 1),
               "check": {k: round(val, 3) for k, val in last.items() if k in ("forget_rate", "check_forget_rate",
                                                                              "check_forget_prob", "forget_prob")},
               "conflict": round(rep["conflict_rate"], 2)}
        if trace:
            out["trace"] = [(c["step"], c.get("check_forget_rate", c["forget_rate"]),
                             round(c.get("check_forget_prob") or 0, 3), c["callback"]) for c in rep["checks"]]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--trace"]
    main(json.loads(args[0]), json.loads(args[1]), int(args[2]) if len(args) > 2 else 64, "--trace" in sys.argv)
