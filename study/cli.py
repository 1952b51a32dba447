"""The `study` console script: `study run ...` is `python -m study.run ...`, and so on."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": "study.data.__main__",
    "models": "study.models.__main__",
    "run": "study.run",
    "evaluate": "study.evaluate",
    "report": "study.report.__main__",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(
            f"usage: study {{{','.join(COMMANDS)}}} [options]   (study CMD --help)", file=sys.stderr
        )
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
