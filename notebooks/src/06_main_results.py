# %% [markdown]
# # 06 · Main results: the paper's Table 1 (single class) and Table 2 (several classes)
#
# **Question.** Does DSDA, without any training data, forget as completely as retraining from scratch
# (A_f = 0), keep as much of the retain classes (A_r), leak as little membership (MIA), and run faster
# than the other source-free methods (GKT, ISPF), as the paper claims (the paper's results text, Tables 1-2)?
#
# **Evidence.** Every registered method (`python -m dsda methods`) unlearns the same original model
# through one runner that hands it only the data it declares; all metrics come from `dsda.evaluate` on
# the test split, ET is the wall time of the unlearning itself (Retrain: its training time, recorded
# with the oracle's checkpoint). Mean ± std over forget tasks and seeds.
#
# **Where the numbers come from.** This chapter computes nothing itself: it reads the results store of a
# sweep plan (`dsda.results.ensure`), which first runs, through the sweep engine, whatever the store still
# lacks (a finished run is never repeated). On `cpu` the plan is `cpu-quick` (plans/cpu-quick.yaml) and its
# store is committed (results/store/cpu-quick, 40 runs, one torch thread each on two worker processes, the
# timed run of `benchmarks/sweep_speed.py`), so the notebook reads it in seconds; `python -m dsda sweep verify
# cpu-quick --sample 3` re-runs stored runs and checks their metrics bit for bit. Other profiles build a plan
# of this notebook's own grid (results/store/06_main_results-<profile>).
#
# **Cost and scope.** One seed. Table 1 covers every method on forget class 3 (T-shirt/top ... Dress), plus
# KD head-only DAMO, Retrain and Original on classes 0 and 7; Table 2 forgets classes 3 and 5 at once. The
# study over every class and three seeds is a larger plan of the same engine.

# %% tags=["parameters"]
profile = "cpu"            # smoke | cpu | paper | paper-cifar100 | paper-fmnist
plan = None                # None: the budget's plan (cpu: cpu-quick); else a name in plans/ or a YAML path
forget_classes = None      # None: BUDGETS[...]["single"]: the single-class tasks of Table 1
multi_forget = None        # None: the profile's multi-class task (cpu: [3, 5]) for Table 2
seeds = None               # None: the profile's seeds
methods = None             # None: every registered method (dsda.METHODS)
device = "auto"            # auto: the plan's device (a plan built here: CUDA, MPS or CPU); else it replaces it
threads = None             # torch threads per job; None: the plan's (1). Part of every run's key
workers = None             # how missing runs go; None: the budget's (1: serially in this kernel; more: Dask)

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from IPython.display import Markdown, display

from dsda import report
from dsda.baselines import METHODS
from dsda.checks import check_notebook_params
from dsda.results import ensure
from dsda.sweep.plan import grid_plan, load_plan
from dsda.utils import resolve_device

# papermill injects its values just above this cell: check their form before any work
check_notebook_params(globals(), profile="profile", plan="name?", forget_classes="tasks?", multi_forget="classes?",
                      seeds="seeds?", methods="names?", device="device", threads="positive_int?",
                      workers="positive_int?")
P = report.notebook_profile(profile)
BUDGETS = report.budget("06_main_results", profile)   # dsda/budgets.py
single = [list(t) if isinstance(t, (list, tuple)) else [t] for t in (forget_classes or BUDGETS["single"] or [[c] for c in P.eval_classes])]
multi = list(multi_forget or P.multi_forget_classes)
seeds = list(seeds or P.seeds)
methods = list(methods or METHODS)
unknown = [m for m in methods if m not in METHODS]
if unknown:
    raise ValueError(f"methods: unknown {unknown}; allowed: {list(METHODS)}")
multi_methods = BUDGETS["multi_methods"]
workers = workers or BUDGETS["workers"]


def grid(task_list, who):
    """(method, task) pairs: `who` = methods allowed beyond the first task (None = all)."""
    return [(m, t) for i, t in enumerate(task_list) for m in methods if i == 0 or who is None or m in who]


pairs = {"single": grid(single, BUDGETS["all_tasks"]),
         "multi": [(m, multi) for m in methods if multi_methods is None or m in multi_methods]}
