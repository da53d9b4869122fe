"""Command line: `python -m dsda <command> ...` (also installed as `dsda`).

    prepare-data [--dataset fashion_mnist]          find or install the data set
    train --profile cpu [--forget 3] [--seed 0]      train (or load) the original / retrained model
"""
from __future__ import annotations

import argparse
import sys


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dsda", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare-data", help="find or install a data set (Fashion-MNIST by default)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--no-apt", action="store_true", help="never call apt-get")
    p.add_argument("--no-download", action="store_true", help="never download")
    p.set_defaults(func=cmd_prepare_data)

    p = sub.add_parser("train", help="train (or load from the cache) the original or a retrained model")
    _add_profile(p)
    p.add_argument("--forget", type=int, action="append", default=[], metavar="CLASS",
                   help="train the retrain-from-scratch oracle without this class (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="retrain even when a cached checkpoint exists")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
