"""`python -m study.evaluate`: the command is study/evaluation/command.py."""

import sys

from study.cli import leaving
from study.evaluation.command import main

if __name__ == "__main__":
    sys.exit(leaving(main()))