plan = plan or BUDGETS["plan"]
SWEEP = load_plan(plan) if plan else grid_plan(f"06_main_results-{profile}", profile, pairs["single"] + pairs["multi"],
                                               seeds, resolve_device(device).type)
SWEEP = SWEEP.replace(**({"device": device} if device != "auto" else {}), **({"threads": threads} if threads else {}))
run = report.start("06_main_results", profile, dict(dataset=P.dataset, model=P.model, single=single,
                   multi=multi, seeds=seeds, methods=methods, budgets=BUDGETS, plan=SWEEP.name,
                   plan_device=SWEEP.device, plan_threads=SWEEP.threads), device, SWEEP.threads)
print(f"plan {SWEEP.name} ({SWEEP.count()} runs, {SWEEP.device}, {SWEEP.threads} thread(s) per run)")

# %%
results = ensure(SWEEP, workers=workers, serial=workers == 1, progress=False)
results = results[results.label == results.method]   # the method's own entry (a plan may add tuned variants)


def rows_of(label):
    """The store's runs of this notebook's (method, task) pairs for `label`; an error names what is missing."""
    out = []
    for name, task in pairs[label]:
        for seed in seeds:
            hit = results[(results.method == name) & (results.forget_classes == json.dumps(task))
                          & (results.seed == seed)]
            if len(hit) != 1:
                raise ValueError(f"plan {SWEEP.name}: {len(hit)} finished run(s) of {name} on {task}, seed {seed} "
                                 f"(expected 1); add it to the plan or see the failed records in its store")
            r = hit.iloc[0]
            out.append({"table": label, "method": METHODS[name].title, "key": name, "data": METHODS[name].data_access,
                        "task": str(task), "seed": seed, **{k: r[k] for k in ("A_f", "A_r", "MIA", "MIA_loss_cv",
                        "MIA_conf_svc", "ET_s", "ET_source")}})
    return pd.DataFrame(out)


single_rows, multi_rows = rows_of("single"), rows_of("multi")
for _, r in pd.concat([single_rows, multi_rows]).iterrows():
    print(f"{r.table:6s} {r.method:30s} forget {r.task} seed {r.seed}: A_f {r.A_f:6.2f}  A_r {r.A_r:6.2f}  "
          f"MIA {r.MIA:6.2f}  ET {r.ET_s:7.1f} s")

# %%
def table(rows):
    """Mean ± std per method over tasks and seeds (std 0 when a method ran once), in method order."""
    g = rows.groupby("key", sort=False)
    out = pd.DataFrame({"method": g["method"].first(), "data access": g["data"].first(), "runs": g.size()})
    for col in ("A_f", "A_r", "MIA", "ET_s"):
        mean, std = g[col].mean(), g[col].std(ddof=0)
        out[col] = [f"{a:.2f} ± {b:.2f}" for a, b in zip(mean, std)]
    return out.reset_index(drop=True)


def same_tasks(rows):
    """Rows on the tasks every method ran: the fair comparison (first single task, or the multi task)."""
    first = rows["task"].iloc[0]
    return rows[rows.task == first]


t1, t2 = table(single_rows), table(multi_rows)
print(f"Table 1: single class, forget {single}, seeds {seeds} ({P.dataset}, {P.model})")
t1

