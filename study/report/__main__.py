"""CLI: ``python -m study.report STUDY_DIR [--out DIR]``
or ``python -m study.report --compare DIR1 DIR2 ... [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from study.report.load import ReportInputError
from study.report.page import build_compare_report, build_report
from study.results.errors import StudyFileError
from study.storage import redact


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m study.report",
        description="Write an offline HTML report (index.html + assets/) of a study directory.",
    )
    parser.add_argument("study_dir", nargs="?", help="study directory (path or URI)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="DIR",
        help="compare these study directories instead (the seed's results table)",
    )
    parser.add_argument(
        "--out", help="output directory (default reports/<study>/, reports/compare/ with --compare)"
    )
    parser.add_argument(
        "--self-contained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Plotly inside index.html, one file to copy anywhere (default: on "
        "with --compare, off otherwise: assets/plotly.min.js beside it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    if (args.study_dir is None) == (args.compare is None):
        parser.error("give either STUDY_DIR or --compare DIR1 DIR2 ..., not both or neither")
    try:
        if args.compare:
            index = build_compare_report(
                args.compare, args.out, self_contained=args.self_contained is not False
            )
        else:
            index = build_report(args.study_dir, args.out, self_contained=bool(args.self_contained))
    # one line naming the folder or file, and never a URI's credentials (StudyFileError: a file
    # read while drawing, confirm.parquet)
    except (ReportInputError, StudyFileError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    from study.cli import leaving

    sys.exit(leaving(main()))
