"""Command line: `python -m dsda <command> ...` (also installed as `dsda`).

    prepare-data [--dataset fashion_mnist]          find or install the data set
    train --profile cpu [--forget 3] [--seed 0]      train (or load) the original / retrained model
    run --method NAME --profile cpu --forget 3 [--forget 5] --seed 0 --out result.json [--set key=value ...]
        [--no-reference]                             run one unlearning method, write its record (JSON), with
                                                     its distance to the retrained oracle of the task and seed
    methods [--markdown]                             list every method with the data it may touch
    reproduce --profile cpu [--only 02] [--force] [--sweep PLAN]
                                                     run the notebook series with papermill (runs/<profile>/),
                                                     then write results/<profile>/SUMMARY.md (--sweep: a plan
                                                     through the sweep engine first)
    notebooks build | check | golden [--only 02]     notebooks/src/*.py -> notebooks/*.ipynb; check drift;
              | readme                               refresh the golden cpu outputs; README results (maintainers)
    sweep PLAN [--scheduler ADDR] [--dry-run] [--retry-failed]
                                                     run a plan (plans/PLAN.yaml) on Dask into results/store/PLAN
                                                     (resumes: finished jobs never run again)
    sweep verify PLAN --sample K                     rerun K finished results, check the metrics exactly
    book [--out runs/book]                           the series as a static book (offline), checked for missing
                                                     figures and broken internal links
    prepare-browser [--no-apt]                       find or install Chromium and ChromeDriver (browser test)
    tune STUDY | --reproduce STUDY | --list          a tuning study (Optuna, validation split, dev tasks) into
                                                     results/tuning/STUDY.sqlite3; re-run its best trial; list all

Errors print one line and exit non-zero (2 for bad input, 1 for an internal error); --debug (before
or after the command) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


DEBUG_HELP = "on any error, show the full traceback (default: a one-line message)"


def _add_debug(p: argparse.ArgumentParser) -> None:
    # also accepted after the command; SUPPRESS keeps a top-level --debug when it is not repeated here
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)


def _add_profile(p: argparse.ArgumentParser) -> None:
    from .profiles import PROFILES
    p.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="experiment profile (default: cpu)")


def cmd_prepare_data(args: argparse.Namespace) -> int:
    from .data import prepare
    path = prepare(args.dataset, allow_apt=not args.no_apt, allow_download=not args.no_download)
    print(f"[dsda] {args.dataset}: ready at {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .profiles import get_profile
    from .train import original_model, retrain_model, test_accuracy
    profile = get_profile(args.profile)
    if args.forget:
        model = retrain_model(profile, args.forget, seed=args.seed, device=args.device, force=args.force)
        what = f"retrained model without classes {sorted(args.forget)}"
    else:
        model = original_model(profile, seed=args.seed, device=args.device, force=args.force)
        what = "original model"
    acc = test_accuracy(model, load_dataset(profile.dataset, "test"), profile.eval_batch_size, args.device)
    print(f"[dsda] {profile.name} {what} (seed {args.seed}): test accuracy {acc:.2f} %")
    return 0


def parse_set_value(text: str):
    """`--set` values: true/false/none (any case), Python literals (1e-3, 5, (1, 1, 0), 'x'), else a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_set_options(items: list[str]) -> dict:
    """['lr=1e-3', 'sampler=sgld'] -> {'lr': 0.001, 'sampler': 'sgld'}; a malformed or repeated key is an error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--set expects key=value with a field name as key, got {item!r}")
        if key in out:
            raise ValueError(f"--set gives {key!r} more than once")
        out[key] = parse_set_value(value)
    return out


def _summary(record: dict, out: Path) -> str:
    m = record["metrics"]
    scores = "not evaluated" if m is None else (
        f"A_f {m['A_f']:.2f} %  A_r {m['A_r']:.2f} %  MIA {m['MIA']:.2f} %"
        + (f" (vs retrain {m['gap_MIA']:+.2f}, {m['forgetting']}-forgetting)" if "gap_MIA" in m else ""))
    return (f"[dsda] {record['method']} on {record['profile']}, forget {record['forget_classes']}, "
            f"seed {record['seed']}: {scores}  ET {record['ET_s']:.2f} s ({record['ET_source']}) -> {out}")


def cmd_run(args: argparse.Namespace) -> int:
    from .baselines.runner import run_method
    from .utils import atomic_write_json, check_writable
    options = parse_set_options(args.set)
    out = check_writable(args.out, "--out")   # before the run: a run must never be lost to a bad path
    record = run_method(args.method, profile=args.profile, forget_classes=args.forget or None, seed=args.seed,
                        device=args.device, evaluate=not args.no_evaluate, retain_per_class=args.retain_per_class,
                        progress=not args.no_progress, model_seed=args.model_seed,
                        reference=not args.no_reference, **options)
    atomic_write_json(out, record)   # only after a complete run: a failed run leaves any old file untouched
    print(_summary(record, out))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .baselines.runner import methods_table_markdown, methods_table_text
    print(methods_table_markdown() if args.markdown else methods_table_text(), end="")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import run_series
    rows = run_series(args.profile, only=args.only or None, force=args.force, progress=not args.no_progress,
                      sweep=args.sweep)
    ran = sum(r["status"] == "ran" for r in rows)
    print(f"[dsda] {args.profile}: {ran} notebook(s) ran, {len(rows) - ran} unchanged")
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .reproduce import build_all, update_golden, update_readme
    if args.action == "readme":
        print(f"updated {update_readme('cpu')}")
        return 0
    if args.action == "build":
        return build_all()
    if args.action == "check":
        rc = build_all(check=True)
        print("notebooks match their sources" if rc == 0 else "notebooks drifted from notebooks/src: "
              "run `python -m dsda notebooks build`")
        return rc
    update_golden(only=args.only or None)
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    from .book import make_book
    index, problems = make_book(Path(args.out) if args.out else None)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"error: the book has {len(problems)} problem(s) (above)", file=sys.stderr)
        return 1
    print(f"[dsda] book: {index} (open it, or `python -m http.server -d {index.parent}`)")
    return 0


def cmd_prepare_browser(args: argparse.Namespace) -> int:
    from .browser import prepare_browser
    found, reason = prepare_browser(allow_apt=not args.no_apt)
    print(f"[dsda] browser: {found.chromium} and {found.driver}" if found else f"[dsda] browser: none ({reason})")
    return 0


def _command(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    _add_debug(p)
    p.set_defaults(func=func)
    return p


def _add_prepare_data(sub) -> None:
    p = _command(sub, "prepare-data", cmd_prepare_data, "find or install a data set (Fashion-MNIST by default)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--no-apt", action="store_true", help="never call apt-get")
    p.add_argument("--no-download", action="store_true", help="never download")


def _add_train(sub) -> None:
    p = _command(sub, "train", cmd_train, "train (or load from the cache) the original or a retrained model")
    _add_profile(p)
    p.add_argument("--forget", type=int, action="append", default=[], metavar="CLASS",
                   help="train the retrain-from-scratch oracle without this class (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="retrain even when a cached checkpoint exists")


def _add_run(sub) -> None:
    p = _command(sub, "run", cmd_run, "run one unlearning method and write its record (metrics, ET, config) as JSON")
    p.add_argument("--method", required=True, help="method name (see `python -m dsda methods`)")
    _add_profile(p)
    p.add_argument("--forget", type=int, action="append", default=[], metavar="CLASS",
                   help="class to forget (repeatable; default: the profile's task)")
    p.add_argument("--seed", type=int, default=0, help="the method's seed (default 0)")
    p.add_argument("--model-seed", type=int, default=0, help="seed of the original model (default 0)")
    p.add_argument("--out", required=True,
                   help="file to write the record to (JSON, written atomically; missing folders are created). "
                        "Checked before the run: a directory, a path ending in a separator, or a folder that "
                        "cannot be written is an error")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config option of the method (repeatable), e.g. --set lr=1e-3")
    p.add_argument("--retain-per-class", type=int, default=500,
                   help="retain samples per class for methods with data_access=retain_subset (default 500)")
    p.add_argument("--no-evaluate", action="store_true", help="skip the metrics (ET and report only)")
    p.add_argument("--no-reference", action="store_true",
                   help="evaluate without the retrained oracle of the task and seed (no distance keys gap_*, ToW, "
                        "JS_*; the oracle is neither loaded nor trained)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_series(sub) -> None:
    p = _command(sub, "methods", cmd_methods, "list every unlearning method with the data it may touch")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (as in the README)")
    p = _command(sub, "reproduce", cmd_reproduce, "run the notebook series with papermill and write SUMMARY.md")
    _add_profile(p)
    p.add_argument("--only", action="append", default=[], metavar="PREFIX",
                   help="run only notebooks whose name starts with PREFIX (repeatable), e.g. --only 02")
    p.add_argument("--force", action="store_true", help="re-run notebooks even when their inputs are unchanged")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    p.add_argument("--sweep", metavar="PLAN", help="first run this plan through the sweep engine (e.g. cpu-quick)")
    p = _command(sub, "notebooks", cmd_notebooks, "build notebooks from notebooks/src, check drift, refresh golden outputs")
    p.add_argument("action", choices=("build", "check", "golden", "readme"))
    p.add_argument("--only", action="append", default=[], metavar="PREFIX", help="golden: only these notebooks")
    p = _command(sub, "book", cmd_book, "build the static book of the series (offline) and check it")
    p.add_argument("--out", default=None, help="output folder (default runs/book; the site is in <out>/html)")
    p = _command(sub, "prepare-browser", cmd_prepare_browser,
                 "find or install (apt, as root) Chromium and ChromeDriver for the browser test; never fails")
    p.add_argument("--no-apt", action="store_true", help="never call apt-get")


def _add_sweep(sub) -> None:
    from .sweep.command import add_parser
    add_parser(sub, _command)


def _add_tune(sub) -> None:
    from .tune.command import add_parser
    add_parser(sub, _command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dsda", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_prepare_data, _add_train, _add_run, _add_series, _add_sweep, _add_tune):
        add(sub)
    return parser


# errors that bad input or the environment cause: a one-line message, exit status 2
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        if isinstance(e, USER_ERRORS):
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"internal error: {type(e).__name__}: {e}\n(this is a bug in dsda; re-run with --debug for the "
              f"traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
