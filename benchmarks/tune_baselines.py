"""How some cpu settings of the data-access baselines were checked (never on the test split).

    OMP_NUM_THREADS=1 python benchmarks/tune_baselines.py ssd '[3]' '[{}, {"alpha": 3}, {"alpha": 1}]'

Runs one method (dsda.baselines.run_method, cpu profile, seed 0, no test evaluation) once per variant of its
config and scores the unlearned model on a seeded VALIDATION subset of 6,000 TRAIN-split images (the
same subset as benchmarks/tune_damo.py): accuracy on its forget-class and retain-class images. The
original model saw these images in training, so the numbers are "train" accuracies: they rank variants
(does the class get forgotten? does the rest survive?), they are not test estimates. Prints one JSON line
per variant.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dsda  # noqa: E402
from dsda.baselines.runner import run_method  # noqa: E402
from dsda.data import load_dataset  # noqa: E402
from dsda.metrics import predict_logits  # noqa: E402


def main(method, forget, variants):
    train = load_dataset("fashion_mnist", "train")
    idx = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(123))[:6000]
    vx, vy = train.x[idx], train.y[idx]
    f_val = torch.isin(vy, torch.tensor(forget))

    def acc(m):
        pred = predict_logits(m, vx, 256, "cpu").argmax(1)
        return (round((pred[f_val] == vy[f_val]).float().mean().item() * 100, 2),
                round((pred[~f_val] == vy[~f_val]).float().mean().item() * 100, 2))

    print("original val (A_f, A_r)", acc(dsda.original_model("cpu", progress=False)), flush=True)
    for v in variants:
        rec, model, _ = run_method(method, "cpu", forget, seed=0, evaluate=False, progress=False,
                                   return_model=True, **v)
        af, ar = acc(model)
        print(json.dumps({"method": method, "v": v, "val_A_f": af, "val_A_r": ar, "ET_s": round(rec["ET_s"], 1)}),
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))
