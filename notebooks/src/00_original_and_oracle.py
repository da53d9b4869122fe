# %% [markdown]
# # 00 · The original model and the retrain-from-scratch oracles
#
# **Question.** What are we unlearning from, and what is the target? Every later notebook compares an
# unlearned model with two references: the *original* model (trained on all classes) and the
# *retrained oracle* (trained from scratch without the forget classes: the gold standard that
# unlearning tries to match without paying for it).
#
# **Evidence.** Test accuracy per class of the original model and of one oracle per forget task, and the
# metrics of `dsda.evaluate` (A_f, A_r, three membership-inference variants) for both.
#
# **Cost.** On the `cpu` profile the models load from `pretrained/` (shipped, SHA-256-verified) or the
# local cache in seconds; from scratch (`DSDA_NO_PRETRAINED=1`) each takes about 3 minutes on 2 cores.
# The header below records the hardware, versions and commit of this run.

# %% tags=["parameters"]
profile = "cpu"            # smoke | cpu | paper | paper-cifar100 | paper-fmnist
dataset = None             # None: the profile's data set (cpu: fashion_mnist)
model = None               # None: the profile's model (cpu: compact CNN)
forget_classes = None      # None: every class of the profile's eval_classes, one task each
multi_forget = None        # None: the profile's multi-class task (cpu: [3, 5])
seeds = None               # None: the profile's seeds (cpu: [0])
device = "auto"            # auto | cpu | cuda | mps
threads = 2                # torch CPU threads (results depend on it on CPU)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import dsda
from dsda import report
from dsda.checks import check_notebook_params
from dsda.data import dataset_info

# papermill injects its values just above this cell: check their form before any work
check_notebook_params(globals(), profile="profile", dataset="name?", model="name?", forget_classes="classes?",
                      multi_forget="classes?", seeds="seeds?", device="device", threads="positive_int?")
P = report.notebook_profile(profile, dataset, model, device)
info = dataset_info(P.dataset)
tasks = [[c] for c in (forget_classes or P.eval_classes)] + [list(multi_forget or P.multi_forget_classes)]
seeds = list(seeds or P.seeds)
run = report.start("00_original_and_oracle", profile,
                   dict(dataset=P.dataset, model=P.model, tasks=tasks, seeds=seeds), device, threads)

# %%
rows, per_class = [], {}
for seed in seeds:
    original = dsda.original_model(P, seed=seed, progress=False)
    for task in tasks:
        oracle = dsda.retrain_model(P, task, seed=seed, progress=False)
        for name, m in (("Original", original), ("Retrain", oracle)):
            r = dsda.evaluate(m, P, task)
            rows.append({"task": str(task), "seed": seed, "model": name, **{k: r[k] for k in
                         ("A_test", "A_f", "A_r", "A_f_train", "A_r_train", "MIA", "MIA_loss_cv", "MIA_conf_svc")}})
            per_class[(name if name == "Original" else f"Retrain {task}", seed)] = r["per_class_test"]
table = pd.DataFrame(rows).drop_duplicates(["task", "seed", "model"])
table.round(2)

# %%
pc = pd.DataFrame({f"{k[0]} (seed {k[1]})": v for k, v in per_class.items()}, index=info.class_names).T
fig, ax = plt.subplots(figsize=(10, 0.45 * len(pc) + 1.5))
im = ax.imshow(pc.values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
ax.set_xticks(range(len(pc.columns)), pc.columns, rotation=40, ha="right")
ax.set_yticks(range(len(pc)), pc.index)
for (i, j), v in np.ndenumerate(pc.values):
    ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=8)
fig.colorbar(im, ax=ax, label="test accuracy (%)")
ax.set_title(f"Per-class test accuracy, {P.dataset} / {P.model}")
run.figure(fig, "per_class_accuracy")

# %% [markdown]
# **Verdicts.** The foundation's targets: the original model is accurate (cpu profile: at least 91 %
# test accuracy), and every oracle has A_f = 0 with a retain accuracy at most 1.5 points below the
# original model's retain accuracy on the same classes.

# %%
# NBVAL_CHECK_OUTPUT
orig = table[table.model == "Original"]
ret = table[table.model == "Retrain"].set_index(["task", "seed"])
gap = max(orig.set_index(["task", "seed"]).loc[ret.index, "A_r"].values - ret["A_r"].values)
target = {"cpu": 91.0}.get(profile, 0.0)
run.claim(f"original model test accuracy >= {target:.0f} %", orig.A_test.min() >= target,
          f"min {orig.A_test.min():.2f} %")
run.claim("every oracle forgets: A_f = 0", (ret.A_f == 0).all(), f"max A_f {ret.A_f.max():.2f} %")
run.claim("oracle A_r within 1.5 points of the original's", gap <= 1.5, f"largest gap {gap:.2f} points")
run.print_claims()

# %%
run.save({"table": table.to_dict("records"),
          "per_class_test": {f"{k[0]} (seed {k[1]})": v for k, v in per_class.items()}})
print(f"wall time {run.wall_s:.0f} s")
