"""Render docs/TUNING.md from the tuning records results/tuning/*.json (written by tune_damo.py / tune_baselines.py).

    python benchmarks/render_tuning.py                       # reads results/tuning/, writes docs/TUNING.md
    python benchmarks/render_tuning.py --results DIR --out FILE

Both default under $DSDA_OUTPUT_DIR when it is set, else under the project root (see dsda/report.py).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dsda import tuning  # noqa: E402
from dsda.report import output_root  # noqa: E402
from dsda.utils import atomic_write_bytes  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=output_root() / "results" / "tuning")
    p.add_argument("--out", type=Path, default=output_root() / "docs" / "TUNING.md")
    args = p.parse_args(argv)
    records = tuning.load_records(args.results)
    if not records:
        raise SystemExit(f"no tuning records (*.json) in {args.results}")
    atomic_write_bytes(args.out, tuning.render(records).encode())
    print(f"wrote {args.out} ({len(records)} studies)")


if __name__ == "__main__":
    main()
