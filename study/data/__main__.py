"""`python -m study.data prepare NAME --source PATH ...` and `python -m study.data list`."""

from __future__ import annotations

import argparse
import sys

from study.data.prepare import PrepareError, default_data_dir, prepare
from study.data.registry import get_dataset, list_datasets
from study.data.sources import SourceError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered data sets")
    pp = sub.add_parser("prepare", help="validate a source once and write the Parquet data set")
    pp.add_argument("name", choices=list_datasets())
    pp.add_argument("--source", help="folder or .zip as published (toon: tiny|small|default|N)")
    pp.add_argument(
        "--data-dir",
        default=None,
        help=f"where prepared data sets live (default $STUDY_DATA_DIR or {default_data_dir()})",
    )
    pp.add_argument(
        "--split",
        choices=["stratified", "by-group"],
        default=None,
        help="default: the data set's own (by-group for FERG: no character in two splits)",
    )
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--skip-bad", action="store_true", help="leave bad files out and list them")
    pp.add_argument("--name", dest="out_name", default=None, help="store under this name")
    pp.add_argument("--overwrite", action="store_true", help="replace a different existing version")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for n in list_datasets():
            print(f"{n:8s} {get_dataset(n).description}")
        return 0
    try:
        res = prepare(
            args.name,
            source=args.source,
            data_dir=args.data_dir,
            split=args.split,
            seed=args.seed,
            skip_bad=args.skip_bad,
            out_name=args.out_name,
            overwrite=args.overwrite,
        )
    except (PrepareError, SourceError, ValueError, OSError) as e:
        # bad input or an unusable source/output (FileExistsError, PermissionError, ...): the
        # message names the file or option; no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(res.summary)
    print(("unchanged, reused " if res.reused else "wrote ") + str(res.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
