"""How much work each notebook does per profile: every notebook's budget in one place.

A budget sizes a run (images, chains, steps, tasks); it is not a setting of the method (those are the recipes,
dsda/recipes.py). `smoke` is sized for the tests (seconds), `cpu` for our 2-core machine within the series'
time budget, `paper` for a GPU at the paper's scale; the `paper-*` profiles use `paper`'s. A notebook reads
its budget with `dsda.report.budget(notebook, profile)`; its parameters (None = the budget) override it.
"""
from __future__ import annotations

from typing import Any

NOTEBOOK_BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "01_energy_view": {
        # alpha: the AEGDS step size for this model (None: the package default, measured on the cpu model;
        # the smoke model's scores are about 20x larger, see dsda/sampler.py)
        "smoke": {"n_real": 20, "n_syn": 8, "n_noise": 50, "toy_chains": 50, "toy_steps": 100, "alpha": 1.0},
        "cpu": {"n_real": 100, "n_syn": 20, "n_noise": 200, "toy_chains": 100, "toy_steps": 200, "alpha": None},
        "paper": {"n_real": 100, "n_syn": 50, "n_noise": 500, "toy_chains": 100, "toy_steps": 200, "alpha": None},
    },
    "02_accelerated_synthesis": {
        # the smoke model's scores are about 20x larger than the cpu model's, hence its smaller steps
        "smoke": {"n_per_class": 10, "nfe": 40, "alphas": [0.3, 1.0, 3.0, 10.0]},
        "cpu": {"n_per_class": 10, "nfe": 40, "alphas": [3.0, 10.0, 20.0, 40.0, 80.0]},
        "paper": {"n_per_class": 20, "nfe": 40, "alphas": [3.0, 10.0, 20.0, 40.0, 80.0]},
    },
    "03_discriminative_loss_ablation": {
        "smoke": {"tsne_per_class": 30, "lrs": [3e-4, 1e-3, 3e-3, 1e-2], "sens_max_steps": 60},
        "cpu": {"tsne_per_class": 100, "lrs": [1e-4, 3e-4, 1e-3, 3e-3], "sens_max_steps": 100},
        "paper": {"tsne_per_class": 100, "lrs": [3e-5, 1e-4, 3e-4, 1e-3], "sens_max_steps": 600},
    },
    "04_efficiency_curves": {
        # gkt_max_resets: GKT gives up after that many generator resets (our own stall rule, not the official
        # code's); ispf_constant_lr: keep ISPF's lr at its starting value, which is what the first epochs of
        # the 200-epoch cosine schedule are (within 0.2 %), so the truncated run is a prefix of the full one.
        "smoke": {"gkt_cycles": 12, "ispf_epochs": 4, "snapshot_every": 10, "gkt_max_resets": 2,
                  "ispf_constant_lr": True},
        "cpu": {"gkt_cycles": 10, "ispf_epochs": 2, "snapshot_every": 20, "gkt_max_resets": 20,
                "ispf_constant_lr": True},
        "paper": {"gkt_cycles": 4000, "ispf_epochs": 200, "snapshot_every": 500, "gkt_max_resets": 20,
                  "ispf_constant_lr": False},
    },
    "05_privacy_of_synthetic_images": {
        # the attacks use a seeded random share of each split on cpu (the same share for every model), which
        # keeps the notebook inside its time budget; 1.0 reproduces dsda.evaluate
        "smoke": {"n_synthetic": 16, "n_real": 30, "mia_train_fraction": 1.0, "mia_test_fraction": 1.0},
        "cpu": {"n_synthetic": 16, "n_real": 200, "mia_train_fraction": 0.1, "mia_test_fraction": 0.5},
        "paper": {"n_synthetic": 50, "n_real": 500, "mia_train_fraction": 1.0, "mia_test_fraction": 1.0},
    },
    "06_main_results": {
        # which methods run on which single-class tasks: all methods on the first task; `all_tasks` on every
        # task (None: all); `multi_methods` on the two-class task (None: all). single None: the profile's
        # eval_classes. "dsda" is the paper's objective, "dsda_kd_head" our cpu default.
        # plan: the sweep plan (plans/<plan>.yaml) whose store holds these runs; None: the notebook's grid
        # becomes a plan of its own (results/store/06_main_results-<profile>). workers: how the missing runs
        # go (1: serially in the kernel; None: a LocalCluster, one worker per core).
        "smoke": {"single": [[3]], "all_tasks": ["original", "retrain", "dsda_kd_head"], "multi_methods": None,
                  "plan": None, "workers": 1},
        "cpu": {"single": [[3], [0], [7]], "all_tasks": ["original", "retrain", "dsda_kd_head"],
                "multi_methods": ["original", "retrain", "dsda", "dsda_kd_head", "gkt", "lau"],
                "plan": "cpu-quick", "workers": None},
        "paper": {"single": None, "all_tasks": None, "multi_methods": None, "plan": None, "workers": 1},
    },
    "07_playground": {
        "smoke": {"nfe": 20, "n_per_class": 16, "steps": 60, "n_eval": 0},
        "cpu": {"nfe": 20, "n_per_class": 16, "steps": 60, "n_eval": 2000},
        "paper": {"nfe": 40, "n_per_class": 100, "steps": 300, "n_eval": 0},
    },
}
