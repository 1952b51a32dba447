"""What study.json records about the code that ran: package versions and the git commit."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from study import __version__


def versions() -> dict[str, str]:
    # study's own version from the code that runs: by distribution name it could be another
    # project's (the index's `study` is not this one) or a stale install beside a checkout
    out = {"python": sys.version.split()[0], "study": __version__}
    for pkg in (
        "torch",
        "torchvision",
        "timm",
        "ray",
        "optuna",
        "pandas",
        "pyarrow",
        "plotly",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def has_tensorboard() -> bool:
    """Ray Tune writes TensorBoard event files into each trial's folder when tensorboardX is
    installed (tensorboard itself is not needed to run a study)."""
    return find_spec("tensorboardX") is not None