# %%
print(f"Table 2: forget {multi} at once, seeds {seeds}")
t2

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for ax, rows, title in ((axes[0], same_tasks(single_rows), f"forget {single[0]}"),
                        (axes[1], multi_rows, f"forget {multi}")):
    g = rows.groupby("key", sort=False).agg(method=("method", "first"), data=("data", "first"),
                                            A_r=("A_r", "mean"), ET=("ET_s", "mean"), A_f=("A_f", "mean"))
    for data, marker in (("none", "o"), ("forget", "s"), ("retain_subset", "^"), ("full", "D")):
        sel = g[g.data == data]
        ax.scatter(sel.ET.clip(lower=1e-2), sel.A_r, marker=marker, s=60,
                   label=f"data access: {data}", edgecolor="k")
    for _, r in g.iterrows():
        ax.annotate(r.method + ("" if r.A_f <= 5 else f" (A_f {r.A_f:.0f})"), (max(r.ET, 1e-2), r.A_r),
                    fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("ET: wall seconds of unlearning (log)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("A_r: retain test accuracy (%)")
axes[0].legend(fontsize=8, loc="lower left")
fig.suptitle(f"Retain accuracy against cost, every method ({P.dataset}, {P.model}, {profile} profile)")
run.figure(fig, "ar_vs_et")

# %% [markdown]
# **Reading the tables.** `data access` is what the runner handed the method: `none` means the method
# received no dataset at all (source-free: DSDA, KD head-only DAMO, GKT, ISPF, synthetic embeddings). "DSDA"
# is the paper's objective (L_R + L_F + L_Disc on every parameter, the multitask step; recipe `cpu-paper` on
# `cpu`, one task); "KD head-only DAMO" is our `cpu` default (recipe `cpu-kd-head`, every task). The targets are the
# Retrain row: A_f = 0, A_r as high, MIA as close as possible. ET of Retrain is its training time; the
# Original row is the starting point (ET 0). The verdicts below are computed from these rows.

# %%
def per_method(rows, col):
    return rows.groupby("key")[col].mean()


S, M = same_tasks(single_rows), multi_rows
OURS = [m for m in ("dsda", "dsda_kd_head") if m in set(S.key)]      # the paper's objective, our cpu default
sf = [m for m in ("gkt", "ispf") if m in set(S.key)]               # the paper's source-free competitors
ar, mia, et = per_method(S, "A_r"), per_method(S, "MIA"), per_method(S, "ET_s")
rank_ar = sorted([m for m in ar.index if m not in ("original", "retrain")], key=lambda m: -ar[m])
mia_gap = (mia - mia.get("retrain", np.nan)).abs()
mia_rank = sorted([m for m in mia_gap.index if m not in ("original", "retrain")], key=lambda m: mia_gap[m])
non_sf = [m for m in S.key.unique() if METHODS[m].data_access != "none" and m not in ("original", "retrain")]
ar_m, ar_r = per_method(M, "A_r"), per_method(single_rows[single_rows.task == str(single[0])], "A_r")
degrade = {m: ar_r[m] - ar_m[m] for m in (*OURS, "gkt", "lau") if m in ar_m.index and m in ar_r.index}
retrain_drop = ar_r.get("retrain", np.nan) - ar_m.get("retrain", np.nan)
fmt = lambda m: METHODS[m].title  # noqa: E731
et_gain = {d: [100 * (1 - et[d] / et[m]) for m in sf] for d in OURS}
faster_than = {d: [m for m in non_sf if et[d] < et[m]] for d in OURS}

# %% [markdown]
# Exact ET ratios vary from run to run (wall time); they are printed here, outside the checked cell.

# %%
for d in OURS:
    for m in sf:
        print(f"ET {fmt(m)} / {fmt(d)} = {et[m] / et[d]:.1f}x  ({fmt(d)} saves {100 * (1 - et[d] / et[m]):.1f} %)")
    print(f"{fmt(d)} faster than {len(faster_than[d])} of {len(non_sf)} methods with data access: "
          f"{[fmt(m) for m in faster_than[d]]}")

# %%
# NBVAL_CHECK_OUTPUT
for d in OURS:
    rows_d = single_rows[single_rows.key == d]
    run.claim(f"{fmt(d)}: A_f = 0 on every task (we accept <= 1 %)", (rows_d.A_f <= 1.0).all(),
              f"max A_f {rows_d.A_f.max():.2f} % over {len(rows_d)} runs")
    if sf:
        best_sf = max(sf, key=lambda m: ar[m])
        run.claim(f"{fmt(d)} has the highest A_r among source-free methods (GKT, ISPF)", ar[d] >= ar[best_sf],
                  f"{fmt(d)} {ar[d]:.2f} vs best {fmt(best_sf)} {ar[best_sf]:.2f}")
    ahead = rank_ar[:rank_ar.index(d)]
    run.claim(f"{fmt(d)} has the best or second-best A_r of all unlearning methods", len(ahead) < 2,
              f"rank {len(ahead) + 1} of {len(rank_ar)}; ahead: {', '.join(fmt(m) for m in ahead) or 'none'}")
    run.claim(f"{fmt(d)} has the MIA closest to Retrain's", mia_rank[0] == d,
              f"|MIA - Retrain|: {fmt(d)} {mia_gap[d]:.2f}, rank {mia_rank.index(d) + 1} of {len(mia_rank)}")
for m in ("adv_imp", "unsir"):
    if m in mia.index:
        run.claim(f"{fmt(m)}'s MIA is far above Retrain's (> 10 points)", mia[m] - mia["retrain"] > 10,
                  f"{fmt(m)} {mia[m]:.2f} vs Retrain {mia['retrain']:.2f}")
for d in (d for d in OURS if d in degrade):
    run.claim(f"forgetting {multi} at once: {fmt(d)} stays robust (A_f <= 1 %, A_r drop <= Retrain's drop + 3 "
              "points)", M[M.key == d].A_f.max() <= 1.0 and degrade[d] <= retrain_drop + 3,
              f"A_f {M[M.key == d].A_f.max():.2f}, A_r drop {degrade[d]:.2f} vs Retrain {retrain_drop:.2f}")
    for m in ("gkt", "lau"):
        if m in degrade:
            run.claim(f"{fmt(m)} degrades more than {fmt(d)} with {len(multi)} classes", degrade[m] > degrade[d],
                      f"A_r drop {fmt(m)} {degrade[m]:.2f} vs {fmt(d)} {degrade[d]:.2f}")
run.print_claims()

# %% [markdown]
# The claims on execution time depend on wall-clock measurements, which vary from run to run, so they are
# printed here, outside the cell that nbval compares (they are in the JSON and SUMMARY.md all the same).
# On the `cpu` profile GKT and ISPF run truncated budgets (see `dsda/baselines/gkt.py`, `ispf.py`);
# notebook 04 compares against their full published schedules.

# %%
timing = []
for d in OURS:
    if sf:
        timing.append(run.claim(f"{fmt(d)}'s ET improves on the source-free baselines by >= 68.5 % on average "
                                "(at the cpu budgets)", np.mean(et_gain[d]) >= 68.5,
                                f"mean improvement {np.mean(et_gain[d]):.1f} % over " + ", ".join(fmt(m) for m in sf)))
    if non_sf:
        timing.append(run.claim(f"{fmt(d)} is faster than most methods with data access",
                                len(faster_than[d]) > len(non_sf) / 2, f"faster than {len(faster_than[d])} of {len(non_sf)}"))
for c in timing:
    print(c.line())

# %% [markdown]
# **Verdict on this run** (one seed; every number below is read from the tables above).

# %%
def per_task(key):
    r = single_rows[single_rows.key == key].set_index("task")
    return r


lines = []
if "dsda_kd_head" in OURS and "retrain" in set(single_rows.key):
    kd, rt = per_task("dsda_kd_head"), per_task("retrain")
    tasks = ", ".join(f"{t} A_r {kd.A_r[t]:.2f} % (oracle {rt.A_r[t]:.2f} %), MIA {kd.MIA[t]:.1f} (oracle "
                      f"{rt.MIA[t]:.1f})" for t in kd.index)
    lines.append(f"- **{fmt('dsda_kd_head')}** (our `cpu` default): max A_f {kd.A_f.max():.2f} % over "
                 f"{len(kd)} tasks; {tasks}; mean ET {kd.ET_s.mean():.0f} s.")
for d in OURS:
    lines.append(f"- **{fmt(d)}** on {single[0]}: A_f {S[S.key == d].A_f.mean():.2f} %, A_r {ar[d]:.2f} % "
                 f"(rank {rank_ar.index(d) + 1} of {len(rank_ar)}), MIA {mia[d]:.1f} vs Retrain "
                 f"{mia.get('retrain', np.nan):.1f} (closeness rank {mia_rank.index(d) + 1}), ET {et[d]:.0f} s.")
for m in sf:
    lines.append(f"- {fmt(m)} (truncated budget on `cpu`): A_r {ar[m]:.2f} %, ET {et[m]:.0f} s.")
display(Markdown("\n".join(lines)))

# %%
run.save({"table_single": report.markdown_table(t1), "table_multi": report.markdown_table(t2),
          "single": single_rows.to_dict("records"), "multi": multi_rows.to_dict("records")})
print(f"wall time {run.wall_s:.0f} s")
