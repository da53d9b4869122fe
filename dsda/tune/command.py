"""`python -m dsda tune ...`: run a study, reproduce its best trial, or list every study and its state.

    python -m dsda tune STUDY [--threads 1]     run or resume STUDY until its budget (results/tuning/STUDY.sqlite3)
    python -m dsda tune --reproduce STUDY       re-run the stored best trial; exit 1 unless its value is the same
    python -m dsda tune --list                  every declared study: state, trials, best value and parameters
    python -m dsda tune --curves gkt            GKT's (or ISPF's) capped learning curves (dsda/tune/curves.py)
    python -m dsda tune --summary               write results/tuning/SUMMARY.md from the storage (dsda/tune/summary.py)
"""
from __future__ import annotations

import argparse
import json


def cmd_tune(args: argparse.Namespace) -> int:
    from .registry import status
    from .spaces import STUDIES
    from .study import reproduce, run_study
    if args.list:
        for name in STUDIES:
            st = status(name)
            best = "" if st["best"] is None else f" best {st['best']['value']:.4f} {json.dumps(st['best']['params'])}"
            print(f"{name:18s} {STUDIES[name].family:5s} {st['state']:8s} {st['trials']}/{st['budget']}{best}")
        return 0
    if args.summary:
        from .summary import write_summary
        print(f"[dsda] wrote {write_summary()}")
        return 0
    if args.curves:
        from .curves import run_curves
        run_curves(args.curves, threads=args.threads)
        return 0
    if args.study is None:
        raise ValueError(f"name a study (one of {', '.join(STUDIES)}) or pass --list")
    if args.reproduce:
        out = reproduce(args.study)
        print(f"[dsda] {args.study} trial {out['trial']}: stored {out['stored']!r}, reproduced {out['reproduced']!r}: "
              + ("the same" if out["match"] else "DIFFERENT"))
        return 0 if out["match"] else 1
    run_study(args.study, threads=args.threads)
    return 0


def add_parser(sub, command) -> None:
    """Register `tune` with the main parser (`command` is dsda.cli._command)."""
    p = command(sub, "tune", cmd_tune, "run a tuning study (Optuna, validation split, dev tasks), reproduce its "
                                      "best trial, or list the studies")
    p.add_argument("study", nargs="?", help="a study declared in dsda/tune/spaces.py")
    p.add_argument("--reproduce", action="store_true", help="re-run the stored best trial and compare its value")
    p.add_argument("--list", action="store_true", help="list every study with its state and best trial")
    p.add_argument("--summary", action="store_true", help="write results/tuning/SUMMARY.md from the studies and curves")
    p.add_argument("--curves", metavar="METHOD", help="run the learning curves of gkt or ispf with their published "
                                                      "settings, capped at 30 minutes per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (recorded; default 1)")
