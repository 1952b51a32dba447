"""Hyperparameter studies for emotion classification of animated characters.

    import study
    s = study.load("studies/NAME")      # s.trials, s.epochs, s.predictions, s.gradcam, s.meta
    best = study.load_best_model("studies/NAME")

Importing `study` imports nothing heavy: `load` needs pandas and pyarrow, `load_best_model` torch;
neither needs Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

if TYPE_CHECKING:
    from study.api import BestModel, Study

__all__ = ["__version__", "load", "load_best_model"]


def load(study_dir: Any) -> Study:
    """A study directory's tables as DataFrames (see `study.api.load`)."""
    from study.api import load as _load

    return _load(study_dir)


def load_best_model(
    study_dir: Any, trial_id: str | None = None, device: str | None = None
) -> BestModel:
    """A trial's best-validation weights, by default the study's best trial's (see
    `study.api.load_best_model`)."""
    from study.api import load_best_model as _load_best_model

    return _load_best_model(study_dir, trial_id, device)
