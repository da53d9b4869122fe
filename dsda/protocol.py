"""Dev tasks and report tasks, declared once (docs/PROTOCOL.md).

A task is a set of forget classes. Per profile family (dsda.recipes.profile_family: cpu-val shares cpu's):

- DEV_TASKS: the only tasks tuning may look at. They are listed next to every table and never enter a verdict
  (`drop_dev_pairs`, used by dsda.verdict).
- TUNING_TASKS: the dev tasks the studies of dsda/tune/ actually read (their objective is averaged over them),
  one class and one pair; a subset of DEV_TASKS, so the budget of every study fits (docs/PROTOCOL.md, 3).
- REPORT_TASKS: the tasks verdicts are computed on, this round.

cpu: the dev tasks are classes 3, 0, 7 and the pair 3+5 (they were used for the earlier tuning, so they can
no longer be reported on fairly). The report tasks are three of the classes that are not a dev task themselves,
1, 2, 4, 5, 6, 8, 9, drawn once with a seeded generator:
numpy.random.default_rng(2026).permutation([1, 2, 4, 5, 6, 8, 9])[:3]
= 1, 5, 8 (REPORT_DRAW records the draw; tests/test_protocol.py repeats it). The studies read 3 and 3+5 only:
at 24 trials on all four dev tasks the cpu studies would need 6-9 hours of our 2 cores, over the 3 hours the
protocol allows; 0 and 7 stay dev tasks (earlier tuning looked at them), so they are still never reported.
smoke (tests only): dev = tuning = the smoke profile's own tasks 3 and 3+8, report = 1, 5.

Declaration plus bookkeeping: no data is read here (the profile family comes from dsda.recipes.profile_family).
"""
from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping

Task = tuple[int, ...]

DEV_TASKS: dict[str, tuple[Task, ...]] = {
    "cpu": ((3,), (0,), (7,), (3, 5)),
    "smoke": ((3,), (3, 8)),
}
TUNING_TASKS: dict[str, tuple[Task, ...]] = {
    "cpu": ((3,), (3, 5)),         # one class and one pair (the protocol's budget, see above)
    "smoke": ((3,), (3, 8)),
}
# the classes that are not themselves a dev task (5 is one half of the dev pair 3+5, not a dev task)
REPORT_POOL: dict[str, tuple[int, ...]] = {"cpu": (1, 2, 4, 5, 6, 8, 9), "smoke": (0, 1, 2, 4, 5, 6, 7, 8, 9)}
REPORT_DRAW = {"cpu": {"rng": "numpy.random.default_rng", "seed": 2026, "take": 3}}
REPORT_TASKS: dict[str, tuple[Task, ...]] = {
    "cpu": ((1,), (5,), (8,)),
    "smoke": ((1,), (5,)),
}


def as_task(task: Any) -> Task:
    """A task as a sorted tuple of class ids: 3, [3], (5, 3), "3+5" and "3" are all accepted."""
    if isinstance(task, str):
        parts = task.split("+")
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"a task label must read like '3' or '3+5', got {task!r}")
        task = [int(p) for p in parts]
    if isinstance(task, int) and not isinstance(task, bool):
        task = [task]
    if not isinstance(task, (list, tuple)) or not task or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in task) or len(set(task)) != len(task):
        raise ValueError(f"a task must be a class id, a non-empty list of distinct class ids or a label like "
                         f"'3+5', got {task!r}")
    return tuple(sorted(task))


def task_label(task: Any) -> str:
    return "+".join(map(str, as_task(task)))


def _family(profile: Any) -> str:
    from .recipes import profile_family   # profiles and recipes import no data either
    family = profile_family(profile)
    if family not in DEV_TASKS:
        raise ValueError(f"profile {profile!r} (family {family!r}) declares no dev tasks; "
                         f"declared for: {', '.join(DEV_TASKS)}")
    return family


def dev_tasks(profile: Any) -> tuple[Task, ...]:
    """The profile family's dev tasks (the only tasks tuning reads)."""
    return DEV_TASKS[_family(profile)]


def tuning_tasks(profile: Any) -> tuple[Task, ...]:
    """The dev tasks the profile family's tuning studies read (a subset of `dev_tasks`)."""
    return TUNING_TASKS[_family(profile)]


def report_tasks(profile: Any) -> tuple[Task, ...]:
    """The profile family's report tasks of this round (verdicts are computed on these)."""
    return REPORT_TASKS[_family(profile)]


def is_dev_task(profile: Any, task: Any) -> bool:
    return as_task(task) in dev_tasks(profile)


def check_tuning_tasks(profile: Any, tasks: Iterable[Any]) -> tuple[Task, ...]:
    """Tasks a tuning study may read: every one must be a dev task of the profile (else ValueError)."""
    tasks = tuple(as_task(t) for t in tasks)
    bad = [task_label(t) for t in tasks if t not in dev_tasks(profile)]
    if bad or not tasks:
        raise ValueError(f"tuning may read dev tasks only; {bad or 'no task'} given, the dev tasks of "
                         f"{profile!r} are {dev_note(profile, prefix=False)}")
    return tasks


def drop_dev_pairs(profile: Any, a: Mapping[Hashable, float], b: Mapping[Hashable, float] | None = None
                   ) -> tuple[dict, dict | None, tuple]:
    """(a, b, dropped keys) without the (task, seed) keys whose task is a dev task of the profile."""
    dropped = tuple(sorted((k for k in a if is_dev_task(profile, _key_task(k))), key=str))
    keep = lambda m: None if m is None else {k: v for k, v in m.items() if k not in dropped}  # noqa: E731
    return keep(a), keep(b), dropped


def _key_task(key: Hashable) -> Any:
    if not isinstance(key, tuple) or len(key) != 2:
        raise ValueError(f"a paired result must be keyed by (task, seed), got {key!r}")
    return key[0]


def report_rows(profile: Any, rows: Iterable[Mapping[str, Any]], key: str = "task") -> list[Mapping[str, Any]]:
    """The rows (e.g. of dsda.results.load(...).to_dict('records')) whose task is not a dev task."""
    return [r for r in rows if not is_dev_task(profile, r[key])]


def dev_note(profile: Any, prefix: bool = True) -> str:
    """The line printed next to every table: which tasks are dev tasks (and so excluded from verdicts)."""
    listed = ", ".join(task_label(t) for t in dev_tasks(profile))
    return f"dev tasks (tuning only, excluded from verdicts): {listed}" if prefix else listed
