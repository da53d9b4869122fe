"""`python -m dsda sweep ...`: the engine's command line (wired into dsda/cli.py).

    sweep PLAN [--scheduler ADDRESS] [--workers N] [--serial] [--threads T] [--store DIR]
               [--retry-failed] [--dry-run] [--no-progress]
    sweep verify PLAN --sample K [--seed S] [--store DIR]
"""
from __future__ import annotations

import argparse

USAGE = "sweep PLAN [options] | sweep verify PLAN --sample K"


def add_parser(sub, command) -> None:
    """The `sweep` subcommand; `command(sub, name, func, help)` is cli.py's helper."""
    p = command(sub, "sweep", cmd_sweep, "run a plan of experiments on Dask into the results store (resumes), "
                                         "or verify a store")
    p.usage = "python -m dsda sweep [verify] PLAN [options]"
    p.add_argument("words", nargs="+", metavar="PLAN",
                   help="a plan name (plans/<name>.yaml) or a .yaml path; `verify PLAN` audits its store")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (tcp://host:8786); default: a LocalCluster here")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: one per core)")
    p.add_argument("--serial", action="store_true", help="run every job in this process, no Dask")
    p.add_argument("--threads", type=int, metavar="T",
                   help="torch threads per job (default: the plan's; part of every job's key)")
    p.add_argument("--store", metavar="DIR", help="the results store folder (default: results/store/<plan>)")
    p.add_argument("--retry-failed", action="store_true", help="rerun only the jobs recorded as failed")
    p.add_argument("--dry-run", action="store_true", help="print the jobs and their estimated cost; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--sample", type=int, metavar="K", help="verify: how many finished results to rerun")
    p.add_argument("--seed", type=int, default=0, help="verify: seed of the random draw of results (default 0)")


def _words(args: argparse.Namespace) -> tuple[bool, str]:
    w = args.words
    if w[0] == "verify":
        if len(w) != 2:
            raise ValueError(f"usage: python -m dsda {USAGE} (got {' '.join(w)!r})")
        if args.sample is None:
            raise ValueError("sweep verify needs --sample K (how many finished results to rerun)")
        return True, w[1]
    if len(w) != 1:
        raise ValueError(f"usage: python -m dsda {USAGE} (got {' '.join(w)!r})")
    if args.sample is not None:
        raise ValueError("--sample belongs to `sweep verify PLAN`")
    return False, w[0]


def _check_numbers(args: argparse.Namespace) -> None:
    for name in ("workers", "threads"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise ValueError(f"--{name} must be a positive integer, got {v}")
    if args.serial and (args.scheduler or args.workers):
        raise ValueError("--serial runs in this process: it takes neither --scheduler nor --workers")


def _dry_run(plan: str, args: argparse.Namespace) -> int:
    from .cluster import default_workers
    from .engine import plan_jobs
    from .estimate import report
    p, st, jobs = plan_jobs(plan, args.store, args.retry_failed, args.threads)
    print(f"[dsda] sweep {p.name} --dry-run: store {st.root}")
    report(jobs, st, 1 if args.serial else (args.workers or default_workers(p.threads)))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    verify_mode, plan = _words(args)
    _check_numbers(args)
    if verify_mode:
        from .verify import machine_note, verify
        rows = verify(plan, args.sample, seed=args.seed, store=args.store)
        bad = [r for r in rows if not r["ok"]]
        print(f"[dsda] verify {plan}: {len(rows) - len(bad)} of {len(rows)} result(s) reproduced exactly")
        if (note := machine_note(rows)) is not None:
            print(f"[dsda] note: {note}")
        return 1 if bad else 0
    if args.dry_run:
        return _dry_run(plan, args)
    from .engine import run_plan
    summary = run_plan(plan, store=args.store, scheduler=args.scheduler, workers=args.workers, serial=args.serial,
                       retry_failed=args.retry_failed, threads=args.threads, progress=not args.no_progress)
    print(summary.line())
    return 1 if summary.failed else 0
