"""The `study` console script: `study run ...` is `python -m study.run ...`, and so on."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from study import __version__

# command -> (its module, one line on what it does); modules are imported only when run, so
# `study --help` and `study --version` answer at once
COMMANDS = {
    "data": ("study.data.__main__", "prepare a data set once (decode, split, dedupe) or list them"),
    "models": ("study.models.__main__", "list the model zoo with parameter counts and GFLOPs"),
    "run": ("study.run.__main__", "run a hyperparameter study (Ray Tune, Optuna, ASHA)"),
    "evaluate": ("study.evaluate", "score a study's best trials on another image folder"),
    "report": ("study.report.__main__", "write the HTML report of a study, or compare studies"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="study",
        description="Hyperparameter studies for emotion classification of animated characters.",
        epilog="`study COMMAND --help` shows a command's options.",
    )
    p.add_argument("--version", action="version", version=f"study {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return p


def leaving(rc: int | None) -> int:
    """A command's exit code, returned as it exits: its objects are frozen first, so the
    interpreter's final garbage collections skip them. After a study, torch, Ray and pandas
    leave hundreds of thousands of objects; collecting them at exit costs seconds, for memory the
    OS frees anyway. atexit handlers and open files' flushes at exit still run."""
    gc.freeze()
    return int(rc or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return leaving(module.main(argv[1:], prog=f"study {argv[0]}"))
    parser().parse_args(argv)  # --help, --version: exit 0; anything else: usage, exit 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
