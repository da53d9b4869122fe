"""One tuning procedure for every variant (issue 17; the protocol is docs/PROTOCOL.md).

    python -m dsda tune kd_head                 # Optuna TPE (seeded), the family's budget, SQLite storage
    python -m dsda tune --reproduce kd_head     # re-run the best trial from its storage, compare the objective
    python -m dsda tune --list                  # every study: state, trials, best value

One file per concept: `spaces.py` (every study: variant, switches, search space, budget, what it registers),
`objective.py` (the validation-split gap to the retrained oracle), `context.py` (what the trials of a study
share, and one trial's evaluation), `study.py` (Optuna, storage, resume, reproduce, the test-split guard),
`registry.py` (is each registered setting its study's best trial?), `command.py` (the command line).
The earlier hand-run studies (benchmarks/tune_*.py, dsda/tuning.py) stay as the record of how today's recipes
were chosen.
"""
from __future__ import annotations

from .objective import OBJECTIVE_KEYS, average_gap, load_validation, validation_metrics
from .spaces import STUDIES, TRIALS, StudySpec, get_study
from .study import reproduce, run_study, storage_path

__all__ = ["OBJECTIVE_KEYS", "STUDIES", "TRIALS", "StudySpec", "average_gap", "get_study", "load_validation",
           "reproduce", "run_study", "storage_path", "validation_metrics"]
