"""How the cpu defaults of DAMO were chosen (the table next to dsda.unlearn.PROFILE_DEFAULTS).

    python benchmarks/tune_damo.py '[3]' '[{}, {"disc": false}, {"disc": false, "lr": 5e-5, "patience": 1}]'
    python benchmarks/tune_damo.py '[3, 5]' '[{"disc": false, "lr": 5e-5, "patience": 1, "forget_bound": 2.0}]' 64

One AEGDS set (n_per_class images of every class, nfe 40, seed 0) from the cpu original model, then DAMO with
each variant (DamoConfig fields) on a copy. Scored on a seeded VALIDATION subset of 6,000 images of the TRAIN
split, never the test split. Prints one JSON line per variant. The session of 2026-11-26 ran it with
OMP_NUM_THREADS=1 on a shared 2-core machine.
"""
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda.damo import damo  # noqa: E402
from dsda.data import load_dataset  # noqa: E402


def main(forget, variants, n_per_class=64):
    orig = dsda.original_model("cpu", progress=False).eval()
    t = time.perf_counter()
    x, y, _ = dsda.synthesize(orig, list(range(orig.num_classes)), n_per_class, sampler="aegds", nfe=40, seed=0)
    print("synthesis", round(time.perf_counter() - t, 1), flush=True)
    train = load_dataset("fashion_mnist", "train")
    idx = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(123))[:6000]
    vx, vy = train.x[idx], train.y[idx]
    f_val = torch.isin(vy, torch.tensor(forget))

    def acc(m):
        with torch.no_grad():
            p = torch.cat([m(vx[i:i + 2000]).argmax(1) for i in range(0, len(vx), 2000)])
        return (p[f_val] == vy[f_val]).float().mean().item() * 100, (p[~f_val] == vy[~f_val]).float().mean().item() * 100

    print("original val (A_f, A_r)", acc(orig), flush=True)
    is_f = torch.isin(y, torch.tensor(forget))
    for v in variants:
        m = copy.deepcopy(orig)
        t = time.perf_counter()
        rep = damo(m, x[~is_f], y[~is_f], x[is_f], y[is_f], seed=0, **v)
        af, ar = acc(m)
        print(json.dumps({"v": v, "val_A_f": round(af, 2), "val_A_r": round(ar, 2), "steps": rep["steps"],
                          "stop": rep["stop_reason"], "s": round(time.perf_counter() - t, 1),
                          "conflict": round(rep["conflict_rate"], 2)}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 64)
