"""Prepare a data set once (decode, split, dedupe) into Parquet, or list the data sets.

`python -m study.data prepare NAME --source PATH ...` and `python -m study.data list`
(`study data ...` is the same).
"""

from __future__ import annotations

import argparse
import sys
import time

from study.data.prepare import PrepareError, prepare
from study.data.registry import get_dataset, list_datasets
from study.data.sources import SourceError

PROGRESS_EVERY_S = 2.0


class ProgressLine:
    """'prepare toon: decoded 1,200 / 3,360 files (9 s)', at most every 2 s (on stdout: stderr
    holds only a bad input's one error)."""

    def __init__(self, name: str, every_s: float = PROGRESS_EVERY_S):
        self.name, self.every_s = name, every_s
        self.t0 = self.last = time.monotonic()

    def __call__(self, what: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and done != total:
            return
        self.last = now
        of = f" / {total:,}" if total is not None else ""
        print(f"prepare {self.name}: {what} {done:,}{of} files ({now - self.t0:.0f} s)", flush=True)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=prog or "python -m study.data", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered data sets")
    pp = sub.add_parser("prepare", help="validate a source once and write the Parquet data set")
    pp.add_argument("name", choices=list_datasets(), help="the data set (see `list`)")
    pp.add_argument("--source", help="folder or .zip as published (toon: tiny|small|default|N)")
    pp.add_argument(
        "--data-dir",
        default=None,
        help="where prepared data sets live (default: $STUDY_DATA_DIR or ./data)",
    )
    pp.add_argument(
        "--split",
        choices=["stratified", "by-group"],
        default=None,
        help="default: the data set's own (by-group for FERG: no character in two splits)",
    )
    pp.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the train/val/test split (and of toon's generated images); default 0",
    )
    pp.add_argument("--skip-bad", action="store_true", help="leave bad files out and list them")
    pp.add_argument(
        "--allow-empty-splits",
        action="store_true",
        help="prepare even if some class has no image in train, val or test (refused by default; "
        "the manifest records which class lacks which split)",
    )
    pp.add_argument(
        "--keep-conflicts",
        action="store_true",
        help="keep images whose bytes are under two or more classes (left out by default; named "
        "in the manifest either way)",
    )
    pp.add_argument("--name", dest="out_name", default=None, help="store under this name")
    pp.add_argument("--overwrite", action="store_true", help="replace a different existing version")
    pp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
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
            progress=None if args.quiet else ProgressLine(args.out_name or args.name),
            allow_empty_splits=args.allow_empty_splits,
            keep_conflicts=args.keep_conflicts,
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
