# %% [markdown]
# # 07 · Playground: unlearn a class yourself
#
# **Question.** What do the knobs of DSDA do? Pick the class(es) to forget, the sampler of stage 1
# (`sgld`: plain Langevin, `heun`: second-order steps, `aegds`: Heun plus momentum, the paper's),
# its number of score evaluations (NFE), the number of synthetic images per class and the number of
# DAMO steps. Press **Run**: the notebook synthesises the images, runs DAMO, and shows the
# images, the energy trace of the sampler and the per-class test accuracy before and after.
#
# **Evidence.** One function, `explore(forget, sampler, nfe, n_per_class, steps)`, does all the
# work. Accuracies are measured on a seeded random subset of the test split (`n_eval` images), which
# is cheap enough to rerun often. `dsda.evaluate` gives the full metrics.
#
# **Cost.** With `interactive = False` (batch runs: papermill, nbval) the widgets are not shown and
# one small configuration runs once: about 30 s on 2 cores on the `cpu` profile, one seed. Set
# `interactive = True` in a running Jupyter to get the controls. Larger settings take longer.
# The profile's recipe (`dsda/recipes.py`; cpu: `cpu-kd-head`, 64 images per class, NFE 40,
# KD head-only DAMO up to 300 steps) takes about 20 s on 2 CPU cores.

# %% tags=["parameters"]
profile = "cpu"            # smoke | cpu | paper | paper-cifar100 | paper-fmnist
dataset = None             # None: the profile's data set (cpu: fashion_mnist)
model = None               # None: the profile's model (cpu: compact CNN)
forget_classes = None      # None: the profile's single-class task (cpu: [3])
seeds = None               # None: the profile's seeds; the playground uses the first
device = "auto"            # auto | cpu | cuda | mps
threads = 2                # torch CPU threads (results depend on it on CPU)
interactive = False        # True: show the widgets (needs a Jupyter front end)
sampler = "aegds"          # sgld | heun | aegds: the starting configuration
nfe = None                 # score evaluations per synthetic image (None: the profile's budget)
n_per_class = None         # synthetic images per class (None: the profile's budget)
steps = None               # maximum DAMO steps (None: the profile's budget)
n_eval = None              # test images for the accuracies (None: the profile's budget, 0: all)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from IPython.display import Markdown, display

import dsda
from dsda import report
from dsda.checks import check_notebook_params
from dsda.data import dataset_info
from dsda.metrics import per_class_accuracy
from dsda.sampler import SAMPLERS
# Import the function itself: once the module dsda.unlearn is imported, the name `dsda.unlearn`
# refers to that module, not to the function.
from dsda.unlearn import synthetic_set, unlearn

# papermill injects its values just above this cell: check their form before any work
check_notebook_params(globals(), profile="profile", dataset="name?", model="name?", forget_classes="classes?",
                      seeds="seeds?", device="device", threads="positive_int?", interactive="flag",
                      sampler=SAMPLERS, nfe="positive_int?", n_per_class="positive_int?", steps="positive_int?",
                      n_eval="nonneg_int?")
P = report.notebook_profile(profile, dataset, model, device)
info = dataset_info(P.dataset)
forget = list(forget_classes or P.forget_classes)
seed = list(seeds or P.seeds)[0]

B = report.budget("07_playground", profile)   # dsda/budgets.py
for key, value in {"nfe": nfe, "n_per_class": n_per_class, "steps": steps, "n_eval": n_eval}.items():
    if value is not None:
        B[key] = value
run = report.start("07_playground", profile, dict(dataset=P.dataset, model=P.model, forget=forget, seed=seed,
                                                  sampler=sampler, interactive=interactive, **B), device, threads)

original = dsda.original_model(P, seed=seed, progress=False).eval()
test = dsda.load_dataset(P.dataset, "test")
if B["n_eval"] and B["n_eval"] < len(test):
    keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:B["n_eval"]]
    test = test.subset(keep.sort().values)
acc_before = per_class_accuracy(original, test.y, test.x, num_classes=info.num_classes)
print(f"original model: {np.nanmean(acc_before):.1f} % mean per-class accuracy on {len(test)} test images")

# %% [markdown]
# ## The function that does the work
#
# `explore` runs the two stages of DSDA on a copy of the original model (the original is never
# changed):
# 1. **AEGDS** (`dsda.synthetic_set`, stage 1 exactly as `dsda.unlearn` runs it): `n_per_class`
#    images per class, drawn from the model alone; they are drawn once, shown, and handed to `unlearn`.
# 2. **DAMO** (inside `dsda.unlearn`): at most `steps` fine-tuning steps. It stops earlier once the
#    synthetic forget images are no longer predicted as a forget class.
#
# Everything else (learning rate, batch sizes, stopping rule) is the profile's default.

# %%
def show_image(ax, x):
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    img = (x.cpu() * std + mean).clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0))
    ax.set_xticks([]), ax.set_yticks([])


def explore(forget, sampler, nfe, n_per_class, steps):
    """Synthesise, unlearn `forget`, and return (summary, figure)."""
    forget = sorted(int(c) for c in forget)
    classes = list(range(info.num_classes))
    stage1 = dict(sampler=sampler, nfe=nfe, n_per_class=n_per_class)
    syn = synthetic_set(original, P, seed=seed, diag_every=1, **stage1)      # stage 1, with a full energy trace
    x, y, diag = syn
    unlearned, rep = unlearn(original, forget, profile=P, seed=seed, synthetic=syn, max_steps=steps, **stage1)
    acc_after = per_class_accuracy(unlearned, test.y, test.x, num_classes=info.num_classes)
    retain = [c for c in classes if c not in forget]
    summary = {
        "forget": forget, "sampler": sampler, "nfe": nfe, "n_per_class": n_per_class, "max_steps": steps,
        "damo_steps": rep["steps"], "stop_reason": rep["stop_reason"],
        "A_f_before": float(np.mean([acc_before[c] for c in forget])),
        "A_f": float(np.mean([acc_after[c] for c in forget])),
        "A_r_before": float(np.mean([acc_before[c] for c in retain])),
        "A_r": float(np.mean([acc_after[c] for c in retain])),
        "synthetic_target_frac": float(diag.target_frac[-1]),
        "time_s": rep["time_s"],
        "per_class_before": acc_before, "per_class_after": acc_after,
    }

    fig = plt.figure(figsize=(14, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[0.8, 1], hspace=0.4, wspace=0.22)
    # (a) four synthetic images per class
    n_show = min(4, n_per_class)
    sub = grid[0, 0].subgridspec(n_show, len(classes), wspace=0.05, hspace=0.05)
    for c in classes:
        xc = x[y == c][:n_show]
        for j in range(n_show):
            ax = fig.add_subplot(sub[j, c])
            show_image(ax, xc[j])
            if j == 0:
                ax.set_title(info.class_names[c][:8], fontsize=8, color="tab:red" if c in forget else "k")
    fig.text(0.3, 0.92, f"(a) synthetic images ({sampler}, NFE {nfe}); forget class(es) in red",
             ha="center", fontsize=11)
    # (b) the sampler's energy trace
    ax = fig.add_subplot(grid[0, 1])
    ax.plot(diag.nfe, diag.energy, marker="o", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("score evaluations per image (NFE)")
    ax.set_ylabel("mean energy  -log p(y | x)")
    ax.set_title("(b) energy of the synthetic images during sampling")
    # (c) per-class test accuracy before and after
    ax = fig.add_subplot(grid[1, :])
    pos = np.arange(len(classes))
    ax.bar(pos - 0.2, acc_before, 0.4, label="original", color="tab:gray")
    ax.bar(pos + 0.2, acc_after, 0.4, label="after unlearning", color="tab:orange")
    for c in forget:
        ax.axvspan(c - 0.5, c + 0.5, color="tab:red", alpha=0.1)
    ax.set_xticks(pos, info.class_names, rotation=20)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right")
    ax.set_title(f"(c) per-class accuracy: A_f {summary['A_f_before']:.1f} -> {summary['A_f']:.1f} %, "
                 f"A_r {summary['A_r_before']:.1f} -> {summary['A_r']:.1f} % "
                 f"({rep['steps']} DAMO steps, stop: {rep['stop_reason']})")
    return summary, fig


# %% [markdown]
# ## Run it
#
# With `interactive = True` the controls below run `explore` when you press **Run**. In batch mode
# the default configuration from the parameters cell runs once.

# %%
if interactive:
    import ipywidgets as widgets
    from IPython.display import display

    controls = {
        "forget": widgets.SelectMultiple(options=[(n, i) for i, n in enumerate(info.class_names)],
                                         value=tuple(forget), description="forget", rows=5),
        "sampler": widgets.Dropdown(options=["sgld", "heun", "aegds"], value=sampler, description="sampler"),
        "nfe": widgets.IntSlider(value=B["nfe"], min=4, max=200, step=2, description="NFE"),
        "n_per_class": widgets.IntSlider(value=B["n_per_class"], min=4, max=256, step=4, description="images/class"),
        "steps": widgets.IntSlider(value=B["steps"], min=10, max=1000, step=10, description="DAMO steps"),
    }
    button, out = widgets.Button(description="Run", button_style="primary"), widgets.Output()

    def on_click(_):
        with out:
            out.clear_output(wait=True)
            if not controls["forget"].value:
                print("pick at least one class to forget")
                return
            print("running ...")
            s, fig = explore(**{k: w.value for k, w in controls.items()})
            out.clear_output(wait=True)
            display(fig)
            plt.close(fig)
            print(f"A_f {s['A_f']:.1f} %, A_r {s['A_r']:.1f} %, synthesis {s['time_s']['synthesis']:.1f} s, "
                  f"DAMO {s['time_s']['optimisation']:.1f} s")

    button.on_click(on_click)
    display(widgets.VBox([*controls.values(), button, out]))
else:
    result, fig = explore(forget, sampler, B["nfe"], B["n_per_class"], B["steps"])
    run.figure(fig, "default_run")

# %%
# Timing of the batch run (varies between runs; not part of the checked output).
if not interactive:
    print(f"synthesis {result['time_s']['synthesis']:.1f} s, DAMO {result['time_s']['optimisation']:.1f} s "
          f"({result['damo_steps']} steps, stopped: {result['stop_reason']})")

# %% [markdown]
# **What it shows (batch configuration).** A small configuration, and the model never sees a real image;
# the per-class panel shows which retain classes move, panel (b) how fast the energy falls. Things to try:
# `sampler = "sgld"` at the same NFE, NFE 4, two forget classes, more images per class. This run:

# %%
if not interactive:
    r = result
    display(Markdown(
        f"{r['n_per_class']} synthetic images per class, NFE {r['nfe']}, at most {r['max_steps']} DAMO steps: A_f "
        f"{r['A_f_before']:.1f} % -> {r['A_f']:.1f} %, A_r {r['A_r_before']:.1f} % -> {r['A_r']:.1f} % on {len(test)} "
        f"test images, after {r['damo_steps']} DAMO steps (stop reason `{r['stop_reason']}`); the synthetic "
        f"images end with {100 * r['synthetic_target_frac']:.0f} % classified as their target class."))

# %% [markdown]
# ## Verdict

# %%
# NBVAL_CHECK_OUTPUT
if not interactive:
    run.claim(f"the batch configuration forgets class(es) {result['forget']}: A_f <= 5 %", result["A_f"] <= 5,
              f"A_f {result['A_f_before']:.2f} -> {result['A_f']:.2f} %, A_r {result['A_r_before']:.2f} -> "
              f"{result['A_r']:.2f} % on {len(test)} test images")
    run.print_claims()

# %%
if not interactive:
    run.save({k: v for k, v in result.items()})
print(f"wall time {run.wall_s:.0f} s")
